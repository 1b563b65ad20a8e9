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

**Lesions are drawn relative to the subject's own white matter** (``relative_to: "WM"``): all four numbers
of a relative prior are in units of the reference tissue's *subject* mean, so lesion μ_s = μ_WM,s × ratio
with ratio ~ N(μ_μ, σ_μ), and lesion σ_s = μ_WM,s × |N(μ_σ, σ_σ)|. Drawing lesion values independently of
WM (the first version: CV 20 % independent of WM) made lesions darker than WM on clinical FLAIR in 17-21 % of
the subjects (T2w 3 %), which MS lesions never are. Ratio priors (rates: lesion/WM of R1, R2, R2*; PD: lesion/WM of water content):

* means: the relaxation table's lesion/WM ratios at the field (3 T: T1 1350/832 = 1.62x, T2 130/79.6 =
  1.63x, T2* 60/53.2 = 1.13x, PD 0.8/0.7 = 1.14x), so the degenerate prior (σ = 0) still gives exactly the
  table's lesion values (``qmri synth`` identity). **[representative]** as the table entries are: MS lesion
  T1 is prolonged ~1.3-2x over NAWM and rises in parallel with NAWM T1 between patients (Parry2002, 1.5 T;
  the reason to draw it relative to the subject's WM), lesion T2 ~1.3-2.5x NAWM (Gabr2017 / Parry2002
  tables of the relaxation module; Laule C et al., J Neurol 2004;251:284-293, T2 relaxation of MS lesions),
  lesion water content (PD) ~5-20 % above NAWM (Laule 2004; Neeb2006 for the WM value);
* between-subject spreads **[assumption]** (:data:`CV_RATIO`, CV of the ratio): R1 10 % (T1 ratio
  ~1.35-2.0 at ±2σ), R2 12 % (T2 ratio ~1.35-2.2), PD 4 % (PD ratio ~1.05-1.23), R2* 5 %; within-lesion
  CV 10 % as before;
* **correlated severity** **[assumption]**: T1, T2 and PD prolongation of a lesion share one latent
  severity (correlation :data:`SEVERITY_CORRELATION` = 0.7 between the ratio draws; T1 and T2 both grow
  with water content and myelin loss), so a long-T1 lesion is also a long-T2 one;
* **hyperintensity condition**: a white-matter lesion in MS/WMH imaging is *defined* as hyperintense on
  T2-weighted images such as FLAIR (STRIVE, Wardlaw JM et al., Lancet Neurol 2013;12:822-838; the
  labels we train on mean exactly that), so the ratios of one subject are redrawn (at most 100 times; 66 %
  of the first draws pass) until the lesion/WM signal is >= :data:`MIN_HYPERINTENSITY` on every :data:`CHECK_PROTOCOLS`
  entry (the corners of the clinical 2D FLAIR range TE 70-140 ms, TI 2200-2700 ms, TR 9000 ms - the TIs that
  null CSF of T1 3.75-4.6 s, as the real FLAIRs of dev/qsynth_real_stats.py do -, of the 3D FLAIR range TE
  90-130 ms (contrast-equivalent TE of a variable-flip-angle echo train), TI 1750-1850 ms, TR 5000 ms, and of the T2w spin echo
  range TE 80-120 ms, TR 4000-8000 ms); if no draw passes, the draw with the highest worst-case contrast is
  kept. T1w (MPRAGE) lesions then come out darker than WM (longer T1, tested).
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
           "priors_as_dict", "CV_BETWEEN", "CV_WITHIN", "CV_RATIO", "SEVERITY_CORRELATION", "CHECK_PROTOCOLS",
           "MIN_HYPERINTENSITY", "lesion_contrast"]

#: Quantitative parameters of the prior: PD (relative), rates in 1/s.
PARAMETERS = ("PD", "R1", "R2", "R2star")
_TABLE_FIELD = {"PD": "pd", "R1": "t1_ms", "R2": "t2_ms", "R2star": "t2star_ms"}
_KEYS = ("mu_mu", "sigma_mu", "mu_sigma", "sigma_sigma")
#: Tissues drawn relative to another one by default: tissue -> reference tissue.
RELATIVE_TISSUES = {"lesion": "WM"}
#: Tissues conditioned to be hyperintense on FLAIR and T2w relative to their reference (see the docstring).
HYPERINTENSE = ("lesion",)

