"""Warm start of a NeuroShift model package for stress-test workers: ``OMP_WAIT_POLICY=PASSIVE``, then torch and
the segmentation inference and package modules imported (about 1.0 s of a fresh process's 1.3 s start-up here).

Imported by the stress test's fork server before it forks the workers (see
:func:`neuroshift.stress.executors.worker_context`). Only imports: no torch operation runs here, so no OpenMP
thread pool exists when the server forks (forking after torch has run operators can hang the child). Each worker
sets its own thread count (:func:`neuroshift.stress.worker.init_worker`) and loads the networks itself.
"""

from __future__ import annotations


def warm() -> bool:
    """Set the OpenMP wait policy and import torch and the inference modules; False (nothing raised) on failure."""
    try:
        from ..threads import prepare_environment

        prepare_environment()  # before torch: OpenMP reads OMP_WAIT_POLICY when it is loaded
        import torch  # noqa: F401

        from ..segment import inference, package  # noqa: F401
    except Exception:  # noqa: BLE001 - a warm start only; the worker's own model load reports real failures
        return False
    return True


#: Whether the warm start succeeded in this process (it runs on import: the fork server only imports).
READY = warm()

__all__ = ["READY", "warm"]
