"""Input checks and the fraction stack of the tissue-wise model (:func:`prepare_inputs`; used by :mod:`.tissuewise`).

The image and fraction maps are validated (3D, real, finite, same grid, fractions in [0, 1] within
:data:`FRACTION_TOLERANCE`) and the fractions stacked as a contiguous float32 ``(tissues, voxels)``
array over the bounding box of the tissue support, in the layout (box or slab) that moves fewer
bytes per derivative.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import DimensionError, GeometryError, InputError, NonFiniteError, ParameterRangeError
from ..io.volume import Volume

__all__ = ["prepare_inputs", "as_array", "TISSUE_ORDER", "FRACTION_TOLERANCE"]

#: Tissue order of the fraction stack.
TISSUE_ORDER = ("CSF", "GM", "WM", "lesion")

#: Fractions may exceed [0, 1] by this much (resampling / rounding) before they are refused.
FRACTION_TOLERANCE = 1e-3


def as_array(x, what: str) -> tuple[np.ndarray, Volume | None]:
    if isinstance(x, Volume):
        return x.data, x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x), None


def prepare_inputs(image, fractions: Mapping, brain_mask=None):
    """Validate and stack. Returns (image, geometry, stack, box, order, mask_box, joint or None)."""
    from ..tissues.maps import canonical_tissue

    img, geom = as_array(image, "image")
    if img.ndim != 3:
        raise DimensionError(f"the image must be a 3D volume, got an array of shape {img.shape} ({img.ndim}D)")
    if not np.issubdtype(img.dtype, np.number) or np.issubdtype(img.dtype, np.complexfloating):
        raise InputError(f"the image must be real-valued, got {img.dtype}")
    img = np.array(img, dtype=np.float32, order="C", copy=True)
    if not np.all(np.isfinite(img)):
        raise NonFiniteError(f"the image has {int(np.count_nonzero(~np.isfinite(img)))} NaN or infinite voxel(s)")
    if not fractions:
        raise InputError("no tissue fraction maps were given (need at least one of CSF, GM, WM, lesion)")
    maps: dict[str, np.ndarray] = {}
    for name, f in fractions.items():
        tissue = canonical_tissue(name)
        if tissue in maps:
            raise InputError(f"tissue {tissue} is given twice")
        arr, fgeom = as_array(f, tissue)
        if arr.shape != img.shape:
            raise GeometryError(f"the {tissue} fraction map has shape {arr.shape}, the image {img.shape}")
        if geom is not None and fgeom is not None:
            geom.require_same_grid(fgeom, f"image and {tissue} fraction map")
        arr = np.asarray(arr, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise NonFiniteError(f"the {tissue} fraction map has NaN or infinite voxels")
        if lo < -FRACTION_TOLERANCE or hi > 1 + FRACTION_TOLERANCE:
            raise ParameterRangeError(f"the {tissue} fraction map has values in [{lo:g}, {hi:g}], outside [0, 1]")
        maps[tissue] = arr
    order = tuple(t for t in TISSUE_ORDER if t in maps)
    mask = None
    if brain_mask is not None:
        m, mgeom = as_array(brain_mask, "brain mask")
        if m.shape != img.shape:
            raise GeometryError(f"the brain mask has shape {m.shape}, the image {img.shape}")
        if geom is not None and mgeom is not None:
            geom.require_same_grid(mgeom, "image and brain mask")
        mask = np.asarray(m) > 0
    # Bounding box of the tissue support (and of the mask, which only restricts).
    support = np.zeros(img.shape, dtype=bool)
    for t in order:
        support |= maps[t] > 0
    if mask is not None:
        support &= mask
    if not support.any():
        raise InputError("the tissue fraction maps are zero everywhere (inside the brain mask)")
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(support.any(axis=other))
        box.append(slice(int(nz[0]), int(nz[-1]) + 1))
    box = tuple(box)
    # Memory traffic per derivative (bytes per voxel, float32): box mode = copy (8 per voxel) + sgemv
    # (4·T + 4 per box voxel) + strided add (12 per box voxel); slab mode (box widened to whole slices,
    # contiguous) = copy outside the slab (8) + sgemv [S; f] straight into the output (4·(T + 1) + 4).
    n_all = img.size
    n_box = int(np.prod([s.stop - s.start for s in box]))
    n_slab = (box[0].stop - box[0].start) * int(np.prod(img.shape[1:]))
    cost_box = 8 * n_all + (4 * len(order) + 16) * n_box
    cost_slab = 8 * (n_all - n_slab) + (4 * len(order) + 8) * n_slab
    slab_mode = cost_slab < cost_box
    if slab_mode:
        box = (box[0], slice(0, img.shape[1]), slice(0, img.shape[2]))
        n_box = n_slab
    joint = np.empty((len(order) + 1, n_box), dtype=np.float32)
    joint[0] = img[box].reshape(-1)
    stack = joint[1:]
    for i, t in enumerate(order):
        region = np.clip(maps[t][box], 0.0, 1.0)
        if mask is not None:
            region = np.where(mask[box], region, 0.0)
        stack[i] = region.reshape(-1)
    mask_box = support[box].reshape(-1)
    return img, geom, stack, box, order, mask_box, (joint if slab_mode else None)
