"""Ensemble fusion, thresholds and the anatomically consistent slab removal of dissertation 003.

* Members of one view are averaged (:func:`ensemble_mean`); the view means are averaged with equal
  weights (:func:`fuse_views`): for the 3+3 claustrum ensemble this is ``(mean_axial +
  mean_coronal) / 2``, not the mean of the 6 members (the same only when every view has as many
  members, which the package format guarantees).
* The fused probability is thresholded with ``p > threshold`` (:func:`threshold`; released: WMH
  0.5, newest WMH release 0.45, claustrum 0.40).
* Slab removal (:func:`slab_keep_mask`): the first and last ``fraction`` of the slices along the
  slicing axis of every view of the model are cleared -- 10 % axial for WMH, 20 % along the axial and
  coronal axes for the adult claustrum, 25 % for neonates. ``n_cut = int(n * fraction)`` slices at
  each end, as in the released code.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .views import SLICING_AXIS, check_view

#: Slab fractions of the papers (applied along each slicing axis of the model's views).
SLAB_FRACTIONS = {"wmh": 0.10, "claustrum": 0.20, "claustrum-neonatal": 0.25}
#: Slab rules (manifest ``slab_fill``): ``zero`` clears the union of every view's slabs in the fused
#: probability (our packages; the WMH release, one view); ``view-min``: each view fills what it did not
#: predict (its slabs, cropped-away borders) with the minimum of its mean probability and nothing is
#: cleared after fusion, as the authors' claustrum release does (``test_two_views.py``, ``crop_or_pad``).
SLAB_FILLS = ("zero", "view-min")
#: Thresholds of the released code.
THRESHOLDS = {"wmh": 0.5, "claustrum": 0.40}


def ensemble_mean(members: Sequence[np.ndarray]) -> np.ndarray:
    """Voxel-wise mean of member probability maps (float64 accumulation; order-independent up to rounding)."""
    members = list(members)
    if not members:
        raise InputError("no ensemble members to fuse")
    acc = np.zeros(np.shape(members[0]), dtype=np.float64)
    for m in members:
        if np.shape(m) != acc.shape:
            raise InputError(f"ensemble members differ in shape: {np.shape(m)} vs {acc.shape}")
        acc += m
    return (acc / len(members)).astype(np.float32)


def fuse_views(view_means: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> np.ndarray:
    """Equal-weight average of the per-view ensemble means."""
    values = list(view_means.values()) if isinstance(view_means, Mapping) else list(view_means)
    return ensemble_mean(values)


def fuse(members_by_view: Mapping[str, Sequence[np.ndarray]]) -> np.ndarray:
    """Mean within each view, then equal-weight mean of the views."""
    return fuse_views({v: ensemble_mean(ms) for v, ms in members_by_view.items()})


def threshold(probability: np.ndarray, value: float) -> np.ndarray:
    """Binary label ``probability > value`` (uint8)."""
    if not 0.0 <= float(value) <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {value}")
    return (np.asarray(probability) > float(value)).astype(np.uint8)


def slab_count(n: int, fraction: float) -> int:
    """Slices removed at each end of an axis of ``n`` slices: ``int(n * fraction)``."""
    if not 0.0 <= float(fraction) < 0.5:
        raise InputError(f"slab fraction must be in [0, 0.5), got {fraction}")
    return int(n * float(fraction))


def slab_fractions(views: Iterable[str], fraction: float | Mapping[str, float] | None) -> dict[str, float]:
    """``{view: fraction}`` from a manifest ``slab_fraction`` (one number for all views, or per view)."""
    views = [check_view(v) for v in views]
    if fraction is None:
        return {v: 0.0 for v in views}
    if isinstance(fraction, Mapping):
        return {v: float(fraction.get(v, 0.0)) for v in views}
    return {v: float(fraction) for v in views}


def slab_keep_mask(shape: Sequence[int], views: Iterable[str],
                   fraction: float | Mapping[str, float] | None) -> np.ndarray:
    """Boolean ``(K, J, I)`` mask, False in the removed slabs of each view's slicing axis."""
    keep = np.ones(tuple(shape), dtype=bool)
    for view, frac in slab_fractions(views, fraction).items():
        axis = SLICING_AXIS[view]
        n = shape[axis]
        cut = slab_count(n, frac)
        if cut == 0:
            continue
        index: list[Any] = [slice(None)] * 3
        index[axis] = slice(0, cut)
        keep[tuple(index)] = False
        index[axis] = slice(n - cut, n)
        keep[tuple(index)] = False
    return keep


def kept_slices(n: int, fraction: float) -> np.ndarray:
    """Indices of the slices of one axis that survive slab removal (the others need no inference)."""
    cut = slab_count(n, fraction)
    return np.arange(cut, n - cut)


def remove_slabs(array: np.ndarray, views: Iterable[str], fraction: float | Mapping[str, float] | None) -> np.ndarray:
    """A copy of ``array`` (``(K, J, I)``) with the slabs set to 0."""
    out = np.array(array, copy=True)
    out[~slab_keep_mask(out.shape, views, fraction)] = 0
    return out


__all__ = ["SLAB_FILLS", "SLAB_FRACTIONS", "THRESHOLDS", "ensemble_mean", "fuse", "fuse_views", "kept_slices", "remove_slabs",
           "slab_count", "slab_fractions", "slab_keep_mask", "threshold"]
