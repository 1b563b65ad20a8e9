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

import numpy as np

from ..sequences import SIGNAL_SEQUENCES as _SIGNAL_SEQUENCES
from .kernels import fused_signal as _fused
# the array backend and the MPRAGE equations live in their own modules; their public names stay importable here
from .signal_backend import DEG as _DEG, Backend as _Backend, em1 as _em1, is_torch  # noqa: F401
from .signal_backend import rec as _rec, ratio as _ratio, setup as _setup, valid_times as _valid_times
from .signal_mprage import mprage, mprage_delay_time, mprage_eq6_paper002, mprage_steady_state  # noqa: F401

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
        fast = _fused_spin_echo_family(seq, p, pd, t1_ms, t2_ms, b1, te_long_ms=0.0)
        if fast is not None:  # numpy maps: longitudinal factor at TE -> 0 and e^{-TE/T2} in one block-wise pass
            return fast
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


def _fused_spin_echo_family(seq: str, p, pd, t1_ms, t2_ms, b1, *, te_long_ms: float):
    """The fused kernel of ``seq`` ("se", "ir", "flair", "dir") with the longitudinal timing of an echo at
    ``te_long_ms`` and the decay ``e^{−TE/T2}`` of ``p.TE_ms``, or None (see :func:`.kernels.fused_signal`)."""
    te, half = p.TE_ms, 0.5 * te_long_ms
    if seq == "se":
        return _fused("ir", pd, t1_ms, t2_ms, b1, {"te": te, "ti": p.TR_ms - half, "trec": p.TR_ms,
                                                   "magnitude": False})
    if seq in ("ir", "flair"):
        trec = p.TR_ms if seq == "ir" or p.Trec_ms is None else p.Trec_ms
        return _fused("dir", pd, t1_ms, t2_ms, b1, {"te": te, "ti1": trec - half, "ti2": p.TI_ms, "tr": trec,
                                                    "magnitude": True})
    return _fused("dir_se", pd, t1_ms, t2_ms, b1, {"te": te, "ti1": p.TI1_ms, "ti2": p.TI2_ms, "tr": p.TR_ms,
                                                  "tra": p.TR_ms - half, "magnitude": True})


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
