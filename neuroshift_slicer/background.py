"""Run an engine command in a separate process with streamed progress and Cancel.

The Slicer widget polls :meth:`BackgroundRun.poll` from a timer (through the shared
:class:`neuroshift_slicer.jobs.BackgroundJobController`), so the GUI stays live.
Progress comes from the JSON lines the engine prints when ``NEUROSHIFT_PROGRESS=json``.

Three facts of running under 3D Slicer shape this class:

* ``PythonSlicer`` is the CTK launcher: it sets up the environment and starts the real
  interpreter (``python-real``) as its *child* (Slicer ``CMake/SlicerBlockInstallPython.cmake``).
  Killing the launcher alone leaves ``python-real`` running as an orphan that holds CPU/GPU
  memory and keeps writing (e.g. into a stress-test store a resumed run then opens), so
  :meth:`BackgroundRun.cancel` ends the whole process tree with psutil, as
  lassoan/SlicerMONAIAuto3DSeg's ``_killProcess`` does.
* The engine prints non-ASCII text ("R²", "±"). Both sides of the pipe use UTF-8 with
  ``errors="replace"`` (``PYTHONIOENCODING`` in the child, the decoder here), so a stray
  byte becomes "\\ufffd" instead of killing the reader thread (a dead reader stops
  draining the pipe and the run hangs once the pipe buffer is full).
* On Windows a plain ``Popen`` of a console program opens a console window per run;
  Slicer's ``slicer.util.launchConsoleProcess`` hides it with ``STARTUPINFO``
  (``dwFlags = STARTF_USESHOWWINDOW``, ``wShowWindow = SW_HIDE``); we do the same.

Cancelled runs leave no partial output file: the engine writes atomically.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field

#: Seconds to wait for killed processes to disappear.
KILL_WAIT_S = 5.0


@dataclass
class RunState:
    """Snapshot of a background run: progress in [0, 1], last message, exit code (None while running), log lines."""

    progress: float = 0.0
    message: str = ""
    returncode: int | None = None
    log: list[str] = field(default_factory=list)

    def raise_if_failed(self, what: str) -> None:
        """Raise :class:`NeuroShiftError` "<what> failed: ..." with the run's last error lines (or last lines) when
        it did not exit 0; the one failure message of every module's background run."""
        if self.returncode == 0:
            return
        from neuroshift.errors import NeuroShiftError

        errors = [line for line in self.log if "error" in line.lower() or "failed" in line.lower()]
        text = "\n".join(errors[-6:] or self.log[-6:]) or f"exit code {self.returncode}"
        raise NeuroShiftError(f"{what} failed: {text}")


def hidden_console_options() -> dict:
    """``Popen`` keyword arguments that hide the console window on Windows (empty elsewhere)."""
    if os.name != "nt":
        return {}
    info = subprocess.STARTUPINFO()
    info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
    info.wShowWindow = 0  # SW_HIDE
    return {"startupinfo": info}


def kill_process_tree(pid: int, timeout_s: float = KILL_WAIT_S) -> list[int]:
    """Kill process ``pid`` and all its descendants; returns the pids that were killed.

    The children are listed before anything is killed (a dead parent's children are
    re-parented and could no longer be found), the parent is killed first so it cannot
    start new children, then every descendant.
    """
    import psutil  # not bundled with Slicer: installed by ensure_requirements before any run starts

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    try:
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = [parent]
    killed = []
    for proc in procs:
        try:
            proc.kill()
            killed.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=timeout_s)
    return killed


class BackgroundRun:
    """``neuroshift ARGS...`` in a child process (argument list, never a shell string).

    ``python``: the interpreter or launcher (``PythonSlicer`` inside Slicer); ``env``: extra
    environment variables (e.g. ``PYTHONPATH``).
    """

    def __init__(self, args: list[str], python: str | None = None, env: dict | None = None):
        self.args = [python or sys.executable, "-m", "neuroshift", *map(str, args)]
        full_env = {**os.environ, **(env or {}), "NEUROSHIFT_PROGRESS": "json", "PYTHONUNBUFFERED": "1",
                    "PYTHONIOENCODING": "utf-8:replace"}
        self.state = RunState()
        self._lock = threading.Lock()
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                        env=full_env, **hidden_console_options())
        self._readers = [threading.Thread(target=self._pump, args=(s,), daemon=True)
                         for s in (self.process.stdout, self.process.stderr)]
        for t in self._readers:
            t.start()

    def _pump(self, stream) -> None:
        for line in stream:
            line = line.rstrip("\n")
            with self._lock:
                try:
                    msg = json.loads(line)
                    if not isinstance(msg, dict) or "progress" not in msg:
                        raise ValueError
                    self.state.progress = float(msg["progress"])
                    self.state.message = str(msg.get("message", ""))
                except (ValueError, TypeError):
                    self.state.log.append(line)

    def poll(self) -> RunState:
        """Current progress; ``returncode`` is set once the process has ended."""
        code = self.process.poll()
        if code is not None:
            for t in self._readers:
                t.join(timeout=1.0)
        with self._lock:
            self.state.returncode = code
            return RunState(self.state.progress, self.state.message, code, list(self.state.log))

    def wait(self, timeout: float | None = None) -> RunState:
        self.process.wait(timeout)
        return self.poll()

    def cancel(self) -> None:
        """Stop the run now: the launcher and every process it started."""
        if self.process.poll() is None:
            try:
                kill_process_tree(self.process.pid)
            except ImportError:  # psutil missing (the modules install it before any run): the launcher at least
                logging.warning("NeuroShift: psutil is not installed; only the launcher process could be stopped")
                self.process.kill()
            self.process.wait()
