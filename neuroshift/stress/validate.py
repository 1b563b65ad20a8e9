"""Validate the simulator on your own scanner: simulated vs really acquired images, per tissue.

Paper 000 (Table 5) acquired the same volunteers with the baseline FLAIR and four
corner protocols, simulated the corners from the baseline and compared mean
signals in tissue ROIs: relative error ``|mean_sim − mean_real| / mean_real``
(WM 12-19 %, GM 7-9 %, CSF 22-75 % at the corners; 0 at the baseline).

:func:`validate_simulation` does the same for one subject: the baseline image,
its tissue maps and one or more real acquisitions at other parameters
(registered to the baseline grid). ROIs are the voxels where a tissue's fraction
is at least ``purity`` (inside the brain mask, if given). The baseline itself is
included as a row: the simulation must reproduce it (error 0).

Estimators (``estimator``): the apparent-parameter ``"fit"`` of paper 000
(default), ``"priors"`` (literature values, only the scale fitted),
``"posterior"`` (:mod:`neuroshift.simulate.posterior`) or ``"auto"``
(:mod:`neuroshift.simulate.auto`: per protocol and tissue the fit or priors-only,
whichever had the lower error on calibration subjects; each row records the
choice and both calibration errors). Every row also carries
the error of the **priors-only baseline** (``rel_error_baseline_pct``): a
derivative method is only worth using where it beats that baseline.

:func:`validate_subjects` runs several subjects and reports mean ± SD over
subjects per tissue and protocol in the layout of paper 000's Table 5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..io.params import AcquisitionParams
from ..io.volume import Volume
from .cases import LoadedCase

#: Tissue order of the table (paper 000 reports WM, GM, CSF).
ORDER = ("WM", "GM", "CSF", "lesion")


@dataclass
class ValidationRow:
    image: str
    params: dict
    tissue: str
    n_voxels: int
    mean_real: float
    mean_simulated: float
    rel_error_pct: float       #: 100 · |sim − real| / |real|
    signed_error_pct: float    #: 100 · (sim − real) / |real|
    baseline: bool = False
    estimator: str = "fit"
    mean_simulated_baseline: float | None = None   #: priors-only estimator (literature values, c fitted)
    rel_error_baseline_pct: float | None = None     #: its 100 · |sim − real| / |real|
    subject: str = ""
    estimator_choice: str | None = None            #: estimator 'auto': 'fit' or 'priors' for this row
    calibration_error_fit_pct: float | None = None     #: estimator 'auto': expected errors on calibration
    calibration_error_priors_pct: float | None = None  #: subjects drawn from the prior

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ValidationResult:
    rows: list[ValidationRow]
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """Paper-000-style table: tissues × protocols, relative error in %."""
        images = []
        for r in self.rows:
            label = _protocol_label(r)
            if label not in images:
                images.append(label)
        tissues = [t for t in ORDER if any(r.tissue == t for r in self.rows)]
        width = max(12, *(len(i) + 2 for i in images))
        lines = ["relative error simulated vs real (%), mean over the tissue ROI",
                 f"{'':8s}" + "".join(f"{i:>{width}s}" for i in images)]
        for t in tissues:
            cells = []
            for i in images:
                r = next((r for r in self.rows if r.tissue == t and _protocol_label(r) == i), None)
                cells.append(f"{r.rel_error_pct:>{width}.1f}" if r else f"{'–':>{width}s}")
            lines.append(f"{t:8s}" + "".join(cells))
        return "\n".join(lines)


def _protocol_label(r: ValidationRow) -> str:
    te, ti = r.params.get("TE_ms"), r.params.get("TI_ms")
    if te is not None and ti is not None:
        return f"{te:g}/{ti:g}" + (" (base)" if r.baseline else "")
    return r.image


@dataclass
class _EstimatorSimulator:
    """The physics simulator with a chosen estimator (what ``validate_simulation`` compares)."""

    field_T: float | None = None
    estimator: str = "fit"

    def fit(self, case, sequence: str):
        from ..simulate.tissuewise import fit_tissue_model

        field = self.field_T if case.params.field_T is None else None
        model = fit_tissue_model(case.image, case.fractions, sequence, case.params, field_T=field,
                                 brain_mask=case.brain_mask, estimator=self.estimator)
        notes = getattr(getattr(model, "report", None), "notes", None) or []
        case.notes.extend(n for n in notes if n not in case.notes)
        return model

    def render(self, fitted, case, target, point, *, seed: int) -> Volume:
        return case.image.with_data(np.asarray(fitted.simulate(target), dtype=np.float32))


def validate_simulation(baseline: Volume, baseline_params: AcquisitionParams, fractions: Mapping[str, Volume],
                        real: Sequence[tuple[str, Volume, AcquisitionParams]], *, sequence: str = "flair",
                        brain_mask: Volume | None = None, purity: float = 0.9, simulator=None,
                        field_T: float | None = None, estimator: str = "fit",
                        baseline_estimator: str | None = "priors", subject: str = "") -> ValidationResult:
    """Per-tissue relative error between images simulated from ``baseline`` and the ``real`` ones.

    ``real``: ``(name, image, parameters)`` of each real acquisition, on the baseline grid.
    """
    from .simulator import PhysicsSimulator

    if not 0.0 < purity <= 1.0:
        raise InputError(f"purity must be in (0, 1], got {purity:g}")
    if not real:
        raise InputError("give at least one real image acquired with other parameters (--real)")
    baseline_params.require(sequence, context="the baseline image")
    mask = baseline.with_data(np.zeros(baseline.data.shape, np.uint8))
    case = LoadedCase("baseline", baseline.with_data(np.asarray(baseline.data, np.float32)), baseline_params,
                      dict(fractions), mask, brain_mask)
    case.load(sequence, inputs=())
    for name, vol, params in real:
        baseline.require_same_grid(vol, f"baseline and real image {name} (register it to the baseline first)")
        params.require(sequence, context=f"real image {name}")
    reference = None
    if simulator is None:
        simulator = (PhysicsSimulator(field_T=field_T) if estimator == "fit"
                     else _EstimatorSimulator(field_T=field_T, estimator=estimator))
        if baseline_estimator:
            reference = _EstimatorSimulator(field_T=field_T, estimator=baseline_estimator)
    else:
        estimator = getattr(simulator, "estimator", type(simulator).__name__)
    fitted = simulator.fit(case, sequence)
    fitted_ref = reference.fit(case, sequence) if reference is not None else None
    inside = np.asarray(brain_mask.data) > 0 if brain_mask is not None else np.ones(baseline.data.shape, bool)
    rois = {t: (np.asarray(f.data) >= purity) & inside for t, f in fractions.items()}
    rows: list[ValidationRow] = []
    notes = list(case.notes)
    targets = [("baseline", case.image, baseline_params, True)] + [(n, v, p, False) for n, v, p in real]
    for name, vol, params, is_base in targets:
        target = baseline_params.merged(params)
        sim = simulator.render(fitted, case, target, {}, seed=0)
        ref = reference.render(fitted_ref, case, target, {}, seed=0) if reference is not None else None
        choices = _auto_record(fitted, target)
        for tissue in [t for t in ORDER if t in rois] + [t for t in rois if t not in ORDER]:
            roi = rois[tissue]
            n = int(roi.sum())
            if n == 0:
                if is_base:
                    notes.append(f"no voxel has a {tissue} fraction >= {purity:g}; {tissue} left out")
                continue
            m_real = float(np.mean(np.asarray(vol.data, np.float64)[roi]))
            m_sim = float(np.mean(np.asarray(sim.data, np.float64)[roi]))
            denom = abs(m_real) if m_real != 0 else float("nan")
            m_ref = float(np.mean(np.asarray(ref.data, np.float64)[roi])) if ref is not None else None
            rows.append(ValidationRow(name, target.known(), tissue, n, m_real, m_sim,
                                      100.0 * abs(m_sim - m_real) / denom, 100.0 * (m_sim - m_real) / denom,
                                      is_base, str(estimator), m_ref,
                                      None if m_ref is None else 100.0 * abs(m_ref - m_real) / denom, subject,
                                      *_auto_fields(choices, tissue)))
    return ValidationResult(rows, notes)


def _auto_record(fitted, target) -> dict | None:
    """Estimator 'auto': its per-tissue choices at ``target`` (after the render that made them)."""
    rec = getattr(getattr(fitted, "report", None), "auto", None)
    if rec is None or not hasattr(fitted, "resolve_target"):
        return None
    return rec.get(fitted.resolve_target(target).label())


def _auto_fields(choices: dict | None, tissue: str) -> tuple:
    c = (choices or {}).get(tissue)
    if c is None:
        return (None, None, None)
    return (c["choice"], c["calibration_error_fit_pct"], c["calibration_error_priors_pct"])


# --------------------------------------------------------------------------- several subjects
@dataclass
class MultiValidationResult:
    """Rows of several subjects; :meth:`table` is paper 000's Table 5 (mean ± SD over subjects, %)."""

    rows: list[ValidationRow]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """``{tissue: {protocol: {mean, sd, n, baseline_mean, baseline_sd}}}`` of the relative errors (%)."""
        out: dict = {}
        for t in _tissues(self.rows):
            out[t] = {}
            for label in _protocols(self.rows):
                sel = [r for r in self.rows if r.tissue == t and _protocol_label(r) == label]
                if not sel:
                    continue
                e = np.array([r.rel_error_pct for r in sel], dtype=np.float64)
                b = np.array([r.rel_error_baseline_pct for r in sel if r.rel_error_baseline_pct is not None])
                out[t][label] = {"mean": float(np.mean(e)), "sd": float(np.std(e, ddof=1)) if e.size > 1 else 0.0,
                                 "n": int(e.size),
                                 "baseline_mean": float(np.mean(b)) if b.size else None,
                                 "baseline_sd": float(np.std(b, ddof=1)) if b.size > 1 else (0.0 if b.size else None)}
        return out

    def table(self, *, baseline: bool = False) -> str:
        """Tissues × protocols, ``mean ±SD`` of the relative error over subjects (``baseline``: priors-only)."""
        summ = self.summary()
        labels = _protocols(self.rows)
        width = max(14, *(len(lab) + 2 for lab in labels))
        n_sub = len({r.subject for r in self.rows})
        what = "priors-only baseline" if baseline else f"estimator '{self.rows[0].estimator}'" if self.rows else ""
        lines = [f"relative error simulated vs real (%), mean ±SD over {n_sub} subject(s), {what}",
                 f"{'TE/TI':8s}" + "".join(f"{lab:>{width}s}" for lab in labels)]
        for t, cells in summ.items():
            row = []
            for lab in labels:
                c = cells.get(lab)
                m, sd = (None, None) if c is None else ((c["baseline_mean"], c["baseline_sd"]) if baseline
                                                         else (c["mean"], c["sd"]))
                row.append(f"{'–':>{width}s}" if m is None else f"{f'{m:.0f} ±{sd:.0f}':>{width}s}")
            lines.append(f"{t:8s}" + "".join(row))
        return "\n".join(lines)


    def choices_table(self) -> str | None:
        """Estimator 'auto': per tissue and protocol how many subjects used the fit (f) and the priors (p)."""
        if not any(r.estimator_choice for r in self.rows):
            return None
        labels = _protocols(self.rows)
        width = max(14, *(len(lab) + 2 for lab in labels))
        lines = ["estimator 'auto': subjects using the fit (f) / priors-only (p), chosen on calibration subjects",
                 f"{'TE/TI':8s}" + "".join(f"{lab:>{width}s}" for lab in labels)]
        for t in _tissues(self.rows):
            cells = []
            for lab in labels:
                sel = [r.estimator_choice for r in self.rows if r.tissue == t and _protocol_label(r) == lab
                       and r.estimator_choice]
                n_fit = sum(c == "fit" for c in sel)
                cells.append(f"{f'{n_fit}f/{len(sel) - n_fit}p':>{width}s}" if sel else f"{'–':>{width}s}")
            lines.append(f"{t:8s}" + "".join(cells))
        return "\n".join(lines)


