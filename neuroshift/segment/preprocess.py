"""Preprocessing of the multi-view U-Net pipelines (dissertation 003), and its exact inverse.

The chain, applied by :func:`prepare_inputs` and undone by :meth:`PreparedInput.to_input_grid`:

1. **Reorientation** (:func:`~neuroshift.segment.orientation.reorient`): the index axes are
   permuted and flipped, without interpolation, so that they point along the model's canonical anatomical axes
   (``preprocessing.orientation`` in the manifest, nibabel-style axis codes; default ``"RAS"``:
   ``i`` towards Right, ``j`` towards Anterior, ``k`` towards Superior). In the ``[k, j, i]`` array
   an *axial* slice is ``array[k]`` (rows A-P, columns L-R), a *coronal* slice ``array[:, j]``
   and a *sagittal* one ``array[:, :, i]`` (see :mod:`neuroshift.segment.views`). The same scan
   stored RAS, LPS or with permuted axes gives the same canonical array, so the segmentation does
   not depend on how the file was written. Oblique scans keep their obliquity (the closest
   permutation is chosen); nothing is resampled by this step. ``"stored"`` keeps the stored array
   order (no reorientation), as the authors' released claustrum inference does; the imported WMH
   package uses ``"LPS"``, the stored order of the challenge files its networks were trained on.
2. **Resampling** to the model's voxel spacing (``preprocessing.spacing_mm``: a number, a list of
   three in canonical ``(i, j, k)`` order where ``null`` keeps the input's spacing on that axis, or
   ``null`` for no resampling), centre-aligned, linear for images (:func:`model_grid`,
   :func:`resample_to_grid`). Going back uses nearest neighbour for labels and linear interpolation
   for probabilities. Inputs already at the model spacing (within 1 %) are not resampled at all.
3. **Brain mask** per channel (:func:`brain_mask`): intensity threshold, largest connected component
   per axial slice, holes filled per axial slice. As released for WMH the thresholds are *raw*
   intensities (FLAIR >= 70, T1 >= 30; claustrum T1 >= 10 on skull-stripped scans): see
   :class:`BrainMaskSpec` for the relative mode that non-raw data (already normalised images,
   simulations, other scanners' scales) needs.
4. **z-score** of each channel inside its own brain mask (:func:`zscore_in_mask`).
5. **Crop/pad** of each 2D slice to ``preprocessing.crop_hw`` (centred; :func:`crop_or_pad`) and
   back (:func:`uncrop`); padding value ``preprocessing.pad_value`` (``"min"``, the minimum of the
   z-scored volume as in the claustrum release, or a number; the newest WMH release pads with 0).

Training code uses the same functions (:func:`prepare_inputs`, :func:`prepare_label`) so that a
model sees the same canonical slices at training and inference time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DimensionError, InputError
from ..io.volume import Volume
from .orientation import CANONICAL, STORED, Reorientation, check_orientation, orientation_code, reorient
from .brainmask import (  # noqa: F401  (public names of the preprocessing chain)
    RAW_THRESHOLDS, RELATIVE_THRESHOLDS, BrainMaskSpec, brain_mask, channel_aliases, zscore_in_mask,
)
from .cropping import CropPad, crop_or_pad, crop_overlap, uncrop  # noqa: F401


# ============================================================== resampling
def parse_spacing(spec: Any, native: Sequence[float]) -> np.ndarray:
    """Target spacing (i, j, k) from a manifest value: ``None``, a number, or 3 numbers/``None``."""
    native = np.asarray(native, dtype=float)
    if spec is None:
        return native.copy()
    if isinstance(spec, (int, float)):
        if spec <= 0:
            raise InputError(f"model spacing must be positive, got {spec}")
        return np.full(3, float(spec))
    values = list(spec)
    if len(values) != 3:
        raise InputError(f"model spacing must be one number or three (i, j, k), got {spec}")
    out = np.array([native[a] if v is None else float(v) for a, v in enumerate(values)])
    if np.any(out <= 0):
        raise InputError(f"model spacing must be positive, got {spec}")
    return out


def model_grid(vol: Volume, spacing: Sequence[float], rtol: float = 0.01) -> Volume | None:
    """An empty grid with ``spacing`` covering ``vol``'s field of view (centre-aligned, same direction).

    Returns ``None`` when ``vol`` already has that spacing (within ``rtol``): no resampling needed.
    """
    spacing = np.asarray(spacing, dtype=float)
    if np.allclose(vol.spacing, spacing, rtol=rtol, atol=0):
        return None
    n = np.array(vol.shape_ijk, dtype=float)
    size = np.maximum(1, np.round(n * vol.spacing / spacing - 1e-6)).astype(int)
    centre = vol.origin + vol.direction @ (vol.spacing * (n - 1) / 2.0)
    origin = centre - vol.direction @ (spacing * (size - 1) / 2.0)
    i, j, k = (int(v) for v in size)
    return Volume(np.zeros((k, j, i), dtype=np.uint8), spacing, origin, vol.direction.copy())


def resample_to_grid(vol: Volume, reference: Volume, *, interpolation: str = "linear",
                     default: float = 0.0, dtype=np.float32) -> Volume:
    """Resample ``vol`` onto ``reference``'s grid (``linear`` or ``nearest``), in physical space."""
    import SimpleITK as sitk

    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}.get(interpolation)
    if interp is None:
        raise InputError(f"unknown interpolation '{interpolation}' (linear or nearest)")
    src = vol.data
    if src.dtype == np.bool_:
        src = src.astype(np.uint8)
    if interpolation == "linear":
        src = src.astype(np.float32, copy=False)
    img = vol.with_data(src).to_sitk()
    ref = reference.with_data(np.zeros(reference.data.shape, dtype=np.uint8)).to_sitk()
    out = sitk.Resample(img, ref, sitk.Transform(), interp, float(default))
    arr = sitk.GetArrayFromImage(out).astype(dtype, copy=False)
    return reference.with_data(arr, **{k: v for k, v in vol.meta.items() if k != "mrml_node"})


