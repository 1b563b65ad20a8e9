"""Fused block-wise closed-form fits: two echoes (T2 or T2*) and DESPOT1 (T1), straight into float32 maps.

Same results as the general block-wise path of :mod:`neuroshift.qmri.fit`
(``_fit_echoes`` / ``_fit_despot1`` + clipping and cleaning), computed with
in-place ufuncs on cache-sized blocks in the images' own precision, so the
whole fit costs about as much as the bare formula on the full arrays
(``bench/qmri.py``). Units: times in ms, flip angles in degrees.

Conventions (as in :func:`neuroshift.qmri.fit.fit`): a voxel is fitted when
any of its signals is > 0 (and it is inside the mask); elsewhere every map is
0. A relaxation time that is not a positive finite number (no decay, growth
from noise, a zero signal) becomes the upper bound; every time outside the
bounds is clipped and counted. PD that is not finite or < 0 becomes 0; with a
receive field ``b1`` PD is divided by it where it is > 0 (0 elsewhere).
"""

from __future__ import annotations

import numpy as np

__all__ = ["echo2_fit", "despot1_fit", "BLOCK"]

#: Voxels per block.
BLOCK = 1 << 14


def _views(images, mask, b1):
    flats = [np.ravel(v.data) for v in images]
    mflat = None if mask is None else np.ravel(mask.data)
    bflat = None if b1 is None else np.ravel(b1.data)
    dtype = np.result_type(*[f.dtype for f in flats], np.float32)
    return flats, mflat, bflat, dtype


def _finish_block(o_pd, o_t, s, e, pd, t, valid, lo, hi, bblk, scratch_bool, nan_possible=True):
    """Clip/clean one block and write it; returns the number of clipped times among the fitted voxels."""
    all_valid = bool(valid.all())
    # count the times outside [lo, hi] (NaN included) among the fitted voxels
    out = np.less(t, lo, out=scratch_bool)
    out |= t > hi
    if nan_possible:
        nan = np.isnan(t)
        out |= nan
    if not all_valid:
        out &= valid
    n_clip = int(np.count_nonzero(out))
    if nan_possible:
        np.copyto(t, hi, where=nan)  # then ±inf -> the bounds
    np.clip(t, lo, hi, out=t)
    # PD: not finite or negative -> 0; receive field divided out
    bad = np.less(pd, np.inf, out=scratch_bool)  # False for NaN and +inf
    np.logical_not(bad, out=bad)
    np.copyto(pd, 0.0, where=bad)
    np.maximum(pd, 0.0, out=pd)                  # negatives and -inf
    if bblk is not None:
        pos = bblk > 0
        np.divide(pd, bblk, out=pd, where=pos)
        np.copyto(pd, 0.0, where=~pos)
    if not all_valid:  # voxels that are not fitted: 0 everywhere
        invalid = ~valid
        np.copyto(pd, 0.0, where=invalid)
        np.copyto(t, 0.0, where=invalid)
    o_pd[s:e] = pd
    o_t[s:e] = t
    return n_clip


def _compiled():
    """:mod:`.closed_jit` when the compiled kernels are on (``physics.kernels.JIT``) and numba imports, else
    None (the block-wise numpy path below runs; same conventions)."""
    from ..physics import kernels

    if kernels._compiled() is None:
        return None
    from . import closed_jit

    return closed_jit


