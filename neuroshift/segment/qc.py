"""Quality-control warnings for a segmentation run (never errors: the result is still written).

Checks (each returns plain-language warnings):

* **age**: a neonate younger than 35.0 gestational weeks when ``--age-weeks`` is given (all
  failures of the neonatal claustrum model were there, dissertation 003 Ch. 4);
* **spacing**: input voxels more than 1.5x larger or smaller than the model's spacing on an axis
  (the input is resampled, but thin structures such as the 1-2 mm claustrum suffer);
* **field of view**: brain outside the model's crop window in a view (that part is not segmented);
* **contrast**: the z-scored brain intensity histogram is far from the one the model was trained
  on. A package may store ``manifest["qc"]["intensity_histogram"] = {"edges": [...],
  "channels": {name: [density, ...]}}`` (see :func:`intensity_histogram`, which training uses);
  the distance is the 1-Wasserstein (earth mover's) distance between the two histograms in units
  of the brain's standard deviation, warned above ``qc.contrast_distance_max`` (default 0.3);
* **empty hemisphere**: for bilateral structures (claustrum, or ``qc.bilateral: true``), nothing
  segmented on one side of the mid-sagittal plane (approximated by the plane through the brain
  mask's centroid perpendicular to the scanner's left-right axis, RAS x);
* **empty result**: nothing segmented at all.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..io.volume import Volume
from .preprocess import PreparedInput, parse_spacing
from .views import to_view

NEONATE_MIN_WEEKS = 35.0
SPACING_RATIO_MAX = 1.5
CONTRAST_DISTANCE_MAX = 0.3
DEFAULT_EDGES = np.linspace(-5.0, 8.0, 66)


def intensity_histogram(prepared: PreparedInput, edges: Sequence[float] | None = None) -> dict[str, Any]:
    """Normalised histograms of each z-scored channel inside its brain mask (for ``manifest["qc"]``)."""
    edges = np.asarray(DEFAULT_EDGES if edges is None else edges, dtype=float)
    out: dict[str, Any] = {"edges": [round(float(e), 6) for e in edges], "channels": {}}
    for name, chan in zip(prepared.channel_names, prepared.channels):
        values = np.clip(chan[prepared.channel_masks[name]], edges[0], edges[-1])
        hist, _ = np.histogram(values, bins=edges)
        total = max(int(hist.sum()), 1)
        out["channels"][name] = [round(float(h) / total, 8) for h in hist]
    return out


def merge_histograms(histograms: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Average several :func:`intensity_histogram` results (same edges) into one training reference."""
    histograms = list(histograms)
    if not histograms:
        return {}
    edges = histograms[0]["edges"]
    channels: dict[str, list[float]] = {}
    for name in histograms[0]["channels"]:
        stack = np.array([h["channels"][name] for h in histograms if name in h["channels"]], dtype=float)
        channels[name] = [round(float(v), 8) for v in stack.mean(axis=0)]
    return {"edges": edges, "channels": channels}


