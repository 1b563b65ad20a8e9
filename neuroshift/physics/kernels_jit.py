"""Compiled one-pass kernels of the signal equations (numba): the default fast path of :mod:`.kernels`.

Why compiled: the block-wise numpy kernels (:mod:`.kernels_blocks`) make 20–40 ufunc calls per block
of voxels; on 2 threads those calls contend for the GIL and the wall time did not scale (MPRAGE at
256×256×176: 2.8× a copy of its input maps in one-thread CPU time, still 3.4× in wall time with 2
threads). Here each sequence is one loop over the voxels that reads the maps once and writes the
output once, releases the GIL for the whole part (``nogil``), and computes every voxel in float64
(then rounds to the output dtype): a float32 result is the float64 formula rounded once.

Vectorisation without SVML: numba calls the scalar libm ``exp``/``expm1`` (9–14 ns per call here),
which no compiler can vectorise. :func:`exp_le0` and :func:`expm1_le0` are the same functions written
as plain arithmetic (Cody–Waite reduction ``x = k·ln 2 + r``, |r| ≤ ln 2 / 2, a degree-12 Taylor
polynomial of ``e^r − 1``, ``2^k`` built from its bits), so LLVM compiles the loops to 8-lane AVX-512
(or 4-lane AVX2) code: relative error ≤ 1e-15 for every x ≤ 0 (``Testing/physics/test_kernels_jit.py``;
e^x underflows to ≤ 1e-304 below x = −700). ``fastmath`` stays off (IEEE semantics; the loops
vectorise without it because no reduction is reordered).

Units: times in ms, rates ``r1 = 1/T1`` in 1/ms. Background (T1 or T2/T2* not > 0, NaN) gives 0;
chunks of :data:`CHUNK` voxels without any tissue are written as 0 without evaluating the equation
(most of a head's field of view). First call of each signature compiles (about 1 s); ``cache=True``
keeps the machine code in ``__pycache__`` for later processes.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import types
from numba.extending import intrinsic, overload

__all__ = ["CHUNK", "KIND_CODES", "exp_le0", "expm1_le0", "run_signal", "run_decay"]

#: Voxels per chunk: a chunk with no tissue voxel is written as 0 without evaluating the equation.
CHUNK = 512

_LOOP = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False)  # error_model: no ZeroDivision checks
_INLINE = dict(inline="always", cache=True, error_model="numpy")

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k·LN2_HI is exact for |k| < 2^20
_LN2_LO = 1.90821492927058770002e-10


@intrinsic
def _f64_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bit pattern is the int64 ``bits`` (a vectorisable bit cast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))
    return types.float64(types.int64), codegen


@nb.njit(**_INLINE)
def _split(x):
    """``(2^k, e^r − 1)`` with ``e^x = 2^k·(1 + (e^r − 1))``, for x ≤ 0 (clamped at −700)."""
    x = max(x, -700.0)
    kf = math.floor(x * _LOG2E + 0.5)
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    p = 1.0 / 479001600.0  # 1/12!; truncation ≤ (ln2/2)^13/13! ≈ 2e-16
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r * r + r
    return _f64_from_bits((np.int64(kf) + 1023) << 52), p


@nb.njit(**_INLINE)
def exp_le0(x):
    """``e^x`` for x ≤ 0 (float64, relative error ≤ 1e-15; vectorisable)."""
    s, p = _split(x)
    return s + s * p


@nb.njit(**_INLINE)
def expm1_le0(x):
    """``e^x − 1`` for x ≤ 0 without cancellation at small |x| (relative error ≤ 1e-15; vectorisable)."""
    s, p = _split(x)
    return s * p + (s - 1.0)


def _at(a, i):
    """``a[i]`` for an array, ``a`` for a scalar map, as float64 (the overload below is what compiled code uses)."""
    return np.float64(a[i] if isinstance(a, np.ndarray) else a)


@overload(_at, inline="always")
def _at_overload(a, i):
    """``a[i]`` for an array, ``a`` for a scalar map (PD or B1 given as one number)."""
    if isinstance(a, types.Array):
        return lambda a, i: np.float64(a[i])
    return lambda a, i: np.float64(a)


# --------------------------------------------------------------------------- longitudinal factors
# Each takes e = (em(t_0), em(t_1), em(t_2), em(t_3)), em(t) = e^{−t/T1} − 1 at the kind's times t_k
# (:func:`times`; unused entries 0), and the tuple p of scalar parameters, and returns the factor before
# PD·B1·e^{−TE/T2}. Plain arithmetic (the exponentials come from their own loops): the combining loop
# vectorises. The magnitude is a separate function per kind (a loop-invariant flag in the loop body stops
# LLVM from vectorising it).

@nb.njit(**_INLINE)
def _lf_ir(e, p):
    """Spin echo / IR, times (TI, Trec): ``em(Trec) − 2·em(TI)``."""
    return e[1] - 2.0 * e[0]


@nb.njit(**_INLINE)
def _lf_dir(e, p):
    """IR/FLAIR with the refocusing term, times (TI1, TI2, TR): ``2[em(TI1) − em(TI2)] − em(TR)``."""
    return 2.0 * (e[0] - e[1]) - e[2]


@nb.njit(**_INLINE)
def _lf_dir_se(e, p):
    """DIR, times (TI1, TI2, TR, TR − TE/2): ``2[em(TI1) − em(TI2) − em(TR − TE/2)] + em(TR)``."""
    return 2.0 * (e[0] - e[1] - e[3]) + e[2]


@nb.njit(**_INLINE)
def _lf_gre(e, p):
    """Spoiled GRE, times (TR,), p = (cos α, sin α): ``sin α·(1 − E)/(1 − cos α·E)`` with m = E − 1 =
    ``−sin α·m/((1 − cos α) − cos α·m)``; the denominator is > 0 (cos α < 1 is checked by the caller)."""
    return -p[1] * e[0] / ((1.0 - p[0]) - p[0] * e[0])


@nb.njit(**_INLINE)
def _lf_mprage(e, p):
    """Physical MPRAGE (signal_mprage.mprage), signed; times (TX, kc·TX, TD, TA), p = (n − 2kc, cos^n α,
    cos^kc α, η, sin α, cos α). With E = e^{−TX/T1}, c = cos α, M* = (1 − E)/(1 − cE), D = e^{−TD/T1},
    A = e^{−TA/T1}, Dq = D·c^n·e^{−n·TX/T1}: M_a = [(1 − D) + M*(D − Dq) + Dq(1 − A)]/(1 + η·Dq·A),
    M_1 = (1 − A) − η·A·M_a, M_kc = M* + (M_1 − M*)·c^kc·e^{−kc·TX/T1}, f = sin α·M_kc."""
    em, ekc, dm, am = e[0], e[1] + 1.0, e[2], e[3]
    ms = em / (p[5] * em - (1.0 - p[5]))                    # M* = (E − 1)/(cE − 1)
    dq = ekc * ekc * (1.0 + p[0] * em) * (dm + 1.0) * p[1]  # e^{−n·TX/T1} = ekc²·E^{n − 2kc}, n − 2kc ∈ {0, 1}
    a = am + 1.0
    dqa = dq * a
    ma = ((dm + 1.0 - dq) * ms - dm + dq - dqa) / (1.0 + p[3] * dqa)
    m1 = -am - p[3] * a * ma
    return p[4] * (ms + (m1 - ms) * p[2] * ekc)


@nb.njit(**_INLINE)
def _lf_eq6(e, p):
    """Paper 002 Eq. 6, times (TR, TD, n·TX + TD), p = (cos α, sin α, cos^n α):
    ``|sin α·(1 − E_TR)/(1 − cE_TR)·(E_TD − c^n·e^{−(n·TX + TD)/T1}) + (1 − E_TD)|``."""
    readout = -p[1] * e[0] / ((1.0 - p[0]) - p[0] * e[0])
    return abs(readout * ((e[1] + 1.0) - p[2] * (e[2] + 1.0)) - e[1])


@nb.njit(**_INLINE)
def _lf_ir_abs(e, p):
    return abs(_lf_ir(e, p))


@nb.njit(**_INLINE)
def _lf_dir_abs(e, p):
    return abs(_lf_dir(e, p))


@nb.njit(**_INLINE)
def _lf_dir_se_abs(e, p):
    return abs(_lf_dir_se(e, p))


@nb.njit(**_INLINE)
def _lf_mprage_abs(e, p):
    return abs(_lf_mprage(e, p))


#: Code of each (kind, magnitude) in :func:`_combine` (GRE and Eq. 6 have one form).
KIND_CODES = {("ir", False): 0, ("ir", True): 1, ("dir", False): 2, ("dir", True): 3, ("dir_se", False): 4,
              ("dir_se", True): 5, ("gre", False): 6, ("gre", True): 6, ("mprage", False): 7, ("mprage", True): 8,
              ("mprage_eq6", False): 9, ("mprage_eq6", True): 9}


# --------------------------------------------------------------------------- loops
# Every loop runs over range(size) of contiguous views (no negative-index wrap-around checks) with a
# straight-line body, which LLVM vectorises; one loop per exponential keeps each body small enough for that
# (a body with four or more inlined exponentials was left scalar: 45–60 ns per voxel instead of 4–13).

def _part(a, lo, hi):
    """``a[lo:hi]`` for an array, ``a`` for a scalar map (the overload below is what compiled code uses)."""
    return a[lo:hi] if isinstance(a, np.ndarray) else a


@overload(_part, inline="always")
def _part_overload(a, lo, hi):
    """``a[lo:hi]`` for an array, ``a`` for a scalar map."""
    if isinstance(a, types.Array):
        return lambda a, lo, hi: a[lo:hi]
    return lambda a, lo, hi: a


@nb.njit(**_LOOP)
def _pack(t1, t2, idx, r1, r2):  # pragma: no cover - compiled
    """The valid voxels (T1 > 0 and T2 > 0; NaN not) of a chunk: their positions ``idx`` and T1, T2 (ms, float64)
    packed into ``r1``/``r2`` (made rates by :func:`_reciprocal`); returns their number."""
    j = 0
    for i in range(t1.size):
        a = np.float64(t1[i])
        b = np.float64(t2[i])
        if a > 0.0 and b > 0.0:
            idx[j] = i
            r1[j] = a
            r2[j] = b
            j += 1
    return j


@nb.njit(**_LOOP)
def _reciprocal(x):  # pragma: no cover - compiled
    for i in range(x.size):
        x[i] = 1.0 / x[i]


@nb.njit(**_LOOP)
def _em_loop(r, t, e):  # pragma: no cover - compiled
    for i in range(r.size):
        e[i] = expm1_le0(-t * r[i])


@nb.njit(**_LOOP)
def _exp_loop(r, t, e):  # pragma: no cover - compiled
    for i in range(r.size):
        e[i] = exp_le0(-t * r[i])


@nb.njit(**_LOOP)
def _combine(kind, e0, e1, e2, e3, d, p, f):  # pragma: no cover - compiled
    """f = lf(e, p)·d in float64 for the :data:`KIND_CODES` ``kind``: one loop per kind (a branch inside the
    loop would keep LLVM from vectorising it); float64 only, so it is compiled once (and cached) for every map type."""
    n = f.size
    if kind == 0:
        for i in range(n):
            f[i] = _lf_ir((e0[i], e1[i], e2[i], e3[i]), p) * d[i]
    elif kind == 1:
        for i in range(n):
            f[i] = _lf_ir_abs((e0[i], e1[i], e2[i], e3[i]), p) * d[i]
    elif kind == 2:
        for i in range(n):
            f[i] = _lf_dir((e0[i], e1[i], e2[i], e3[i]), p) * d[i]
    elif kind == 3:
        for i in range(n):
            f[i] = _lf_dir_abs((e0[i], e1[i], e2[i], e3[i]), p) * d[i]
    elif kind == 4:
        for i in range(n):
            f[i] = _lf_dir_se((e0[i], e1[i], e2[i], e3[i]), p) * d[i]
    elif kind == 5:
        for i in range(n):
            f[i] = _lf_dir_se_abs((e0[i], e1[i], e2[i], e3[i]), p) * d[i]
    elif kind == 6:
        for i in range(n):
            f[i] = _lf_gre((e0[i], e1[i], e2[i], e3[i]), p) * d[i]
    elif kind == 7:
        for i in range(n):
            f[i] = _lf_mprage((e0[i], e1[i], e2[i], e3[i]), p) * d[i]
    elif kind == 8:
        for i in range(n):
            f[i] = _lf_mprage_abs((e0[i], e1[i], e2[i], e3[i]), p) * d[i]
    else:
        for i in range(n):
            f[i] = _lf_eq6((e0[i], e1[i], e2[i], e3[i]), p) * d[i]


@nb.njit(**_LOOP)
def _scatter(f, idx, pd, b1, out):  # pragma: no cover - compiled
    """out[idx[j]] = PD·B1·f[j] (rounded once to out's dtype); the caller zeroes the rest of the chunk."""
    for j in range(f.size):
        i = idx[j]
        out[i] = f[j] * _at(pd, i) * _at(b1, i)


@nb.njit(**_LOOP)
def _signal_loop(kind, pd, t1, t2, b1, te, times, nt, p, out, chunk):  # pragma: no cover - compiled
    """``out = PD·B1·lf(em(times), p)·e^{−TE/T2}`` (0 where T1 or T2 is not > 0), chunk by chunk.

    A chunk without tissue is written as 0; otherwise its valid voxels are packed (:func:`_pack`; in a head
    volume about a third of the voxels of the chunks that touch the brain are tissue) and the exponentials and
    the formula run on those in float64 buffers (:func:`_em_loop`, :func:`_combine`: compiled once); only the
    packing and scattering loops depend on the maps' dtypes and on scalar PD/B1.
    """
    n = t1.size
    r1, r2, d, f = np.empty(chunk), np.empty(chunk), np.empty(chunk), np.empty(chunk)
    idx = np.empty(chunk, np.int64)
    e0, e1, e2, e3 = np.zeros(chunk), np.zeros(chunk), np.zeros(chunk), np.zeros(chunk)
    for c0 in range(0, n, chunk):
        c1 = min(c0 + chunk, n)
        m = c1 - c0
        a, b, o = t1[c0:c1], t2[c0:c1], out[c0:c1]
        valid = 0
        for i in range(m):
            valid += (a[i] > 0) & (b[i] > 0)
        if valid < m:
            for i in range(m):
                o[i] = 0.0
        if valid == 0:
            continue
        v = _pack(a, b, idx, r1, r2)
        r = r1[:v]
        _reciprocal(r)
        _reciprocal(r2[:v])
        if nt > 0:
            _em_loop(r, times[0], e0[:v])
        if nt > 1:
            _em_loop(r, times[1], e1[:v])
        if nt > 2:
            _em_loop(r, times[2], e2[:v])
        if nt > 3:
            _em_loop(r, times[3], e3[:v])
        _exp_loop(r2[:v], te, d[:v])
        _combine(kind, e0[:v], e1[:v], e2[:v], e3[:v], d[:v], p, f[:v])
        _scatter(f[:v], idx[:v], _part(pd, c0, c1), _part(b1, c0, c1), o)


@nb.njit(**_LOOP)
def _decay_loop(s, t2, te):  # pragma: no cover - compiled
    """``s *= e^{−TE/T2}`` in place, 0 where T2 is not > 0."""
    for i in range(s.size):
        b = np.float64(t2[i])
        ok = b > 0.0
        v = np.float64(s[i]) * exp_le0(-te / (b if ok else 1.0))
        s[i] = v if ok else 0.0


def run_signal(kind: str, magnitude: bool, pd, t1, t2, b1, te_ms: float, times_ms: tuple, p: tuple,
               out: np.ndarray) -> None:
    """Evaluate ``kind`` into ``out`` (1-D, C-contiguous): ``t1``/``t2`` 1-D arrays of out's length, ``pd``/``b1``
    1-D arrays or Python floats, ``te_ms`` ≥ 0, ``times_ms`` the (≤ 4) times ≥ 0 of the kind's exponentials and
    ``p`` its (≤ 6) other parameters (see the ``_lf_*`` docstrings); ``magnitude`` takes |f|."""
    times = tuple(float(v) for v in times_ms)
    params = tuple(float(v) for v in p)
    _signal_loop(KIND_CODES[kind, bool(magnitude)], pd, t1, t2, b1, float(te_ms), times + (0.0,) * (4 - len(times)),
                 len(times), params + (0.0,) * (6 - len(params)), out, CHUNK)


def run_decay(s: np.ndarray, t2: np.ndarray, te_ms: float) -> None:
    """``s *= e^{−TE/T2}`` in place (1-D arrays of one length), 0 where T2 is not > 0."""
    _decay_loop(s, t2, float(te_ms))