def echo2_fit(images, te_ms, mask, b1, bounds, block: int = BLOCK):
    """Two echoes ``S = A·e^{−TE/T}``: ``T = (TE2 − TE1)/ln(S1/S2)``, ``A = S1·e^{TE1/T}`` (0 signal: A = S2).

    Returns ``(PD, T, clipped)`` as flat float32 arrays and the number of clipped times. Compiled one-pass
    kernel (:mod:`.closed_jit`, float64 per voxel) when numba is there, else block-wise numpy (``block``
    voxels at a time, in the images' precision).
    """
    (f1, f2), mflat, bflat, dtype = _views(images, mask, b1)
    te1, te2 = float(te_ms[0]), float(te_ms[1])
    compiled = _compiled()
    if compiled is not None:  # one compiled pass, float64 per voxel (see closed_jit)
        return compiled.echo2_fit_compiled(f1, f2, mflat, bflat, te1, te2, bounds)
    lo, hi = bounds
    n = f1.size
    o_pd, o_t = np.zeros(n, np.float32), np.zeros(n, np.float32)
    block = max(1, min(block, n))
    a = np.empty(block, dtype)
    pd = np.empty(block, dtype)
    v = np.empty(block, bool)
    w = np.empty(block, bool)
    clipped = 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        for s in range(0, n, block):
            e = min(s + block, n)
            m = e - s
            s1, s2 = f1[s:e], f2[s:e]
            valid = np.greater(s1, 0, out=v[:m])
            pos1 = valid.copy()
            valid |= np.greater(s2, 0, out=w[:m])
            if mflat is not None:
                valid &= mflat[s:e] > 0
            if not valid.any():
                continue
            t = a[:m]
            np.divide(s1, s2, out=t)
            np.log(t, out=t)
            np.divide(te2 - te1, t, out=t)           # T (ms); inf/NaN/negative where there is no decay
            np.copyto(t, np.inf, where=~(t > 0))
            p = pd[:m]
            np.divide(te1, t, out=p)
            np.exp(p, out=p)
            p *= s1                                   # A = S1·e^{TE1/T}
            np.copyto(p, np.maximum(s2, 0), where=~pos1)  # S1 = 0: A = S2 (as the general path)
            clipped += _finish_block(o_pd, o_t, s, e, p, t, valid, lo, hi,
                                     None if bflat is None else bflat[s:e], w[:m], nan_possible=False)
    return o_pd, o_t, clipped


def despot1_fit(images, fa_deg, tr_ms, mask, b1, bounds, block: int = BLOCK):
    """DESPOT1 over m flip angles: least-squares line ``S/sin α = E1·S/tan α + M0(1 − E1)`` per voxel.

    ``T1 = −TR/ln E1`` for 0 < E1 < 1 (E1 ≥ 1: no recovery -> upper bound; E1 ≤ 0: 0, i.e. the lower
    bound after clipping), ``PD = intercept/(1 − E1)`` (the mean of S/sin α where E1 is not in (0, 1)).
    Computed in float64 per block. Returns ``(PD, T1, clipped)``.
    """
    flats, mflat, bflat, _ = _views(images, mask, b1)
    m_acq = len(flats)
    a = np.deg2rad(np.asarray(fa_deg, dtype=np.float64))
    inv_tan, inv_sin = 1.0 / np.tan(a), 1.0 / np.sin(a)
    lo, hi = bounds
    n = flats[0].size
    o_pd, o_t = np.zeros(n, np.float32), np.zeros(n, np.float32)
    block = max(1, min(block, n))
    X = np.empty((m_acq, block))
    Yb = np.empty((m_acq, block))
    v = np.empty(block, bool)
    w = np.empty(block, bool)
    clipped = 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        for s in range(0, n, block):
            e = min(s + block, n)
            m = e - s
            valid = v[:m]
            valid.fill(False)
            x, y = X[:, :m], Yb[:, :m]
            for j, f in enumerate(flats):
                blk = f[s:e]
                valid |= np.greater(blk, 0, out=w[:m])
                np.multiply(blk, inv_tan[j], out=x[j])
                np.multiply(blk, inv_sin[j], out=y[j])
            if mflat is not None:
                valid &= mflat[s:e] > 0
            if not valid.any():
                continue
            mx, my = x.mean(0), y.mean(0)
            x -= mx
            y -= my
            sxx = np.einsum("ij,ij->j", x, x)
            sxy = np.einsum("ij,ij->j", x, y)
            e1 = sxy / sxx                          # NaN where sxx = 0 (as the general path)
            icpt = my - e1 * mx
            ok = (e1 > 0) & (e1 < 1)
            t1 = np.where(ok, -tr_ms / np.log(np.where(ok, e1, 0.5)), np.where(e1 >= 1, np.inf, 0.0))
            pd = np.where(ok, icpt / np.where(ok, 1.0 - e1, 1.0), my)
            clipped += _finish_block(o_pd, o_t, s, e, pd, t1, valid, lo, hi,
                                     None if bflat is None else bflat[s:e], w[:m])
    return o_pd, o_t, clipped
