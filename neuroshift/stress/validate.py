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


def validate_simulation(baseline: Volume, baseline_params: AcquisitionParams, fractions: Mapping[str, Volume],
                        real: Sequence[tuple[str, Volume, AcquisitionParams]], *, sequence: str = "flair",
                        brain_mask: Volume | None = None, purity: float = 0.9, simulator=None,
                        field_T: float | None = None) -> ValidationResult:
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
    simulator = simulator if simulator is not None else PhysicsSimulator(field_T=field_T)
    fitted = simulator.fit(case, sequence)
    inside = np.asarray(brain_mask.data) > 0 if brain_mask is not None else np.ones(baseline.data.shape, bool)
    rois = {t: (np.asarray(f.data) >= purity) & inside for t, f in fractions.items()}
    rows: list[ValidationRow] = []
    notes = list(case.notes)
    targets = [("baseline", case.image, baseline_params, True)] + [(n, v, p, False) for n, v, p in real]
    for name, vol, params, is_base in targets:
        target = baseline_params.merged(params)
        sim = simulator.render(fitted, case, target, {}, seed=0)
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
            rows.append(ValidationRow(name, target.known(), tissue, n, m_real, m_sim,
                                      100.0 * abs(m_sim - m_real) / denom, 100.0 * (m_sim - m_real) / denom,
                                      is_base))
    return ValidationResult(rows, notes)
