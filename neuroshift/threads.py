"""CPU thread policy for torch inference: one place that decides threads and OpenMP waiting.

* **Threads** = the cores this process may use (:func:`available_cores`: CPU affinity and a cgroup CPU
  quota, whichever is smaller), unless ``NEUROSHIFT_THREADS`` or an explicit number says otherwise.
  torch's own default counts the machine's physical cores, which oversubscribes containers and
  pinned jobs.
* **OpenMP waiting**: GNU OpenMP threads spin between operators by default; on a machine shared with
  other busy processes that multiplies torch's inference time (measured on 2 shared cores: one
  ensemble 14.6 s with 1 thread, 44.1 s with 2). ``OMP_WAIT_POLICY=PASSIVE`` costs nothing measurable
  on an idle machine. OpenMP reads it when torch is first imported, so :func:`prepare_environment`
  must run before ``import torch`` (the CLI calls it first thing); a value the user set is kept.
* **Streams** (segmentation on the CPU): with ``T`` threads, ``T`` batches run at once, each on one thread
  (:func:`cpu_streams`); ``NEUROSHIFT_CPU_STREAMS=1`` runs one batch at a time over all ``T`` threads instead.

Heavy imports are lazy: importing this module does not import torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

#: Environment variable with the thread count to use (0 or unset: all available cores).
THREADS_ENV = "NEUROSHIFT_THREADS"
#: Environment variable with the number of concurrent single-threaded CPU inference streams (unset: the threads).
STREAMS_ENV = "NEUROSHIFT_CPU_STREAMS"


def _cgroup_quota_cores() -> float | None:
    """CPU quota of this process's cgroup in cores (cgroup v2 ``cpu.max`` or v1 CFS), None if unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return float(text[0]) / float(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def available_cores() -> int:
    """Cores this process may run on: CPU affinity, capped by a cgroup CPU quota (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota_cores()
    if quota is not None:
        n = min(n, max(1, int(quota)))
    return max(1, n)


def prepare_environment() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless already set; True when it can still take effect (torch not imported)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def requested_threads(n: int | None = None) -> int:
    """``n`` if positive, else ``$NEUROSHIFT_THREADS`` if positive, else :func:`available_cores`."""
    if n is not None and int(n) > 0:
        return int(n)
    try:
        env = int(os.environ.get(THREADS_ENV, "0") or 0)
    except ValueError:
        env = 0
    return env if env > 0 else available_cores()


def configure(n: int | None = None) -> dict[str, Any]:
    """Apply the policy to torch (threads, OpenMP waiting) and return what was set, for the run info."""
    effective_env = prepare_environment()
    import torch

    threads = requested_threads(n)
    torch.set_num_threads(threads)
    return policy_info(effective_env)


def cpu_streams(threads: int | None = None) -> int:
    """Concurrent single-threaded inference streams: ``$NEUROSHIFT_CPU_STREAMS`` if positive (at most the
    threads), else the torch threads (``threads``, default ``torch.get_num_threads()``)."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    try:
        env = int(os.environ.get(STREAMS_ENV, "0") or 0)
    except ValueError:
        env = 0
    return max(1, min(int(threads), env) if env > 0 else int(threads))


def policy_info(wait_policy_effective: bool | None = None) -> dict[str, Any]:
    """The thread settings in force now: torch threads, available cores, ``OMP_WAIT_POLICY``."""
    import torch

    info: dict[str, Any] = {"torch_threads": int(torch.get_num_threads()), "available_cores": available_cores(),
                            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                            "cpu_streams": cpu_streams(torch.get_num_threads())}
    if wait_policy_effective is not None:
        info["omp_wait_policy_before_torch_import"] = bool(wait_policy_effective)
    return info


__all__ = ["STREAMS_ENV", "THREADS_ENV", "available_cores", "configure", "cpu_streams", "policy_info", "prepare_environment", "requested_threads"]
