"""Several ``neuroshift`` commands run one after another as one background job (poll, progress, Cancel).

The MRF panel may need ``mrf dictionary`` before ``mrf match`` and may run ``mrf predict`` after it;
:class:`neuroshift_slicer.jobs.BackgroundJobController` polls one object, so this chains the runs behind
the same ``poll()``/``cancel()`` interface as :class:`neuroshift_slicer.background.BackgroundRun`. A step
starts only after the previous one exited with 0; a failure or Cancel ends the chain there.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from neuroshift_slicer.background import RunState

#: Exit code reported when Cancel came after a step had ended with 0 but before the next one started.
CANCELLED = -15


class SequentialRun:
    """``start(args)`` -> a run with ``poll()``/``cancel()``; progress is the step's share of the whole."""

    def __init__(self, commands: Sequence[Sequence[str]], start: Callable[[list[str]], Any]) -> None:
        if not commands:
            raise ValueError("no command to run")
        self.commands = [list(c) for c in commands]
        self._start = start
        self._index = 0
        self._log: list[str] = []
        self._cancelled = False
        self.current = start(self.commands[0])

    @property
    def step(self) -> int:
        """Index of the running (or last) command."""
        return self._index

    def _label(self) -> str:
        return f"step {self._index + 1}/{len(self.commands)} ({' '.join(self.commands[self._index][:2])})"

    def poll(self) -> RunState:
        n = len(self.commands)
        state = self.current.poll()
        if state.returncode == 0 and self._index + 1 < n and not self._cancelled:
            self._log += [f"[{self._label()}] {line}" for line in state.log]
            self._index += 1
            self.current = self._start(self.commands[self._index])
            return RunState(self._index / n, self._label(), None, list(self._log))
        message = f"{self._label()}: {state.message}" if state.message else self._label()
        log = self._log + [f"[{self._label()}] {line}" for line in state.log]
        code = state.returncode
        if code == 0 and self._cancelled and self._index + 1 < n:  # cancelled between two steps: not a success
            code, message = CANCELLED, f"{self._label()}: cancelled before the next step"
        return RunState((self._index + min(max(state.progress, 0.0), 1.0)) / n, message, code, log)

    def wait(self, timeout_s: float | None = None) -> RunState:
        """Block until every step has run or one failed (scripting, self-tests); ``timeout_s`` per step."""
        state = self.poll()
        while state.returncode is None:
            self.current.wait(timeout_s)
            state = self.poll()
        return state

    def cancel(self) -> None:
        self._cancelled = True
        self.current.cancel()


__all__ = ["CANCELLED", "SequentialRun"]
