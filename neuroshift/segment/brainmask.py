"""Brain mask and z-score of the multi-view pipelines (step 3 and 4 of :mod:`.preprocess`).

As released for WMH the thresholds are raw intensities (FLAIR >= 70, T1 >= 30; claustrum T1 >= 10 on
skull-stripped scans); :class:`BrainMaskSpec` also has the relative mode that non-raw data needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import InputError

#: Default brain-mask thresholds of the released pipelines (raw intensities).
RAW_THRESHOLDS = {"wmh": {"FLAIR": 70.0, "T1": 30.0}, "claustrum": {"*": 10.0}}
#: Default relative thresholds (fraction of the channel's 99th percentile) for non-raw data.
RELATIVE_THRESHOLDS = {"FLAIR": 0.10, "T1": 0.05, "*": 0.05}



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
