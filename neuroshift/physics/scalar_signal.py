"""The signal equations of :mod:`.signal` for a few tissues given as Python floats (times in ms, angles in degrees).

Why: a tissue-wise derivative needs ``S_t(θ)`` for 4 tissues per call; the array path
(:func:`.signal.sequence_signal`) spends ~35 µs on backend set-up and fused-kernel eligibility checks for
4-element arrays, more than a 64³ copy of the image (issue 9). Here each equation is the same closed form in
``math`` floats (float64), one function :func:`signal_one` per tissue; equal to the array path within 1e-12 relative
(``Testing/physics/test_scalar_signal.py``, every sequence, T ≤ 0 background, magnitude and Trec cases).

Conventions as in :mod:`.signal`: receive field ``b1`` is 1, a non-positive relaxation time gives 0, the
inversion-recovery family and MPRAGE return magnitudes, FLAIR uses ``Trec_ms`` when set (default TR), ``fse``
is the spin echo. The parameters must already satisfy ``params.require(sequence)`` (no checks here).
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["tissue_signals", "signal_one", "pack", "SEQUENCE_CODES"]

_DEG = math.pi / 180.0

#: Code of each sequence in :func:`signal_one` (``fse`` is the spin echo).
SEQUENCE_CODES = {"se": 0, "fse": 0, "ir": 1, "flair": 2, "dir": 3, "gre": 4, "mprage": 5}


def pack(sequence: str, params) -> tuple[float, float, float, float, float, float]:
    """The 6 timing values :func:`signal_one` reads for ``sequence`` (ms, degrees, pulses; unused slots 0):
    SE (TE, TR), IR (TE, TI, TR), FLAIR (TE, TI, Trec or TR), DIR (TE, TI1, TI2, TR), GRE (TE, TR, FA),
    MPRAGE (TE, TI, TR, FA, TX, N)."""
    v = params.__dict__
    seq = sequence.lower()
    if seq in ("se", "fse"):
        return v["TE_ms"], v["TR_ms"], 0.0, 0.0, 0.0, 0.0
    if seq == "ir":
        return v["TE_ms"], v["TI_ms"], v["TR_ms"], 0.0, 0.0, 0.0
    if seq == "flair":
        trec = v["Trec_ms"]
        return v["TE_ms"], v["TI_ms"], v["TR_ms"] if trec is None else trec, 0.0, 0.0, 0.0
    if seq == "dir":
        return v["TE_ms"], v["TI1_ms"], v["TI2_ms"], v["TR_ms"], 0.0, 0.0
    if seq == "gre":
        return v["TE_ms"], v["TR_ms"], v["FA_deg"], 0.0, 0.0, 0.0
    if seq == "mprage":
        return v["TE_ms"], v["TI_ms"], v["TR_ms"], v["FA_deg"], v["TX_ms"], v["N"]
    raise ValueError(f"unknown sequence '{sequence}'")


def tissue_signals(sequence: str, params, pd: Sequence[float], t1_ms: Sequence[float], t2_ms: Sequence[float],
                   t2star_ms: Sequence[float]) -> list[float]:
    """``S_t(θ)`` per tissue (float64, ``b1`` = 1) of ``sequence`` at the checked ``params`` (AcquisitionParams)."""
    seq = sequence.lower()
    p = pack(seq, params)
    code = SEQUENCE_CODES[seq]
    t2x = t2star_ms if seq in ("gre", "mprage") else t2_ms
    return [signal_one(code, *p, rho, a, b) for rho, a, b in zip(pd, t1_ms, t2x)]


def signal_one(code: int, p1: float, p2: float, p3: float, p4: float, p5: float, p6: float,
               rho: float, t1: float, t2x: float) -> float:
    """One tissue's signal: sequence ``code`` (:data:`SEQUENCE_CODES`) with the values of :func:`pack`, proton
    density ``rho``, ``t1`` and ``t2x`` (T2, or T2* for GRE/MPRAGE) in ms. Pure ``math``: numba compiles the same
    function for the block layout's fast path (:mod:`neuroshift.simulate.block_kernels`)."""
    if t1 <= 0.0 or t2x <= 0.0:
        return 0.0
    if code == 0:  # spin echo: TE, TR
        return rho * (math.expm1(-p2 / t1) - 2.0 * math.expm1(-(p2 - 0.5 * p1) / t1)) * math.exp(-p1 / t2x)
    if code == 1 or code == 2:  # IR / FLAIR: TE, TI, Trec
        mz = 2.0 * math.expm1(-(p3 - 0.5 * p1) / t1) - 2.0 * math.expm1(-p2 / t1) - math.expm1(-p3 / t1)
        return rho * abs(mz) * math.exp(-p1 / t2x)
    if code == 3:  # DIR: TE, TI1, TI2, TR
        mz = (2.0 * (math.expm1(-p2 / t1) - math.expm1(-p3 / t1) - math.expm1(-(p4 - 0.5 * p1) / t1))
              + math.expm1(-p4 / t1))
        return rho * abs(mz) * math.exp(-p1 / t2x)
    fa = p3 * _DEG if code == 4 else p4 * _DEG
    sa, ca = math.sin(fa), math.cos(fa)
    if code == 4:  # spoiled GRE: TE, TR, FA
        e1 = math.exp(-p2 / t1)
        den = 1.0 - ca * e1
        return rho * sa * ((1.0 - e1) / den if den > 0.0 else 0.0) * math.exp(-p1 / t2x)
    # MPRAGE (signal.mprage: cycle-consistent steady state, η = 1, magnitude): TE, TI, TR, FA, TX, N
    n_int = float(round(p6))  # numpy's round: half to even, as Python's and numba's
    kc = math.floor(n_int / 2.0)
    ta = max(p2 - kc * p5, 0.0)
    td = max(p3 - ta - n_int * p5, 0.0)
    e = math.exp(-p5 / t1)
    den = 1.0 - ca * e
    m_star = (1.0 - e) / den if den > 0.0 else 0.0
    ce = ca * e
    q = ce ** n_int
    big_a = math.exp(-ta / t1)
    big_d = math.exp(-td / t1)
    m_a = ((1.0 - big_d) + big_d * m_star * (1.0 - q) + big_d * q * (1.0 - big_a)) / (1.0 + big_d * q * big_a)
    m_1 = 1.0 - big_a - big_a * m_a
    m_c = m_star + (m_1 - m_star) * ce ** kc
    return rho * abs(sa * m_c) * math.exp(-p1 / t2x)
