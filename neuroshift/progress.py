"""Progress reporting for long runs: a tqdm bar for people, JSON lines for front ends.

Engine functions accept ``progress: ProgressCallback | None``; the callback gets
``(fraction_done, message)`` and may raise :class:`Cancelled` to stop the run
cleanly (finished results stay on disk). Set ``NEUROSHIFT_PROGRESS=json`` to make
the CLI print one JSON object per update on stderr, which the Slicer modules
read from their background process.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Callable, Iterator

from .errors import NeuroShiftError

ProgressCallback = Callable[[float, str], None]


class Cancelled(NeuroShiftError):
    """The user cancelled a long run."""


def report(progress: ProgressCallback | None, fraction: float, message: str = "") -> None:
    """Call ``progress`` if given (fraction clipped to [0, 1])."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


@contextlib.contextmanager
def cli_progress(description: str, *, stream=None) -> Iterator[ProgressCallback]:
    """A callback that drives a tqdm bar with ETA, or JSON lines when ``NEUROSHIFT_PROGRESS=json``."""
    stream = stream or sys.stderr
    if os.environ.get("NEUROSHIFT_PROGRESS", "").lower() == "json":
        start = time.monotonic()

        def emit(fraction: float, message: str) -> None:
            stream.write(json.dumps({"progress": round(fraction, 4), "message": message,
                                     "elapsed_s": round(time.monotonic() - start, 2)}) + "\n")
            stream.flush()

        yield emit
        return
    from tqdm import tqdm

    with tqdm(total=1000, desc=description, file=stream, unit="‰",
              bar_format="{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}] {postfix}") as bar:
        def update(fraction: float, message: str) -> None:
            target = int(round(fraction * 1000))
            if target > bar.n:
                bar.update(target - bar.n)
            if message:
                bar.set_postfix_str(message, refresh=False)

        yield update
