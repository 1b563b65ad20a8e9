"""MPRAGE signal equations (times in ms, flip angles in degrees): the physical steady state and paper 002's Eq. 6.

Part of :mod:`neuroshift.physics.signal` (import them from there); numpy maps with scalar
parameters run in the fused block kernels of :mod:`.kernels_mprage`, everything else (torch
tensors, parameter arrays) in the reference formulas below.
"""

from __future__ import annotations

from .kernels import fused_signal as _fused
from .signal_backend import DEG as _DEG, rec as _rec, ratio as _ratio, setup as _setup, valid_times as _valid_times

__all__ = ["mprage", "mprage_eq6_paper002", "mprage_delay_time", "mprage_steady_state"]


def mprage_delay_time(ti_ms, tr_ms, tx_ms, n):
    """Delay time TD (ms) of paper 002's MPRAGE equation, derived from TI, TR, TX and n.

    Paper 002 names TD "the delay time" but does not define it, nor list n.
    **[inferred]** We use the classical MPRAGE timing (Deichmann et al. 2000;
    Wang et al. 2014): one cycle of length TR is the inversion, the delay TI to
    the first readout pulse, the train of n pulses spaced TX, and the recovery
    delay TD before the next inversion, so ``TD = max(TR − TI − n·TX, 0)``
    (clamped at 0 when the train would not fit; a TD of 0 keeps Eq. 6 finite).
    Works on numpy values and torch tensors alike.
    """
    be, (ti, tr, tx, n) = _setup(ti_ms, tr_ms, tx_ms, n)
    return be.finish(be.maximum(tr - ti - be.xp.round(n) * tx, 0.0))


def mprage_eq6_paper002(pd, t1_ms, t2star_ms, *, te_ms, ti_ms, tr_ms, fa_deg, tx_ms, n, b1=1.0, td_ms=None):
    """MPRAGE in the published form of paper 002 (Eq. 6), with PD, receive field and T2*: for reproducing 002 only.

    **Not a physical MPRAGE**: the printed equation lost the inversion time
    (TI enters only through TD) and the inversion itself, so it has almost no T1
    contrast (README protocol on the phantom: CSF 0.17, GM 0.19, WM 0.20).
    Use :func:`mprage` for simulation; this form exists so that paper 002's
    synthetic images can be reproduced.

    ``S = B1·PD·| sin α·[(1 − E_TR)/(1 − cos α·E_TR)·(1 − (cos α·E_TX)^n)]·E_TD + (1 − E_TD) |·e^{−TE/T2*}``

    with ``E_x = e^{−x/T1}``, α = ``fa_deg`` (degrees), ``tx_ms`` the excitation
    repetition time (echo spacing, ms), ``n`` the number of excitations per
    shot and ``td_ms`` the delay time. Paper 002 omits PD, B1 and the T2* factor
    (it notes that NiTorch, which it used, includes them); we multiply them in,
    as the other equations of the paper do. E_TR uses the sequence TR as printed.

    TD: by default :func:`mprage_delay_time` ``= max(TR − TI − n·TX, 0)``
    **[inferred]**; pass ``td_ms`` to set it directly. As TD → ∞ the bracket
    term vanishes and S → B1·PD·e^{−TE/T2*} (→ B1·PD at TE = 0). S is finite and
    ≥ 0 for every non-negative input (the denominators are ≥ 1 − cos α·E_TR > 0
    unless the numerator is 0 too, which is handled).

    For the physical, cycle-consistent steady-state MPRAGE see :func:`mprage`.
    """
    fused = {"te": te_ms, "ti": ti_ms, "tr": tr_ms, "fa": fa_deg, "tx": tx_ms, "n": n}
    if td_ms is not None:
        fused["td"] = td_ms
    fast = _fused("mprage_eq6", pd, t1_ms, t2star_ms, b1, fused)
    if fast is not None:  # numpy maps, scalar parameters: fused block kernel (same formula)
        return fast
    be, (pd, t1, t2s, te, ti, tr, fa, tx, n, b1, td) = _setup(
        pd, t1_ms, t2star_ms, te_ms, ti_ms, tr_ms, fa_deg, tx_ms, n, b1, td_ms)
    if td is None:
        td = be.maximum(tr - ti - be.xp.round(n) * tx, 0.0)  # mprage_delay_time
    valid = _valid_times(be, t1, t2s)
    a = fa * _DEG
    sa, ca = be.sin(a), be.cos(a)
    e_tr = _rec(be, tr, t1)
    e_tx = _rec(be, tx, t1)
    e_td = _rec(be, td, t1)
    n_int = be.xp.round(n)
    readout = sa * _ratio(be, 1.0 - e_tr, 1.0 - ca * e_tr) * (1.0 - (ca * e_tx) ** n_int)
    mz = be.abs(readout * e_td + (1.0 - e_td))
    s = b1 * pd * mz * _rec(be, te, t2s)
    return be.finish(be.where(valid, s, 0.0))


