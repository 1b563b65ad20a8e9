"""Synthetic MS-like white-matter lesions with partial-volume edges.

Lesions are ovoids (ellipsoids) placed in white matter: periventricular ones
next to the lateral ventricles with their long axis pointing away from the
ventricle wall (like Dawson's fingers), and deep white-matter ones in the
centrum semiovale with a random orientation. Long diameters are stratified
over 3-15 mm so every seed gets small and large lesions. The lesion fraction of
a voxel is the share of 5x5x5 sub-voxel samples inside the ellipsoid, so edges
carry true partial volume. Everything is drawn from a ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

SUBSAMPLES = 5


@dataclass
class Lesion:
    """One lesion: centre (voxel index i, j, k and RAS mm), semi-axes (mm), axes (3x3, columns, RAS) and kind."""

    kind: str
    centre_ijk: tuple[int, int, int]
    centre_ras_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    axes_ras: list[list[float]]
    volume_mm3_analytic: float
    volume_mm3_pv: float = 0.0
    mask_voxels: int = 0

    def to_json(self) -> dict:
        d = asdict(self)
        d["long_diameter_mm"] = 2.0 * max(self.semi_axes_mm)
        return d


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _frame_from_direction(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Orthonormal columns whose first column is ``direction`` (normalised)."""
    d = direction / max(np.linalg.norm(direction), 1e-9)
    other = _random_rotation(rng)[:, 0]
    other = other - d * (other @ d)
    if np.linalg.norm(other) < 1e-6:
        other = np.array([1.0, 0.0, 0.0]) - d * d[0]
    e2 = other / np.linalg.norm(other)
    e3 = np.cross(d, e2)
    return np.stack([d, e2, e3], axis=1)


