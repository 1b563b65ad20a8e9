"""Hierarchical per-tissue priors of qSynth (paper 002, "Generation of Synthetic qMRI Maps").

Paper 002 fits, per tissue and per quantitative parameter, a *subject-level* distribution (μ, σ) and
over subjects a *population-level* one ``(μ_μ, σ_μ, μ_σ, σ_σ)``. One synthetic subject then draws

    μ_s ~ N(μ_μ, σ_μ)              the subject's mean of that tissue parameter
    σ_s ~ |N(μ_σ, σ_σ)|            the subject's within-tissue spread

and every voxel of the tissue gets ``μ_s + σ_s·z(x)``, ``z`` a unit-variance mix of a smooth random
field (within-tissue texture) and white noise (:mod:`neuroshift.qsynth.fields`).

Parameters are PD (relative to free water, CSF = 1), R1, R2 and R2* (all **1/s**); the generator turns
rates into times (ms) for the forward models. Paper 002 estimated its priors from its own qMRI
population (not published as numbers); here, as the paper allows for classes "where real data is not
available", the population means μ_μ come from the relaxation table of
:mod:`neuroshift.physics.relaxation` (the same values and sources as every other NeuroShift model;
``source`` of each prior names the table entry and its :data:`~neuroshift.physics.relaxation.PROVENANCE`
status). The spreads are **[assumption]**: between-subject CV (σ_μ/μ_μ) 10 % for brain tissues and 20 %
for lesions (lesion relaxation varies much more between patients, Parry2002), within-subject CV (μ_σ/μ_μ)
5 % (10 % lesion), σ_σ = μ_σ/3 — values of the order of published relaxometry spreads (Bojorquez2017
review), not a fit. Override any of them from a JSON file::

    {"WM": {"R1": {"mu_mu": 1.15, "sigma_mu": 0.08, "mu_sigma": 0.05, "sigma_sigma": 0.02,
                   "source": "my 3 T relaxometry"}},
     "fat": {"PD": {"mu_mu": 0.9, "sigma_mu": 0.05}, "R1": {"mu_mu": 2.7, "sigma_mu": 0.2},
             "R2": {"mu_mu": 14.0, "sigma_mu": 1.0}, "R2star": {"mu_mu": 30.0, "sigma_mu": 3.0}}}

New tissues (non-brain classes such as ``fat`` or ``skull``) must give ``mu_mu`` for every parameter;
missing spreads default to the CV rules above. Unknown keys and non-positive means are errors.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ParameterRangeError, UnreadableFileError

__all__ = ["PARAMETERS", "ParamPrior", "TissuePrior", "default_priors", "load_priors", "sample_subject",
           "priors_as_dict", "CV_BETWEEN", "CV_WITHIN"]

#: Quantitative parameters of the prior: PD (relative), rates in 1/s.
PARAMETERS = ("PD", "R1", "R2", "R2star")
_TABLE_FIELD = {"PD": "pd", "R1": "t1_ms", "R2": "t2_ms", "R2star": "t2star_ms"}
_KEYS = ("mu_mu", "sigma_mu", "mu_sigma", "sigma_sigma")

#: [assumption] between-subject CV (σ_μ / μ_μ): brain tissue, lesion.
CV_BETWEEN = {"tissue": 0.10, "lesion": 0.20}
#: [assumption] within-subject CV (μ_σ / μ_μ); σ_σ = μ_σ / 3.
CV_WITHIN = {"tissue": 0.05, "lesion": 0.10}


@dataclass(frozen=True)
class ParamPrior:
    """Population prior of one parameter of one tissue (units of the parameter: 1 or 1/s)."""

    mu_mu: float
    sigma_mu: float
    mu_sigma: float
    sigma_sigma: float
    source: str = ""

    def scaled(self, factor: float) -> "ParamPrior":
        """Spreads multiplied by ``factor`` (0: the degenerate prior, every draw equals μ_μ)."""
        return replace(self, sigma_mu=self.sigma_mu * factor, mu_sigma=self.mu_sigma * factor,
                       sigma_sigma=self.sigma_sigma * factor)


TissuePrior = dict  # parameter name -> ParamPrior


def _spreads(mu: float, lesion: bool) -> dict[str, float]:
    kind = "lesion" if lesion else "tissue"
    within = CV_WITHIN[kind] * mu
    return {"sigma_mu": CV_BETWEEN[kind] * mu, "mu_sigma": within, "sigma_sigma": within / 3.0}


def default_priors(field_T: float = 3.0, relaxation_override=None) -> dict[str, dict[str, ParamPrior]]:
    """Priors of CSF, GM, WM and lesion with μ_μ from the relaxation table at ``field_T`` (1.5 or 3 T)."""
    from ..physics.relaxation import SUPPORTED_FIELDS, provenance, relaxation_table

    table = relaxation_table(field_T, relaxation_override)
    builtin = any(abs(float(field_T) - f) <= 0.05 for f in SUPPORTED_FIELDS) and relaxation_override is None
    out: dict[str, dict[str, ParamPrior]] = {}
    for tissue, tp in table.items():
        out[tissue] = {}
        for p, attr in _TABLE_FIELD.items():
            v = float(getattr(tp, attr))
            mu = v if p == "PD" else 1000.0 / v
            status = provenance(field_T, tissue, attr).status if builtin else "user table"
            src = (f"mu_mu: relaxation table {field_T:g} T {tissue}.{attr} ({status}; {tp.source}); "
                   f"spreads: [assumption] CV rule of neuroshift.qsynth.priors")
            out[tissue][p] = ParamPrior(mu, **_spreads(mu, tissue == "lesion"), source=src)
    return out


def _positive(where: str, value: Any, *, zero_ok: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterRangeError(f"{where} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not zero_ok):
        raise ParameterRangeError(f"{where} must be a {'non-negative' if zero_ok else 'positive'} finite number, "
                                  f"got {value!r}")
    return v


def load_priors(override: str | os.PathLike | Mapping | None = None, *, field_T: float = 3.0
                ) -> dict[str, dict[str, ParamPrior]]:
    """Default priors updated by ``override`` (JSON path or mapping; see the module docstring)."""
    priors = default_priors(field_T)
    if override is None:
        return priors
    where = "priors"
    if isinstance(override, (str, os.PathLike)):
        where = str(override)
        try:
            doc = json.loads(Path(override).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UnreadableFileError(f"{override}: qSynth prior file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UnreadableFileError(f"{override}: cannot read the qSynth prior file ({exc})") from None
    else:
        doc = override
    if not isinstance(doc, Mapping):
        raise ParameterRangeError(f"{where}: must be a JSON object of tissue -> parameter -> prior")
    canon = {t.lower(): t for t in priors}
    for raw_t, params in doc.items():
        tissue = canon.get(str(raw_t).lower(), str(raw_t))
        if not isinstance(params, Mapping):
            raise ParameterRangeError(f"{where}: tissue '{raw_t}' must map to an object of parameter -> prior")
        new = tissue not in priors
        base = dict(priors.get(tissue, {}))
        for raw_p, spec in params.items():
            p = {"pd": "PD", "r1": "R1", "r2": "R2", "r2star": "R2star", "r2*": "R2star"}.get(str(raw_p).lower())
            if p is None:
                raise ParameterRangeError(f"{where}: {tissue}: unknown parameter '{raw_p}'; use "
                                          f"{', '.join(PARAMETERS)}")
            if not isinstance(spec, Mapping):
                raise ParameterRangeError(f"{where}: {tissue}.{p} must be an object with mu_mu (and spreads)")
            bad = set(spec) - set(_KEYS) - {"source"}
            if bad:
                raise ParameterRangeError(f"{where}: {tissue}.{p}: unknown key(s) {sorted(bad)}; use "
                                          f"{', '.join(_KEYS)}, source")
            if p not in base and "mu_mu" not in spec:
                raise ParameterRangeError(f"{where}: {tissue}.{p}: a new tissue needs mu_mu")
            mu = _positive(f"{where}: {tissue}.{p}.mu_mu", spec.get("mu_mu", base[p].mu_mu if p in base else 0),
                           zero_ok=p == "PD")
            defaults = asdict(base[p]) if p in base and "mu_mu" not in spec else _spreads(mu, tissue == "lesion")
            vals = {k: _positive(f"{where}: {tissue}.{p}.{k}", spec.get(k, defaults[k]), zero_ok=True)
                    for k in _KEYS[1:]}
            base[p] = ParamPrior(mu, **vals, source=str(spec.get("source", f"user prior file {where}")))
        if new and set(base) != set(PARAMETERS):
            raise ParameterRangeError(f"{where}: new tissue '{tissue}' needs a prior for every parameter "
                                      f"({', '.join(PARAMETERS)}); missing {sorted(set(PARAMETERS) - set(base))}")
        priors[tissue] = base
    return priors


def priors_as_dict(priors: Mapping[str, Mapping[str, ParamPrior]]) -> dict[str, dict[str, dict]]:
    """JSON-ready priors (the shape of the override file)."""
    return {t: {p: asdict(pr) for p, pr in ps.items()} for t, ps in priors.items()}


def sample_subject(priors: Mapping[str, Mapping[str, ParamPrior]], rng: np.random.Generator,
                   tissues=None) -> dict[str, dict[str, tuple[float, float]]]:
    """One subject's ``tissue -> parameter -> (μ_s, σ_s)``: μ_s ~ N(μ_μ, σ_μ) kept > 0 (redrawn, at most 100
    times, then μ_μ), σ_s = |N(μ_σ, σ_σ)|. PD may be 0 only when its μ_μ is 0."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for t in (tissues if tissues is not None else priors):
        out[t] = {}
        for p in PARAMETERS:
            pr = priors[t][p]
            mu = pr.mu_mu
            for _ in range(100):
                draw = float(rng.normal(pr.mu_mu, pr.sigma_mu)) if pr.sigma_mu > 0 else pr.mu_mu
                if draw > 0 or pr.mu_mu == 0:
                    mu = draw
                    break
            sd = abs(float(rng.normal(pr.mu_sigma, pr.sigma_sigma))) if pr.sigma_sigma > 0 else pr.mu_sigma
            out[t][p] = (mu, sd)
    return out
