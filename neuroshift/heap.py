"""Keep freed memory in the process heap while a CPU network runs (glibc ``malloc`` tunables, scoped).

Why: a 2D U-Net allocates its activations afresh for every batch (tens of MB at full resolution). glibc serves
blocks above its mmap threshold (dynamic, at most 32 MB) with ``mmap`` and returns them to the OS on ``free``, and
trims the top of the heap above 128 kB-2x the threshold, so every batch page-faults its buffers back in: 23,000
minor faults per float32 claustrum batch of 4 (~90 MB). Measured on 2 AMD EPYC cores, one thread, 3 alternating
process pairs: float32 forward 384-420 ms with glibc's defaults, 343-380 ms with mmap off and a high trim
threshold (PyTorch's CPU performance guide recommends jemalloc/tcmalloc via LD_PRELOAD for the same reason; this is
the in-process equivalent, nothing to install).

:func:`retained_heap` sets ``M_MMAP_MAX = 0`` and ``M_TRIM_THRESHOLD = 2 GiB`` for its duration (nested and
concurrent uses share one setting), then restores glibc's default values and returns the free memory to the OS
with ``malloc_trim(0)``, so the process (Slicer, for one) does not keep the peak. Elsewhere than Linux/glibc, or
with ``NEUROSHIFT_RETAIN_HEAP=0`` in the environment, it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from typing import Iterator

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (glibc malloc.h)
DEFAULT_TRIM_THRESHOLD_BYTES = 128 * 1024  # glibc's documented defaults, restored afterwards
DEFAULT_MMAP_MAX = 65536
RETAINED_TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int

_LOCK = threading.Lock()
_DEPTH = 0


def _glibc():
    """glibc with ``mallopt`` and ``malloc_trim``, or None (other platforms, musl, ``NEUROSHIFT_RETAIN_HEAP=0``)."""
    if not sys.platform.startswith("linux") or os.environ.get("NEUROSHIFT_RETAIN_HEAP", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def retained_heap() -> Iterator[bool]:
    """Within the block, freed memory stays in the heap (no mmap'ed blocks, no trimming); yields whether the
    setting applies here (glibc). ``@retained_heap()`` applies it to every call of a function."""
    global _DEPTH
    libc = _glibc()
    if libc is None:
        yield False
        return
    with _LOCK:
        if _DEPTH == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, RETAINED_TRIM_THRESHOLD_BYTES)
        _DEPTH += 1
    try:
        yield True
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD_BYTES)
                libc.malloc_trim(0)


__all__ = ["retained_heap"]
