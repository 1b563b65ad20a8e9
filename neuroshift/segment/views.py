"""2D slices of a canonical volume along the three anatomical views, and back.

Canonical arrays are ``[k, j, i]`` with the index axes along the model's orientation code
(default RAS: ``k`` inferior->superior, ``j`` posterior->anterior, ``i`` left->right; see
:mod:`neuroshift.segment.preprocess`). As in the released Keras code (numpy transposes of the
SimpleITK array, no flips):

* ``axial``: slices along ``k``; a slice is ``(j, i)`` -- ``array`` itself;
* ``coronal``: slices along ``j``; a slice is ``(k, i)`` -- ``array.transpose(1, 0, 2)``;
* ``sagittal``: slices along ``i``; a slice is ``(k, j)`` -- ``array.transpose(2, 0, 1)``.

Multi-channel arrays ``(C, K, J, I)`` become ``(N, C, H, W)`` slice stacks.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from ..errors import InputError
from .preprocess import CropPad, crop_or_pad, uncrop

VIEWS = ("axial", "coronal", "sagittal")
#: For each view: the permutation of the ``(K, J, I)`` axes that puts the slicing axis first.
_ORDER = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}
VIEW_ORDER = _ORDER
#: For each view: the ``(K, J, I)`` axis its slices run along.
SLICING_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}
#: For each view: the in-plane axis (W) along which a left-right flip happens (None: LR is the slicing axis).
LR_FLIP_AXIS = {"axial": -1, "coronal": -1, "sagittal": None}


def check_view(view: str) -> str:
    v = str(view).lower()
    if v not in _ORDER:
        raise InputError(f"unknown view '{view}'; use {', '.join(VIEWS)}")
    return v


def to_view(volume: np.ndarray, view: str) -> np.ndarray:
    """``(..., K, J, I)`` -> ``(..., N, H, W)`` with ``N`` slices of the view (a view, not a copy)."""
    order = _ORDER[check_view(view)]
    lead = volume.ndim - 3
    return np.transpose(volume, tuple(range(lead)) + tuple(lead + a for a in order))


def from_view(stack: np.ndarray, view: str) -> np.ndarray:
    """Inverse of :func:`to_view`: ``(..., N, H, W)`` -> ``(..., K, J, I)``."""
    order = _ORDER[check_view(view)]
    inv = tuple(int(v) for v in np.argsort(order))
    lead = stack.ndim - 3
    return np.transpose(stack, tuple(range(lead)) + tuple(lead + a for a in inv))


def view_slices(channels: np.ndarray, view: str, crop_hw: Sequence[int] | None = None,
                pad_value: float = 0.0, indices: Sequence[int] | None = None) -> tuple[np.ndarray, CropPad]:
    """Slices ``(N, C, H, W)`` (float32, contiguous) of a ``(C, K, J, I)`` volume, cropped/padded to ``crop_hw``.

    ``indices`` selects slices along the view's slicing axis (default: all).
    """
    if channels.ndim != 4:
        raise InputError(f"expected (C, K, J, I) channels, got shape {channels.shape}")
    stack = to_view(channels, view)  # (C, N, H, W)
    if indices is not None:
        stack = stack[:, np.asarray(indices, dtype=int)]
    stack = np.ascontiguousarray(np.moveaxis(stack, 0, 1), dtype=np.float32)  # (N, C, H, W)
    return crop_or_pad(stack, crop_hw, pad_value)


def assemble(pred: np.ndarray, view: str, info: CropPad, shape: Sequence[int],
             indices: Sequence[int] | None = None, fill: float = 0.0) -> np.ndarray:
    """Predictions ``(N, H, W)`` of :func:`view_slices` back into a ``(K, J, I)`` volume of ``shape``.

    Slices not in ``indices`` (when given) are ``fill``.
    """
    pred = uncrop(np.asarray(pred), info, fill)
    out = np.full(tuple(shape), fill, dtype=np.float32)
    target = to_view(out, view)  # writable view into out
    if indices is None:
        target[...] = pred
    else:
        target[np.asarray(indices, dtype=int)] = pred
    return out


def identical_slices(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bit-identical slices of a ``(N, ...)`` stack: ``(first, inverse)`` with ``stack[first][inverse] == stack``.

    ``first``: index of the first slice of every group of bit-identical slices (ascending); ``inverse``: for
    each slice, the position of its group in ``first``. A network gives bit-identical outputs for
    bit-identical inputs, so only ``stack[first]`` needs predicting (typically all-background slices at the
    edges of a view). Exact: slices are grouped by a hash of their bytes, then compared element by element.
    """
    import hashlib

    groups: dict[bytes, list[int]] = {}  # hash -> representatives with that hash
    first: list[int] = []
    inverse = np.empty(len(stack), dtype=np.int64)
    for n in range(len(stack)):
        sl = np.ascontiguousarray(stack[n])
        key = hashlib.blake2b(sl.view(np.uint8).reshape(-1), digest_size=16).digest()
        reps = groups.setdefault(key, [])
        for rep in reps:
            if np.array_equal(stack[first[rep]].view(np.uint8), sl.view(np.uint8)):
                inverse[n] = rep
                break
        else:
            reps.append(len(first))
            inverse[n] = len(first)
            first.append(n)
    return np.asarray(first, dtype=np.int64), inverse


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive ``slice`` objects covering ``range(n)`` in steps of ``batch_size``."""
    batch_size = max(1, int(batch_size))
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


__all__ = ["VIEWS", "VIEW_ORDER", "SLICING_AXIS", "LR_FLIP_AXIS", "assemble", "batches", "check_view", "from_view",
           "identical_slices", "to_view", "view_slices"]
