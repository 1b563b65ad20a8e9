"""Estimator ``"auto"``: the apparent-parameter fit only where it beats the priors-only baseline out of sample.

Why. One source image cannot identify every tissue parameter; where the
contrast does not tell, the fit (:func:`~neuroshift.simulate.estimate.fit_apparent_parameters`)
may move a parameter the wrong way and the derivative is then worse than the
literature priors alone (issue 15). Whether that happens depends on the source
protocol, the target protocol and the tissue, so it is decided per
(target, tissue) by a calibration in which the truth is known:

1. **Calibration subjects.** ``K`` parameter sets ``θ_k`` drawn from the prior
   (log-normal around the relaxation table, widths :data:`~neuroshift.simulate.posterior.PRIOR_LOG_SD`).
   Each is "imaged" at the source protocol on the tissue level: measured
   signals ``m_k = c·S(θ_k; source) + ε`` with the image's scale ``c``, its
   fraction masses / Gram matrix and noise ``ε ~ N(0, SE)`` of the image's
   own tissue-signal standard errors. The estimators never see ``θ_k``.
2. **Both estimators** run on each ``m_k`` exactly as on the image: the fit
   (apparent parameters, then ``c`` by least squares) and priors-only (table
   values, ``c`` by least squares).
3. **Scoring at a target** (lazily, the first time a target is simulated, then
   cached): the derivative's tissue mean ``m_k,t + ĉ·[S_t(θ̂; target) − S_t(θ̂; source)]``
   vs the truth ``c·S_t(θ_k; target)``; expected relative error = mean over
   ``k`` of ``|predicted − true| / |true|``.
4. **Choice** per tissue: the fit where its mean paired gain over priors-only
   on the same subjects (``e_priors − e_fit``) is at least :data:`Z_MARGIN`
   standard errors of that mean (0 by default: the lower expected error wins;
   a margin of 1 sends unresolved differences to the baseline, which cost
   0.3 percentage points under the prior and gained nothing on BrainWeb-truth
   phantoms in ``dev/derivative_mismatch.py``), priors-only otherwise. At the
   source protocol both reproduce the image (gain 0) and the fit is kept.
   The derivative's increment of tissue ``t`` is the chosen estimator's
   ``ĉ·ΔS_t`` on the real image.

Choices and calibration errors are recorded per target in :attr:`AutoChooser.record`
(the model's ``report.auto``; the ``simulate`` sidecar and the validation
report carry them). Deterministic for a given seed. Times in ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..io.params import AcquisitionParams
from . import estimate as _est

#: Calibration subjects drawn from the prior.
N_CALIBRATION = 32

#: The fit is used where its mean paired gain over priors-only is at least this many standard errors of it.
Z_MARGIN = 0.0


@dataclass
class AutoChooser:
    """Fit and priors-only estimates of one image plus their calibration; :meth:`deltas` mixes them per tissue."""

    tissues: tuple[str, ...]
    sequence: str
    source: AcquisitionParams
    fit_params: tuple            # (pd, t1, t2, t2s) arrays of the fit on the image
    fit_scale: float
    prior_params: tuple          # (pd, t1, t2, t2s) arrays of the table
    prior_scale: float
    measured: np.ndarray         # (T,) the image's tissue signals m_t
    cal_truth: tuple             # (pd, t1, t2, t2s) arrays (K, T) of the calibration subjects
    cal_fit: tuple               # (pd, t1, t2, t2s) arrays (K, T) fitted to them
    cal_fit_scale: np.ndarray    # (K,)
    cal_prior_scale: np.ndarray  # (K,)
    cal_measured: np.ndarray     # (K, T)
    true_scale: float
    fitted: tuple[bool, ...]
    record: dict = field(default_factory=dict)   # target label -> {tissue: {choice, errors}}
    _cache: dict = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- calibration
    def subject_errors(self, params: AcquisitionParams, factors=None) -> tuple[np.ndarray, np.ndarray]:
        """Relative errors (fractions, (K, T) each) of the fit and of priors-only on every calibration subject."""
        seq = self.sequence
        prior = tuple(np.broadcast_to(a, self.cal_measured.shape) for a in self.prior_params)
        true_new = self.true_scale * _sig(seq, params, _apply(self.cal_truth, factors))
        pred_fit = self.cal_measured + self.cal_fit_scale[:, None] * (
            _sig(seq, params, _apply(self.cal_fit, factors)) - _sig(seq, self.source, self.cal_fit))
        pred_prior = self.cal_measured + self.cal_prior_scale[:, None] * (
            _sig(seq, params, _apply(prior, factors)) - _sig(seq, self.source, prior))
        den = np.maximum(np.abs(true_new), 1e-12 * max(float(np.abs(true_new).max()), 1e-30))
        return np.abs(pred_fit - true_new) / den, np.abs(pred_prior - true_new) / den

    def calibration_errors(self, params: AcquisitionParams, factors=None) -> tuple[np.ndarray, np.ndarray]:
        """Expected relative errors (fractions, (T,) each) of the fit and of priors-only at ``params``."""
        e_fit, e_prior = self.subject_errors(params, factors)
        return e_fit.mean(axis=0), e_prior.mean(axis=0)

    def choose(self, params: AcquisitionParams, factors=None) -> np.ndarray:
        """Per tissue: True where the fit is used (its expected error ≤ the priors')."""
        key = params.label()
        if key not in self._cache:
            ef, ep = self.subject_errors(params, factors)
            gain = ep - ef                       # paired: > 0 where the fit did better
            k = gain.shape[0]
            mean = gain.mean(axis=0)
            se = gain.std(axis=0, ddof=1) / np.sqrt(k) if k > 1 else np.zeros_like(mean)
            use_fit = mean >= Z_MARGIN * se - 1e-12
            self._cache[key] = use_fit
            self.record[key] = {t: {"choice": "fit" if use_fit[i] else "priors",
                                    "calibration_error_fit_pct": float(100 * ef[:, i].mean()),
                                    "calibration_error_priors_pct": float(100 * ep[:, i].mean()),
                                    "gain_se_pct": float(100 * se[i])}
                                for i, t in enumerate(self.tissues)}
        return self._cache[key]

    # ---------------------------------------------------------------- derivative
    def deltas(self, params: AcquisitionParams, factors=None) -> np.ndarray:
        """Per-tissue increments ``ĉ·[S_t(θ̂; target) − S_t(θ̂; source)]`` of the chosen estimator (float64)."""
        seq = self.sequence
        d_fit = self.fit_scale * (_sig(seq, params, _apply(self.fit_params, factors))
                                  - _sig(seq, self.source, self.fit_params))
        d_pr = self.prior_scale * (_sig(seq, params, _apply(self.prior_params, factors))
                                   - _sig(seq, self.source, self.prior_params))
        return np.where(self.choose(params, factors), d_fit, d_pr)

    def summary(self) -> dict:
        """What was chosen for every target simulated so far (JSON-ready)."""
        return {"calibration_subjects": int(self.cal_measured.shape[0]), "targets": dict(self.record)}


def _sig(seq: str, params: AcquisitionParams, p: tuple) -> np.ndarray:
    return _est.tissue_signals(seq, params, *p)


def _apply(p: tuple, factors) -> tuple:
    """Multiply T1/T2/T2* by per-tissue field factors (None: unchanged)."""
    if factors is None:
        return p
    pd, t1, t2, t2s = p
    return pd, t1 * factors["t1"], t2 * factors["t2"], t2s * factors["t2star"]


def build_auto(signals: _est.TissueSignals, sequence: str, source: AcquisitionParams, priors: Mapping, *,
               tolerance: float = 0.01, prior_sd: Mapping[str, float] | None = None,
               n_calibration: int = N_CALIBRATION, seed: int = 0) -> tuple[dict, _est.FitReport, AutoChooser]:
    """Fit the image both ways and calibrate; returns ``(fit parameters, FitReport, AutoChooser)``."""
    from .posterior import PRIOR_LOG_SD

    seq = sequence.lower()
    tissues = signals.tissues
    apparent, rep = _est.fit_apparent_parameters(signals, seq, source, priors, tolerance=tolerance,
                                                 prior_sd=prior_sd)
    fit_p = _est.param_arrays(tissues, apparent)
    prior_p = _est.param_arrays(tissues, priors)
    fit_c = _est.estimate_scale(signals, _sig(seq, source, fit_p))
    prior_c = _est.estimate_scale(signals, _sig(seq, source, prior_p))
    rng = np.random.default_rng(seed)
    k = int(n_calibration)
    sd = PRIOR_LOG_SD
    truth = tuple(base[None, :] * np.exp(sd[name] * rng.standard_normal((k, len(tissues))))
                  for base, name in zip(prior_p, ("pd", "t1", "t2", "t2star")))
    se = np.where(np.isfinite(signals.stderr), signals.stderr, 0.0)
    cal_m = np.empty((k, len(tissues)))
    cal_fit = tuple(np.empty((k, len(tissues))) for _ in range(4))
    cal_fc = np.empty(k)
    cal_pc = np.empty(k)
    ok = np.ones(k, dtype=bool)
    for j in range(k):
        tj = tuple(a[j] for a in truth)
        m = prior_c * _sig(seq, source, tj) + se * rng.standard_normal(len(tissues))
        sig = _est.TissueSignals(tissues, m, signals.stderr, signals.mass, signals.gram, signals.gram @ m,
                                 signals.n_voxels, signals.method, signals.fitted)
        try:
            app_j, _ = _est.fit_apparent_parameters(sig, seq, source, priors, tolerance=tolerance,
                                                    prior_sd=prior_sd)
            pj = _est.param_arrays(tissues, app_j)
            cal_fc[j] = _est.estimate_scale(sig, _sig(seq, source, pj))
            cal_pc[j] = _est.estimate_scale(sig, _sig(seq, source, prior_p))
        except _est.EstimationError:  # a draw the estimators refuse (e.g. every signal <= 0): left out
            ok[j] = False
            continue
        for a, v in zip(cal_fit, pj):
            a[j] = v
        cal_m[j] = m
    if not ok.any():
        raise _est.EstimationError("estimator 'auto': no calibration subject could be estimated at the source "
                                   "protocol; use estimator 'fit' or 'priors'")
    truth = tuple(a[ok] for a in truth)
    cal_fit = tuple(a[ok] for a in cal_fit)
    cal_m, cal_fc, cal_pc = cal_m[ok], cal_fc[ok], cal_pc[ok]
    k = int(ok.sum())
    chooser = AutoChooser(tissues=tissues, sequence=seq, source=source, fit_params=fit_p, fit_scale=fit_c,
                          prior_params=prior_p, prior_scale=prior_c, measured=signals.mean, cal_truth=truth,
                          cal_fit=cal_fit, cal_fit_scale=cal_fc, cal_prior_scale=cal_pc, cal_measured=cal_m,
                          true_scale=prior_c, fitted=signals.fitted)
    rep.optimizer_message = (f"estimator 'auto': per target and tissue the fit or priors-only, whichever had the "
                             f"lower error on {k} calibration subjects drawn from the prior; fit: "
                             f"{rep.optimizer_message}")
    rep.auto = chooser.record
    return apparent, rep, chooser
