"""The Levenberg–Marquardt fit of ``neuroshift.qmri.fit`` before issue 9 (commit 29ace92), kept only as the
baseline of ``bench/qmri.py``: central-difference Jacobian (2k + 1 model evaluations per iteration) through
the general forward model, grid start scored with one BLAS product over the full 48 x 40 grid.

The forward model uses today's ``sequence_signal`` (with the fit's multi-echo convention when available),
with the fused kernels switched off, as the code of that commit evaluated it.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np

from neuroshift.physics import kernels
from neuroshift.physics.signal import sequence_signal
from neuroshift.qmri.fit import BOUNDS_MS
from neuroshift.qmri.synth import T2_FAMILY

_NEUTRAL = {"T1": 1e-9, "T2": np.inf, "T2star": np.inf}
_GRID = {"T1": np.geomspace(100.0, 8000.0, 48), "T2": np.geomspace(8.0, 3000.0, 40),
         "T2star": np.geomspace(4.0, 2000.0, 40)}
_MULTI = {"multi_echo": True} if "multi_echo" in inspect.signature(sequence_signal).parameters else {}


def _forward(acqs, pd, t1, t2, t2s, b1=1.0) -> np.ndarray:
    out = []
    old = kernels.ENABLED
    kernels.ENABLED = False
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            for seq, p in acqs:
                if seq in T2_FAMILY:
                    s = sequence_signal(seq, p, pd=pd, t1_ms=t1, t2_ms=t2, b1=b1, **_MULTI)
                else:
                    s = sequence_signal(seq, p, pd=pd, t1_ms=t1, t2star_ms=t2s, b1=b1)
                out.append(np.broadcast_to(np.asarray(s, dtype=np.float64), np.broadcast(pd, t1, t2, t2s).shape))
    finally:
        kernels.ENABLED = old
    return np.stack(out, axis=-1)


def _model_unit_pd(acqs, free: Sequence[str], logt: np.ndarray) -> np.ndarray:
    """Signals with PD = 1 for log relaxation times ``logt`` (..., k) of the ``free`` parameters."""
    vals = dict(_NEUTRAL)
    for i, name in enumerate(free):
        vals[name] = np.exp(logt[..., i])
    shape = logt.shape[:-1]
    return _forward(acqs, np.ones(shape), np.broadcast_to(vals["T1"], shape), np.broadcast_to(vals["T2"], shape),
                    np.broadcast_to(vals["T2star"], shape))


def _project(Y, F):
    """Optimal PD per voxel (>= 0) and residual for unit-PD signals F."""
    ff = (F * F).sum(-1)
    pd = np.where(ff > 0, (F * Y).sum(-1) / np.where(ff > 0, ff, 1.0), 0.0)
    pd = np.maximum(pd, 0.0)
    return pd, Y - pd[..., None] * F


def fit_nlls(Y: np.ndarray, acqs, free: Sequence[str], *, max_iter: int = 60, chunk: int = 200_000, n_starts: int = 8
              ) -> dict[str, np.ndarray]:
    k = len(free)
    out = {name: np.zeros(Y.shape[0]) for name in ["PD"] + list(free)}
    if Y.shape[0] == 0:
        return out
    # grid start: unit-PD signals at every grid point, PD projected out analytically
    axes = [np.log(_GRID[name]) for name in free]
    G = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, k)  # (g, k)
    FG = _model_unit_pd(acqs, free, G)  # (g, m)
    norms = np.sqrt((FG * FG).sum(-1))
    FGn = FG / np.where(norms > 0, norms, 1.0)[:, None]
    lo = np.log([BOUNDS_MS[n][0] for n in free])
    hi = np.log([BOUNDS_MS[n][1] for n in free])
    for start in range(0, Y.shape[0], chunk):
        y = Y[start:start + chunk]
        scale = np.abs(y).max(1)
        scale = np.where(scale > 0, scale, 1.0)
        yn = y / scale[:, None]
        # best grid points; sub-chunks keep the (voxels x grid) score matrix near 2e7 entries
        sub = max(1, int(2e7 // FGn.shape[0]))
        parts = []
        for s0 in range(0, yn.shape[0], sub):
            proj = yn[s0:s0 + sub] @ FGn.T  # larger projection -> smaller residual (PD >= 0 branch)
            np.maximum(proj, 0.0, out=proj)
            parts.append(_starts(proj, free, n_starts))  # ranking by projection = ranking by its square
        starts = [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
        theta = _levenberg_marquardt(yn, acqs, free, G[starts[0]].copy(), lo, hi, max_iter)
        cost = _cost(yn, acqs, free, theta)
        # further starts only where the fit is clearly worse than typical (a local minimum)
        rms = np.sqrt(cost / yn.shape[1])
        thresh = max(1e-6, 2.0 * float(np.median(rms)))
        redo = np.flatnonzero(rms > thresh)
        for gi in starts[1:]:
            if redo.size == 0:
                break
            th = _levenberg_marquardt(yn[redo], acqs, free, G[gi[redo]].copy(), lo, hi, max_iter)
            c_new = _cost(yn[redo], acqs, free, th)
            better = c_new < cost[redo]
            theta[redo[better]], cost[redo[better]] = th[better], c_new[better]
            redo = redo[np.sqrt(cost[redo] / yn.shape[1]) > thresh]
        F = _model_unit_pd(acqs, free, theta)
        pd, _ = _project(yn, F)
        out["PD"][start:start + chunk] = pd * scale
        for i, name in enumerate(free):
            out[name][start:start + chunk] = np.exp(theta[:, i])
    return out


def _cost(y, acqs, free, theta):
    _, r = _project(y, _model_unit_pd(acqs, free, theta))
    return (r * r).sum(-1)


def _starts(score: np.ndarray, free: Sequence[str], n_starts: int) -> list[np.ndarray]:
    """Grid indices (per voxel) of the best ``n_starts`` starting points, each from a different T1 row.

    Magnitude IR/FLAIR data have local minima on both sides of the null, i.e. at
    different T1; starting from the best points of distinct T1 values finds the
    global one.
    """
    c, g = score.shape
    if "T1" not in free or n_starts <= 1:
        return [np.argmax(score, axis=1)]
    n1 = len(_GRID["T1"])
    rest = g // n1  # T1 is the first grid axis
    s3 = score.reshape(c, n1, rest)
    best_rest = np.argmax(s3, axis=2)                       # (c, n1)
    per_t1 = np.take_along_axis(s3, best_rest[..., None], 2)[..., 0]
    order = np.argsort(-per_t1, axis=1)[:, :n_starts]       # (c, K) T1 indices
    out = []
    for k in range(order.shape[1]):
        i1 = order[:, k]
        out.append(i1 * rest + best_rest[np.arange(c), i1])
    return out


def _levenberg_marquardt(y, acqs, free, theta, lo, hi, max_iter, h=1e-6):
    n, k = theta.shape
    lam = np.full(n, 1e-3)

    def cost_and_res(th, yy):
        F = _model_unit_pd(acqs, free, th)
        _, r = _project(yy, F)
        return (r * r).sum(-1), r

    cost, r = cost_and_res(theta, y)
    active = np.ones(n, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        th, yy, rr = theta[idx], y[idx], r[idx]
        J = np.empty(rr.shape + (k,))
        for j in range(k):
            tp, tm = th.copy(), th.copy()
            tp[:, j] += h
            tm[:, j] -= h
            J[..., j] = (cost_and_res(tp, yy)[1] - cost_and_res(tm, yy)[1]) / (2 * h)
        JtJ = np.einsum("nmi,nmj->nij", J, J)
        g = np.einsum("nmi,nm->ni", J, rr)
        diag = np.einsum("nii->ni", JtJ)
        A = JtJ + (lam[idx, None] * np.maximum(diag, 1e-12))[:, :, None] * np.eye(k)
        try:
            step = -np.linalg.solve(A, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g / np.maximum(np.einsum("nii->ni", A), 1e-12)
        step = np.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
        trial = np.clip(th + step, lo, hi)
        c_new, r_new = cost_and_res(trial, yy)
        better = c_new < cost[idx]
        acc = idx[better]
        theta[acc], cost[acc], r[acc] = trial[better], c_new[better], r_new[better]
        lam[acc] = np.maximum(lam[acc] / 5.0, 1e-12)
        lam[idx[~better]] *= 4.0
        moved = np.abs(trial - th).max(-1)
        small = moved < 1e-8
        done = (better & small) | (cost[idx] < 1e-24) | (lam[idx] > 1e10)
        active[idx[done]] = False
    return theta
