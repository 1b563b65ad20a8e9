"""Tissue fractions f_t(x) (0 <= f_t <= 1, sum over tissues <= 1) from label maps or partial-volume maps.

The tissue-wise image model of paper 000 needs one fraction map per tissue
(CSF, GM, WM and optionally MS lesion). Users bring them in one of two ways:

* a **label map** (FreeSurfer/SynthSeg ``aseg``, FAST ``pveseg``, a phantom's
  ``tissue_labels``) plus a mapping ``tissue -> label value(s)``: every voxel
  is pure (fraction 0 or 1) — :func:`fractions_from_labels`;
* **partial-volume probability maps** (FAST ``pve_0/1/2``, SPM ``c1/c2/c3``,
  the built-in classifier, the phantom's ``pv_*.nii.gz``): one file per
  tissue — :func:`fractions_from_pv`.

All fractions are returned as float32 :class:`~neuroshift.io.volume.Volume` on
the input grid. Everything that could silently corrupt a simulation is refused
with an :class:`~neuroshift.errors.InputError` subclass that names the
problem: grids that differ (:class:`~neuroshift.errors.GeometryError`), NaN or
infinite voxels (:class:`~neuroshift.errors.NonFiniteError`), fractions outside
[0, 1] or summing to more than 1 (:class:`FractionError`, with a hint when a map
looks like percent or 8-bit probabilities), non-integral label values, unknown
tissue names and labels claimed by two tissues.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Union

import numpy as np

from ..errors import GeometryError, InputError, NonFiniteError
from ..io.volume import Volume

#: Tissue names understood by the simulator (the same tuple as ``neuroshift.physics.relaxation.TISSUES``).
TISSUES: tuple[str, ...] = ("CSF", "GM", "WM", "lesion")

#: Label values of NeuroShift's own label maps (phantom ``tissue_labels.nii.gz``, classifier output).
DEFAULT_LABELS: dict[str, int] = {"CSF": 1, "GM": 2, "WM": 3, "lesion": 4}

#: Values within this distance of [0, 1] are clipped (resampling / float rounding); further out is an error.
RANGE_TOLERANCE = 1e-3

#: Default tolerance on the sum of fractions per voxel (FAST/SPM maps sum to 1 up to a few 1e-3).
SUM_TOLERANCE = 0.02

PathOrVolume = Union[str, os.PathLike, Volume]


#: Brain voxels whose fractions sum to less than ``1 - SUM_TOLERANCE``: warn when more than this share of them.
DEFICIT_WARN_SHARE = 0.01


class FractionError(InputError):
    """Fraction maps outside [0, 1], summing to more than 1, or a label mapping that cannot be used."""


class FractionWarning(UserWarning):
    """Tissue maps that can be used but probably do not say what the user meant (the CLI prints these)."""


# --------------------------------------------------------------------------- names and mappings
def canonical_tissue(name: str) -> str:
    """``'csf'`` -> ``'CSF'``, ``'Lesion'``/``'WMH'``/``'MS'`` -> ``'lesion'``; unknown names raise."""
    key = str(name).strip()
    lookup = {t.lower(): t for t in TISSUES}
    lookup.update({"wmh": "lesion", "ms": "lesion", "lesions": "lesion"})
    if key.lower() not in lookup:
        raise FractionError(f"unknown tissue '{name}'; use {', '.join(TISSUES)}")
    return lookup[key.lower()]


def parse_label_mapping(text: str) -> dict[str, list[int]]:
    """Parse ``"CSF=1,GM=2|42,WM=3,lesion=4"`` (``|`` separates several labels of one tissue)."""
    mapping: dict[str, list[int]] = {}
    for item in filter(None, (s.strip() for s in str(text).split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not raw.strip():
            raise FractionError(f"'{item}' is not TISSUE=LABEL (for example GM=2 or GM=3|42)")
        values = []
        for part in raw.split("|"):
            try:
                values.append(int(part.strip()))
            except ValueError:
                raise FractionError(f"'{item}': label '{part.strip()}' is not an integer") from None
        tissue = canonical_tissue(key)
        if tissue in mapping:
            raise FractionError(f"tissue {tissue} is given twice in '{text}'")
        mapping[tissue] = values
    if not mapping:
        raise FractionError("the label mapping is empty; give for example CSF=1,GM=2,WM=3")
    return mapping


def _normalise_mapping(mapping: Mapping[str, int | Iterable[int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for name, raw in mapping.items():
        tissue = canonical_tissue(name)
        values = [raw] if isinstance(raw, (int, float, np.integer, np.floating)) else list(raw)
        labels = []
        for v in values:
            try:
                integral = not isinstance(v, (bool, np.bool_)) and float(v).is_integer()
            except (TypeError, ValueError):
                integral = False
            if not integral:
                raise FractionError(f"{tissue}: label value {v!r} is not an integer")
            v = int(v)
            if v == 0:
                raise FractionError(f"{tissue}: label 0 is the background and cannot be a tissue")
            if v in owner and owner[v] != tissue:
                raise FractionError(f"label {v} is mapped to both {owner[v]} and {tissue}")
            owner[v] = tissue
            labels.append(v)
        if not labels:
            raise FractionError(f"{tissue}: no label values given")
        out[tissue] = labels
    if not out:
        raise FractionError("the label mapping is empty; give for example CSF=1,GM=2,WM=3")
    return out


# --------------------------------------------------------------------------- label maps
def fractions_from_labels(labels: Volume, mapping: Mapping[str, int | Iterable[int]] | None = None,
                          *, unknown: str = "auto") -> dict[str, Volume]:
    """Pure-tissue fractions (0/1, float32) from a label map and a ``tissue -> label(s)`` mapping.

    ``mapping`` defaults to :data:`DEFAULT_LABELS`. Label values (other than 0) that
    no tissue claims get fraction 0 in every tissue and are reported with their voxel
    counts: ``unknown="error"`` raises :class:`FractionError`, ``"warn"`` issues a
    :class:`FractionWarning`, ``"auto"`` (default) raises with the default mapping
    (the map is then supposed to be NeuroShift's own CSF=1..lesion=4, so another value
    means a different labelling, e.g. lesions labelled 5, silently simulated as
    background) and warns with an explicit mapping (leaving out skull or ventricle
    labels of an aseg is then a choice). At least one mapped label must occur in the map.
    """
    if unknown not in ("auto", "error", "warn"):
        raise ValueError(f"unknown must be 'auto', 'error' or 'warn', got {unknown!r}")
    if not isinstance(labels, Volume):
        raise InputError(f"expected a label map Volume, got {type(labels).__name__}")
    mapping_n = _normalise_mapping(DEFAULT_LABELS if mapping is None else mapping)
    data = np.asarray(labels.data)
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)):
            raise NonFiniteError(f"label map: {int(np.count_nonzero(~np.isfinite(data)))} voxel(s) are NaN or infinite")
        if not np.all(np.equal(np.mod(data, 1), 0)):
            raise FractionError(
                "the label map has non-integer values; it looks like a probability/partial-volume map "
                "(use --pv / fractions_from_pv for those)"
            )
    elif not (np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_):
        raise FractionError(f"label map has unsupported voxel type {data.dtype}")
    data = data.astype(np.int64, copy=False)
    values_present, counts = np.unique(data, return_counts=True)
    present = set(values_present.tolist())
    out: dict[str, Volume] = {}
    found_any = False
    for tissue, values in mapping_n.items():
        found_any |= bool(present.intersection(values))
        frac = np.isin(data, values).astype(np.float32)
        out[tissue] = labels.with_data(frac, tissue=tissue)
    if not found_any:
        shown = sorted(present)[:12]
        raise FractionError(
            f"none of the mapped labels {sorted(v for vs in mapping_n.values() for v in vs)} occur in the "
            f"label map (it contains {shown}{'...' if len(present) > 12 else ''}); check --labels"
        )
    claimed = {v for vs in mapping_n.values() for v in vs} | {0}
    stray = [(int(v), int(n)) for v, n in zip(values_present, counts) if int(v) not in claimed]
    if stray:
        n_stray = sum(n for _, n in stray)
        n_nonzero = int(np.count_nonzero(data))
        listed = ", ".join(f"{v} ({n} voxels)" for v, n in stray[:10]) + (" ..." if len(stray) > 10 else "")
        text = (f"label value(s) that no tissue is mapped to: {listed}; {n_stray} of {n_nonzero} labelled voxels "
                f"({100.0 * n_stray / max(n_nonzero, 1):.1f}%) are treated as containing no tissue")
        if unknown == "error" or (unknown == "auto" and mapping is None):
            raise FractionError(f"{text}. Map them with --labels (e.g. --labels CSF=1,GM=2,WM=3,lesion=4|{stray[0][0]})"
                                " or, when they are not tissue, list the tissues' labels explicitly with --labels")
        warnings.warn(text, FractionWarning, stacklevel=2)
    return out


# --------------------------------------------------------------------------- PV maps
def fractions_from_pv(paths: Mapping[str, PathOrVolume], *, sum_tolerance: float = SUM_TOLERANCE,
                      reference: Volume | None = None, brain_mask: Volume | None = None) -> dict[str, Volume]:
    """Fractions from partial-volume probability maps, one per tissue (paths or :class:`Volume`).

    Checks: every map is on one grid (and on ``reference``'s, if given) —
    :class:`GeometryError`; finite — :class:`NonFiniteError`; within [0, 1]
    (values within 1e-3 outside are clipped) and the per-voxel sum at most
    ``1 + sum_tolerance`` — :class:`FractionError`. Fractions summing to less than
    ``1 - sum_tolerance`` in more than 1 % of the brain (``brain_mask``, or see
    :func:`sum_deficit`) issue a :class:`FractionWarning` with the share of voxels.
    """
    from ..io.files import read_volume

    if not paths:
        raise FractionError("no partial-volume maps given; give for example CSF=a.nii.gz,GM=b.nii.gz,WM=c.nii.gz")
    out: dict[str, Volume] = {}
    first_name = None
    for name, src in paths.items():
        tissue = canonical_tissue(name)
        if tissue in out:
            raise FractionError(f"tissue {tissue} is given twice")
        if isinstance(src, Volume):
            vol = src.with_data(np.asarray(src.data, dtype=np.float32))
            where = f"{tissue} map"
            if np.issubdtype(np.asarray(src.data).dtype, np.floating) and not np.all(np.isfinite(src.data)):
                bad = int(np.count_nonzero(~np.isfinite(src.data)))
                raise NonFiniteError(f"{where}: {bad} voxel(s) are NaN or infinite")
        else:
            where = f"{tissue} map {Path(src)}"
            try:
                vol = read_volume(src, dtype=np.float32)
            except NonFiniteError as exc:
                raise NonFiniteError(f"{tissue} map: {exc}") from None
        if reference is not None:
            reference.require_same_grid(vol, f"image and {where}")
        if first_name is None:
            first_name, first = where, vol
        else:
            first.require_same_grid(vol, f"{first_name} and {where}")
        out[tissue] = vol.with_data(_checked_range(vol.data, where), tissue=tissue)
    validate_fractions(out, sum_tolerance=sum_tolerance)
    n_short, n_brain, median = sum_deficit(out, sum_tolerance=sum_tolerance, brain_mask=brain_mask)
    if n_brain and n_short > DEFICIT_WARN_SHARE * n_brain:
        warnings.warn(
            f"the tissue fractions sum to less than {1 - sum_tolerance:g} in {100.0 * n_short / n_brain:.1f}% of the "
            f"voxels inside the brain ({n_short} of {n_brain}; median sum there {median:.3f}): a tissue map may be "
            f"missing (given: {', '.join(out)}) or scaled below 1; the missing fraction is simulated as tissue-free",
            FractionWarning, stacklevel=2)
    return out


def sum_deficit(fractions: Mapping[str, Volume], *, sum_tolerance: float = SUM_TOLERANCE,
                brain_mask: Volume | None = None) -> tuple[int, int, float]:
    """Voxels inside the brain whose fractions sum to less than ``1 - sum_tolerance``.

    Returns ``(count, brain voxels, median sum of those voxels)``. The brain is ``brain_mask``
    (> 0) or, without one, the voxels where the fractions sum to 0.5 or more with enclosed
    holes filled (a missing CSF map leaves the ventricles at 0); either is eroded by one
    voxel, because voxels at the brain's edge share their volume with the background.
    """
    from scipy import ndimage

    total = sum(np.asarray(v.data, dtype=np.float64) for v in fractions.values())
    if brain_mask is not None:
        brain = np.asarray(brain_mask.data) > 0
    else:
        brain = ndimage.binary_fill_holes(total >= 0.5)
    brain = ndimage.binary_erosion(brain)
    short = brain & (total < 1.0 - sum_tolerance)
    n = int(np.count_nonzero(short))
    return n, int(np.count_nonzero(brain)), float(np.median(total[short])) if n else 1.0


def _checked_range(data: np.ndarray, where: str) -> np.ndarray:
    data = np.asarray(data, dtype=np.float32)
    lo, hi = float(data.min()), float(data.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        hint = ""  # a hint only when the maximum is where pure voxels of such a map are: ~100 or ~255
        if 90.0 <= hi <= 100.0 + 1e-3 and lo >= 0:
            hint = " (it looks like percent: divide by 100)"
        if 230.0 <= hi <= 255.0 + 1e-3 and lo >= 0:
            hint = " (it looks like 8-bit probabilities: divide by 255)"
        raise FractionError(f"{where}: fractions must lie in [0, 1], found values in [{lo:g}, {hi:g}]{hint}")
    return np.clip(data, 0.0, 1.0)


def validate_fractions(fractions: Mapping[str, Volume], *, sum_tolerance: float = SUM_TOLERANCE) -> None:
    """Raise unless all maps share a grid, are finite, lie in [0, 1] and sum to at most ``1 + sum_tolerance``."""
    if not fractions:
        raise FractionError("no tissue fractions given")
    items = list(fractions.items())
    name0, vol0 = items[0]
    total = np.zeros(vol0.data.shape, dtype=np.float64)
    for name, vol in items:
        vol0.require_same_grid(vol, f"{name0} and {name} fractions")
        data = np.asarray(vol.data)
        if not np.all(np.isfinite(data)):
            raise NonFiniteError(f"{name} fractions: {int(np.count_nonzero(~np.isfinite(data)))} voxel(s) are NaN or infinite")
        lo, hi = float(data.min()), float(data.max())
        if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
            raise FractionError(f"{name} fractions must lie in [0, 1], found values in [{lo:g}, {hi:g}]")
        total += data
    over = total > 1.0 + sum_tolerance
    if np.any(over):
        n = int(np.count_nonzero(over))
        raise FractionError(
            f"tissue fractions sum to more than 1 in {n} voxel(s) (maximum {float(total.max()):.3f}; "
            f"tolerance {sum_tolerance:g}); the maps overlap — e.g. a lesion map not subtracted from WM"
        )


def labels_from_fractions(fractions: Mapping[str, Volume], *, labels: Mapping[str, int] | None = None,
                          min_total: float = 0.5) -> Volume:
    """Hard label map (uint8): the tissue with the largest fraction where the fractions sum to ``min_total`` or more."""
    if not fractions:
        raise FractionError("no tissue fractions given")
    labels = dict(DEFAULT_LABELS if labels is None else labels)
    names = list(fractions)
    ref = fractions[names[0]]
    for name in names[1:]:
        ref.require_same_grid(fractions[name], f"{names[0]} and {name} fractions")
    stack = np.stack([np.asarray(fractions[n].data, dtype=np.float32) for n in names])
    values = np.array([labels[canonical_tissue(n)] for n in names], dtype=np.uint8)
    out = values[np.argmax(stack, axis=0)]
    out[stack.sum(axis=0) < min_total] = 0
    return ref.with_data(out.astype(np.uint8))