def _tissues(rows) -> list[str]:
    seen = [r.tissue for r in rows]
    return [t for t in ORDER if t in seen] + sorted({t for t in seen if t not in ORDER})


def _protocols(rows) -> list[str]:
    labels: list[str] = []
    for r in rows:
        lab = _protocol_label(r)
        if lab not in labels:
            labels.append(lab)
    return labels


def validate_subjects(subjects: Sequence[Mapping], *, sequence: str = "flair", purity: float = 0.9,
                      field_T: float | None = None, estimator: str = "fit",
                      baseline_estimator: str | None = "priors", simulator=None) -> MultiValidationResult:
    """Validate several subjects; each a mapping with ``subject``, ``baseline``, ``params``, ``fractions``,
    ``real`` (as for :func:`validate_simulation`) and optionally ``brain_mask``.

    Protocols are matched across subjects by their TE/TI label (paper 000 acquired the same corner
    protocols in every volunteer).
    """
    if not subjects:
        raise InputError("give at least one subject")
    rows: list[ValidationRow] = []
    notes: list[str] = []
    for i, s in enumerate(subjects):
        name = str(s.get("subject") or f"subject{i + 1}")
        res = validate_simulation(s["baseline"], s["params"], s["fractions"], s["real"], sequence=sequence,
                                  brain_mask=s.get("brain_mask"), purity=purity, simulator=simulator,
                                  field_T=field_T, estimator=estimator, baseline_estimator=baseline_estimator,
                                  subject=name)
        rows += res.rows
        notes += [f"{name}: {n}" for n in res.notes]
    return MultiValidationResult(rows, notes)
