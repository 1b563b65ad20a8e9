"""Active reading time: a stopwatch that pauses (when the reader pauses or the module is left)."""

from __future__ import annotations

import time
from typing import Callable


class ActiveTimer:
    """Seconds of active reading. ``clock`` is injectable for tests (default: ``time.monotonic``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, elapsed: float = 0.0):
        self._clock = clock
        self._accumulated = float(elapsed)
        self._since: float | None = None

    @property
    def running(self) -> bool:
        return self._since is not None

    def start(self) -> None:
        """Start or resume (no effect when already running)."""
        if self._since is None:
            self._since = self._clock()

    resume = start

    def pause(self) -> None:
        if self._since is not None:
            self._accumulated += self._clock() - self._since
            self._since = None

    def elapsed(self) -> float:
        """Active seconds so far (pauses excluded)."""
        running = self._clock() - self._since if self._since is not None else 0.0
        return self._accumulated + running
