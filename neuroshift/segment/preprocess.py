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

#: Default brain-mask thresholds of the released pipelines (raw intensities).
RAW_THRESHOLDS = {"wmh": {"FLAIR": 70.0, "T1": 30.0}, "claustrum": {"*": 10.0}}
#: Default relative thresholds (fraction of the channel's 99th percentile) for non-raw data.
RELATIVE_THRESHOLDS = {"FLAIR": 0.10, "T1": 0.05, "*": 0.05}


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


# ============================================================== brain mask and z-score
@dataclass
class BrainMaskSpec:
    """How the brain mask is computed (``preprocessing.brain_mask`` in the manifest).

    * ``mode="absolute"``: ``thresholds`` are raw intensities, as released (WMH FLAIR 70, T1 30;
      claustrum 10 on skull-stripped T1). Right for scanner-scaled data like the training data.
    * ``mode="relative"``: a threshold is a fraction of the channel's 99th percentile inside the
      field of view (defaults :data:`RELATIVE_THRESHOLDS`): for data on another scale (normalised,
      synthetic, or rescaled by a conversion tool) where raw 70/30 mean nothing.
    * ``thresholds``: ``{channel name: value}``; ``"*"`` applies to channels not named.
    * ``largest_component`` / ``fill_holes``: per axial slice (2D, 8-connected), as in the release.
    * ``channel``: compute one mask from this channel and z-score every channel inside it (the newest
      WMH release, ``test_tf2.py``: FLAIR >= 30 for FLAIR and T1); ``None``: each channel its own mask.
    * ``enabled=False``: no mask; z-score over the whole field of view.
    """

    mode: str = "absolute"
    thresholds: dict[str, float] = field(default_factory=lambda: {"*": 10.0})
    largest_component: bool = True
    fill_holes: bool = True
    enabled: bool = True
    channel: str | None = None

    @classmethod
    def from_manifest(cls, value: Any, task: str = "") -> "BrainMaskSpec":
        task = (task or "").lower()
        default = dict(RAW_THRESHOLDS.get(task, {"*": 10.0}))
        if value is None or value is True or value == "threshold":
            return cls("absolute", default)
        if value is False or value == "none":
            return cls(enabled=False)
        if not isinstance(value, Mapping):
            raise InputError(f"preprocessing.brain_mask must be true/false or an object, got {value!r}")
        mode = str(value.get("mode", "absolute")).lower()
        if mode not in ("absolute", "relative"):
            raise InputError(f"brain mask mode must be 'absolute' or 'relative', got '{mode}'")
        base = default if mode == "absolute" else dict(RELATIVE_THRESHOLDS)
        thresholds = {**base, **{str(k): float(v) for k, v in dict(value.get("thresholds", {})).items()}}
        channel = value.get("channel")
        return cls(mode, thresholds, bool(value.get("largest_component", True)),
                   bool(value.get("fill_holes", True)), bool(value.get("enabled", True)),
                   str(channel) if channel else None)

    def to_manifest(self) -> dict[str, Any]:
        out = {"mode": self.mode, "thresholds": dict(self.thresholds), "largest_component": self.largest_component,
               "fill_holes": self.fill_holes, "enabled": self.enabled}
        if self.channel:
            out["channel"] = self.channel
        return out

    def threshold_for(self, channel: str, array: np.ndarray) -> float:
        value = _lookup(self.thresholds, channel)
        if value is None:
            raise InputError(f"no brain-mask threshold for channel '{channel}' (give one, or '*')")
        if self.mode == "relative":
            finite = array[np.isfinite(array)]
            scale = float(np.percentile(finite, 99)) if finite.size else 0.0
            return value * scale
        return float(value)


def _lookup(table: Mapping[str, Any], channel: str):
    for key, value in table.items():
        if key.lower() == channel.lower():
            return value
    for alias in channel_aliases(channel):
        for key, value in table.items():
            if key.lower() == alias:
                return value
    return table.get("*")


def channel_aliases(channel: str) -> list[str]:
    """Lower-case names that mean the same channel (T1/T1w/MPRAGE, FLAIR/T2-FLAIR, T2/T2w); ``[name]`` else."""
    c = channel.lower()
    groups = [{"t1", "t1w", "t1-weighted", "mprage"}, {"flair", "t2flair", "t2-flair"}, {"t2", "t2w"}]
    for g in groups:
        if c in g:
            return sorted(g)
    return [c]