#: [assumption] between-subject CV (σ_μ / μ_μ): brain tissue, lesion.
CV_BETWEEN = {"tissue": 0.10, "lesion": 0.20}
#: [assumption] within-subject CV (μ_σ / μ_μ); σ_σ = μ_σ / 3.
CV_WITHIN = {"tissue": 0.05, "lesion": 0.10}
#: [assumption] between-subject CV of the lesion/WM ratios (ratio σ_μ / μ_μ), per parameter.
CV_RATIO = {"PD": 0.04, "R1": 0.10, "R2": 0.12, "R2star": 0.05}
#: [assumption] correlation of the T1, T2 (and PD) prolongations of one subject's lesions (shared severity).
SEVERITY_CORRELATION = 0.7
#: Lesion/WM signal required on every check protocol (clinical FLAIR and T2w corners, ms).
MIN_HYPERINTENSITY = 1.05
CHECK_PROTOCOLS = tuple(
    [{"sequence": "flair", "TE_ms": te, "TI_ms": ti, "TR_ms": 9000.0} for te in (70.0, 140.0) for ti in (2200.0, 2700.0)]
    + [{"sequence": "flair", "TE_ms": te, "TI_ms": ti, "TR_ms": 5000.0} for te in (90.0, 130.0) for ti in (1750.0, 1850.0)]
    + [{"sequence": "se", "TE_ms": te, "TR_ms": tr} for te in (80.0, 120.0) for tr in (4000.0, 8000.0)])


@dataclass(frozen=True)
class ParamPrior:
    """Population prior of one parameter of one tissue (units of the parameter: 1 or 1/s)."""

    mu_mu: float
    sigma_mu: float
    mu_sigma: float
    sigma_sigma: float
    source: str = ""
    #: "" (absolute, units of the parameter) or the reference tissue: then every number is a ratio to the
    #: reference tissue's subject mean of the same parameter.
    relative_to: str = ""

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
    def value(tissue: str, p: str) -> float:
        v = float(getattr(table[tissue], _TABLE_FIELD[p]))
        return v if p == "PD" else 1000.0 / v

    for tissue, tp in table.items():
        out[tissue] = {}
        ref = RELATIVE_TISSUES.get(tissue)
        for p, attr in _TABLE_FIELD.items():
            mu = value(tissue, p)
            status = provenance(field_T, tissue, attr).status if builtin else "user table"
            src = (f"mu_mu: relaxation table {field_T:g} T {tissue}.{attr} ({status}; {tp.source}); "
                   f"spreads: [assumption] CV rule of neuroshift.qsynth.priors")
            if ref in table and value(ref, p) > 0:
                ratio = mu / value(ref, p)
                within = CV_WITHIN["lesion"] * ratio
                out[tissue][p] = ParamPrior(ratio, CV_RATIO[p] * ratio, within, within / 3.0, relative_to=ref,
                                            source=f"ratio to the subject's {ref}: " + src.replace(
                                                "CV rule", "ratio CV rule (CV_RATIO)"))
            else:
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
            bad = set(spec) - set(_KEYS) - {"source", "relative_to"}
            if bad:
                raise ParameterRangeError(f"{where}: {tissue}.{p}: unknown key(s) {sorted(bad)}; use "
                                          f"{', '.join(_KEYS)}, source, relative_to")
            if p not in base and "mu_mu" not in spec:
                raise ParameterRangeError(f"{where}: {tissue}.{p}: a new tissue needs mu_mu")
            mu = _positive(f"{where}: {tissue}.{p}.mu_mu", spec.get("mu_mu", base[p].mu_mu if p in base else 0),
                           zero_ok=p == "PD")
            keep = p in base and "mu_mu" not in spec
            rel = str(spec.get("relative_to", base[p].relative_to if keep else ""))
            if rel and rel not in priors and rel not in {str(t) for t in doc}:
                raise ParameterRangeError(f"{where}: {tissue}.{p}: relative_to '{rel}' is not a tissue")
            if rel == tissue:
                raise ParameterRangeError(f"{where}: {tissue}.{p}: a tissue cannot be relative to itself")
            defaults = asdict(base[p]) if keep else _spreads(mu, tissue == "lesion")
            vals = {k: _positive(f"{where}: {tissue}.{p}.{k}", spec.get(k, defaults[k]), zero_ok=True)
                    for k in _KEYS[1:]}
            base[p] = ParamPrior(mu, **vals, source=str(spec.get("source", f"user prior file {where}")),
                                 relative_to=rel)
        if new and set(base) != set(PARAMETERS):
            raise ParameterRangeError(f"{where}: new tissue '{tissue}' needs a prior for every parameter "
                                      f"({', '.join(PARAMETERS)}); missing {sorted(set(PARAMETERS) - set(base))}")
        priors[tissue] = base
    return priors


