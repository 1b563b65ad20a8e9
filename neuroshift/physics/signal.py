"""MR signal equations, vectorised over voxels and parameters, for numpy and torch.

Every function accepts numpy arrays, Python scalars **or** torch tensors and
returns the backend of its inputs: as soon as one argument is a
``torch.Tensor`` the computation runs in torch (on that tensor's device and
floating dtype, differentiable with autograd); otherwise it runs in numpy.
torch is imported lazily, only when a tensor is passed. All arguments
broadcast against each other, so one call can evaluate many voxels, many
parameter settings, or a grid of both (``te_ms[:, None]`` against
``t2_ms[None, :]``).

Units: **times in ms**, **flip angles in degrees**, PD and the receive field
``b1`` dimensionless (arbitrary units). Rates are R = 1/T.

Conventions shared by every equation:

* ``b1`` is the *receive* field (a multiplicative gain on the signal, paper
  002); transmit-field errors are not modelled.
* A voxel with a non-positive relaxation time (T1, T2 or T2* <= 0, e.g. the
  background of a map folder) gives signal 0 without NaN or warnings.
  ``T = inf`` means "no relaxation" and is allowed.
* The inversion-recovery family returns the magnitude |Mz| (``magnitude=True``,
  default), as a magnitude image does; ``magnitude=False`` keeps the sign.

Equations (E_x = exp(-x / T1), Paper 002 writes the same with R1 = 1/T1 in s):

============  =================================================================
spin echo     S = B1·PD·(1 − 2e^{−(TR−TE/2)/T1} + e^{−TR/T1})·e^{−TE/T2}
FSE           S = B1·PD·(1 − (1 − m_L)·e^{−(TR−t_L)/T1})·e^{−TE/T2}  (:func:`fast_spin_echo`)
IR            S = B1·PD·|1 − 2e^{−TI/T1} + 2e^{−(TR−TE/2)/T1} − e^{−TR/T1}|·e^{−TE/T2}
FLAIR         S = B1·PD·|1 − 2e^{−TI/T1} + 2e^{−(Trec−TE/2)/T1} − e^{−Trec/T1}|·e^{−TE/T2}
DIR           S = B1·PD·|1 − 2e^{−TI2/T1} + 2e^{−TI1/T1} − 2e^{−(TR−TE/2)/T1} + e^{−TR/T1}|·e^{−TE/T2}
spoiled GRE   S = B1·PD·sin α·(1 − E_TR)/(1 − cos α·E_TR)·e^{−TE/T2*}   (002)
MPRAGE        S = B1·PD·sin α·|M_kc|·e^{−TE/T2*}, M_kc the steady-state Mz before the
              k-space-centre pulse of a cycle-consistent inversion + readout train
              (Deichmann et al. 2000; :func:`mprage`)
MPRAGE (002)  S = B1·PD·|sin α·[(1 − E_TR)/(1 − cos α·E_TR)·(1 − (cos α·E_TX)^n)]·E_TD
                        + (1 − E_TD)|·e^{−TE/T2*}   (002 Eq. 6 as printed:
              :func:`mprage_eq6_paper002`, for reproducing paper 002 only)
============  =================================================================

The spin-echo family is exact for the pulses as played: a 90° excitation that
leaves Mz = 0 and a 180° refocusing pulse at TE/2, which also *inverts* the Mz
that recovered since the excitation — the ``2e^{−(TR−TE/2)/T1}`` terms (the
printed forms of papers 000/002, ``1 − e^{−TR/T1}`` and ``1 − 2e^{−TI/T1} +
e^{−TR/T1}``, drop them: up to 3 % off for a T1w SE at TE 10 / TR 600 ms and
much more for CSF near a FLAIR null). Checked against a step-by-step Bloch
simulation to 1e-6 (``Testing/physics/test_bloch_sequences.py``); all reduce to the
printed forms at TE = 0. IR: TR from inversion to inversion; FLAIR is IR with
the recovery time ``Trec`` (paper 000's TR-related parameter, default TR) in
place of TR, so ``flair(trec_ms=TR) == inversion_recovery``. DIR: TI1 > TI2
both measured back from the excitation, TR between excitations; it is the spin
echo when TI1 = TI2 and tends to IR as TI1, TR → ∞.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..sequences import SIGNAL_SEQUENCES as _SIGNAL_SEQUENCES
from .kernels import fused_signal as _fused

__all__ = [
    "spin_echo",
    "fast_spin_echo",
    "inversion_recovery",
    "flair",
    "double_inversion_recovery",
    "spoiled_gre",
    "mprage",
    "mprage_eq6_paper002",
    "mprage_delay_time",
    "mprage_steady_state",
    "sequence_signal",
    "ernst_angle",
    "flair_null_ti",
    "is_torch",
]

_DEG = math.pi / 180.0


# --------------------------------------------------------------------------- backend
def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (checked without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "requires_grad")


class _Backend:
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


def _setup(*args):
    be = _Backend(args)
    return be, [None if a is None else be.asarray(a) for a in args]


def _valid_times(be: _Backend, *times):
    valid = None
    for t in times:
        v = t > 0
        valid = v if valid is None else (valid & v)
    return valid


def _rec(be: _Backend, t_ms, t1_ms):
    """exp(−t/T1), with T1 <= 0 mapped to 0 (the caller zeroes those voxels)."""
    valid = t1_ms > 0
    safe = be.where(valid, t1_ms, 1.0)
    return be.exp(-t_ms / safe)


def _em1(be: _Backend, t_ms, t1_ms):
    """exp(−t/T1) − 1 via expm1 (accurate for t ≪ T1), with T1 <= 0 mapped as in :func:`_rec`."""
    valid = t1_ms > 0
    safe = be.where(valid, t1_ms, 1.0)
    return be.xp.expm1(-t_ms / safe)


# --------------------------------------------------------------------------- equations
def spin_echo(pd, t1_ms, t2_ms, *, te_ms, tr_ms, b1=1.0):
    """Spin echo: ``S = B1·PD·(1 − 2e^{−(TR−TE/2)/T1} + e^{−TR/T1})·e^{−TE/T2}``.

    Parameters: ``pd`` proton density (a.u.), ``t1_ms``/``t2_ms`` relaxation
    times (ms), ``te_ms`` echo time (ms), ``tr_ms`` repetition time (ms), ``b1``
    receive field (gain). Exact for a 90° excitation and a 180° refocusing pulse
    at TE/2 (which inverts the Mz recovered by then); paper 002's FSE form
    ``1 − e^{−TR/T1}`` is its TE → 0 limit. TE = 0, TR → ∞ gives B1·PD. The
    factor is ≥ 0 for TE ≤ TR. For an echo train see :func:`fast_spin_echo`.
    """
    # = the IR longitudinal factor with TI = TR − TE/2 and Trec = TR (same fused kernel)
    tih = tr_ms - 0.5 * te_ms
    fast = _fused("ir", pd, t1_ms, t2_ms, b1, {"te": te_ms, "ti": tih, "trec": tr_ms, "magnitude": False})
    if fast is not None:  # numpy maps, scalar parameters: fused block kernel (same formula)
        return fast
    be, (pd, t1, t2, te, tr, b1) = _setup(pd, t1_ms, t2_ms, te_ms, tr_ms, b1)
    valid = _valid_times(be, t1, t2)
    e2 = _rec(be, te, t2)
    s = b1 * pd * (_em1(be, tr, t1) - 2.0 * _em1(be, tr - 0.5 * te, t1)) * e2  # (E_TR − 1) − 2(E_a − 1)
    return be.finish(be.where(valid, s, 0.0))


def fast_spin_echo(pd, t1_ms, t2_ms, *, te_ms, tr_ms, etl=1, esp_ms=None, b1=1.0):
    """Fast (turbo) spin echo with ``etl`` ideal 180° refocusing pulses spaced ``esp_ms``, signal at ``te_ms``.

    Timing: 90° at 0, refocusing pulses at ``ESP/2 + k·ESP`` (k = 0..ETL−1),
    echoes at ``(k+1)·ESP``; ``te_ms`` is the effective TE (the k-space-centre
    echo, which sets the T2 weighting ``e^{−TE/T2}``). Each refocusing pulse
    inverts Mz: after the first ``m_0 = −(1 − e^{−ESP/(2T1)})``, then
    ``m_{k+1} = −(1 − E) − E·m_k`` (E = e^{−ESP/T1}), so
    ``m_L = m* + (m_0 − m*)(−E)^{ETL−1}`` with ``m* = −(1 − E)/(1 + E)``; Mz then
    recovers from the last pulse at ``t_L = ESP/2 + (ETL−1)·ESP`` to the next
    excitation: ``S = B1·PD·(1 − (1 − m_L)·e^{−(TR−t_L)/T1})·e^{−TE/T2}``.
    ``etl=1`` (``esp_ms`` default TE) is :func:`spin_echo`. Integer ``etl`` ≥ 1.
    """
    if esp_ms is None:
        if etl != 1:
            raise ValueError("fast_spin_echo: give esp_ms (echo spacing, ms) when etl > 1")
        esp_ms = te_ms
    n = int(etl)
    if n < 1 or n != etl:
        raise ValueError(f"fast_spin_echo: etl must be an integer >= 1, got {etl!r}")
    be, (pd, t1, t2, te, tr, esp, b1) = _setup(pd, t1_ms, t2_ms, te_ms, tr_ms, esp_ms, b1)
    valid = _valid_times(be, t1, t2)
    e = _rec(be, esp, t1)
    m_star = -(1.0 - e) / (1.0 + e)
    m0 = -(1.0 - _rec(be, 0.5 * esp, t1))
    m_last = m_star + (m0 - m_star) * (-e) ** (n - 1)
    t_last = 0.5 * esp + (n - 1) * esp
    mz = 1.0 - (1.0 - m_last) * _rec(be, tr - t_last, t1)
    s = b1 * pd * mz * _rec(be, te, t2)
    return be.finish(be.where(valid, s, 0.0))


def inversion_recovery(pd, t1_ms, t2_ms, *, te_ms, ti_ms, tr_ms, b1=1.0, magnitude=True):
    """Inversion recovery with a spin-echo readout.

    ``S = B1·PD·|1 − 2e^{−TI/T1} + 2e^{−(TR−TE/2)/T1} − e^{−TR/T1}|·e^{−TE/T2}``

    Exact for a 180° inversion, a 90° excitation at TI that leaves Mz = 0, the
    180° refocusing pulse at TI + TE/2 (inverting the Mz recovered by then) and
    TR measured from inversion to inversion. ``magnitude=False`` returns the signed
    longitudinal factor (negative for T1 long compared with TI, e.g. CSF).
    """
    return flair(pd, t1_ms, t2_ms, te_ms=te_ms, ti_ms=ti_ms, tr_ms=tr_ms, trec_ms=None, b1=b1,
                 magnitude=magnitude)


def flair(pd, t1_ms, t2_ms, *, te_ms, ti_ms, tr_ms, trec_ms=None, b1=1.0, magnitude=True):
    """FLAIR (IR with TR recovery).

    ``S = B1·PD·|1 − 2e^{−TI/T1} + 2e^{−(Trec−TE/2)/T1} − e^{−Trec/T1}|·e^{−TE/T2}``

    ``trec_ms`` is the recovery time of paper 000 (a TR-related parameter a DICOM
    header lacks; default TR). The ``2e^{−(Trec−TE/2)/T1} − e^{−Trec/T1}`` term is
    the recovery after the refocusing pulse (see :func:`inversion_recovery`);
    papers 000/002 print ``e^{−Trec/T1}``, its TE → 0 limit. At TE = 0 the signal
    is nulled at ``TI = −T1·ln((1 + e^{−Trec/T1})/2)`` (= T1·ln 2 as TR → ∞); see
    :func:`flair_null_ti`. ``magnitude=True`` (default) returns |S| as a
    magnitude image does (CSF's Mz is negative at short TI).
    """
    trec = tr_ms if trec_ms is None else trec_ms
    # = the DIR longitudinal factor with TI2 = TI, TI1 = Trec − TE/2 and TR = Trec (same fused kernel)
    fast = _fused("dir", pd, t1_ms, t2_ms, b1, {"te": te_ms, "ti1": trec - 0.5 * te_ms, "ti2": ti_ms, "tr": trec,
                                               "magnitude": magnitude})
    if fast is not None:
        return fast
    be, (pd, t1, t2, te, ti, trec, b1) = _setup(pd, t1_ms, t2_ms, te_ms, ti_ms, trec, b1)
    valid = _valid_times(be, t1, t2)
    mz = 2.0 * _em1(be, trec - 0.5 * te, t1) - 2.0 * _em1(be, ti, t1) - _em1(be, trec, t1)
    if magnitude:
        mz = be.abs(mz)
    s = b1 * pd * mz * _rec(be, te, t2)
    return be.finish(be.where(valid, s, 0.0))


def double_inversion_recovery(pd, t1_ms, t2_ms, *, te_ms, ti1_ms, ti2_ms, tr_ms, b1=1.0, magnitude=True):
    """Double inversion recovery.

    ``S = B1·PD·|1 − 2e^{−TI2/T1} + 2e^{−TI1/T1} − 2e^{−(TR−TE/2)/T1} + e^{−TR/T1}|·e^{−TE/T2}``

    Two 180° inversions at TI1 and TI2 before the excitation (both measured back
    from the excitation, TI1 > TI2, TR − TI1 ≥ TE/2), TR from excitation to
    excitation, a 90° excitation leaving Mz = 0 and a 180° refocusing pulse at
    TE/2 that inverts the Mz recovered by then. Special cases: TI1 = TI2 → the
    spin echo :func:`spin_echo`; TI1, TR → ∞ → ``1 − 2e^{−TI2/T1}``; at TE = 0
    the printed form ``1 − 2e^{−TI2/T1} + 2e^{−TI1/T1} − e^{−TR/T1}``.
    """
    fast = _fused("dir_se", pd, t1_ms, t2_ms, b1, {"te": te_ms, "ti1": ti1_ms, "ti2": ti2_ms, "tr": tr_ms,
                                                  "tra": tr_ms - 0.5 * te_ms, "magnitude": magnitude})
    if fast is not None:
        return fast
    be, (pd, t1, t2, te, ti1, ti2, tr, b1) = _setup(pd, t1_ms, t2_ms, te_ms, ti1_ms, ti2_ms, tr_ms, b1)
    valid = _valid_times(be, t1, t2)
    # 1 − 2E_TI2 + 2E_TI1 − 2E_(TR−TE/2) + E_TR, written with e^{−x} − 1 (no cancellation at small x)
    mz = (2.0 * (_em1(be, ti1, t1) - _em1(be, ti2, t1) - _em1(be, tr - 0.5 * te, t1))
          + _em1(be, tr, t1))
    if magnitude:
        mz = be.abs(mz)
    s = b1 * pd * mz * _rec(be, te, t2)
    return be.finish(be.where(valid, s, 0.0))


def spoiled_gre(pd, t1_ms, t2star_ms, *, te_ms, tr_ms, fa_deg, b1=1.0):
    """Spoiled gradient echo (FLASH/SPGR) in steady state (paper 002, GRE).

    ``S = B1·PD·sin α·(1 − e^{−TR/T1})/(1 − cos α·e^{−TR/T1})·e^{−TE/T2*}``, α = ``fa_deg``
    in degrees. Maximal at the Ernst angle ``arccos(e^{−TR/T1})`` (:func:`ernst_angle`).
    """
    fast = _fused("gre", pd, t1_ms, t2star_ms, b1, {"te": te_ms, "tr": tr_ms, "fa": fa_deg})
    if fast is not None:
        return fast
    be, (pd, t1, t2s, te, tr, fa, b1) = _setup(pd, t1_ms, t2star_ms, te_ms, tr_ms, fa_deg, b1)
    valid = _valid_times(be, t1, t2s)
    a = fa * _DEG
    e1 = _rec(be, tr, t1)
    ca = be.cos(a)
    s = b1 * pd * be.sin(a) * _ratio(be, 1.0 - e1, 1.0 - ca * e1) * _rec(be, te, t2s)
    return be.finish(be.where(valid, s, 0.0))


def _ratio(be: _Backend, num, den):
    """num/den with den == 0 (only when num == 0 too: α = 0 and E1 = 1) giving 0."""
    ok = den > 0
    return be.where(ok, num / be.where(ok, den, 1.0), 0.0)


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


# --------------------------------------------------------------------------- helpers
def ernst_angle(t1_ms, tr_ms):
    """Ernst angle in degrees, ``arccos(e^{−TR/T1})`` (numpy or torch)."""
    be, (t1, tr) = _setup(t1_ms, tr_ms)
    return be.finish(be.xp.arccos(be.exp(-tr / t1)) / _DEG)


def flair_null_ti(t1_ms, tr_ms=float("inf"), te_ms=0.0):
    """TI (ms) that nulls the FLAIR/IR signal: ``−T1·ln((1 + 2e^{−(TR−TE/2)/T1} − e^{−TR/T1})/2)``.

    At TE = 0 (default) ``−T1·ln((1 + e^{−TR/T1})/2)``; T1·ln 2 as TR → ∞.
    """
    be, (t1, tr, te) = _setup(t1_ms, tr_ms, te_ms)
    return be.finish(-t1 * be.xp.log((1.0 + 2.0 * be.exp(-(tr - 0.5 * te) / t1) - be.exp(-tr / t1)) / 2.0))


#: Sequence names accepted by :func:`sequence_signal` (from the one table in :mod:`neuroshift.io.params`).
SEQUENCES = _SIGNAL_SEQUENCES


def sequence_signal(sequence: str, params, *, pd, t1_ms, t2_ms=None, t2star_ms=None, b1=1.0, multi_echo=False):
    """Signal of ``sequence`` ("se"/"fse", "ir", "flair", "dir", "gre", "mprage") at ``params``.

    ``params`` is a :class:`neuroshift.io.params.AcquisitionParams` (ms, degrees);
    ``params.require(sequence)`` runs first, so a missing TE/TI/TR/FA/TX/N is an
    error that names it. SE/IR/FLAIR/DIR need ``t2_ms``; GRE/MPRAGE need
    ``t2star_ms`` (a missing map is a :class:`MissingParameterError`, never a
    silent default). FLAIR uses ``params.Trec_ms`` when set (default TR).

    ``multi_echo=True`` (SE/IR/FLAIR/DIR): the convention of the qMRI fit, where
    images at several TEs are echoes of one readout sharing one longitudinal
    factor — that of TE → 0 (the printed forms of papers 000/002) — times
    ``e^{−TE/T2}``, so two echoes give T2 exactly. The default (False) is the
    single-echo physics with the refocusing pulse at TE/2.
    """
    from ..errors import MissingParameterError

    seq = str(sequence).lower()
    if seq == "fse":
        seq = "se"
    p = params.require(seq)
    if seq in ("se", "ir", "flair", "dir"):
        if t2_ms is None:
            raise MissingParameterError(f"{seq.upper()} needs a T2 map/value (t2_ms), which was not given")
    elif t2star_ms is None:
        raise MissingParameterError(f"{seq.upper()} needs a T2* map/value (t2star_ms), which was not given")
    if multi_echo and seq in ("se", "ir", "flair", "dir"):
        from dataclasses import replace

        mz = _sequence_signal_te(seq, replace(p, TE_ms=0.0), pd, t1_ms, t2_ms, b1)  # longitudinal factor, TE -> 0
        from .kernels import decay_inplace

        if decay_inplace(mz, p.TE_ms, t2_ms):  # numpy: × e^{−TE/T2} block-wise in place (no temporaries)
            return mz
        be, (mz, t2, te) = _setup(mz, t2_ms, p.TE_ms)
        return be.finish(mz * _rec(be, te, t2))  # T2 <= 0 voxels are already 0
    if seq in ("se", "ir", "flair", "dir"):
        return _sequence_signal_te(seq, p, pd, t1_ms, t2_ms, b1)
    if seq == "gre":
        return spoiled_gre(pd, t1_ms, t2star_ms, te_ms=p.TE_ms, tr_ms=p.TR_ms, fa_deg=p.FA_deg, b1=b1)
    return mprage(pd, t1_ms, t2star_ms, te_ms=p.TE_ms, ti_ms=p.TI_ms, tr_ms=p.TR_ms, fa_deg=p.FA_deg,
                  tx_ms=p.TX_ms, n=p.N, b1=b1)


def _sequence_signal_te(seq: str, p, pd, t1_ms, t2_ms, b1):
    """The spin-echo family at ``p`` (already checked; ``p.TE_ms`` may be 0)."""
    if seq == "se":
        return spin_echo(pd, t1_ms, t2_ms, te_ms=p.TE_ms, tr_ms=p.TR_ms, b1=b1)
    if seq == "ir":
        return inversion_recovery(pd, t1_ms, t2_ms, te_ms=p.TE_ms, ti_ms=p.TI_ms, tr_ms=p.TR_ms, b1=b1)
    if seq == "flair":
        return flair(pd, t1_ms, t2_ms, te_ms=p.TE_ms, ti_ms=p.TI_ms, tr_ms=p.TR_ms, trec_ms=p.Trec_ms, b1=b1)
    return double_inversion_recovery(pd, t1_ms, t2_ms, te_ms=p.TE_ms, ti1_ms=p.TI1_ms, ti2_ms=p.TI2_ms,
                                     tr_ms=p.TR_ms, b1=b1)
