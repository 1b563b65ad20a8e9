"""Per-block kernels of the fused signal path (:mod:`.kernels` drives them block by block).

Each kernel writes the relaxation factor ``f(T1, T2 | T2*; θ)`` of one block of voxels into ``o``
(PD, the receive field B1 and the background mask are applied by the driver) with in-place ufuncs
and the block-sized scratch buffers ``s`` (float, same length as ``o``; :data:`SCRATCH` says how
many a kernel uses). ``t1``/``t2`` are the block's T1 and T2 (T2* for the gradient echoes) in ms,
or Python floats; ``p`` the scalar parameters (times in ms, ``cos``/``sin`` of the flip angle,
``magnitude``). ``p["te"]`` is the echo time of the decay factor ``e^{−TE/T2}``: the longitudinal
timings arrive already computed (the multi-echo convention passes its TE → 0 timings there).

``1 − e^{−t/T1}`` is computed as ``−expm1(−t/T1)``: the same value without the cancellation of
``1 − e^{−x}`` at small x (short TR, long T1), so float32 results stay within float32 rounding of
the float64 formula. Powers of ``cos α·e^{−TX/T1}`` in MPRAGE are one exponential each:
``(cos α·E)^k = cos^k α·e^{−k·TX/T1}`` (no ``pow``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["KERNELS", "SCRATCH", "exp_neg", "expm1_neg"]


def exp_neg(t: float, T, out):
    """out = exp(−t/T) for a scalar time t (ms) and a block of T (ms)."""
    np.divide(-t, T, out=out)
    np.exp(out, out=out)
    return out


def expm1_neg(t: float, T, out):
    """out = exp(−t/T) − 1 (≤ 0), accurate when t/T is small."""
    np.divide(-t, T, out=out)
    np.expm1(out, out=out)
    return out


def _decay(o, te, T, a):
    """o *= e^{−TE/T}; nothing to do at TE = 0 (T <= 0 voxels are zeroed by the driver)."""
    if te != 0.0:
        o *= exp_neg(te, T, a)


def _k_ir(o, s, t1, t2, p):
    # mz = 1 − 2e^{−TI/T1} + e^{−Trec/T1} = (e^{−Trec/T1} − 1) − 2(e^{−TI/T1} − 1); TI = Trec: 1 − e^{−TR/T1}
    a = s[0]
    if p["ti"] == p["trec"]:  # the spin echo at TE -> 0 (multi-echo convention): one exponential
        expm1_neg(p["trec"], t1, o)
        np.negative(o, out=o)
    else:
        expm1_neg(p["ti"], t1, o)
        o *= -2.0
        o += expm1_neg(p["trec"], t1, a)
    if p["magnitude"]:
        np.abs(o, out=o)
    _decay(o, p["te"], t2, a)


def _k_dir(o, s, t1, t2, p):
    # mz = 1 − 2e^{−TI2/T1} + 2e^{−TI1/T1} − e^{−TR/T1} = 2(E_TI1 − 1) − 2(E_TI2 − 1) − (E_TR − 1)
    a = s[0]
    if p["ti1"] == p["tr"]:  # IR/FLAIR at TE -> 0 (multi-echo convention): (E_TR − 1) − 2(E_TI2 − 1)
        expm1_neg(p["ti2"], t1, o)
        o *= -2.0
        o += expm1_neg(p["tr"], t1, a)
    else:
        expm1_neg(p["ti1"], t1, o)
        o -= expm1_neg(p["ti2"], t1, a)
        o *= 2.0
        o -= expm1_neg(p["tr"], t1, a)
    if p["magnitude"]:
        np.abs(o, out=o)
    _decay(o, p["te"], t2, a)


def _k_dir_se(o, s, t1, t2, p):
    # DIR with its refocusing pulse at TE/2 (signal.double_inversion_recovery), p["tra"] = TR − TE/2:
    # mz = 1 − 2E_TI2 + 2E_TI1 − 2E_tra + E_TR = 2[(E_TI1 − 1) − (E_TI2 − 1) − (E_tra − 1)] + (E_TR − 1)
    if p["tra"] == p["tr"]:  # TE -> 0 (multi-echo convention): the printed form, the "dir" kernel
        return _k_dir(o, s, t1, t2, p)
    a = s[0]
    expm1_neg(p["ti1"], t1, o)
    o -= expm1_neg(p["ti2"], t1, a)
    o -= expm1_neg(p["tra"], t1, a)
    o *= 2.0
    o += expm1_neg(p["tr"], t1, a)
    if p["magnitude"]:
        np.abs(o, out=o)
    _decay(o, p["te"], t2, a)


def _k_gre(o, s, t1, t2s, p):
    # sin α (1 − E1)/(1 − cos α E1) e^{−TE/T2*} with m = E1 − 1: −m / ((1 − cos α) − cos α·m);
    # the denominator is > 0 (cos α < 1 is checked by the caller)
    a = s[0]
    expm1_neg(p["tr"], t1, o)
    np.multiply(o, -p["cos"], out=a)
    a += 1.0 - p["cos"]
    o /= a
    _decay(o, p["te"], t2s, a)
    o *= -p["sin"]


def _k_mprage(o, s, t1, t2s, p):
    """Physical MPRAGE (signal_mprage.mprage) with scalar timing: ``ta``, ``td`` (ms), ``n``, ``kc``, ``eta``.

    With E = e^{−TX/T1}, c = cos α, M* = (1 − E)/(1 − cE), D = e^{−TD/T1}, A = e^{−TA/T1},
    Dq = D·(cE)^n = c^n·e^{−(TD + n·TX)/T1} and DqA = Dq·A = c^n·e^{−(TD + n·TX + TA)/T1}:
    M_a = [(1 − D) + M*·(D − Dq) + Dq − DqA] / (1 + η·DqA), M_1 = (1 − A) − η·A·M_a,
    M_kc = M* + (M_1 − M*)·c^kc·e^{−kc·TX/T1}, f = sin α·M_kc (magnitude) · e^{−TE/T2*}.
    """
    a, ms, d, dq, ekc = s[:5]
    c, n, kc, tx, eta = p["cos"], p["n"], p["kc"], p["tx"], p["eta"]
    expm1_neg(tx, t1, o)                       # E − 1
    np.multiply(o, c, out=a)
    a -= 1.0 - c                               # cE − 1 < 0
    np.divide(o, a, out=ms)                    # M* = (E − 1)/(cE − 1)
    # e^{−n·TX/T1} = (e^{−kc·TX/T1})²·E^{n − 2kc} (n − 2kc is 0 or 1): one exponential for both powers
    exp_neg(kc * tx, t1, ekc)                  # e^{−kc·TX/T1}
    np.multiply(ekc, ekc, out=dq)
    if n - 2 * kc:
        o += 1.0                               # E
        dq *= o
    expm1_neg(p["td"], t1, d)                  # D − 1
    np.add(d, 1.0, out=a)
    dq *= a
    dq *= p["cn"]                              # Dq = c^n·e^{−n·TX/T1}·D
    np.subtract(d, dq, out=o)
    o += 1.0                                   # D − Dq
    o *= ms
    o -= d                                     # + (1 − D)
    o += dq
    expm1_neg(p["ta"], t1, d)                  # A − 1
    np.add(d, 1.0, out=a)
    dq *= a                                    # DqA
    o -= dq
    if eta != 1.0:
        dq *= eta
    dq += 1.0
    o /= dq                                    # M_a
    a *= o
    if eta != 1.0:
        a *= eta                               # η·A·M_a
    np.add(d, a, out=o)
    o += ms                                    # −(M_1 − M*), M_1 = (1 − A) − η·A·M_a
    if kc:
        o *= ekc
    o *= -p["ckc"]                             # c^kc (1 when kc = 0)
    o += ms                                    # M_kc
    o *= p["sin"]
    if p["magnitude"]:
        np.abs(o, out=o)
    _decay(o, p["te"], t2s, a)


def _k_mprage_eq6(o, s, t1, t2s, p):
    """Paper 002 Eq. 6 (signal_mprage.mprage_eq6_paper002) with scalar ``td`` (ms) and ``n``.

    f = |sin α·(1 − E_TR)/(1 − c·E_TR)·(E_TD − c^n·e^{−(n·TX + TD)/T1}) + (1 − E_TD)|·e^{−TE/T2*}.
    """
    a, b = s[:2]
    c = p["cos"]
    expm1_neg(p["tr"], t1, o)                  # E_TR − 1
    np.multiply(o, -c, out=a)
    a += 1.0 - c
    o /= a
    o *= -p["sin"]                             # sin α (1 − E_TR)/(1 − c·E_TR)
    exp_neg(p["td"], t1, b)
    exp_neg(p["n"] * p["tx"] + p["td"], t1, a)
    a *= p["cn"]
    b -= a                                     # E_TD·(1 − (c·E_TX)^n)
    o *= b
    o -= expm1_neg(p["td"], t1, a)             # + (1 − E_TD)
    np.abs(o, out=o)
    _decay(o, p["te"], t2s, a)


#: Kernel per kind ("ir" also serves SE and FLAIR, "dir" serves IR/FLAIR with the refocusing term).
KERNELS = {"ir": _k_ir, "dir": _k_dir, "dir_se": _k_dir_se, "gre": _k_gre, "mprage": _k_mprage,
           "mprage_eq6": _k_mprage_eq6}

#: Scratch buffers each kernel needs.
SCRATCH = {"ir": 1, "dir": 1, "dir_se": 1, "gre": 1, "mprage": 5, "mprage_eq6": 2}
