"""Posterior estimator: relaxation values consistent with the observed contrast(s), derivatives and intervals.

Why. One image gives at most (tissues − 1) contrast ratios for 3 × tissues
unknowns. The apparent-parameter fit (:func:`~neuroshift.simulate.estimate.fit_apparent_parameters`)
picks *one* parameter set that reproduces them — the smallest change from the
priors — and when the mismatch really lies in a direction the image cannot see
(e.g. T2 or PD in a T1-weighted image) it moves T1 the wrong way and the
derivative ends up worse than the literature priors alone (issue 15). Here
every parameter set that is consistent with the observed contrast counts, in
proportion to its prior probability and its likelihood:

* **Prior**: per tissue, independent log-normal PD, T1, T2, T2* centred on the
  relaxation table, log-SDs :data:`PRIOR_LOG_SD` (the spread between published
  sources; see :mod:`neuroshift.physics.relaxation`).
* **Likelihood** of contrast ``c`` (one per co-registered image: joint
  estimation when several are given): ``Π_t N(r_ct | S_ct(θ_t)/S_c,ref(θ_ref), σ_ct)``
  with the measured ratios ``r_ct = m_ct/m_c,ref`` and ``σ_ct = sqrt(tol² + SE²)``
  exactly as in the fit.
* **Sampling**: importance sampling, nested so that it stays efficient: ``J``
  draws of the reference tissue, ``K`` draws of every other tissue; given the
  reference, tissues are independent, so the weight of the pair ``(j, k)`` for
  tissue ``t`` is ``W_j·w_t(k | j)`` with ``w_t(k | j) ∝ ρ_k·L_t(j, k)`` and
  ``W_j ∝ ρ_j·Π_t Σ_k ρ_k·L_t(j, k)`` (ρ = prior / proposal density). The
  proposal starts at the prior and is adapted over four rounds (weighted
  log-space mean and covariance ×2; the likelihood widened ×4, ×2, ×1, ×1;
  with several contrasts a first round uses the primary one only), which keeps
  the effective sample size up when the contrasts pin
  the parameters down much more tightly than the prior does.
* **Derivative**: per sample the scale is the one the reference implies,
  ``c_j = m_ref / S_ref(θ_ref^j; θ_0)``, and the tissue increment is
  ``Δ_t = c_j·[S_t(θ_t^k; θ_new) − S_t(θ_t^k; θ_0)]``. The derivative uses the
  posterior mean of ``Δ_t`` (zero at θ_0 for every sample, so the identity is
  exact). Its 5-95 % weighted quantiles give the **per-tissue 90 % interval**
  of the target tissue signal ``m_t + Δ_t``; the **± map** is
  ``Σ_t f_t·(hi_t − lo_t)/2`` (half-width, image units).

Along directions the contrast identifies, the posterior moves away from the
prior; along the others it keeps the prior's spread, so the prediction there is
the prior's average — the fit is "used only for identifiable directions". Under
the prior, the posterior mean is the estimator of least expected squared error
among all functions of the data, the priors-only estimator included.
Times in ms; signals in image units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..io.params import AcquisitionParams
from . import estimate as _est

#: Log-SD of the prior around the table value (PD, T1, T2, T2*); ~ the spread between published sources.
PRIOR_LOG_SD = {"pd": 0.10, "t1": 0.20, "t2": 0.25, "t2star": 0.25}

#: Default sample counts: reference-tissue draws J and per-tissue draws K.
N_REFERENCE = 128
N_TISSUE = 4096

#: Central interval reported (fraction).
INTERVAL = 0.90


@dataclass
class Contrast:
    """One observed image of the subject: its sequence, parameters and measured tissue signals."""

    sequence: str
    params: AcquisitionParams
    signals: _est.TissueSignals


@dataclass
class Posterior:
    """Importance-weighted prior samples of the tissue parameters given one or more contrasts."""

    tissues: tuple[str, ...]
    ref: int
    primary: Contrast
    samples: dict                 # name -> (T, K) arrays: pd, t1, t2, t2star (row ref unused)
    ref_samples: dict             # name -> (J,) arrays of the reference tissue
    ref_weight: np.ndarray        # (J,) W_j, sums to 1
    cond_weight: dict             # tissue index -> (J, K) w_t(k | j), rows sum to 1
    scale_j: np.ndarray           # (J,) c_j implied by the reference
    s0: np.ndarray                # (T, K) primary-contrast source signal per sample (ref row: unused)
    s0_ref: np.ndarray            # (J,)
    fitted: tuple[bool, ...]
    prior_point: dict             # tissue -> TissueParameters (unfitted tissues use these)
    scale_prior: float            # c with the prior point (for unfitted tissues)
    ess: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------- predictions
    def _target_signals(self, params: AcquisitionParams, factors=None):
        seq = self.primary.sequence
        smp = dict(self.samples)
        ref = dict(self.ref_samples)
        if factors is not None:
            for key, fac in factors.items():
                smp[key] = smp[key] * fac[:, None]
                ref[key] = ref[key] * fac[self.ref]
        s_new = _signal(seq, params, smp)
        s_new_ref = _signal(seq, params, ref)
        return s_new, s_new_ref

    def increments(self, params: AcquisitionParams, factors=None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per tissue: (values, weights) of the increment Δ_t over the weighted samples (flattened)."""
        s_new, s_new_ref = self._target_signals(params, factors)
        out = []
        for i, t in enumerate(self.tissues):
            if not self.fitted[i]:
                out.append(self.increments_unfitted(i, params))
            elif i == self.ref:
                out.append((self.scale_j * (s_new_ref - self.s0_ref), self.ref_weight))
            else:
                vals = self.scale_j[:, None] * (s_new[i] - self.s0[i])[None, :]
                w = self.ref_weight[:, None] * self.cond_weight[i]
                out.append((vals.reshape(-1), w.reshape(-1)))
        return out

    def deltas(self, params: AcquisitionParams, factors=None) -> np.ndarray:
        """Posterior-mean per-tissue increments ``E[Δ_t]`` (float64, tissue order)."""
        s_new, s_new_ref = self._target_signals(params, factors)
        wc = self.ref_weight * self.scale_j
        out = np.zeros(len(self.tissues))
        for i in range(len(self.tissues)):
            if not self.fitted[i]:
                v, w = self.increments_unfitted(i, params)
                out[i] = float(v[0])
            elif i == self.ref:
                out[i] = float(wc @ (s_new_ref - self.s0_ref))
            else:
                out[i] = float(wc @ (self.cond_weight[i] @ (s_new[i] - self.s0[i])))
        return out

    def increments_unfitted(self, i: int, params: AcquisitionParams):
        """Increment of a tissue with too few voxels: prior point values and the prior-point scale."""
        tp = self.prior_point[self.tissues[i]]
        arrs = ([tp.pd], [tp.t1_ms], [tp.t2_ms], [tp.t2star_ms])
        d = self.scale_prior * float(_est.tissue_signals(self.primary.sequence, params, *arrs)[0]
                                     - _est.tissue_signals(self.primary.sequence, self.primary.params, *arrs)[0])
        return np.array([d]), np.array([1.0])

    def intervals(self, params: AcquisitionParams, factors=None, level: float = INTERVAL) -> dict:
        """Per tissue: posterior mean, ``level`` interval (lo, hi) of the target tissue signal ``m_t + Δ_t``."""
        m = self.primary.signals.mean
        out = {}
        for i, (v, w) in enumerate(self.increments(params, factors)):
            lo, hi = weighted_quantiles(v, w, [(1 - level) / 2, (1 + level) / 2])
            base = m[i] if self.fitted[i] else 0.0
            mean = float(np.dot(v, w))
            out[self.tissues[i]] = {"mean": base + mean, "lo": base + lo, "hi": base + hi,
                                    "halfwidth": (hi - lo) / 2.0, "fitted": bool(self.fitted[i])}
        return out

    def posterior_mean_parameters(self) -> dict:
        """Weighted geometric-mean parameters per tissue (for reports; the derivative uses the full posterior)."""
        out = {}
        for i, t in enumerate(self.tissues):
            if not self.fitted[i]:
                tp = self.prior_point[t]
                out[t] = {"pd": tp.pd, "t1": tp.t1_ms, "t2": tp.t2_ms, "t2star": tp.t2star_ms}
                continue
            if i == self.ref:
                w, src = self.ref_weight, self.ref_samples
            else:
                w, src = (self.ref_weight[:, None] * self.cond_weight[i]).sum(axis=0), {
                    k: v[i] for k, v in self.samples.items()}
            out[t] = {k: float(np.exp(np.dot(w, np.log(src[k])))) for k in ("pd", "t1", "t2", "t2star")}
        return out