def brain_mask(array: np.ndarray, threshold: float, *, largest_component: bool = True,
               fill_holes: bool = True) -> np.ndarray:
    """``array >= threshold``, then per axial slice (axis 0) the largest 8-connected component and hole filling."""
    from scipy import ndimage

    mask = np.asarray(array) >= threshold
    if not (largest_component or fill_holes):
        return mask
    structure = np.ones((3, 3), dtype=bool)
    out = np.zeros_like(mask)
    for z in range(mask.shape[0]):
        sl = mask[z]
        if not sl.any():
            continue
        if largest_component:
            labels, n = ndimage.label(sl, structure=structure)
            if n > 1:
                sizes = np.bincount(labels.ravel())
                sizes[0] = 0
                sl = labels == int(np.argmax(sizes))
        if fill_holes:
            sl = _fill_holes_2d(sl)
        out[z] = sl
    return out


def _fill_holes_2d(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` (4-connected background) by one labelling pass: much faster."""
    from scipy import ndimage

    background, _ = ndimage.label(~mask)
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    border = border[border > 0]
    return mask | ~np.isin(background, border)


def zscore_in_mask(array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``(array - mean) / std`` with mean and std over ``mask`` (float64 statistics, float32 out)."""
    a = np.asarray(array, dtype=np.float64)
    values = a[mask] if mask is not None else a.ravel()
    if values.size < 2:
        raise InputError("the brain mask is empty (or one voxel): cannot z-score; check the brain-mask "
                         "thresholds (raw 70/30 need scanner-scaled intensities; use relative thresholds otherwise)")
    mean = float(values.mean())
    std = float(values.std())
    if not np.isfinite(std) or std <= 0:
        raise InputError("the image is constant inside the brain mask: cannot z-score")
    return ((a - mean) / std).astype(np.float32)


# ============================================================== crop / pad of 2D slices
@dataclass(frozen=True)
class CropPad:
    """A centred crop/pad of the last two axes from ``original_hw`` to ``target_hw``."""

    original_hw: tuple[int, int]
    target_hw: tuple[int, int]

    def offsets(self) -> tuple[int, int]:
        """Rows/columns added before (padding, >= 0) or removed before (cropping, <= 0) along (H, W)."""
        return tuple((t - o) // 2 if t >= o else -((o - t) // 2) for o, t in zip(self.original_hw, self.target_hw))


def crop_or_pad(slices: np.ndarray, target_hw: Sequence[int] | None, pad_value: float = 0.0) -> tuple[np.ndarray, CropPad]:
    """Centre-crop or pad the last two axes of ``slices`` to ``target_hw`` (``None``: unchanged).

    Odd differences put the extra row/column at the bottom/right (pad) or remove it from there (crop),
    as in the released code.
    """
    hw = tuple(int(v) for v in slices.shape[-2:])
    if target_hw is None:
        return slices, CropPad(hw, hw)
    target = tuple(int(v) for v in target_hw)
    info = CropPad(hw, target)
    if target == hw:
        return slices, info
    out = np.full(slices.shape[:-2] + target, pad_value, dtype=slices.dtype)
    src, dst = _overlap(info)
    out[(..., dst[0], dst[1])] = slices[(..., src[0], src[1])]
    return out, info


def uncrop(slices: np.ndarray, info: CropPad, fill: float = 0.0) -> np.ndarray:
    """Undo :func:`crop_or_pad` on the last two axes (cropped-away pixels get ``fill``)."""
    if tuple(slices.shape[-2:]) != info.target_hw:
        raise DimensionError(f"slices are {tuple(slices.shape[-2:])}, expected {info.target_hw}")
    if info.original_hw == info.target_hw:
        return slices
    out = np.full(slices.shape[:-2] + info.original_hw, fill, dtype=slices.dtype)
    src, dst = _overlap(info)
    out[(..., src[0], src[1])] = slices[(..., dst[0], dst[1])]
    return out


def _overlap(info: CropPad) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    src, dst = [], []
    for o, t in zip(info.original_hw, info.target_hw):
        if t >= o:  # pad: the whole original sits at (t - o) // 2 in the target
            off = (t - o) // 2
            src.append(slice(0, o))
            dst.append(slice(off, off + o))
        else:  # crop: the target takes original[(o - t) // 2 : (o - t) // 2 + t]
            off = (o - t) // 2
            src.append(slice(off, off + t))
            dst.append(slice(0, t))
    return (src[0], src[1]), (dst[0], dst[1])


def crop_overlap(info: CropPad) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """``(src, dst)``: the original-slice pixels ``src`` sit at model-input pixels ``dst`` (rows, columns)."""
    return _overlap(info)


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
