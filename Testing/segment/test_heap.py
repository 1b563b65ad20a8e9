"""neuroshift.heap.retained_heap: freed activations stay in the heap while a network runs (glibc only)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from neuroshift import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="glibc malloc only")
MB64 = 8 * 1024 * 1024  # float64 elements in 64 MiB (above glibc's largest mmap threshold, 32 MiB)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mmapped_bytes_while_holding_64mib() -> int:
    """glibc's mmap'ed bytes (mallinfo2 ``hblkhd``) while a fresh 64 MiB buffer is alive, minus before."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    before = libc.mallinfo2().hblkhd
    b = np.ones(MB64)
    held = libc.mallinfo2().hblkhd - before
    del b
    return held


@pytest.mark.skipif(not hasattr(heap._glibc() or object(), "mallinfo2"), reason="glibc >= 2.33 (mallinfo2)")
def test_large_blocks_come_from_the_heap_inside_and_from_mmap_after():
    with heap.retained_heap() as applied:
        assert applied
        with heap.retained_heap():  # nested: one setting, kept until the outermost block ends
            pass
        inside = _mmapped_bytes_while_holding_64mib()
    after = _mmapped_bytes_while_holding_64mib()
    assert inside == 0  # served from the heap: freed, it stays there for the next batch (no page faults)
    assert after >= 64 * 2**20  # glibc's defaults again: mmap'ed, returned to the OS on free


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("NEUROSHIFT_RETAIN_HEAP", "0")
    with heap.retained_heap() as applied:
        assert not applied
