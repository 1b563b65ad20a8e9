"""Acquisition shifts beyond the signal equations: resolution / slice thickness, bias field, noise.

All functions keep the input grid (shape, spacing, origin, direction): a change of
resolution is simulated as the acquisition at the coarser resolution resampled back
onto the input grid, which is what a network sees after the usual resampling.

* :func:`change_slice_thickness` — average along the slice axis with a slice profile
  of the new thickness (rectangular: ideal; ``"gaussian"``: FWHM = thickness),
  sample at slice centres spaced by the new thickness, resample back linearly.
* :func:`change_resolution` — the same per axis for a new voxel size (mm).
* :func:`apply_bias_field` — multiplicative smooth field (receive-coil profile).
* :func:`add_noise` — Rician noise at σ (magnitude of complex Gaussian noise).
"""

from __future__ import annotations

import numpy as np

from ..errors import DimensionError, ParameterRangeError
from ..io.volume import Volume


def _data(x):
    return (x.data, x) if isinstance(x, Volume) else (np.asarray(x), None)


def _wrap(vol: Volume | None, data: np.ndarray, **meta):
    return vol.with_data(data, **meta) if vol is not None else data


def slice_axis(volume: Volume) -> int:
    """Array axis (``[k, j, i]`` order) of the slice direction: the one with the largest spacing (k on ties)."""
    sp = volume.spacing[::-1]  # spacing in array-axis order (k, j, i)
    return int(np.flatnonzero(sp >= sp.max() - 1e-6)[0])


def _profile_weights(width_vox: float, profile: str) -> np.ndarray:
    """Normalised 1D slice profile on integer voxel offsets for a slice of ``width_vox`` voxels."""
    if profile == "rect":
        half = width_vox / 2.0
        n = int(np.ceil(half - 0.5))
        offs = np.arange(-n, n + 1, dtype=np.float64)
        # overlap of [o-0.5, o+0.5] with [-half, half]
        w = np.clip(np.minimum(offs + 0.5, half) - np.maximum(offs - 0.5, -half), 0.0, None)
    elif profile == "gaussian":
        sigma = width_vox / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        n = int(np.ceil(3.0 * sigma))
        offs = np.arange(-n, n + 1, dtype=np.float64)
        w = np.exp(-0.5 * (offs / max(sigma, 1e-9)) ** 2)
    else:
        raise ParameterRangeError(f"unknown slice profile '{profile}'; use 'rect' or 'gaussian'")
    return w / w.sum()


def reacquire_axis(data: np.ndarray, axis: int, spacing_mm: float, width_mm: float, *,
                   profile: str = "rect") -> np.ndarray:
    """Acquire ``data`` along ``axis`` with slices of ``width_mm`` (contiguous) and resample back.

    A width not larger than the spacing returns a float32 copy (nothing to simulate).
    """
    from scipy.ndimage import convolve1d

    if not np.isfinite(width_mm) or width_mm <= 0:
        raise ParameterRangeError(f"slice thickness must be positive, got {width_mm:g} mm")
    data = np.asarray(data, dtype=np.float32)
    ratio = float(width_mm) / float(spacing_mm)
    if ratio <= 1.0 + 1e-6:
        return data.copy()
    n = data.shape[axis]
    blurred = convolve1d(data, _profile_weights(ratio, profile).astype(np.float32), axis=axis, mode="nearest")
    # Slice centres of the coarse acquisition (voxel units), centred on the field of view.
    n_slices = max(int(np.floor(n / ratio)), 1)
    first = (n - 1) / 2.0 - (n_slices - 1) * ratio / 2.0
    centres = first + ratio * np.arange(n_slices)
    lo = np.clip(np.floor(centres).astype(int), 0, n - 1)
    hi = np.clip(lo + 1, 0, n - 1)
    frac = np.clip(centres - lo, 0.0, 1.0)
    shape = [1] * data.ndim
    shape[axis] = n_slices
    frac_b = frac.reshape(shape).astype(np.float32)
    coarse = np.take(blurred, lo, axis=axis) * (1 - frac_b) + np.take(blurred, hi, axis=axis) * frac_b
    if n_slices == 1:
        return np.repeat(coarse, n, axis=axis).astype(np.float32)
    # Linear interpolation of the coarse slices back onto every input position (clamped at the ends).
    q = np.clip((np.arange(n) - first) / ratio, 0.0, n_slices - 1)
    q0 = np.clip(np.floor(q).astype(int), 0, n_slices - 2)
    w = (q - q0).astype(np.float32)
    shape[axis] = n
    w_b = w.reshape(shape)
    out = np.take(coarse, q0, axis=axis) * (1 - w_b) + np.take(coarse, q0 + 1, axis=axis) * w_b
    return out.astype(np.float32)


