"""Run an engine command in a separate process with streamed progress and Cancel.

The Slicer widget polls :meth:`BackgroundRun.poll` from a timer, so the GUI stays
live; Cancel kills the process (the engine writes outputs atomically, so a
cancelled run leaves no partial file). Progress comes from the JSON lines the
engine prints when ``NEUROSHIFT_PROGRESS=json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field


@dataclass
class RunState:
    progress: float = 0.0
    message: str = ""
    returncode: int | None = None
    log: list[str] = field(default_factory=list)


class BackgroundRun:
    """``neuroshift ARGS...`` in a child process (argument list, never a shell string)."""

    def __init__(self, args: list[str], python: str | None = None, env: dict | None = None):
        self.args = [python or sys.executable, "-m", "neuroshift", *map(str, args)]
        full_env = {**os.environ, **(env or {}), "NEUROSHIFT_PROGRESS": "json", "PYTHONUNBUFFERED": "1"}
        self.state = RunState()
        self._lock = threading.Lock()
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=full_env)
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
                except ValueError:
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
        """Stop the run now."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
