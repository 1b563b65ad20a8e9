"""The signal equations' reference formulas: a call with NeuroShift's fused kernels switched off."""

from __future__ import annotations


def reference(fn, *a, **kw):
    """``fn(*a, **kw)`` with ``neuroshift.physics.kernels.ENABLED`` off (the plain reference formulas)."""
    from neuroshift.physics import kernels as K

    old = K.ENABLED
    K.ENABLED = False
    try:
        return fn(*a, **kw)
    finally:
        K.ENABLED = old
