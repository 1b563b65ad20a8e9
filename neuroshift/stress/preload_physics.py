"""Warm start of the physics simulator for stress-test workers: import numba and the compiled kernels and set up
numba's CPU typing and target contexts once.

Imported by the stress test's fork server before it forks the workers (see
:func:`neuroshift.stress.executors.worker_context`), so every worker inherits the work instead of doing it at its
first point; a worker started another way calls :func:`warm` from its warm-up, overlapping the parent's fit.
Measured on this project's 2-core machine (idle, per process): numba + kernel imports 0.32 s, the contexts 0.44 s;
the first derivative afterwards takes 0.12 s (loading its cached machine code) instead of 0.61 s cold.
No threads are started (these kernels are not ``parallel``), so forking afterwards is safe.
"""

from __future__ import annotations


def warm() -> bool:
    """Import the kernels and initialise numba's CPU contexts; False (and nothing raised) when that fails."""
    try:
        import scipy.ndimage  # noqa: F401  (the simulator's resampling and noise)
        from numba.core.registry import cpu_target

        from ..physics import kernels_jit  # noqa: F401
        from ..simulate import block_kernels  # noqa: F401

        cpu_target.typing_context.refresh()  # the ~0.44 s each fresh process otherwise pays at its first kernel call
        cpu_target.target_context.refresh()
    except Exception:  # noqa: BLE001 - a warm start only; the first point reports real failures
        return False
    return True


#: Whether the warm start succeeded in this process (it runs on import: the fork server only imports).
READY = warm()

__all__ = ["READY", "warm"]