# ============================================================== the whole chain
@dataclass
class PreparedInput:
    """Model-ready channels on the model grid, plus everything needed to go back to the input grid."""

    channels: np.ndarray  # (C, K, J, I) float32, z-scored, canonical orientation, model spacing
    channel_names: list[str]
    mask: np.ndarray  # (K, J, I) bool: union of the channel brain masks (model grid)
    channel_masks: dict[str, np.ndarray]
    reference: Volume  # the input grid of the outputs (first channel's grid)
    canonical: Volume  # the reoriented reference grid (input spacing), data = placeholder
    grid: Volume  # the model grid (canonical orientation, model spacing), data = placeholder
    reorientation: Reorientation
    resampled: bool
    pad_value: float
    warnings: list[str] = field(default_factory=list)

    @property
    def spacing(self) -> np.ndarray:
        """Model-grid spacing (i, j, k) in mm."""
        return self.grid.spacing

    def to_input_grid(self, array: np.ndarray, *, interpolation: str = "linear", dtype=np.float32) -> Volume:
        """A model-grid ``(K, J, I)`` array back on the input grid (labels: ``interpolation="nearest"``)."""
        if tuple(array.shape) != tuple(self.grid.data.shape):
            raise DimensionError(f"array of shape {array.shape} is not on the model grid {self.grid.data.shape}")
        on_canonical = self.grid.with_data(array)
        if self.resampled:
            on_canonical = resample_to_grid(on_canonical, self.canonical, interpolation=interpolation,
                                            default=0.0, dtype=dtype)
        data = self.reorientation.invert(np.asarray(on_canonical.data).astype(dtype, copy=False))
        return self.reference.with_data(data)

    def label_to_model_grid(self, label: Volume) -> np.ndarray:
        """A label map on the input grid -> model grid (nearest neighbour), for training."""
        if not label.same_grid(self.reference):
            label = resample_to_grid(label, self.reference, interpolation="nearest", dtype=label.data.dtype)
        canon = self.reorientation.apply(np.asarray(label.data))
        if not self.resampled:
            return canon
        vol = self.canonical.with_data(canon)
        return resample_to_grid(vol, self.grid, interpolation="nearest", dtype=label.data.dtype).data


def match_channels(inputs: Mapping[str, Volume], names: Sequence[str]) -> list[Volume]:
    """The input volumes in the model's channel order (names matched case-insensitively, T1/T1w alike)."""
    out = []
    for name in names:
        hit = None
        for key, vol in inputs.items():
            if key.lower() == name.lower() or key.lower() in channel_aliases(name):
                hit = vol
                break
        if hit is None and len(names) == 1 and len(inputs) == 1:
            hit = next(iter(inputs.values()))
        if hit is None:
            raise InputError(f"the model needs input channel '{name}' (channels: {', '.join(names)}); "
                             f"given: {', '.join(inputs) or 'none'}")
        out.append(hit)
    return out


