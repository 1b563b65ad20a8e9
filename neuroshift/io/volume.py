"""A 3D image with its physical geometry attached.

Conventions (the same as SimpleITK/ITK and Slicer's ``arrayFromVolume``):

* ``data`` is indexed ``[k, j, i]`` (slice, row, column), i.e. the numpy array
  order of ``sitk.GetArrayFromImage``;
* ``spacing`` is in mm along ``(i, j, k)``;
* ``origin`` is the physical position of voxel ``(0, 0, 0)`` in mm, LPS;
* ``direction`` is a 3x3 matrix whose column ``c`` is the LPS unit vector of
  index axis ``c`` (i, j, k).

RAS (NIfTI, Slicer) differs from LPS by flipping the first two physical axes;
:meth:`Volume.ijk_to_ras` gives the matrix Slicer's ``IJKToRAS`` expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DimensionError, GeometryError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Volume:
    """A 3D array (``[k, j, i]``) with spacing (mm), origin (mm, LPS) and direction (LPS)."""

    data: np.ndarray
    spacing: np.ndarray = field(default_factory=lambda: np.ones(3))
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if self.data.ndim != 3:
            raise DimensionError(
                f"expected a 3D volume, got an array of shape {self.data.shape} ({self.data.ndim}D)"
            )
        self.spacing = np.asarray(self.spacing, dtype=np.float64).reshape(3)
        self.origin = np.asarray(self.origin, dtype=np.float64).reshape(3)
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if np.any(self.spacing <= 0) or not np.all(np.isfinite(self.spacing)):
            raise GeometryError(f"voxel spacing must be positive and finite, got {self.spacing.tolist()} mm")

    # ---------------------------------------------------------------- geometry
    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Grid size along (i, j, k)."""
        k, j, i = self.data.shape
        return (i, j, k)

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to RAS millimetres (NIfTI / Slicer convention)."""
        m = self.ijk_to_lps()
        m[:3, :] = LPS_TO_RAS @ m[:3, :]
        return m

    @classmethod
    def from_ijk_to_ras(cls, data: np.ndarray, ijk_to_ras: np.ndarray, meta: dict | None = None) -> "Volume":
        """Build a volume from a ``[k, j, i]`` array and a 4x4 IJK-to-RAS matrix."""
        m = np.asarray(ijk_to_ras, dtype=np.float64)
        lin = LPS_TO_RAS @ m[:3, :3]
        spacing = np.linalg.norm(lin, axis=0)
        if np.any(spacing <= 0):
            raise GeometryError("IJK-to-RAS matrix has a zero-length axis")
        return cls(data, spacing, LPS_TO_RAS @ m[:3, 3], lin / spacing, dict(meta or {}))

    def with_data(self, data: np.ndarray, **meta: Any) -> "Volume":
        """A new volume on the same grid with other voxel values."""
        data = np.asarray(data)
        if data.shape != self.data.shape:
            raise GeometryError(f"new data shape {data.shape} differs from the grid {self.data.shape}")
        return Volume(data, self.spacing.copy(), self.origin.copy(), self.direction.copy(), {**self.meta, **meta})

    def same_grid(self, other: "Volume", atol_mm: float = 1e-3) -> bool:
        """True when size, spacing, origin and direction agree (within ``atol_mm`` / 1e-4)."""
        return (
            self.data.shape == other.data.shape
            and np.allclose(self.spacing, other.spacing, atol=atol_mm)
            and np.allclose(self.origin, other.origin, atol=atol_mm)
            and np.allclose(self.direction, other.direction, atol=1e-4)
        )

    def require_same_grid(self, other: "Volume", what: str = "volumes", atol_mm: float = 1e-3) -> None:
        """Raise :class:`GeometryError` naming the first difference between two grids."""
        if self.data.shape != other.data.shape:
            raise GeometryError(f"{what}: grid sizes differ, {self.shape_ijk} vs {other.shape_ijk} voxels")
        if not np.allclose(self.spacing, other.spacing, atol=atol_mm):
            raise GeometryError(
                f"{what}: spacings differ, {np.round(self.spacing, 4).tolist()} vs "
                f"{np.round(other.spacing, 4).tolist()} mm"
            )
        if not np.allclose(self.origin, other.origin, atol=atol_mm):
            raise GeometryError(
                f"{what}: origins differ, {np.round(self.origin, 3).tolist()} vs "
                f"{np.round(other.origin, 3).tolist()} mm (LPS)"
            )
        if not np.allclose(self.direction, other.direction, atol=1e-4):
            raise GeometryError(f"{what}: axis directions differ")

    # --------------------------------------------------------------- SimpleITK
    def to_sitk(self):
        """Convert to a ``SimpleITK.Image`` (geometry copied exactly)."""
        import SimpleITK as sitk

        data = self.data
        if data.dtype == np.bool_:
            data = data.astype(np.uint8)
        img = sitk.GetImageFromArray(np.ascontiguousarray(data))
        img.SetSpacing([float(v) for v in self.spacing])
        img.SetOrigin([float(v) for v in self.origin])
        img.SetDirection([float(v) for v in self.direction.reshape(-1)])
        return img

    @classmethod
    def from_sitk(cls, img, meta: dict | None = None) -> "Volume":
        """Build from a 3D ``SimpleITK.Image``."""
        import SimpleITK as sitk

        if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
            raise DimensionError(
                f"expected a 3D scalar image, got {img.GetDimension()}D with "
                f"{img.GetNumberOfComponentsPerPixel()} component(s) per voxel"
            )
        return cls(
            sitk.GetArrayFromImage(img),
            np.array(img.GetSpacing()),
            np.array(img.GetOrigin()),
            np.array(img.GetDirection()).reshape(3, 3),
            dict(meta or {}),
        )
