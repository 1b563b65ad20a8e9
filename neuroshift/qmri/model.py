"""Unit-PD signal model of a set of acquisitions and its analytic Jacobian in log relaxation times.

Used by the Levenberg–Marquardt fit (:mod:`neuroshift.qmri.nlls`). For free
parameters ``θ = (log T_a, log T_b, ...)`` (T in ms, the names from
``free`` ⊂ {T1, T2, T2star}) and every acquisition j, :func:`model_and_jacobian`
returns ``F_j(θ)`` (the signal with PD = 1 and B1 = 1, float64) and
``∂F_j/∂θ_i``. Parameters that are not free take their neutral value (T1 → 0:
full recovery; T2, T2* → ∞: no decay), as in :mod:`neuroshift.qmri.fit`.

With ``E(t) = e^{−t/T1}`` and ``D = e^{−TE/T2}`` (or T2*)::

    ∂E(t)/∂log T1 = E(t)·t/T1          ∂D/∂log T2 = D·TE/T2

and the chain rule through each equation of :mod:`neuroshift.physics.signal`
(SE, IR, FLAIR, DIR, spoiled GRE; magnitude forms use sign(Mz)). MPRAGE, whose
model is maintained elsewhere, is differentiated by central differences in
log T (step 1e-6) of :func:`neuroshift.physics.signal.sequence_signal`.
``Testing/qmri/test_perf_qmri.py`` checks every column against finite differences.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..physics.signal import sequence_signal

__all__ = ["model_and_jacobian", "NEUTRAL"]

#: Neutral values of relaxation times that are not fitted (their factor becomes 1).
NEUTRAL = {"T1": 0.0, "T2": math.inf, "T2star": math.inf}

_FD_STEP = 1e-6


def _times(free: Sequence[str], theta: np.ndarray) -> dict:
    vals = {}
    for i, name in enumerate(free):
        vals[name] = np.exp(theta[:, i])
    return vals


def _decay(te: float, T: np.ndarray | None):
    """(D, ∂D/∂log T) for D = e^{−TE/T}; T None = not free (D = 1, no derivative)."""
    if T is None or te == 0.0:
        return 1.0, None
    x = te / T
    d = np.exp(-x)
    return d, d * x


def _recovery(t: float, T1: np.ndarray | None):
    """(E, ∂E/∂log T1) for E = e^{−t/T1}; T1 None = not free (T1 → 0: E = 0 for t > 0)."""
    if T1 is None:
        return (0.0 if t > 0 else 1.0), None
    if math.isinf(t):
        return 0.0, None
    x = t / T1
    e = np.exp(-x)
    return e, e * x


def _acquisition(seq: str, p, T1, T2, T2s, want_jac: bool):
    """(F, dF/dlogT1 or None, dF/dlogT2|T2* or None) of one acquisition, PD = 1."""
    Tdec = T2s if seq in ("gre", "mprage") else T2
    D, dD = _decay(p.TE_ms, Tdec)
    if seq == "se":
        e, de = _recovery(p.TR_ms, T1)
        mz, dmz = 1.0 - e, (None if de is None else -de)
    elif seq in ("ir", "flair"):
        trec = p.TR_ms if seq == "ir" or p.Trec_ms is None else p.Trec_ms
        e1, d1 = _recovery(p.TI_ms, T1)
        e2, d2 = _recovery(trec, T1)
        mz = 1.0 - 2.0 * e1 + e2
        dmz = None if T1 is None else -2.0 * (d1 if d1 is not None else 0.0) + (d2 if d2 is not None else 0.0)
        mz, dmz = _magnitude(mz, dmz)
    elif seq == "dir":
        terms = [(p.TI2_ms, -2.0), (p.TI1_ms, 2.0), (p.TR_ms, -1.0)]
        mz, dmz = 1.0, (0.0 if T1 is not None else None)
        for t, w in terms:
            e, de = _recovery(t, T1)
            mz = mz + w * e
            if de is not None:
                dmz = dmz + w * de
        mz, dmz = _magnitude(mz, dmz)
    elif seq == "gre":
        a = math.radians(p.FA_deg)
        sa, ca = math.sin(a), math.cos(a)
        e, de = _recovery(p.TR_ms, T1)
        den = 1.0 - ca * e
        with np.errstate(divide="ignore", invalid="ignore"):
            mz = np.where(den > 0, sa * (1.0 - e) / np.where(den > 0, den, 1.0), 0.0) if np.ndim(den) \
                else (sa * (1.0 - e) / den if den > 0 else 0.0)
            dmz = None if de is None else sa * (ca - 1.0) / (den * den) * de
    else:
        return None  # mprage: finite differences by the caller
    F = mz * D
    dF1 = None if (T1 is None or not want_jac or dmz is None) else dmz * D
    dF2 = None if (dD is None or not want_jac) else mz * dD
    return F, dF1, dF2


def _magnitude(mz, dmz):
    if dmz is None:
        return np.abs(mz), None
    return np.abs(mz), np.sign(mz) * dmz


def _mprage_unit(p, T1, T2s, shape):
    t1 = np.broadcast_to(T1 if T1 is not None else 1e-9, shape)
    t2s = np.broadcast_to(T2s if T2s is not None else np.inf, shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        return np.asarray(sequence_signal("mprage", p, pd=1.0, t1_ms=t1, t2star_ms=t2s), dtype=np.float64)


def model_and_jacobian(acqs, free: Sequence[str], theta: np.ndarray, *, jacobian: bool = True):
    """``F`` (n, m) and, with ``jacobian=True``, ``J = ∂F/∂θ`` (n, m, k) at ``theta`` (n, k) = log T (ms)."""
    theta = np.asarray(theta, dtype=np.float64)
    n, k = theta.shape
    T = _times(free, theta)
    T1, T2, T2s = T.get("T1"), T.get("T2"), T.get("T2star")
    m = len(acqs)
    F = np.empty((n, m))
    J = np.zeros((n, m, k)) if jacobian else None
    col = {name: i for i, name in enumerate(free)}
    for j, (seq, p) in enumerate(acqs):
        res = _acquisition(seq, p, T1, T2, T2s, jacobian)
        if res is None:  # MPRAGE: value from the shared equation, derivatives by central differences
            F[:, j] = _mprage_unit(p, T1, T2s, (n,))
            if jacobian:
                for name in ("T1", "T2star"):
                    if name in col:
                        up = dict(T1=T1, T2s=T2s)
                        dn = dict(T1=T1, T2s=T2s)
                        key = "T1" if name == "T1" else "T2s"
                        up[key] = up[key] * math.exp(_FD_STEP)
                        dn[key] = dn[key] * math.exp(-_FD_STEP)
                        J[:, j, col[name]] = (_mprage_unit(p, up["T1"], up["T2s"], (n,))
                                              - _mprage_unit(p, dn["T1"], dn["T2s"], (n,))) / (2 * _FD_STEP)
            continue
        f, d1, d2 = res
        F[:, j] = f
        if jacobian:
            if d1 is not None and "T1" in col:
                J[:, j, col["T1"]] = d1
            dec = "T2star" if seq == "gre" else "T2"
            if d2 is not None and dec in col:
                J[:, j, col[dec]] = d2
    return F, J