# --------------------------------------------------------------------------- helpers
def weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Quantiles of a weighted sample (weights need not be normalised); entries of negligible weight are skipped."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if values.size == 1:
        return [float(values[0])] * len(qs)
    keep = weights > weights.max() * 1e-12
    v, w = values[keep], weights[keep]
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    wn = w / w.sum()
    mid = np.cumsum(wn) - 0.5 * wn  # mid-point rule
    return [float(np.interp(q, mid, v)) for q in qs]


def _signal(sequence: str, params: AcquisitionParams, smp: Mapping[str, np.ndarray]) -> np.ndarray:
    return _est.tissue_signals(sequence, params, smp["pd"], smp["t1"], smp["t2"], smp["t2star"])


def _draw(tp, n: int, rng: np.random.Generator, sd: Mapping[str, float]) -> dict:
    base = {"pd": tp.pd, "t1": tp.t1_ms, "t2": tp.t2_ms, "t2star": tp.t2star_ms}
    return {k: base[k] * np.exp(sd[k] * rng.standard_normal(n)) for k in base}


def _reference(signals: _est.TissueSignals) -> int | None:
    fitted = np.array(signals.fitted, dtype=bool)
    if not fitted.any():
        return None
    mean = signals.mean
    top = np.where(fitted, mean, -np.inf).max()
    if top <= 0:
        raise _est.EstimationError("every tissue's mean signal is zero or negative; cannot estimate the contrast")
    cand = fitted & (mean >= 0.1 * top)
    return int(np.argmax(np.where(cand, signals.mass, -1.0)))