def priors_as_dict(priors: Mapping[str, Mapping[str, ParamPrior]]) -> dict[str, dict[str, dict]]:
    """JSON-ready priors (the shape of the override file)."""
    return {t: {p: asdict(pr) for p, pr in ps.items()} for t, ps in priors.items()}


def _draw_mu(pr: ParamPrior, rng: np.random.Generator, z: float | None = None) -> float:
    """μ_s ~ N(μ_μ, σ_μ) kept > 0 (redrawn at most 100 times, then μ_μ); ``z``: the first standard draw."""
    if pr.sigma_mu <= 0:
        return pr.mu_mu
    for n in range(100):
        draw = pr.mu_mu + pr.sigma_mu * (z if (n == 0 and z is not None) else float(rng.standard_normal()))
        if draw > 0 or pr.mu_mu == 0:
            return draw
    return pr.mu_mu


def _draw_sd(pr: ParamPrior, rng: np.random.Generator) -> float:
    return abs(float(rng.normal(pr.mu_sigma, pr.sigma_sigma))) if pr.sigma_sigma > 0 else pr.mu_sigma


def lesion_contrast(tissue: Mapping[str, float], reference: Mapping[str, float], protocol: Mapping[str, Any],
                    field_T: float = 3.0) -> float:
    """Signal ratio tissue / reference (mean values: PD relative, rates 1/s) under ``protocol`` (ms, degrees;
    sequences ``flair``, ``se`` or ``mprage``) by the closed-form equations of :mod:`neuroshift.physics`."""
    from ..physics.signal import flair, spin_echo
    from ..physics.signal_mprage import mprage

    def signal(v):
        pd, t1, t2, t2s = v["PD"], 1000.0 / v["R1"], 1000.0 / v["R2"], 1000.0 / v["R2star"]
        seq = protocol["sequence"]
        if seq == "flair":
            return float(flair(pd, t1, t2, te_ms=protocol["TE_ms"], ti_ms=protocol["TI_ms"], tr_ms=protocol["TR_ms"]))
        if seq == "se":
            return float(spin_echo(pd, t1, t2, te_ms=protocol["TE_ms"], tr_ms=protocol["TR_ms"]))
        if seq == "mprage":
            return float(mprage(pd, t1, t2s, **{k: protocol[a] for k, a in (
                ("te_ms", "TE_ms"), ("ti_ms", "TI_ms"), ("tr_ms", "TR_ms"), ("fa_deg", "FA_deg"), ("tx_ms", "TX_ms"),
                ("n", "N"))}))
        raise ParameterRangeError(f"lesion_contrast: sequence must be flair, se or mprage, got {seq!r}")

    ref = signal(reference)
    return signal(tissue) / ref if ref > 0 else math.inf


