"""One background-job controller for every NeuroShift module: timer, poll, progress, cancel, busy state.

A widget creates one :class:`BackgroundJobController` per panel with three callbacks and
hands it each started run (anything with ``poll() -> RunState`` and ``cancel()``, usually a
:class:`neuroshift_slicer.background.BackgroundRun`). The controller polls the run from a
timer (a ``qt.QTimer`` inside Slicer, created on first use), reports progress, and calls
``on_finished`` exactly once, with ``cancelled=True`` when the user cancelled. The widget
only reacts to these events, as in SlicerMONAIAuto3DSeg's process runner.

The controller itself imports no Qt (the timer comes from ``timer_factory``), so it is
tested with pytest.
"""

from __future__ import annotations

from typing import Any, Callable

from neuroshift_slicer.background import RunState

#: Default poll interval of the timer (milliseconds).
POLL_INTERVAL_MS = 200


def _qt_timer(interval_ms: int, callback: Callable[[], None]):
    import qt

    timer = qt.QTimer()
    timer.setInterval(interval_ms)
    timer.connect("timeout()", callback)
    return timer


class BackgroundJobController:
    """Polls one background run at a time.

    ``on_progress(fraction, message)``: while running (fraction in [0, 1]).
    ``on_finished(state, context, cancelled)``: once, after the process ended or was cancelled;
    ``context`` is what :meth:`start` was given (e.g. output paths to load).
    ``on_busy(busy)``: when the busy state changes (enable/disable buttons).
    ``timer_factory(interval_ms, callback)``: an object with ``start()``/``stop()``; a Qt timer by default.
    """

    def __init__(self, on_finished: Callable[[RunState, Any, bool], None], *,
                 on_progress: Callable[[float, str], None] | None = None,
                 on_busy: Callable[[bool], None] | None = None,
                 interval_ms: int = POLL_INTERVAL_MS,
                 timer_factory: Callable[[int, Callable[[], None]], Any] | None = None) -> None:
        self._on_finished = on_finished
        self._on_progress = on_progress
        self._on_busy = on_busy
        self._interval_ms = interval_ms
        self._timer_factory = timer_factory or _qt_timer
        self._timer = None
        self._run = None
        self._context = None
        self._cancelled = False

    @property
    def busy(self) -> bool:
        """True while a run is being polled."""
        return self._run is not None

    def start(self, run, context: Any = None) -> None:
        """Poll ``run`` from now on; refuses a second run while one is busy."""
        if self._run is not None:
            raise RuntimeError("a background job is already running")
        self._run, self._context, self._cancelled = run, context, False
        if self._timer is None:
            self._timer = self._timer_factory(self._interval_ms, self.poll)
        self._timer.start()
        if self._on_busy:
            self._on_busy(True)

    def poll(self) -> None:
        """One timer tick: report progress; finish once the process has ended."""
        if self._run is None:
            return
        state = self._run.poll()
        if self._on_progress:
            self._on_progress(state.progress, state.message)
        if state.returncode is not None:
            self._finish(state)

    def cancel(self) -> None:
        """Kill the run (its whole process tree) and finish with ``cancelled=True``; no-op when idle."""
        if self._run is None:
            return
        self._cancelled = True
        self._run.cancel()
        self._finish(self._run.poll())

    def _finish(self, state: RunState) -> None:
        if self._timer is not None:
            self._timer.stop()
        context, cancelled = self._context, self._cancelled
        self._run, self._context, self._cancelled = None, None, False
        if self._on_busy:
            self._on_busy(False)
        self._on_finished(state, context, cancelled)
