"""Estimation step of paper 000 (Sec. 2.1.3): tissue signals, apparent parameters, global scale, texture.

Image model (``shift-simulator.md`` §1)::

    S(x) = c · Σ_t f_t(x) · S_t(θ; PD_t, T1_t, T2_t) + T(x)

What is estimated, exactly, and how
-----------------------------------
1. **Measured tissue signals** ``m_t`` (:func:`measure_tissue_signals`). With a
   zero-mean texture, ``E[S(x)] = Σ_t f_t(x)·m_t`` with ``m_t = c·S_t(θ_0)``.
   ``m`` is the ordinary least-squares solution of that linear model over the
   brain voxels (``Σ_t f_t > 0``, or a given brain mask): in pure-tissue voxels it
   is the paper's "mean signal in tissue t", and partial-volume voxels add
   information instead of being thrown away. ``method="pure"`` uses the paper's
   literal estimator instead (mean over voxels with ``f_t ≥ 0.9``). Standard
   errors come from the residual variance. Tissues with less than
   ``min_voxels`` voxel-equivalents of fraction are *not fitted* and keep their
   prior parameters.
2. **Apparent tissue parameters** (:func:`fit_apparent_parameters`). Contrast
   ratios ``r_t = m_t / m_ref`` cancel ``c``; the reference is the tissue with the
   largest fraction mass among those whose signal is at least 10 % of the
   brightest one. Per fitted tissue the free parameters are ``log PD_t``,
   ``log T1_t`` and ``log T2_t`` (``T2*_t`` for GRE and MPRAGE). One contrast
   gives at most (tissues − 1) ratios for 3 × tissues unknowns, so the problem
   is regularised toward the literature priors of the relaxation table::

       minimise  Σ_{t≠ref} ((r_t − ŝ_t/ŝ_ref) / σ_t)²  +  Σ_{t,p} (log(p_t / p_t,prior) / sd_p)²

   with ``σ_t = sqrt(tol² + SE(r_t)²)`` (``tol`` = 1 % of the reference signal by
   default, SE from step 1), prior widths ``sd`` = 0.10 (PD), 0.20 (T1),
   0.25 (T2/T2*) in log units, and hard bounds ×[0.5, 1.5] (PD), ×[0.5, 2]
   (T1), ×[0.4, 2.5] (T2/T2*) around the prior (scipy ``least_squares``, TRF).
   Residuals are linear in the ratio, so a nulled tissue (CSF in FLAIR) is
   fitted on an absolute scale and cannot blow up. The solution is the
   smallest change from the priors, in prior-width units, that reproduces the
   measured contrast: which parameter absorbs a mismatch depends on the
   sequence's sensitivities. The apparent values are what the simulation uses;
   they are not relaxometry (paper 000, Table 4).
3. **Global scale** ``c`` (:func:`estimate_scale`): least squares of
   ``S ≈ c · Σ_t f_t·Ŝ_t(θ_0)`` over the same voxels (the paper's Eq. 4 pooled
   over tissues, weighted by their fraction mass).
4. **Texture** ``T = S − c·Σ_t f_t·Ŝ_t(θ_0)`` (:func:`texture_map`).

Everything here scales: multiplying the image by ``k`` multiplies ``m``, ``c``
and ``T`` by ``k`` and changes nothing else (ratios are scale free).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..io.params import AcquisitionParams

#: Sequences whose signal uses T2 (spin-echo family) or T2* (gradient-echo family).
T2_KIND = {"se": "t2", "ir": "t2", "flair": "t2", "dir": "t2", "gre": "t2star", "mprage": "t2star"}

#: Prior widths (log units) and bounds (factors of the prior) of the fitted parameters.
PRIOR_SD = {"pd": 0.10, "t1": 0.20, "t2": 0.25}
BOUNDS = {"pd": (0.5, 1.5), "t1": (0.5, 2.0), "t2": (0.4, 2.5)}

#: A tissue needs at least this many voxel-equivalents of fraction to be fitted.
MIN_VOXELS = 20.0


class EstimationError(InputError):
    """The image and tissue maps do not allow an estimate (no tissue, zero signal...)."""


@dataclass
class TissueSignals:
    """Step 1 result: measured mean pure-tissue signals ``m_t = c·S_t(θ_0)``."""

    tissues: tuple[str, ...]
    mean: np.ndarray          # (T,) m_t
    stderr: np.ndarray        # (T,) standard error of m_t
    mass: np.ndarray          # (T,) Σ_x f_t(x) over the voxels used (voxel-equivalents)
    gram: np.ndarray          # (T, T) Σ_x f_s f_t
    moment: np.ndarray        # (T,) Σ_x f_t S
    n_voxels: int
    method: str
    fitted: tuple[bool, ...]  # enough mass to fit


@dataclass
class FitReport:
    """What the estimation did, for logs, reports and tests."""

    method: str
    reference: str | None
    measured: dict[str, float]
    stderr: dict[str, float]
    mass: dict[str, float]
    ratios_measured: dict[str, float]
    ratios_fitted: dict[str, float]
    fitted_tissues: tuple[str, ...]
    prior_tissues: tuple[str, ...]
    fitted_parameters: tuple[str, ...]
    cost: float
    optimizer_message: str
    notes: list[str] = field(default_factory=list)
    #: estimator 'auto' only: per target label and tissue the choice (fit/priors) and calibration errors (%)
    auto: dict | None = None

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


# --------------------------------------------------------------------------- signal evaluation
def tissue_signals(sequence: str, params: AcquisitionParams, pd, t1, t2, t2star) -> np.ndarray:
    """``S_t(θ)`` for arrays of tissue parameters (one value per tissue), as float64."""
    from ..physics.signal import sequence_signal

    pd, t1, t2, t2star = (np.asarray(v, dtype=np.float64) for v in (pd, t1, t2, t2star))
    out = sequence_signal(sequence, params, pd=pd, t1_ms=t1, t2_ms=t2, t2star_ms=t2star)
    return np.asarray(out, dtype=np.float64).reshape(pd.shape)


def param_arrays(tissues: Sequence[str], table: Mapping) -> tuple[np.ndarray, ...]:
    """``(pd, t1_ms, t2_ms, t2star_ms)`` arrays (float64, one entry per tissue, in ``tissues`` order) from a
    table of :class:`~neuroshift.physics.relaxation.TissueParameters`-like records."""
    pd = np.array([table[t].pd for t in tissues], dtype=np.float64)
    t1 = np.array([table[t].t1_ms for t in tissues], dtype=np.float64)
    t2 = np.array([table[t].t2_ms for t in tissues], dtype=np.float64)
    t2s = np.array([table[t].t2star_ms for t in tissues], dtype=np.float64)
    return pd, t1, t2, t2s


# --------------------------------------------------------------------------- step 1
def measure_tissue_signals(image: np.ndarray, stack: np.ndarray, tissues: Sequence[str], *,
                           mask: np.ndarray | None = None, method: str = "regression",
                           min_voxels: float = MIN_VOXELS) -> TissueSignals:
    """Measured tissue signals from a flat image (N,) and a fraction stack (T, N), both float32.

    ``mask`` (N,) bool restricts the voxels; by default the voxels with any tissue.
    """
    tissues = tuple(tissues)
    n_t = len(tissues)
    y = image.astype(np.float64, copy=False) if image.dtype != np.float32 else image
    if mask is None:
        mask = stack.sum(axis=0, dtype=np.float32) > 0
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        raise EstimationError("no voxel has a tissue fraction above 0 (inside the brain mask); check the tissue maps")
    F = stack[:, idx].astype(np.float64)
    yv = np.asarray(y[idx], dtype=np.float64)
    mass = F.sum(axis=1)
    gram = F @ F.T
    moment = F @ yv
    fitted = tuple(bool(m >= min_voxels) for m in mass)
    mean = np.zeros(n_t)
    stderr = np.full(n_t, np.inf)
    if method == "regression":
        use = np.array(fitted)
        if use.any():
            G = gram[np.ix_(use, use)]
            b = moment[use]
            sol, *_ = np.linalg.lstsq(G, b, rcond=None)
            mean[use] = sol
            resid_ss = float(yv @ yv - 2.0 * sol @ b + sol @ G @ sol)
            dof = max(idx.size - int(use.sum()), 1)
            sigma2 = max(resid_ss, 0.0) / dof
            cov = sigma2 * np.linalg.pinv(G)
            stderr[use] = np.sqrt(np.maximum(np.diag(cov), 0.0))
    elif method == "pure":
        for i in range(n_t):
            pure = F[i] >= 0.9
            if pure.sum() >= min_voxels:
                vals = yv[pure]
                mean[i] = vals.mean()
                stderr[i] = vals.std(ddof=1) / np.sqrt(vals.size) if vals.size > 1 else np.inf
            else:
                fitted = fitted[:i] + (False,) + fitted[i + 1:]
    else:
        raise InputError(f"unknown estimation method '{method}'; use 'regression' or 'pure'")
    return TissueSignals(tissues, mean, stderr, mass, gram, moment, int(idx.size), method, fitted)


# --------------------------------------------------------------------------- step 2
def fit_apparent_parameters(signals: TissueSignals, sequence: str, source: AcquisitionParams, priors: Mapping,
                            *, tolerance: float = 0.01, prior_sd: Mapping[str, float] | None = None
                            ) -> tuple[dict, FitReport]:
    """Fit apparent (PD, T1, T2 or T2*) per tissue to the measured contrast ratios, regularised to ``priors``.

    Returns ``({tissue: TissueParameters}, FitReport)``.
    """
    from scipy.optimize import least_squares

    from ..physics.relaxation import TissueParameters

    seq = sequence.lower()
    kind = T2_KIND[seq]
    sd = {**PRIOR_SD, **(prior_sd or {})}
    tissues = signals.tissues
    pd0, t10, t20, t2s0 = param_arrays(tissues, priors)
    fitted_mask = np.array(signals.fitted, dtype=bool)
    mean = signals.mean
    notes: list[str] = []

    # Reference tissue: the most abundant among those with at least 10 % of the brightest signal.
    ref = None
    if fitted_mask.any():
        bright = np.where(fitted_mask, mean, -np.inf)
        top = bright.max()
        if top <= 0:
            raise EstimationError(
                "every tissue's mean signal is zero or negative; the image cannot be described by the "
                f"{seq.upper()} signal equation with these tissue maps")
        cand = fitted_mask & (mean >= 0.1 * top)
        ref = int(np.argmax(np.where(cand, signals.mass, -1.0)))

    others = [i for i in range(len(tissues)) if fitted_mask[i] and i != ref]
    free = [i for i in range(len(tissues)) if fitted_mask[i]] if others else []
    names = []
    for i in free:
        names += [f"{tissues[i]}.PD", f"{tissues[i]}.T1", f"{tissues[i]}.{'T2' if kind == 't2' else 'T2*'}"]

    def unpack(x: np.ndarray):
        pd, t1, t2, t2s = pd0.copy(), t10.copy(), t20.copy(), t2s0.copy()
        for j, i in enumerate(free):
            pd[i] = pd0[i] * np.exp(x[3 * j])
            t1[i] = t10[i] * np.exp(x[3 * j + 1])
            if kind == "t2":
                t2[i] = t20[i] * np.exp(x[3 * j + 2])
            else:
                t2s[i] = t2s0[i] * np.exp(x[3 * j + 2])
        return pd, t1, t2, t2s

    ratios_measured: dict[str, float] = {}
    ratios_fitted: dict[str, float] = {}
    cost = 0.0
    message = "nothing to fit (fewer than two tissues with enough voxels): priors kept"
    x_hat = np.zeros(3 * len(free))
    if free:
        r_meas = mean[others] / mean[ref]
        se_ratio = np.abs(r_meas) * np.sqrt((signals.stderr[others] / np.maximum(np.abs(mean[others]), 1e-30)) ** 2
                                            + (signals.stderr[ref] / mean[ref]) ** 2)
        se_ratio = np.where(np.isfinite(se_ratio), se_ratio, 0.0)
        se_ratio = np.minimum(se_ratio, np.abs(mean[others] / mean[ref]) + 1.0)
        sigma = np.sqrt(tolerance ** 2 + se_ratio ** 2)
        prior_w = np.tile([1.0 / sd["pd"], 1.0 / sd["t1"], 1.0 / sd["t2"]], len(free))
        lo = np.tile(np.log([BOUNDS["pd"][0], BOUNDS["t1"][0], BOUNDS["t2"][0]]), len(free))
        hi = np.tile(np.log([BOUNDS["pd"][1], BOUNDS["t1"][1], BOUNDS["t2"][1]]), len(free))

        def residuals(x: np.ndarray) -> np.ndarray:
            s = tissue_signals(seq, source, *unpack(x))
            sref = s[ref] if abs(s[ref]) > 1e-30 else 1e-30
            return np.concatenate([(r_meas - s[others] / sref) / sigma, x * prior_w])

        sol = least_squares(residuals, x_hat, bounds=(lo, hi), method="trf", x_scale=1.0,
                            xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
        x_hat = sol.x
        cost = float(sol.cost)
        message = str(sol.message)
        s_fit = tissue_signals(seq, source, *unpack(x_hat))
        for j, i in enumerate(others):
            ratios_measured[tissues[i]] = float(r_meas[j])
            ratios_fitted[tissues[i]] = float(s_fit[i] / s_fit[ref])
        worst = max(abs(ratios_measured[t] - ratios_fitted[t]) for t in ratios_measured)
        if worst > 5 * tolerance:
            notes.append(f"contrast not reproduced within the bounds around the priors (largest ratio error "
                         f"{worst:.3f}); check the acquisition parameters, field strength and tissue maps")
    pd, t1, t2, t2s = unpack(x_hat)
    out = {}
    for i, t in enumerate(tissues):
        src = priors[t].source
        label = "apparent (fitted to the image contrast)" if i in free else (
            "prior (reference of the contrast ratios)" if i == ref and free else "prior (not fitted)")
        out[t] = TissueParameters(float(pd[i]), float(t1[i]), float(t2[i]), float(t2s[i]),
                                  f"{label}; prior: {src}")
    skipped = tuple(t for i, t in enumerate(tissues) if not fitted_mask[i])
    if skipped:
        notes.append(f"too little tissue to fit ({', '.join(skipped)}): prior parameters kept")
    report = FitReport(
        method=signals.method,
        reference=tissues[ref] if ref is not None else None,
        measured={t: float(mean[i]) for i, t in enumerate(tissues)},
        stderr={t: float(signals.stderr[i]) for i, t in enumerate(tissues)},
        mass={t: float(signals.mass[i]) for i, t in enumerate(tissues)},
        ratios_measured=ratios_measured,
        ratios_fitted=ratios_fitted,
        fitted_tissues=tuple(tissues[i] for i in free),
        prior_tissues=tuple(t for i, t in enumerate(tissues) if i not in free),
        fitted_parameters=tuple(names),
        cost=cost,
        optimizer_message=message,
        notes=notes,
    )
    return out, report


def priors_only_parameters(signals: TissueSignals, sequence: str, source: AcquisitionParams, priors: Mapping
                           ) -> tuple[dict, FitReport]:
    """The baseline estimator: literature priors unchanged; only the scale ``c`` is fitted (by the caller).

    Returns ``({tissue: TissueParameters}, FitReport)`` in the shape of
    :func:`fit_apparent_parameters`, with the contrast the priors imply next to the measured one.
    """
    from ..physics.relaxation import TissueParameters

    tissues = signals.tissues
    pd, t1, t2, t2s = param_arrays(tissues, priors)
    s = tissue_signals(sequence.lower(), source, pd, t1, t2, t2s)
    fitted = [i for i, f in enumerate(signals.fitted) if f]
    ref = None
    if fitted:
        top = max(signals.mean[i] for i in fitted)
        cand = [i for i in fitted if signals.mean[i] >= 0.1 * top] or fitted
        ref = max(cand, key=lambda i: signals.mass[i])
    ratios_measured, ratios_prior = {}, {}
    if ref is not None and signals.mean[ref] > 0 and s[ref] != 0:
        for i in fitted:
            if i != ref:
                ratios_measured[tissues[i]] = float(signals.mean[i] / signals.mean[ref])
                ratios_prior[tissues[i]] = float(s[i] / s[ref])
    out = {t: TissueParameters(priors[t].pd, priors[t].t1_ms, priors[t].t2_ms, priors[t].t2star_ms,
                               f"prior (estimator 'priors': literature values, only c fitted); prior: "
                               f"{priors[t].source}") for t in tissues}
    report = FitReport(
        method=signals.method, reference=tissues[ref] if ref is not None else None,
        measured={t: float(signals.mean[i]) for i, t in enumerate(tissues)},
        stderr={t: float(signals.stderr[i]) for i, t in enumerate(tissues)},
        mass={t: float(signals.mass[i]) for i, t in enumerate(tissues)},
        ratios_measured=ratios_measured, ratios_fitted=ratios_prior, fitted_tissues=(),
        prior_tissues=tuple(tissues), fitted_parameters=(), cost=0.0,
        optimizer_message="estimator 'priors': no parameter fitted", notes=[])
    return out, report


# --------------------------------------------------------------------------- steps 3 and 4
def estimate_scale(signals: TissueSignals, s0: np.ndarray) -> float:
    """Least-squares ``c`` of ``S ≈ c·Σ_t f_t·s0_t`` from the Gram matrix and moments of step 1."""
    s0 = np.asarray(s0, dtype=np.float64)
    den = float(s0 @ signals.gram @ s0)
    if not np.isfinite(den) or den <= 0:
        raise EstimationError("the simulated baseline signal is zero in every tissue voxel; cannot estimate the "
                              "scale c (are the acquisition parameters at a signal null for all tissues?)")
    c = float(s0 @ signals.moment) / den
    if not np.isfinite(c) or c <= 0:
        raise EstimationError(f"the estimated scale c = {c:g} is not positive: the image does not look like the "
                              "given sequence and tissue maps (is it inverted, empty or mis-registered?)")
    return c


def texture_map(image: np.ndarray, stack: np.ndarray, weights: np.ndarray, box) -> np.ndarray:
    """``T = S − Σ_t w_t·f_t`` with ``w_t = c·Ŝ_t(θ_0)``; the fractions live in the bounding ``box`` only."""
    out = np.array(image, dtype=np.float32, copy=True)
    if stack.size:
        region = out[box]
        region -= (np.asarray(weights, dtype=np.float32) @ stack).reshape(region.shape)
    return out
