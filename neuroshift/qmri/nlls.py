"""Batched Levenberg–Marquardt fit of relaxation times with PD projected out (variable projection).

For every voxel the cost is ``‖y − PD(θ)·F(θ)‖²`` with ``F`` the unit-PD model
of :mod:`neuroshift.qmri.model`, ``θ`` = log relaxation times (ms) and
``PD(θ) = max(F·y / F·F, 0)`` the optimal PD. The residual's Jacobian is
analytic: with ``G = ∂F/∂θ_i``, ``∂PD/∂θ_i = (G·y − 2·PD·F·G)/(F·F)`` (0 where
PD is clamped at 0) and ``∂r/∂θ_i = −(∂PD/∂θ_i·F + PD·G)``. One model
evaluation with derivatives and one without per iteration (central
differences needed 2k + 1), all voxels of a block at once in float64.

Starts: the best point of a log grid per voxel (projection score in float32,
accumulated in cache-sized blocks without BLAS), then further starts from the best grid points of other T1 rows
only for voxels whose fit stays clearly worse than typical (local minima of
magnitude IR/FLAIR on both sides of the null). numpy only (no GPU path): see
``bench/qmri.py`` for the whole-volume time.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .model import model_and_jacobian

__all__ = ["fit_nlls", "GRID", "residual_jacobian"]

#: Coarse log grid of the starting points (ms).
GRID = {"T1": np.geomspace(100.0, 8000.0, 48), "T2": np.geomspace(8.0, 3000.0, 40),
        "T2star": np.geomspace(4.0, 2000.0, 40)}


def _project(y, F):
    """Optimal PD per voxel (>= 0) and residual for unit-PD signals F."""
    ff = np.einsum("nm,nm->n", F, F)
    pd = np.where(ff > 0, np.einsum("nm,nm->n", F, y) / np.where(ff > 0, ff, 1.0), 0.0)
    np.maximum(pd, 0.0, out=pd)
    return pd, ff, y - pd[:, None] * F


def residual_jacobian(y, acqs, free, theta):
    """Residual ``r`` (n, m), its Jacobian ``∂r/∂θ`` (n, m, k) and the cost ``Σ r²`` (n,)."""
    F, G = model_and_jacobian(acqs, free, theta)
    pd, ff, r = _project(y, F)
    safe = np.where(ff > 0, ff, 1.0)
    gy = np.einsum("nmk,nm->nk", G, y)
    gf = np.einsum("nmk,nm->nk", G, F)
    dpd = (gy - 2.0 * pd[:, None] * gf) / safe[:, None]
    dpd[pd <= 0] = 0.0
    J = -(dpd[:, None, :] * F[:, :, None] + pd[:, None, None] * G)
    return r, J, np.einsum("nm,nm->n", r, r)


def _cost(y, acqs, free, theta):
    F, _ = model_and_jacobian(acqs, free, theta, jacobian=False)
    _, _, r = _project(y, F)
    return np.einsum("nm,nm->n", r, r)


def fit_nlls(Y: np.ndarray, acqs, free: Sequence[str], bounds_ms: dict, *, max_iter: int, chunk: int,
             n_starts: int = 8) -> dict[str, np.ndarray]:
    """Fit ``free`` relaxation times (ms) and PD for signals ``Y`` (V, m) of acquisitions ``acqs``."""
    out = {name: np.zeros(Y.shape[0]) for name in ["PD"] + list(free)}
    if Y.shape[0] == 0:
        return out
    G, FGt = _grid(acqs, free, 1)
    lo = np.log([bounds_ms[n][0] for n in free])
    hi = np.log([bounds_ms[n][1] for n in free])
    for start in range(0, Y.shape[0], chunk):
        y = Y[start:start + chunk]
        scale = np.abs(y).max(1)
        scale = np.where(scale > 0, scale, 1.0)
        yn = y / scale[:, None]
        # first start: best point of the grid. (A grid with every other value is 4x cheaper to score but
        # not enough: for white matter under SE/SE/FLAIR/IR its best point lies in another basin.)
        best = _grid_scores(yn, FGt, lambda sc: [np.argmax(sc, axis=1)])[0]
        theta = levenberg_marquardt(yn, acqs, free, G[best], lo, hi, max_iter)
        cost = _cost(yn, acqs, free, theta)
        # further starts only where the fit is clearly worse than typical (a local minimum): the best
        # grid points of n_starts different T1 rows (both sides of an IR null)
        rms = np.sqrt(cost / yn.shape[1])
        thresh = max(1e-6, 2.0 * float(np.median(rms)))
        redo = np.flatnonzero(rms > thresh)
        if redo.size:
            starts = _grid_scores(yn[redo], FGt, lambda sc: _starts(sc, free, n_starts))
            pending = np.arange(redo.size)  # positions in redo still above the threshold
            for gi in starts:
                if pending.size == 0:
                    break
                vox = redo[pending]
                th = levenberg_marquardt(yn[vox], acqs, free, G[gi[pending]], lo, hi, max_iter)
                c_new = _cost(yn[vox], acqs, free, th)
                better = c_new < cost[vox]
                theta[vox[better]], cost[vox[better]] = th[better], c_new[better]
                pending = pending[np.sqrt(cost[redo[pending]] / yn.shape[1]) > thresh]
        F, _ = model_and_jacobian(acqs, free, theta, jacobian=False)
        pd, _, _ = _project(yn, F)
        out["PD"][start:start + chunk] = pd * scale
        for i, name in enumerate(free):
            out[name][start:start + chunk] = np.exp(theta[:, i])
    return out


def _grid(acqs, free, step: int):
    """Grid points (g, k) of log times (every ``step``-th value per axis) and their unit-norm signals (m, g)."""
    axes = [np.log(GRID[name])[::step] for name in free]
    G = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(free))
    FG, _ = model_and_jacobian(acqs, free, G, jacobian=False)  # (g, m)
    norms = np.sqrt((FG * FG).sum(-1))
    FGn = FG / np.where(norms > 0, norms, 1.0)[:, None]
    return G, np.ascontiguousarray(FGn.T, dtype=np.float32)


def _grid_scores(yn, FGt, pick, sub: int = 256):
    """Apply ``pick`` to the projection scores ``max(yn·FGn, 0)`` of sub-chunks of voxels; concatenate.

    The scores only rank starting points, so they are float32, accumulated over the acquisitions with
    in-place ufuncs on a (sub × grid) buffer that stays in cache; no BLAS call (a multithreaded BLAS
    product per sub-chunk costs a thread wake-up each, which dominated on a busy machine).
    """
    m, g = FGt.shape
    y32 = yn.astype(np.float32)
    buf = np.empty((min(sub, len(y32)), g), np.float32)
    tmp = np.empty_like(buf)
    parts = []
    for s in range(0, len(y32), sub):
        e = min(s + sub, len(y32))
        b, t = buf[:e - s], tmp[:e - s]
        np.multiply(y32[s:e, 0, None], FGt[0], out=b)
        for j in range(1, m):
            np.multiply(y32[s:e, j, None], FGt[j], out=t)
            b += t
        np.maximum(b, 0.0, out=b)
        parts.append(pick(b))
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def _starts(score: np.ndarray, free: Sequence[str], n_starts: int) -> list[np.ndarray]:
    """Grid indices (per voxel) of the best ``n_starts`` starting points, each from a different T1 row.

    Magnitude IR/FLAIR data have local minima on both sides of the null, i.e. at
    different T1; starting from the best points of distinct T1 values finds the
    global one.
    """
    c, g = score.shape
    if "T1" not in free or n_starts <= 1:
        return [np.argmax(score, axis=1)]
    n1 = len(GRID["T1"])
    rest = g // n1  # T1 is the first grid axis
    s3 = score.reshape(c, n1, rest)
    best_rest = np.argmax(s3, axis=2)                       # (c, n1)
    per_t1 = np.take_along_axis(s3, best_rest[..., None], 2)[..., 0]
    order = np.argsort(-per_t1, axis=1)[:, :n_starts]       # (c, K) T1 indices
    out = []
    for i in range(order.shape[1]):
        i1 = order[:, i]
        out.append(i1 * rest + best_rest[np.arange(c), i1])
    return out


def levenberg_marquardt(y, acqs, free, theta, lo, hi, max_iter):
    """Batched LM on log times ``theta`` (n, k), clipped to [lo, hi]; damping per voxel."""
    n, k = theta.shape
    lam = np.full(n, 1e-3)
    cost = _cost(y, acqs, free, theta)
    active = np.ones(n, dtype=bool)
    eye = np.eye(k)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        th, yy = theta[idx], y[idx]
        rr, J, _ = residual_jacobian(yy, acqs, free, th)
        g = np.einsum("nmi,nm->ni", J, rr)
        if k == 2:  # the common case (T1 and T2 or T2*): 2x2 normal equations by Cramer's rule
            a = np.einsum("nm,nm->n", J[..., 0], J[..., 0])
            d = np.einsum("nm,nm->n", J[..., 1], J[..., 1])
            b = np.einsum("nm,nm->n", J[..., 0], J[..., 1])
            a = a + lam[idx] * np.maximum(a, 1e-12)
            d = d + lam[idx] * np.maximum(d, 1e-12)
            det = a * d - b * b
            ok = det > 0
            det = np.where(ok, det, 1.0)
            step = np.stack([-(d * g[:, 0] - b * g[:, 1]) / det, -(a * g[:, 1] - b * g[:, 0]) / det], -1)
            fallback = -g / np.maximum(np.stack([a, d], -1), 1e-12)
            step = np.where(ok[:, None], step, fallback)
        else:
            JtJ = np.einsum("nmi,nmj->nij", J, J)
            diag = np.einsum("nii->ni", JtJ)
            A = JtJ + (lam[idx, None] * np.maximum(diag, 1e-12))[:, :, None] * eye
            try:
                step = -np.linalg.solve(A, g[..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = -g / np.maximum(np.einsum("nii->ni", A), 1e-12)
        step = np.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
        trial = np.clip(th + step, lo, hi)
        c_new = _cost(yy, acqs, free, trial)
        better = c_new < cost[idx]
        acc = idx[better]
        theta[acc], cost[acc] = trial[better], c_new[better]
        lam[acc] = np.maximum(lam[acc] / 5.0, 1e-12)
        lam[idx[~better]] *= 4.0
        # converged: a step (accepted or not) below 1e-8 in log T (1e-8 relative), or no cost left;
        # a rejected tiny step used to raise the damping ~20 more times before giving up (noisy data)
        moved = np.abs(trial - th).max(-1)
        small = moved < 1e-8
        done = small | (cost[idx] < 1e-24) | (lam[idx] > 1e10)
        active[idx[done]] = False
    return theta
