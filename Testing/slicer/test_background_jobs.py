"""Background runs as Slicer starts them: a launcher (``PythonSlicer``) that starts the real
interpreter (``python-real``) as its child (Slicer ``CMake/SlicerBlockInstallPython.cmake``, 5.x).

The tests use a real two-level process tree and the shared
:class:`neuroshift_slicer.jobs.BackgroundJobController` that all three modules use.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

from neuroshift_slicer.background import BackgroundRun  # noqa: E402
from neuroshift_slicer.jobs import BackgroundJobController  # noqa: E402

LAUNCHER = """#!{python}
# Stand-in for PythonSlicer: start the real interpreter as a child and wait for it.
import os, subprocess, sys
child = subprocess.Popen([sys.executable, os.environ["NS_TEST_CHILD"]])
sys.exit(child.wait())
"""

CHILD = """
import json, os, sys, time
open(os.environ["NS_TEST_PIDFILE"], "w").write(str(os.getpid()))
sys.stdout.buffer.write(b"fit R\\xb2 = 0.91 \\xb1 0.02\\n")      # not UTF-8 (Latin-1 bytes)
sys.stdout.flush()
print(json.dumps({{"progress": 0.5, "message": "R\\u00b2 half way"}}), flush=True)
time.sleep({sleep_s})
"""


def _tree(tmp_path: Path, sleep_s: float) -> tuple[str, dict, Path]:
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text(LAUNCHER.format(python=sys.executable), encoding="utf-8")
    launcher.chmod(0o755)
    child = tmp_path / "child.py"
    child.write_text(CHILD.format(sleep_s=sleep_s), encoding="utf-8")
    pidfile = tmp_path / "child.pid"
    return str(launcher), {"NS_TEST_CHILD": str(child), "NS_TEST_PIDFILE": str(pidfile)}, pidfile


def _wait_for(predicate, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


pytestmark = pytest.mark.skipif(os.name == "nt", reason="the launcher stand-in is a POSIX script")


def test_cancel_ends_the_launcher_and_the_real_interpreter(tmp_path):
    """Before the fix (issue 14, defect 4) ``cancel`` killed only the launcher: the child
    (``python-real``) kept running as an orphan and this test's last assertion failed."""
    python, env, pidfile = _tree(tmp_path, sleep_s=120)
    run = BackgroundRun(["--version"], python=python, env=env)
    _wait_for(lambda: pidfile.exists() and pidfile.read_text())
    child_pid = int(pidfile.read_text())
    assert _alive(run.process.pid) and _alive(child_pid)
    run.cancel()
    assert run.poll().returncode is not None
    _wait_for(lambda: not _alive(child_pid), timeout_s=10)
    assert not _alive(child_pid)


def test_non_utf8_output_does_not_stop_progress(tmp_path):
    """Before the fix (defect 8) the reader thread died on the byte 0xB2 ("R²" in Latin-1), so the
    progress line after it was never read: progress stayed 0.0 and the message empty."""
    python, env, pidfile = _tree(tmp_path, sleep_s=0)
    run = BackgroundRun(["--version"], python=python, env=env)
    state = run.wait(timeout=60)
    assert state.returncode == 0
    assert state.progress == 0.5
    assert state.message == "R\u00b2 half way"
    assert "fit R\ufffd = 0.91 \ufffd 0.02" in state.log


class _FakeTimer:
    """Records start/stop; the test calls the controller's poll itself (no Qt event loop)."""

    def __init__(self, interval_ms, callback):
        self.interval_ms, self.callback, self.running = interval_ms, callback, False

    def start(self):
        self.running = True

    def stop(self):
        self.running = False


def test_controller_reports_progress_and_finishes_once(tmp_path):
    python, env, _ = _tree(tmp_path, sleep_s=0)
    events, timers = [], []

    def factory(interval_ms, callback):
        timers.append(_FakeTimer(interval_ms, callback))
        return timers[-1]

    jobs = BackgroundJobController(lambda state, ctx, cancelled: events.append(("done", state.returncode, ctx,
                                                                                cancelled)),
                                   on_progress=lambda f, m: events.append(("progress", f, m)),
                                   on_busy=lambda busy: events.append(("busy", busy)), timer_factory=factory)
    jobs.start(BackgroundRun(["--version"], python=python, env=env), context="ctx")
    assert jobs.busy and timers[0].running and timers[0].interval_ms == 200
    with pytest.raises(RuntimeError):
        jobs.start(object())
    _wait_for(lambda: (timers[0].callback(), not jobs.busy)[1], timeout_s=60)
    done = [e for e in events if e[0] == "done"]
    assert done == [("done", 0, "ctx", False)]
    assert ("progress", 0.5, "R\u00b2 half way") in events
    assert events[0] == ("busy", True) and ("busy", False) in events and not timers[0].running


def test_controller_cancel_kills_the_tree_and_reports_cancelled(tmp_path):
    """One cancel path for all modules: the whole tree ends and ``on_finished`` says cancelled."""
    python, env, pidfile = _tree(tmp_path, sleep_s=120)
    finished = []
    jobs = BackgroundJobController(lambda state, ctx, cancelled: finished.append((state.returncode, cancelled)),
                                   timer_factory=_FakeTimer)
    jobs.start(BackgroundRun(["--version"], python=python, env=env))
    _wait_for(lambda: pidfile.exists() and pidfile.read_text())
    child_pid = int(pidfile.read_text())
    jobs.cancel()
    jobs.cancel()  # idle: no-op
    assert not jobs.busy
    assert len(finished) == 1 and finished[0][1] is True and finished[0][0] is not None
    _wait_for(lambda: not _alive(child_pid), timeout_s=10)