def mprage(pd, t1_ms, t2star_ms, *, te_ms, ti_ms, tr_ms, fa_deg, tx_ms, n, b1=1.0,
           inversion_efficiency=1.0, magnitude=True):
    """MPRAGE: the physical, cycle-consistent steady state (the model every caller uses).

    Assumptions: instantaneous pulses, ideal spoiling of the transverse
    magnetisation between readout pulses (Mz → cos α·Mz per pulse), a perfect
    inversion scaled by η, and the signal read at the k-space-centre pulse
    (linear phase encoding; the T1-blurring of the other lines is not modelled).
    Checked against a step-by-step Bloch simulation in ``Testing/physics/test_bloch_sequences.py``.

    Timing (Deichmann et al. 2000, Siemens convention): an inversion every TR;
    TI from the inversion to the k-space-centre excitation, which is pulse
    ``k_c = floor(n/2)`` of a linear train of ``n`` pulses spaced ``tx_ms``; so
    the first pulse comes at ``TA = max(TI − k_c·TX, 0)`` and the train is
    followed by ``TD = max(TR − TA − n·TX, 0)``. With ``E = e^{−TX/T1}``,
    ``c = cos α``, ``M* = (1 − E)/(1 − cE)`` the train steady state,
    ``q = (cE)^n``, ``A = e^{−TA/T1}``, ``D = e^{−TD/T1}`` and inversion
    efficiency η (1 = perfect), the longitudinal magnetisation just before the
    inversion solves the periodicity condition

        M_a = [(1 − D) + D·M*·(1 − q) + D·q·(1 − A)] / (1 + η·D·q·A)

    then ``M_1 = 1 − A − η·A·M_a`` before the first pulse and
    ``M_kc = M* + (M_1 − M*)(cE)^{k_c}``; ``S = B1·PD·sin α·M_kc·e^{−TE/T2*}``
    (magnitude by default). The denominator is ≥ 1, so S is always finite.
    When the train does not fit (TA + n·TX > TR) TD is clamped to 0 and the
    cycle is longer than TR.

    Differences from NiTorch's ``mprage()`` (balbasty/nitorch,
    ``nitorch/tools/qmri/generators/mprage.py``; the generator paper 002 used):
    NiTorch has no TX parameter (pulse spacing ``2·TE``), measures TI from the
    inversion to the *first* readout pulse (``TD = TR − TI − n·2TE``) with the
    centre at pulse n/2, assumes a perfect inversion, returns the signed
    signal (no magnitude), and takes times in s and R1 in 1/s. Here TI is the
    Siemens convention (inversion to the k-space-centre pulse), TX is explicit,
    η is a parameter and the magnitude is returned. Numerically (PD = 1, no
    T2*, README protocol TI 900, TR 2300, FA 9°, n 176, NiTorch's TX = 6 ms,
    our TI moved to its centre pulse, 1428 ms): NiTorch gives WM 0.181,
    GM 0.143, CSF 0.063, this model 0.060, 0.042, 0.014. Our reading of the
    difference: NiTorch's expression does not attenuate the post-inversion
    recovery by the ``(cos α·e^{−TX/T1})^k`` of the readout pulses before the
    centre (adding that factor gives 0.072, 0.058, 0.027); the remaining gap
    is in its recovery/periodicity term. The Bloch check in the tests
    supports this model.
    """
    fast = _fused("mprage", pd, t1_ms, t2star_ms, b1, {"te": te_ms, "ti": ti_ms, "tr": tr_ms, "fa": fa_deg,
                                                       "tx": tx_ms, "n": n, "eta": inversion_efficiency,
                                                       "magnitude": magnitude})
    if fast is not None:  # numpy maps, scalar parameters: fused block kernel (same closed forms, one pass)
        return fast
    be, (pd, t1, t2s, te, ti, tr, fa, tx, n, b1, eta) = _setup(
        pd, t1_ms, t2star_ms, te_ms, ti_ms, tr_ms, fa_deg, tx_ms, n, b1, inversion_efficiency)
    valid = _valid_times(be, t1, t2s)
    xp = be.xp
    n_int = xp.round(n)
    kc = xp.floor(n_int / 2.0)
    a = fa * _DEG
    sa, ca = be.sin(a), be.cos(a)
    ta = be.maximum(ti - kc * tx, 0.0)
    td = be.maximum(tr - ta - n_int * tx, 0.0)
    e = _rec(be, tx, t1)
    m_star = _ratio(be, 1.0 - e, 1.0 - ca * e)
    ce = ca * e
    q = ce ** n_int
    A = _rec(be, ta, t1)
    D = _rec(be, td, t1)
    m_a = ((1.0 - D) + D * m_star * (1.0 - q) + D * q * (1.0 - A)) / (1.0 + eta * D * q * A)
    m_1 = 1.0 - A - eta * A * m_a
    m_c = m_star + (m_1 - m_star) * ce ** kc
    sig = sa * m_c
    if magnitude:
        sig = be.abs(sig)
    s = b1 * pd * sig * _rec(be, te, t2s)
    return be.finish(be.where(valid, s, 0.0))


#: Former name of :func:`mprage` (the phantom and older code call it so).
mprage_steady_state = mprage