def histogram_distance(p: Sequence[float], q: Sequence[float], edges: Sequence[float]) -> float:
    """1-Wasserstein distance between two histograms on the same ``edges`` (units of the edges)."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    p = p / max(p.sum(), 1e-12)
    q = q / max(q.sum(), 1e-12)
    widths = np.diff(np.asarray(edges, dtype=float))
    return float(np.sum(np.abs(np.cumsum(p) - np.cumsum(q)) * widths))


def check_age(age_weeks: float | None, manifest: Mapping[str, Any]) -> list[str]:
    if age_weeks is None:
        return []
    out = []
    pre = manifest.get("preprocessing", {}) or {}
    limit = float(pre.get("min_age_weeks", (manifest.get("qc", {}) or {}).get("min_age_weeks", NEONATE_MIN_WEEKS)))
    if float(age_weeks) < limit:
        out.append(f"age {float(age_weeks):g} gestational weeks is below {limit:g}: the neonatal claustrum model "
                   f"failed on the scans younger than {limit:g} weeks in its validation; check the result")
    population = str(manifest.get("training", {}).get("population", "")).lower()
    if float(age_weeks) < 60 and population == "adult":
        out.append(f"age {float(age_weeks):g} weeks is a neonate/infant but the model was trained on adults; "
                   "use a neonatal model (fine-tuned with 'neuroshift train --init')")
    return out


def check_spacing(prepared: PreparedInput, manifest: Mapping[str, Any]) -> list[str]:
    pre = manifest.get("preprocessing", {}) or {}
    spec = pre.get("spacing_mm")
    if spec is None:
        spec = (manifest.get("training", {}) or {}).get("spacing_mm")
    if spec is None:
        return []
    model = parse_spacing(spec, prepared.canonical.spacing)
    native = prepared.canonical.spacing
    ratio = native / model
    bad = [a for a in range(3) if ratio[a] > SPACING_RATIO_MAX or ratio[a] < 1.0 / SPACING_RATIO_MAX]
    if not bad:
        return []
    return [f"input voxel spacing {np.round(native, 3).tolist()} mm (canonical i, j, k) is far from the model's "
            f"{np.round(model, 3).tolist()} mm; the input was resampled, but accuracy may suffer"]


def check_field_of_view(prepared: PreparedInput, views: Sequence[str], crop_hw: Sequence[int] | None) -> list[str]:
    if crop_hw is None:
        return []
    out = []
    for view in views:
        m = to_view(prepared.mask, view).any(axis=0)  # (H, W) projection
        h, w = m.shape
        th, tw = int(crop_hw[0]), int(crop_hw[1])
        window = np.zeros_like(m)
        a = (h - th) // 2 if h > th else 0
        b = (w - tw) // 2 if w > tw else 0
        window[a:a + th, b:b + tw] = True
        lost = int(np.count_nonzero(m & ~window))
        if lost > 0:
            out.append(f"the brain extends beyond the model's {th}x{tw} crop in the {view} view ({h}x{w} at the "
                       "model spacing); voxels outside the crop are not segmented")
    return out


def check_contrast(prepared: PreparedInput, manifest: Mapping[str, Any]) -> list[str]:
    qc = manifest.get("qc", {}) or {}
    ref = qc.get("intensity_histogram")
    if not ref:
        return []
    limit = float(qc.get("contrast_distance_max", CONTRAST_DISTANCE_MAX))
    mine = intensity_histogram(prepared, ref["edges"])
    out = []
    for name, dens in ref.get("channels", {}).items():
        if name not in mine["channels"]:
            continue
        d = histogram_distance(mine["channels"][name], dens, ref["edges"])
        if d > limit:
            out.append(f"{name}: the brain intensity distribution is far from the model's training contrast "
                       f"(histogram distance {d:.2f} SD > {limit:.2f}); the input may be another sequence or "
                       "acquisition than the model was trained on - check the result")
    return out


def midline_x_ras(prepared: PreparedInput) -> float:
    """RAS x (mm) of the mid-sagittal plane, approximated by the brain mask's centroid."""
    mask = prepared.mask
    total = float(np.count_nonzero(mask))
    if total == 0:
        centre = (np.array(prepared.grid.data.shape[::-1], dtype=float) - 1) / 2.0
    else:  # centroid from the marginal sums (no voxel list)
        centre = np.array([
            float((mask.sum(axis=(0, 1)) * np.arange(mask.shape[2])).sum()) / total,
            float((mask.sum(axis=(0, 2)) * np.arange(mask.shape[1])).sum()) / total,
            float((mask.sum(axis=(1, 2)) * np.arange(mask.shape[0])).sum()) / total,
        ])
    return float((prepared.grid.ijk_to_ras() @ np.append(centre, 1.0))[0])


def hemisphere_counts(label: Volume, x_mid: float) -> tuple[int, int]:
    """(left, right) voxel counts of a label volume split at the sagittal plane RAS x = ``x_mid``."""
    k, j, i = np.nonzero(np.asarray(label.data))
    if k.size == 0:
        return 0, 0
    row = label.ijk_to_ras()[0]
    x = row[0] * i + row[1] * j + row[2] * k + row[3]
    left = int(np.count_nonzero(x < x_mid))
    return left, int(k.size) - left


def is_bilateral(manifest: Mapping[str, Any]) -> bool:
    qc = manifest.get("qc", {}) or {}
    return bool(qc.get("bilateral", str(manifest.get("task", "")).lower().startswith("claustrum")))


def check_hemispheres(label: Volume, prepared: PreparedInput, manifest: Mapping[str, Any]) -> list[str]:
    total = int(np.count_nonzero(label.data))
    if total == 0:
        return ["nothing was segmented (empty label); check the input contrast, orientation and model"]
    if not is_bilateral(manifest):
        return []
    left, right = hemisphere_counts(label, midline_x_ras(prepared))
    if min(left, right) == 0:
        side = "left" if left == 0 else "right"
        return [f"empty hemisphere: nothing segmented in the {side} hemisphere (a bilateral structure); "
                "check the head position, field of view and result"]
    return []


def qc_warnings(prepared: PreparedInput, manifest: Mapping[str, Any], label: Volume, *,
                age_weeks: float | None = None) -> list[str]:
    """All QC warnings of a run (see the module docstring)."""
    pre = manifest.get("preprocessing", {}) or {}
    out: list[str] = []
    if manifest.get("demo"):
        out.append("this is a DEMO model (trained on a synthetic phantom), not a clinical model: "
                   "do not use its output for any decision")
    out += check_age(age_weeks, manifest)
    out += check_spacing(prepared, manifest)
    out += check_field_of_view(prepared, list(manifest.get("views", [])), pre.get("crop_hw"))
    out += check_contrast(prepared, manifest)
    out += check_hemispheres(label, prepared, manifest)
    return out


__all__ = ["NEONATE_MIN_WEEKS", "check_age", "check_contrast", "check_field_of_view", "check_hemispheres",
           "check_spacing", "hemisphere_counts", "is_bilateral", "midline_x_ras", "histogram_distance", "intensity_histogram", "merge_histograms",
           "qc_warnings"]
