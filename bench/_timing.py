"""Shared helpers of the benchmarks: interleaved timing rounds, median and spread, machine load and threads."""

from __future__ import annotations

import os
import platform
import time
from typing import Callable

import numpy as np


def load_average() -> str:
    """``uptime``-style 1/5/15-minute load averages (the machine may be shared: report with every figure)."""
    try:
        a, b, c = os.getloadavg()
        return f"{a:.2f}, {b:.2f}, {c:.2f}"
    except OSError:
        return "n/a"


def machine() -> dict:
    """CPU, core counts and load, for the printed header and the JSON."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "usable_cores": usable,
            "load_1_5_15": load_average(), "numpy": np.__version__, "python": platform.python_version()}


def interleaved(funcs: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, dict]:
    """Time every function once per round, in the same round order, ``rounds`` times.

    Returns per name the median, min, max and interquartile range in seconds. Interleaving means
    load on a shared machine hits every candidate alike; the ratio of medians is the figure to use.
    ``clock``: wall time by default; ``time.thread_time`` gives the CPU time of single-threaded calls,
    which time slices lost to other processes on a busy machine do not inflate (see :func:`cpu_clock`).
    """
    for _ in range(warmup):
        for f in funcs.values():
            f()
    times = {k: [] for k in funcs}
    for _ in range(rounds):
        for k, f in funcs.items():
            t0 = clock()
            f()
            times[k].append(clock() - t0)
    out = {}
    for k, ts in times.items():
        a = np.asarray(ts)
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        out[k] = {"median_s": float(med), "min_s": float(a.min()), "max_s": float(a.max()),
                  "iqr_s": float(q3 - q1), "rounds": len(ts)}
    return out


def cpu_clock() -> Callable[[], float]:
    """``time.thread_time`` after pinning NeuroShift's kernels to one thread (``NEUROSHIFT_THREADS=1``).

    On a shared machine wall times of calls longer than a scheduler time slice are inflated by the
    other processes, calls shorter than one are not: the ratios drift with the load. CPU time of one
    thread counts only the work (memory stalls included). Benches print which clock they used.
    """
    os.environ["NEUROSHIFT_THREADS"] = "1"
    return time.thread_time


def fmt(stat: dict) -> str:
    """``12.3 ms (IQR 0.4)`` style text of one timing."""
    m, iqr = stat["median_s"], stat["iqr_s"]
    if m < 1.0:
        return f"{1e3 * m:8.2f} ms (IQR {1e3 * iqr:.2f})"
    return f"{m:8.3f} s  (IQR {iqr:.3f})"
