"""MP-PCA denoising of MRF frames before matching (paper 001's reference pipeline).

Uses dipy's maintained implementation, :func:`dipy.denoise.localpca.mppca` (Veraart et al. 2016;
dipy installs cleanly from PyPI: ``pip install neuroshift[mrf]``). dipy is imported only here and
only when denoising is asked for; without it :func:`mppca_denoise` raises a clear error.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def dipy_available() -> bool:
    try:
        import dipy.denoise.localpca  # noqa: F401
    except ImportError:
        return False
    return True


def mppca_denoise(frames: np.ndarray, mask: np.ndarray | None = None, *, patch_radius: int = 2,
                  return_sigma: bool = False):
    """Denoise ``frames`` ``(X, Y, Z, n_frames)`` (frames last) with MP-PCA in ``(2r+1)^3`` patches.

    Returns float32 frames (and the per-voxel noise sigma with ``return_sigma``). Needs
    ``(2 r + 1)^3 >= n_frames`` (125 >= 35 for the default r = 2).

    Raises:
        InputError: dipy is not installed, the array is not 4D or the patch is too small.
    """
    try:
        from dipy.denoise.localpca import mppca
    except ImportError:
        raise InputError("MP-PCA denoising needs dipy: pip install 'neuroshift[mrf]' (or dipy), or match "
                         "without --denoise") from None
    f = np.asarray(frames, dtype=np.float32)
    if f.ndim != 4:
        raise InputError(f"MP-PCA needs a 4D frame stack (X, Y, Z, frames), got shape {f.shape}")
    if (2 * patch_radius + 1) ** 3 < f.shape[-1]:
        raise InputError(f"patch radius {patch_radius} gives {(2 * patch_radius + 1) ** 3} voxels per patch, fewer "
                         f"than the {f.shape[-1]} frames")
    m = None if mask is None else np.asarray(mask, dtype=bool)
    res = mppca(f, mask=m, patch_radius=int(patch_radius), return_sigma=return_sigma, out_dtype=np.float32,
                suppress_warning=True)
    return res


__all__ = ["dipy_available", "mppca_denoise"]
