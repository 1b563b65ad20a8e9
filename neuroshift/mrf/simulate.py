"""Bloch simulation of an MRF-EPI schedule (torch, CPU or GPU, any T1/T2*/B1 arrays).

Model (per frame, see :mod:`neuroshift.mrf.schedule` for the timing), longitudinal magnetisation ``Mz``
starting at equilibrium (``Mz = 1``; the authors reset the magnetisation after the last frame, so every
acquisition starts relaxed):

* inversion (if ``ti_ms``): ``Mz <- Mz cos(pi B1)``, then relaxation over TI:
  ``Mz <- 1 - (1 - Mz) exp(-TI/T1)``;
* excitation by ``alpha = B1 x FA``: the magnitude signal is ``|Mz| sin(alpha) exp(-TE/T2*)`` (the
  EPI echo after TE), then ``Mz <- Mz cos(alpha)``;
* the transverse magnetisation is spoiled before the next frame (TR >= 3.5 s plus crusher gradients),
  and ``Mz`` relaxes over the rest of the frame, ``TR - TI``.

B1 scales every pulse (excitation and inversion). With perfect spoiling this is what an extended-phase-graph
(EPG) simulation of the schedule gives (only the zeroth longitudinal state carries over between frames),
so a 35-step recursion vectorised over all dictionary entries replaces a general EPG engine.

Why not MRpro: MRpro (Apache-2.0, github PTB-MR/mrpro) has EPG blocks and ``DictionaryMatchOp``; its EPG
would also track dephased states that this spoiled model drops, and it brings einops/ptwt/pydicom and a
pinned torch range as dependencies for what is a few lines here. The bench (``bench/mrf.py``) compares the
matching with MRpro's brute-force match when it is installed, else with a plain torch einsum.
"""

from __future__ import annotations

import math
from typing import Any

from .schedule import Schedule


def simulate(schedule: Schedule, t1_ms: Any, t2star_ms: Any, b1: Any = 1.0, *, dtype=None, device=None):
    """Magnitude signals ``(..., n_frames)`` (proton density 1) for broadcastable T1, T2* (ms) and B1 (scale).

    Inputs are torch tensors or array-likes; the result is a torch tensor (``dtype``, default float64).
    Non-positive T1 or T2* give signal 0 (background).
    """
    import torch

    dtype = dtype or torch.float64
    t1, t2s, b1t = (torch.as_tensor(v, dtype=dtype, device=device) for v in (t1_ms, t2star_ms, b1))
    t1, t2s, b1t = torch.broadcast_tensors(t1, t2s, b1t)
    valid = (t1 > 0) & (t2s > 0)
    r1 = torch.where(valid, 1.0 / torch.where(valid, t1, torch.ones_like(t1)), torch.zeros_like(t1))
    r2s = torch.where(valid, 1.0 / torch.where(valid, t2s, torch.ones_like(t2s)), torch.zeros_like(t2s))
    mz = torch.ones_like(t1)
    out = torch.empty(t1.shape + (len(schedule),), dtype=dtype, device=t1.device)
    inv = torch.cos(math.pi * b1t)
    for n, f in enumerate(schedule.frames):
        ti = float(f.ti_ms or 0.0)
        if f.ti_ms is not None:
            mz = mz * inv
            mz = 1.0 - (1.0 - mz) * torch.exp(-ti * r1)
        alpha = torch.deg2rad(torch.as_tensor(f.fa_deg, dtype=dtype, device=t1.device)) * b1t
        out[..., n] = mz.abs() * torch.sin(alpha) * torch.exp(-f.te_ms * r2s)
        mz = mz * torch.cos(alpha)
        mz = 1.0 - (1.0 - mz) * torch.exp(-(f.tr_ms - ti) * r1)
    return torch.where(valid[..., None], out, torch.zeros_like(out))


__all__ = ["simulate"]