def prepare_inputs(inputs: Mapping[str, Volume], manifest: Mapping[str, Any], *,
                   brain_mask_volume: Volume | None = None,
                   mask_spec: BrainMaskSpec | None = None) -> PreparedInput:
    """Apply the manifest's preprocessing to ``inputs`` (``{channel name: Volume}``).

    The first channel's grid is the reference: the outputs come back on it. Other channels on
    another grid are resampled onto it (linear) with a warning (they should be co-registered).
    ``brain_mask_volume`` replaces the threshold mask (any nonzero voxel is brain).
    """
    names = list(manifest["input_channels"])
    pre = dict(manifest.get("preprocessing", {}) or {})
    task = str(manifest.get("task", ""))
    vols = match_channels(inputs, names)
    reference = vols[0]
    warnings: list[str] = []
    aligned = [reference]
    for name, vol in zip(names[1:], vols[1:]):
        if not vol.same_grid(reference):
            warnings.append(f"channel {name} is not on the grid of {names[0]}; resampled onto it (linear) - "
                            "it must already be co-registered")
            vol = resample_to_grid(vol, reference, interpolation="linear", default=float(np.min(vol.data)))
        aligned.append(vol)
    code = pre.get("orientation", CANONICAL) or CANONICAL
    canon_vols, ro = [], None
    for vol in aligned:
        cv, ro = reorient(vol.with_data(vol.data.astype(np.float32, copy=False)), code)
        canon_vols.append(cv)
    canonical = canon_vols[0]
    target_spacing = parse_spacing(pre.get("spacing_mm"), canonical.spacing)
    grid = model_grid(canonical, target_spacing)
    resampled = grid is not None
    if resampled:
        canon_vols = [resample_to_grid(v, grid, interpolation="linear", default=float(np.min(v.data)))
                      for v in canon_vols]
    else:
        grid = canonical
    spec = mask_spec or BrainMaskSpec.from_manifest(pre.get("brain_mask"), task)
    external = None
    if brain_mask_volume is not None:
        bm = brain_mask_volume.with_data((np.asarray(brain_mask_volume.data) != 0).astype(np.uint8))
        if not bm.same_grid(reference):
            bm = resample_to_grid(bm, reference, interpolation="nearest", dtype=np.uint8)
        ext = reorient(bm, code)[0]
        if resampled:
            ext = resample_to_grid(ext, grid, interpolation="nearest", dtype=np.uint8)
        external = np.asarray(ext.data) != 0
    zscore = pre.get("zscore", True)
    if spec.channel and external is None and spec.enabled:
        src = match_channels(dict(zip(names, names)), [spec.channel])[0]  # the manifest's spelling
        src_arr = np.asarray(canon_vols[names.index(src)].data, dtype=np.float32)
        external = brain_mask(src_arr, spec.threshold_for(src, src_arr), largest_component=spec.largest_component,
                              fill_holes=spec.fill_holes)
        if external.sum() < 2:
            raise InputError(
                f"the brain mask from channel {src} is empty (threshold {spec.threshold_for(src, src_arr):.4g}, "
                f"{spec.mode}); raw thresholds need scanner-scaled intensities - use relative thresholds "
                "(--mask-mode relative) or give --brain-mask")
    channel_masks: dict[str, np.ndarray] = {}
    channels = []
    for name, vol in zip(names, canon_vols):
        arr = np.asarray(vol.data, dtype=np.float32)
        if external is not None:
            m = external
        elif spec.enabled:
            m = brain_mask(arr, spec.threshold_for(name, arr), largest_component=spec.largest_component,
                           fill_holes=spec.fill_holes)
        else:
            m = np.ones(arr.shape, dtype=bool)
        frac = float(m.mean())
        if m.sum() < 2:
            raise InputError(
                f"the brain mask of channel {name} is empty (threshold {spec.threshold_for(name, arr):.4g}, "
                f"{spec.mode}); raw thresholds (WMH FLAIR 70 / T1 30) need scanner-scaled intensities - "
                "use relative thresholds (--mask-mode relative) or give --brain-mask")
        if frac > 0.98 and spec.enabled and brain_mask_volume is None:
            warnings.append(f"the brain mask of channel {name} covers {100 * frac:.0f}% of the field of view: "
                            "the threshold is probably too low for this intensity scale")
        channel_masks[name] = m
        channels.append(zscore_in_mask(arr, m) if zscore else arr)
    stacked = np.stack(channels).astype(np.float32)
    union = np.logical_or.reduce(list(channel_masks.values()))
    pad = pre.get("pad_value", "min" if task.lower() == "claustrum" else 0.0)
    pad_value = float(stacked.min()) if str(pad).lower() == "min" else float(pad)
    return PreparedInput(stacked, names, union, channel_masks, reference, canonical.with_data(
        np.zeros(canonical.data.shape, dtype=np.uint8)), grid.with_data(np.zeros(grid.data.shape, dtype=np.uint8)),
        ro, resampled, pad_value, warnings)


def prepare_label(label: Volume, prepared: PreparedInput) -> np.ndarray:
    """A label map on the input grid -> the model grid ``(K, J, I)`` (nearest neighbour; for training)."""
    return prepared.label_to_model_grid(label)


__all__ = [
    "CANONICAL", "STORED", "BrainMaskSpec", "CropPad", "PreparedInput", "Reorientation", "brain_mask", "crop_or_pad",
    "channel_aliases", "check_orientation", "crop_overlap",
    "match_channels", "model_grid", "orientation_code", "parse_spacing", "prepare_inputs", "prepare_label",
    "reorient", "resample_to_grid", "uncrop", "zscore_in_mask",
]