def ellipsoid_fraction(shape_kji: tuple[int, int, int], ijk_to_ras: np.ndarray, centre_ras: np.ndarray,
                       semi_axes: np.ndarray, axes: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Fraction of each voxel inside the ellipsoid, on the bounding box around it; returns (box array, box slices)."""
    lin = ijk_to_ras[:3, :3]
    inv = np.linalg.inv(lin)
    centre_ijk = inv @ (centre_ras - ijk_to_ras[:3, 3])
    reach = np.abs(inv) @ np.full(3, float(max(semi_axes))) + 1.0
    lo = np.maximum(np.floor(centre_ijk - reach).astype(int), 0)
    hi = np.minimum(np.ceil(centre_ijk + reach).astype(int) + 1, np.array(shape_kji[::-1]))
    ii, jj, kk = (np.arange(lo[d], hi[d]) for d in range(3))
    offs = (np.arange(SUBSAMPLES) + 0.5) / SUBSAMPLES - 0.5
    # sample points: voxel (i, j, k) + sub-offsets, in index space
    I = ii[:, None] + offs[None, :]
    J = jj[:, None] + offs[None, :]
    K = kk[:, None] + offs[None, :]
    pi, pj, pk = np.meshgrid(I.ravel(), J.ravel(), K.ravel(), indexing="ij")
    pts = np.stack([pi, pj, pk], axis=-1) @ lin.T + ijk_to_ras[:3, 3] - centre_ras
    local = pts @ axes  # coordinates along the ellipsoid axes (mm)
    inside = np.sum((local / semi_axes) ** 2, axis=-1) <= 1.0
    ni, nj, nk = len(ii), len(jj), len(kk)
    inside = inside.reshape(ni, SUBSAMPLES, nj, SUBSAMPLES, nk, SUBSAMPLES)
    frac_ijk = inside.mean(axis=(1, 3, 5))
    box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    return np.ascontiguousarray(frac_ijk.transpose(2, 1, 0)).astype(np.float32), box


def place_lesions(csf: np.ndarray, wm: np.ndarray, brain: np.ndarray, ijk_to_ras: np.ndarray,
                  rng: np.random.Generator, *, n_periventricular: int = 6, n_deep: int = 4,
                  diameter_range_mm: tuple[float, float] = (3.0, 15.0),
                  max_tries: int = 400) -> tuple[np.ndarray, list[Lesion]]:
    """Lesion fraction map (float32, ``[k, j, i]``, 0..1) and the lesion list.

    ``csf``/``wm`` are fraction arrays and ``brain`` a boolean mask on the same grid.
    """
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)  # (i, j, k)
    sampling = spacing[::-1]  # array order k, j, i
    # lateral ventricles: CSF-rich voxels deep inside the brain (far from its outer surface)
    depth = ndi.distance_transform_edt(brain, sampling=sampling)
    vent = (csf >= 0.6) & (depth >= 16.0)
    lab, n = ndi.label(vent)
    if n:
        sizes = ndi.sum(vent, lab, index=np.arange(1, n + 1))
        keep = np.arange(1, n + 1)[sizes >= max(8, 0.1 * sizes.max())]
        vent = np.isin(lab, keep)
    dist_vent = ndi.distance_transform_edt(~vent, sampling=sampling) if vent.any() else np.full(csf.shape, 1e3)
    wm_core = ndi.distance_transform_edt(wm >= 0.5, sampling=sampling)
    grad = np.stack(np.gradient(dist_vent, *sampling), axis=-1)  # d/dk, d/dj, d/di (mm/mm)
    # RAS z of every voxel (cerebrum only: lesions above the tentorium)
    kk, jj, ii = np.indices(csf.shape)
    z_ras = ijk_to_ras[2, 0] * ii + ijk_to_ras[2, 1] * jj + ijk_to_ras[2, 2] * kk + ijk_to_ras[2, 3]
    cerebrum = z_ras >= -4.0

    kinds = ["periventricular"] * n_periventricular + ["deep"] * n_deep
    n_total = len(kinds)
    lo_d, hi_d = diameter_range_mm
    # stratified long diameters over the range, assigned to kinds in random order
    diam = lo_d + (hi_d - lo_d) * (np.arange(n_total) + rng.uniform(0.0, 1.0, n_total)) / n_total
    diam = diam[rng.permutation(n_total)]
    lesion_map = np.zeros(csf.shape, dtype=np.float32)
    lesions: list[Lesion] = []
    occupied = np.zeros(csf.shape, dtype=bool)
    for kind, long_d in sorted(zip(kinds, diam), key=lambda t: -t[1]):  # big ones first
        a = long_d / 2.0
        b, c = a * rng.uniform(0.55, 0.85), a * rng.uniform(0.45, 0.8)
        semi = np.array([a, max(b, 1.5), max(c, 1.5)])
        need_core = max(1.0, 0.6 * semi[1:].max())
        if kind == "periventricular":
            cand = (dist_vent >= 1.5) & (dist_vent <= a + 4.0)
        else:
            cand = (dist_vent >= a + 10.0)
        cand &= (wm >= 0.9) & (wm_core >= need_core) & cerebrum & ~occupied
        idx = np.argwhere(cand)
        placed = False
        for _ in range(max_tries if len(idx) else 0):
            k, j, i = idx[rng.integers(len(idx))]
            centre = ijk_to_ras[:3, :3] @ np.array([i, j, k], float) + ijk_to_ras[:3, 3]
            if kind == "periventricular":
                g_kji = grad[k, j, i]
                g_ijk_mm = np.array([g_kji[2], g_kji[1], g_kji[0]])
                direction = (ijk_to_ras[:3, :3] / spacing) @ g_ijk_mm  # gradient direction in RAS
                axes = _frame_from_direction(direction if np.linalg.norm(direction) > 1e-6 else rng.normal(size=3), rng)
            else:
                axes = _random_rotation(rng)
            frac, box = ellipsoid_fraction(csf.shape, ijk_to_ras, centre, semi, axes)
            if frac.sum() <= 0:
                continue
            w = frac / frac.sum()
            if float((wm[box] * w).sum()) < 0.85 or np.any(occupied[box] & (frac > 0)) or np.any(~brain[box] & (frac > 0)):
                continue
            lesion_map[box] = np.maximum(lesion_map[box], frac)
            grown = np.zeros(csf.shape, dtype=bool)
            grown[box] = frac > 0
            occupied |= ndi.binary_dilation(grown, iterations=2)
            voxel_mm3 = float(np.prod(spacing))
            lesions.append(Lesion(
                kind=kind, centre_ijk=(int(i), int(j), int(k)),
                centre_ras_mm=tuple(float(v) for v in centre),
                semi_axes_mm=tuple(float(v) for v in semi), axes_ras=axes.round(6).tolist(),
                volume_mm3_analytic=float(4.0 / 3.0 * np.pi * np.prod(semi)),
                volume_mm3_pv=float(frac.sum() * voxel_mm3),
                mask_voxels=int(np.count_nonzero(frac >= 0.5)),
            ))
            placed = True
            break
        if not placed:
            raise RuntimeError(f"could not place a {kind} lesion of {long_d:.1f} mm in white matter")
    return np.clip(lesion_map, 0.0, 1.0), lesions