def _worst_contrast(tissue: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """min over :data:`CHECK_PROTOCOLS` of :func:`lesion_contrast` (one broadcast call per sequence)."""
    from ..physics.signal import flair, spin_echo

    pd = np.array([tissue["PD"], reference["PD"]])
    t1 = 1000.0 / np.array([tissue["R1"], reference["R1"]])
    t2 = 1000.0 / np.array([tissue["R2"], reference["R2"]])
    worst = math.inf
    for seq, fn, keys in (("flair", flair, ("TE_ms", "TI_ms", "TR_ms")), ("se", spin_echo, ("TE_ms", "TR_ms"))):
        prots = [p for p in CHECK_PROTOCOLS if p["sequence"] == seq]
        if not prots:
            continue
        kw = {k.lower(): np.array([[p[k]] for p in prots], dtype=np.float64) for k in keys}
        sig = np.asarray(fn(pd, t1, t2, **kw), dtype=np.float64)  # (protocols, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(sig[:, 1] > 0, sig[:, 0] / sig[:, 1], math.inf)
        worst = min(worst, float(ratio.min()))
    others = [p for p in CHECK_PROTOCOLS if p["sequence"] not in ("flair", "se")]
    return min([worst, *(lesion_contrast(tissue, reference, p) for p in others)])


def sample_subject(priors: Mapping[str, Mapping[str, ParamPrior]], rng: np.random.Generator,
                   tissues=None) -> dict[str, dict[str, tuple[float, float]]]:
    """One subject's ``tissue -> parameter -> (μ_s, σ_s)``.

    Absolute priors: μ_s ~ N(μ_μ, σ_μ) kept > 0 (redrawn, at most 100 times, then μ_μ), σ_s = |N(μ_σ, σ_σ)|;
    PD may be 0 only when its μ_μ is 0. Relative priors (``relative_to``, lesions by default): the ratios to
    the reference tissue's subject means, with one shared severity (correlation
    :data:`SEVERITY_CORRELATION`; rates fall and PD rises with it), redrawn until the tissue is hyperintense
    on the check protocols when it is in :data:`HYPERINTENSE` (see the module docstring). The reference
    tissue is drawn (not returned) when it is not among ``tissues``.
    """
    wanted = list(tissues if tissues is not None else priors)
    refs = {pr.relative_to for t in wanted for pr in priors[t].values() if pr.relative_to}
    for r in refs:
        if r not in priors:
            raise ParameterRangeError(f"qSynth prior: reference tissue '{r}' has no prior")
        if any(pr.relative_to for pr in priors[r].values()):
            raise ParameterRangeError(f"qSynth prior: reference tissue '{r}' must itself be absolute")
    # absolute tissues first (in the asked order, then references not asked for), relative ones after
    order = [t for t in wanted if not _is_relative(priors[t])] + sorted(refs - set(wanted)) + \
        [t for t in wanted if _is_relative(priors[t])]
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for t in order:
        if not _is_relative(priors[t]):
            out[t] = {p: (_draw_mu(priors[t][p], rng), _draw_sd(priors[t][p], rng)) for p in PARAMETERS}
            continue
        out[t] = _sample_relative(t, priors[t], out, rng)
    return {t: out[t] for t in wanted}


def _is_relative(tp: Mapping[str, ParamPrior]) -> bool:
    return any(pr.relative_to for pr in tp.values())


def _sample_relative(t: str, tp: Mapping[str, ParamPrior], drawn, rng: np.random.Generator,
                     tries: int = 100) -> dict[str, tuple[float, float]]:
    rho = SEVERITY_CORRELATION
    sign = {"PD": 1.0, "R1": -1.0, "R2": -1.0, "R2star": -1.0}

    def base(p):
        pr = tp[p]
        return drawn[pr.relative_to][p][0] if pr.relative_to else 1.0

    best, best_c = None, -math.inf
    for _ in range(tries):
        sev = float(rng.standard_normal())
        vals = {}
        for p in PARAMETERS:
            pr = tp[p]
            z = sign[p] * math.sqrt(rho) * sev + math.sqrt(1.0 - rho) * float(rng.standard_normal())
            vals[p] = (base(p) * _draw_mu(pr, rng, z), base(p) * _draw_sd(pr, rng))
        ref = next((pr.relative_to for pr in tp.values() if pr.relative_to), "")
        if t not in HYPERINTENSE or not ref:
            return vals
        c = _worst_contrast({p: v[0] for p, v in vals.items()}, {p: v[0] for p, v in drawn[ref].items()})
        if c >= MIN_HYPERINTENSITY:
            return vals
        if c > best_c:
            best, best_c = vals, c
    return best  # no draw reached MIN_HYPERINTENSITY: the most hyperintense one