def change_slice_thickness(volume, slice_mm: float, *, axis: int | None = None, profile: str = "rect"):
    """Simulate slices of ``slice_mm`` along the slice axis (default: the coarsest axis, k on ties).

    Accepts a :class:`Volume` (returns one on the same grid) or a 3D array (``axis`` then defaults to 0,
    spacing 1 mm).
    """
    data, vol = _data(volume)
    if data.ndim != 3:
        raise DimensionError(f"slice thickness needs a 3D volume, got shape {data.shape}")
    if axis is None:
        axis = slice_axis(vol) if vol is not None else 0
    spacing = float(vol.spacing[::-1][axis]) if vol is not None else 1.0
    out = reacquire_axis(data, axis, spacing, slice_mm, profile=profile)
    return _wrap(vol, out, **{"neuroshift:slice_mm": f"{slice_mm:g}"})


def change_resolution(volume, voxel_mm, *, profile: str = "rect"):
    """Simulate an acquisition with voxels of ``voxel_mm`` (scalar or (i, j, k) mm), kept on the input grid."""
    data, vol = _data(volume)
    if data.ndim != 3:
        raise DimensionError(f"resolution change needs a 3D volume, got shape {data.shape}")
    target = np.broadcast_to(np.asarray(voxel_mm, dtype=np.float64), (3,))
    spacing_ijk = vol.spacing if vol is not None else np.ones(3)
    out = np.asarray(data, dtype=np.float32)
    for axis_ijk in range(3):
        axis = 2 - axis_ijk
        out = reacquire_axis(out, axis, float(spacing_ijk[axis_ijk]), float(target[axis_ijk]), profile=profile)
    return _wrap(vol, out, **{"neuroshift:voxel_mm": ",".join(f"{v:g}" for v in target)})


def apply_bias_field(volume, strength: float, *, rng=None, field: np.ndarray | None = None):
    """Multiply by a smooth positive field (``neuroshift.physics.noise.bias_field``) or by ``field`` if given."""
    data, vol = _data(volume)
    if field is None:
        from ..physics.noise import bias_field

        rng = rng if rng is not None else np.random.default_rng()
        field = bias_field(data.shape, strength, rng)
    field = np.asarray(field, dtype=np.float32)
    if field.shape != data.shape:
        raise DimensionError(f"bias field shape {field.shape} differs from the image {data.shape}")
    return _wrap(vol, (np.asarray(data, dtype=np.float32) * field).astype(np.float32))


def add_noise(volume, sigma: float, *, rng=None):
    """Rician noise of standard deviation ``sigma`` per channel (``neuroshift.physics.noise.add_rician_noise``)."""
    if not np.isfinite(sigma) or sigma < 0:
        raise ParameterRangeError(f"noise sigma must be >= 0, got {sigma:g}")
    data, vol = _data(volume)
    if sigma == 0:
        return _wrap(vol, np.array(data, dtype=np.float32, copy=True))
    from ..physics.noise import add_rician_noise

    rng = rng if rng is not None else np.random.default_rng()
    out = np.asarray(add_rician_noise(np.asarray(data, dtype=np.float32), float(sigma), rng=rng), dtype=np.float32)
    return _wrap(vol, out, **{"neuroshift:noise_sigma": f"{sigma:g}"})


__all__ = ["change_slice_thickness", "change_resolution", "reacquire_axis", "apply_bias_field", "add_noise",
           "slice_axis"]
