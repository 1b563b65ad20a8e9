"""Centred crop/pad of 2D slices to the network input size, and its exact inverse (step 5 of :mod:`.preprocess`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import DimensionError

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
