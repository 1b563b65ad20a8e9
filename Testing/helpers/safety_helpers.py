"""Shared pieces of the ``test_safety_*`` tests: the phantom once per session, the CLI in a subprocess."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


#: Root ignores file permissions through CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH; without them (and as the
#: files' owner) permissions apply. Dropping the capabilities keeps the interpreter under /root reachable,
#: which switching to user nobody does not.
_DROP_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
             "--inh-caps", "-dac_override,-dac_read_search", "--"]


def run_cli(*args, cwd=None, fsize_bytes: int | None = None, unprivileged: bool = False,
            timeout_s: float = 300.0) -> subprocess.CompletedProcess:
    """Run ``python -m neuroshift ARGS`` in a subprocess, optionally under ``ulimit -f`` or without root's
    permission override (so that read-only folders are read-only)."""

    def preexec():
        if fsize_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_bytes, fsize_bytes))

    prefix = _DROP_DAC if unprivileged and os.geteuid() == 0 else []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([*prefix, sys.executable, "-m", "neuroshift", *map(str, args)], cwd=cwd, env=env,
                          preexec_fn=preexec, capture_output=True, text=True, encoding="utf-8", timeout=timeout_s)


def permissions_apply(folder: Path) -> tuple[bool, str]:
    """Whether a read-only ``folder`` is read-only for :func:`run_cli` with ``unprivileged=True``."""
    prefix = _DROP_DAC if os.geteuid() == 0 else []
    probe = "import sys\ntry:\n open(sys.argv[1] + '/probe', 'w')\nexcept PermissionError:\n sys.exit(7)\n"
    try:
        r = subprocess.run([*prefix, sys.executable, "-c", probe, str(folder)], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot drop root's permission override with setpriv ({exc})"
    if r.returncode == 7:
        return True, "permissions apply"
    return False, f"a read-only folder is writable here (root without setpriv?): rc {r.returncode} {r.stderr[-200:]}"


def part_files(folder: Path) -> list[str]:
    """Hidden temporaries left in ``folder`` (``.*.part*``)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".") and ".part" in p.name)
