"""Array backend of the signal equations: numpy or torch, chosen by the arguments (see :mod:`.signal`).

Every equation calls :func:`setup` with its arguments: as soon as one is a ``torch.Tensor`` the
computation runs in torch (that tensor's device and floating dtype, differentiable), otherwise in
numpy in the precision of the array arguments (Python scalars never promote a float32 volume).
The helpers keep the background conventions of :mod:`.signal`: a non-positive relaxation time
(ms) maps to a factor the caller zeroes, never NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["is_torch", "Backend", "DEG", "setup", "valid_times", "rec", "em1", "ratio"]

DEG = math.pi / 180.0


# --------------------------------------------------------------------------- backend
def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (checked without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "requires_grad")


class Backend:
    """The few array operations the equations need, for numpy or torch."""

    def __init__(self, args: tuple) -> None:
        tensors = [a for a in args if is_torch(a)]
        self.torch = bool(tensors)
        if self.torch:
            import torch

            self.xp = torch
            floating = [t for t in tensors if t.is_floating_point()]
            ref = floating[0] if floating else tensors[0]
            self.dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
            self.device = ref.device
        else:
            self.xp = np
            # Only arrays set the precision: Python scalars (parameters) must not
            # promote a float32 volume to float64.
            floats = [a.dtype for a in args
                      if isinstance(a, (np.ndarray, np.generic)) and np.issubdtype(a.dtype, np.floating)]
            self.dtype = np.result_type(*floats) if floats else np.dtype(np.float64)

    def asarray(self, x):
        if self.torch:
            if is_torch(x):
                return x.to(dtype=self.dtype, device=self.device) if x.dtype != self.dtype else x.to(self.device)
            return self.xp.as_tensor(np.asarray(x, dtype=np.float64), dtype=self.dtype, device=self.device)
        return np.asarray(x, dtype=self.dtype)

    def exp(self, x):
        return self.xp.exp(x)

    def sin(self, x):
        return self.xp.sin(x)

    def cos(self, x):
        return self.xp.cos(x)

    def abs(self, x):
        return self.xp.abs(x)

    def where(self, c, a, b):
        if self.torch:
            return self.xp.where(c, self.asarray(a), self.asarray(b))
        return np.where(c, a, b)

    def maximum(self, a, b):
        if self.torch:
            return self.xp.maximum(self.asarray(a), self.asarray(b))
        return np.maximum(a, b)

    def finish(self, x):
        """Return a numpy array of the working dtype (0-d for scalar inputs) or the tensor."""
        if self.torch:
            return x
        return np.asarray(x, dtype=self.dtype)


def setup(*args):
    be = Backend(args)
    return be, [None if a is None else be.asarray(a) for a in args]


def valid_times(be: Backend, *times):
    valid = None
    for t in times:
        v = t > 0
        valid = v if valid is None else (valid & v)
    return valid


def rec(be: Backend, t_ms, t1_ms):
    """exp(−t/T1), with T1 <= 0 mapped to 0 (the caller zeroes those voxels)."""
    valid = t1_ms > 0
    safe = be.where(valid, t1_ms, 1.0)
    return be.exp(-t_ms / safe)


def em1(be: Backend, t_ms, t1_ms):
    """exp(−t/T1) − 1 via expm1 (accurate for t ≪ T1), with T1 <= 0 mapped as in :func:`rec`."""
    valid = t1_ms > 0
    safe = be.where(valid, t1_ms, 1.0)
    return be.xp.expm1(-t_ms / safe)



def ratio(be: Backend, num, den):
    """num/den with den == 0 (only when num == 0 too: α = 0 and E1 = 1) giving 0."""
    ok = den > 0
    return be.where(ok, num / be.where(ok, den, 1.0), 0.0)
