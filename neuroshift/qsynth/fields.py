"""Random fields of qSynth: smooth texture, smooth deformations, low-resolution reslicing (all seeded).

* :func:`smooth_field` — a unit-variance random field correlated over ``scale_vox`` voxels: white noise
  on a grid ``scale_vox`` times coarser, trilinearly upsampled, then standardised;
* :func:`displacement_field` / :func:`warp` — a smooth displacement (voxels) of largest component
  ``amplitude_vox`` (coarse control grid of spacing ``scale_vox``, cubic upsampling), applied by
  resampling (nearest neighbour for labels, linear for fractions and images);
* :func:`reslice_low_res` — the image acquired with thick slices along one axis: box-averaged down to
  ``thickness_vox`` voxels per slice and linearly interpolated back to the original grid (information lost,
  shape and geometry kept).
"""

from __future__ import annotations

import numpy as np

__all__ = ["smooth_field", "displacement_field", "warp", "reslice_low_res"]


def _coarse_shape(shape, scale):
    return tuple(max(2, int(np.ceil(n / float(scale))) + 1) for n in shape)


def _upsample(coarse: np.ndarray, shape, order: int = 1) -> np.ndarray:
    grids = [np.linspace(0, c - 1, n, dtype=np.float32) for c, n in zip(coarse.shape, shape)]
    # separable upsampling: one axis at a time (cheap), same result as trilinear for order 1
    out = coarse.astype(np.float32)
    for axis, g in enumerate(grids):
        lo = np.clip(np.floor(g).astype(np.int64), 0, coarse.shape[axis] - 2)
        w = (g - lo).astype(np.float32)
        a = np.take(out, lo, axis=axis)
        b = np.take(out, lo + 1, axis=axis)
        view = [1] * out.ndim
        view[axis] = len(g)
        w = w.reshape(view)
        out = a * (1 - w) + b * w
    return out


def smooth_field(shape, rng: np.random.Generator, scale_vox: float = 8.0) -> np.ndarray:
    """Zero-mean, unit-SD float32 random field of ``shape`` correlated over about ``scale_vox`` voxels."""
    coarse = rng.standard_normal(_coarse_shape(shape, scale_vox)).astype(np.float32)
    f = _upsample(coarse, shape)
    f -= f.mean()
    sd = float(f.std())
    return f / sd if sd > 0 else f


def displacement_field(shape, rng: np.random.Generator, amplitude_vox: float, scale_vox: float = 16.0
                       ) -> np.ndarray:
    """Displacement ``(3, *shape)`` in voxels, smooth, with max |component| = ``amplitude_vox``."""
    comps = []
    for _ in range(len(shape)):
        coarse = rng.standard_normal(_coarse_shape(shape, scale_vox)).astype(np.float32)
        comps.append(_upsample(coarse, shape))
    d = np.stack(comps)
    peak = float(np.abs(d).max())
    return d * (float(amplitude_vox) / peak) if peak > 0 and amplitude_vox > 0 else np.zeros_like(d)


def warp(array: np.ndarray, displacement: np.ndarray, order: int) -> np.ndarray:
    """``array`` sampled at ``x + displacement(x)`` (order 0: nearest, 1: linear; edges: nearest value)."""
    from scipy.ndimage import map_coordinates

    if not np.any(displacement):
        return array.copy()
    grid = np.indices(array.shape, dtype=np.float32)
    coords = grid + displacement.astype(np.float32)
    out = map_coordinates(array, coords, order=order, mode="nearest", prefilter=False)
    return out.astype(array.dtype, copy=False)


def reslice_low_res(image: np.ndarray, axis: int, thickness_vox: float) -> np.ndarray:
    """Thick-slice acquisition along ``axis``: mean over slabs of ``thickness_vox`` voxels, linear back."""
    t = float(thickness_vox)
    n = image.shape[axis]
    if t <= 1.0 or n < 2:
        return image.copy()
    m = max(2, int(round(n / t)))
    edges = np.linspace(0, n, m + 1)
    idx = np.minimum((np.arange(n) + 0.5) * m / n, m - 1e-6).astype(np.int64)
    sums = np.zeros(image.shape[:axis] + (m,) + image.shape[axis + 1:], dtype=np.float64)
    np.add.at(sums, (slice(None),) * axis + (idx,), image.astype(np.float64))
    counts = np.bincount(idx, minlength=m).astype(np.float64)
    view = [1] * image.ndim
    view[axis] = m
    slabs = sums / counts.reshape(view)
    centres = (edges[:-1] + edges[1:]) / 2 - 0.5  # slab centres in voxel coordinates
    pos = np.clip(np.interp(np.arange(n), centres, np.arange(m)), 0, m - 1)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, m - 2)
    w = (pos - lo).reshape(view[:axis] + [n] + view[axis + 1:])
    out = np.take(slabs, lo, axis=axis) * (1 - w) + np.take(slabs, lo + 1, axis=axis) * w
    return out.astype(image.dtype, copy=False)