def _ratio_stats(sig: _est.TissueSignals, ref: int, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    m, se = sig.mean, sig.stderr
    r = m / m[ref]
    se_r = np.abs(r) * np.sqrt((se / np.maximum(np.abs(m), 1e-30)) ** 2 + (se[ref] / m[ref]) ** 2)
    se_r = np.where(np.isfinite(se_r), se_r, 0.0)
    se_r = np.minimum(se_r, np.abs(r) + 1.0)
    return r, np.sqrt(tolerance ** 2 + se_r ** 2)


# --------------------------------------------------------------------------- estimation
def posterior_from_contrasts(contrasts: Sequence[Contrast], priors: Mapping, *, tolerance: float = 0.01,
                             prior_log_sd: Mapping[str, float] | None = None, n_reference: int = N_REFERENCE,
                             n_tissue: int = N_TISSUE, seed: int = 0) -> Posterior:
    """The posterior of the tissue parameters given ``contrasts`` (the first one is the image to simulate).

    Every contrast must list the same tissues in the same order (one co-registered
    subject). Deterministic for a given ``seed``.
    """
    if not contrasts:
        raise _est.EstimationError("no contrast to estimate from")
    primary = contrasts[0]
    tissues = primary.signals.tissues
    for c in contrasts[1:]:
        if c.signals.tissues != tissues:
            raise _est.EstimationError(f"joint estimation needs the same tissues in every image: "
                                       f"{', '.join(tissues)} vs {', '.join(c.signals.tissues)}")
    sd = {**PRIOR_LOG_SD, **(prior_log_sd or {})}
    rng = np.random.default_rng(seed)
    fitted = tuple(bool(a and all(c.signals.fitted[i] for c in contrasts))
                   for i, a in enumerate(primary.signals.fitted))
    sig0 = primary.signals
    ref = _reference(_est.TissueSignals(tissues, sig0.mean, sig0.stderr, sig0.mass, sig0.gram, sig0.moment,
                                        sig0.n_voxels, sig0.method, fitted))
    point = {t: priors[t] for t in tissues}
    pd0, t10, t20, t2s0 = _est.param_arrays(tissues, point)
    s_prior = _est.tissue_signals(primary.sequence, primary.params, pd0, t10, t20, t2s0)
    fitted_arr = np.array(fitted)
    s_prior_fit = np.where(fitted_arr, s_prior, 0.0)
    scale_prior = _est.estimate_scale(sig0, s_prior_fit) if np.any(s_prior_fit) else 1.0
    notes: list[str] = []
    if ref is None:
        raise _est.EstimationError("no tissue has enough voxels to estimate the contrast")
    keys = ("pd", "t1", "t2", "t2star")
    center = np.log(np.array([[point[t].pd, point[t].t1_ms, point[t].t2_ms, point[t].t2star_ms]
                              for t in tissues]))                       # (T, 4)
    sd_vec = np.array([sd[k] for k in keys])
    # Proposals in log space, per tissue (T, 4) mean and (T, 4, 4) covariance; start at the prior.
    prop_mu = center.copy()
    prop_cov = np.repeat(np.diag(sd_vec ** 2)[None], len(tissues), axis=0)
    ref_mu, ref_cov = prop_mu[ref].copy(), prop_cov[ref].copy()
    # Adaptive importance sampling: the primary contrast first (when there are several), then all of
    # them; after each round the proposal is refitted to the weighted samples (covariance x 2).
    stages = ([(contrasts[:1], 1.0)] if len(contrasts) > 1 else []) + [(contrasts, 4.0), (contrasts, 2.0),
                                                                       (contrasts, 1.0), (contrasts, 1.0)]
    for round_, (stage, widen) in enumerate(stages):
        x = np.stack([rng.multivariate_normal(prop_mu[i], prop_cov[i], n_tissue) for i in range(len(tissues))])
        xr = rng.multivariate_normal(ref_mu, ref_cov, n_reference)
        log_corr = np.stack([_log_ratio(x[i], center[i], sd_vec, prop_mu[i], prop_cov[i])
                             for i in range(len(tissues))])             # (T, K) log prior - log proposal
        log_corr_ref = _log_ratio(xr, center[ref], sd_vec, ref_mu, ref_cov)
        samples = {k: np.exp(x[:, :, j]) for j, k in enumerate(keys)}
        ref_samples = {k: np.exp(xr[:, j]) for j, k in enumerate(keys)}
        ref_weight, cond, s0, s0_ref = _weigh(stage, tissues, fitted, ref, samples, ref_samples, log_corr,
                                              log_corr_ref, tolerance, widen)
        if round_ == len(stages) - 1:
            break
        w_ref = ref_weight
        ref_mu, ref_cov = _moments(xr, w_ref)
        for i in range(len(tissues)):
            if i in cond:
                prop_mu[i], prop_cov[i] = _moments(x[i], (w_ref[:, None] * cond[i]).sum(axis=0))
            elif i == ref:
                prop_mu[i], prop_cov[i] = ref_mu, ref_cov
    ess: dict[str, float] = {tissues[ref]: float(1.0 / np.sum(ref_weight ** 2))}
    for i, w in cond.items():
        marg = (ref_weight[:, None] * w).sum(axis=0)
        ess[tissues[i]] = float(1.0 / np.sum(marg ** 2))
    low = [t for t, e in ess.items() if e < 30]
    if low:
        notes.append(f"few effective prior samples for {', '.join(low)} (ESS < 30): the observed contrast is far "
                     "from the priors; check the acquisition parameters, field strength and tissue maps")
    scale_j = sig0.mean[ref] / np.where(np.abs(s0_ref) > 1e-30, s0_ref, 1e-30)
    return Posterior(tissues=tissues, ref=ref, primary=primary, samples=samples, ref_samples=ref_samples,
                     ref_weight=ref_weight, cond_weight=cond, scale_j=scale_j, s0=s0, s0_ref=s0_ref,
                     fitted=fitted, prior_point=point, scale_prior=scale_prior, ess=ess, notes=notes)


def _log_ratio(x: np.ndarray, center: np.ndarray, sd: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log prior − log proposal of log-space samples ``x`` (N, 4), up to a constant."""
    lp = -0.5 * np.sum(((x - center) / sd) ** 2, axis=1)
    d = x - mu
    sol = np.linalg.solve(cov, d.T).T
    lq = -0.5 * np.sum(d * sol, axis=1)
    return lp - lq


def _moments(x: np.ndarray, w: np.ndarray, inflate: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and inflated covariance of log-space samples (a floor keeps it positive definite)."""
    w = w / w.sum()
    mu = w @ x
    d = x - mu
    cov = (d * w[:, None]).T @ d
    return mu, inflate * cov + np.eye(x.shape[1]) * 1e-6


def _weigh(contrasts, tissues, fitted, ref, samples, ref_samples, log_corr, log_corr_ref, tolerance,
           widen: float = 1.0):
    """Nested importance weights: ``W_j`` of the reference draws and ``w_t(k | j)`` of every other tissue."""
    n_ref = log_corr_ref.size
    loglik = {i: np.broadcast_to(log_corr[i][None, :], (n_ref, log_corr.shape[1])).copy()
              for i in range(len(tissues)) if fitted[i] and i != ref}
    s0 = s0_ref = None
    for ci, c in enumerate(contrasts):
        s_all = _signal(c.sequence, c.params, samples)                # (T, K)
        s_ref = _signal(c.sequence, c.params, ref_samples)            # (J,)
        if ci == 0:
            s0, s0_ref = s_all, s_ref
        r, sigma = _ratio_stats(c.signals, ref, tolerance)
        sigma = sigma * widen  # tempering of the adaptation rounds (1 in the final one)
        safe_ref = np.where(np.abs(s_ref) > 1e-30, s_ref, 1e-30)
        for i in loglik:
            pred = s_all[i][None, :] / safe_ref[:, None]
            loglik[i] -= 0.5 * ((r[i] - pred) / sigma[i]) ** 2
    log_marg = log_corr_ref.copy()
    cond: dict[int, np.ndarray] = {}
    for i, ll in loglik.items():
        mx = ll.max(axis=1, keepdims=True)
        w = np.exp(ll - mx)
        tot = w.sum(axis=1, keepdims=True)
        log_marg += np.log(tot[:, 0]) + mx[:, 0]
        cond[i] = w / tot
    ref_weight = np.exp(log_marg - log_marg.max())
    ref_weight /= ref_weight.sum()
    return ref_weight, cond, s0, s0_ref


def field_factors(model, params: AcquisitionParams) -> dict | None:
    """Per-parameter (T,) factors that move the samples to the target's field strength (None: same field)."""
    field_new = params.field_T if params.field_T is not None else model.field_T
    if abs(field_new - model.field_T) <= 1e-9:
        return None
    from ..physics.relaxation import relaxation_table

    src = relaxation_table(model.field_T, model.relaxation)
    dst = relaxation_table(field_new, model.relaxation)
    order = model._order
    return {"t1": np.array([dst[t].t1_ms / src[t].t1_ms for t in order]),
            "t2": np.array([dst[t].t2_ms / src[t].t2_ms for t in order]),
            "t2star": np.array([dst[t].t2star_ms / src[t].t2star_ms for t in order])}


def uncertainty_map(model, target) -> tuple[np.ndarray, dict]:
    """± map (half-width of the 90 % interval, image units, float32) of ``model``'s derivative at ``target``.

    ``Σ_t f_t·halfwidth_t``: exact in pure-tissue voxels, an upper bound in partial-volume
    voxels (tissue errors taken as fully correlated). Returns ``(map, per-tissue intervals)``.
    """
    post = model.ensemble
    if post is None or not hasattr(post, "intervals"):
        raise _est.EstimationError(f"this model has no posterior (estimator '{model.estimator}'); "
                                   "use estimator='posterior' for uncertainty")
    params = model.resolve_target(target)
    iv = post.intervals(params, field_factors(model, params))
    hw = np.array([iv[t]["halfwidth"] for t in model._order], dtype=np.float32)
    out = np.zeros(model.shape, np.float32)
    if model._stack.size:
        region = out[model._box]
        region += (hw @ model._stack).reshape(region.shape)
    return out, iv
