"""Contiguous parts of a voxel range on several threads: a persistent pool, parts taken in turn (issue 9).

Used by the compiled signal kernels (:mod:`.kernels`) and the label-layout derivatives
(:mod:`neuroshift.simulate.block_layout`); the work functions release the GIL (compiled ``nogil`` loops,
numpy ufuncs). Thread count: :func:`neuroshift.threads.requested_threads`.
"""

from __future__ import annotations

import itertools
import os
import threading

__all__ = ["BUSY_LOAD_PER_CORE", "run_parts"]

_POOL_LOCK = threading.Lock()
_POOL: list = []  # [(pid, ThreadPoolExecutor, workers)]


def _executor(threads: int):
    """A thread pool of at least ``threads`` workers, kept between calls (recreated after a fork)."""
    from concurrent.futures import ThreadPoolExecutor

    with _POOL_LOCK:
        pid = os.getpid()
        if not _POOL or _POOL[0][0] != pid or _POOL[0][2] < threads:
            if _POOL and _POOL[0][0] == pid:
                _POOL[0][1].shutdown(wait=False)
            _POOL[:] = [(pid, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="neuroshift-kernels"),
                         threads)]
        return _POOL[0][1]


#: With no explicit thread count (``$NEUROSHIFT_THREADS`` unset or 0), :func:`run_parts` uses one thread while the
#: 1-minute load average exceeds this many runnable tasks per core: a second thread then waits milliseconds for a
#: core and the call waits for it (measured at load 7 on 2 cores: a 128³ derivative 5–12× a copy on 2 threads,
#: 2.0× on one).
BUSY_LOAD_PER_CORE = 1.5


def _busy(threads: int) -> bool:
    """True when the thread count was not set explicitly and the machine's load says the cores are taken."""
    from ..threads import THREADS_ENV

    try:
        if int(os.environ.get(THREADS_ENV, "0") or 0) > 0:
            return False
        return os.getloadavg()[0] > BUSY_LOAD_PER_CORE * threads
    except (ValueError, OSError):
        return False


def run_parts(run, n: int, min_voxels: int, align: int = 1) -> None:
    """``run(lo, hi)`` over [0, n) in contiguous parts shared by the threads, from ``min_voxels`` voxels on.

    Threads: ``neuroshift.threads.requested_threads()`` (``$NEUROSHIFT_THREADS``, else the cores this process
    may use; one while the machine is busy, see :data:`BUSY_LOAD_PER_CORE`), at most one per ``min_voxels // 2``
    voxels; part boundaries are multiples of ``align``. ``run`` must release the GIL (compiled ``nogil`` loops, numpy ufuncs). The range is cut into 4 parts per thread
    that the caller's thread and the pool's threads (kept between calls) take in turn; a pool thread that has
    not started when the caller runs out of parts is cancelled, so on a busy machine, where another thread may
    wait milliseconds for a core, a call costs at most about one part more than on one thread.
    """
    threads = 1
    if n >= min_voxels:
        from ..threads import requested_threads

        threads = max(1, min(requested_threads(), n // max(1, min_voxels // 2)))
        if threads > 1 and _busy(threads):
            threads = 1
    if threads == 1:
        run(0, n)
        return
    n_parts = 4 * threads
    cuts = [0] + [(n * i // n_parts) // align * align for i in range(1, n_parts)] + [n]
    parts = [(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo]
    counter = itertools.count()  # next() is atomic under the GIL: each part is taken once

    def take() -> None:
        while (i := next(counter)) < len(parts):
            run(*parts[i])

    ex = _executor(threads - 1)
    futures = [ex.submit(take) for _ in range(threads - 1)]
    try:
        take()
    finally:
        for f in futures:
            if not f.cancel():
                f.result()


