"""Synthetic head-shaped tissue fractions for tests and benchmarks (no files, deterministic).

Nested ellipsoids with smooth partial-volume boundaries: CSF shell (ventricles and
sulcal CSF), GM ribbon, WM core and a few spherical "lesions" in WM. Not anatomy;
the phantom of :mod:`neuroshift.phantom` is the realistic data set.
"""

from __future__ import annotations

import numpy as np


def synthetic_fractions(shape=(176, 256, 256), *, spacing_mm=1.0, seed: int = 0,
                        brain_semi_axes_mm=(60.0, 85.0, 70.0), n_lesions: int = 8) -> dict[str, np.ndarray]:
    """Fractions ``{CSF, GM, WM, lesion}`` (float32, ``shape`` in [k, j, i] order) that sum to 1 in the brain."""
    rng = np.random.default_rng(seed)
    k, j, i = (np.arange(n, dtype=np.float32) - (n - 1) / 2.0 for n in shape)
    a = np.asarray(brain_semi_axes_mm, dtype=np.float32) / np.float32(spacing_mm)
    r = np.sqrt((k[:, None, None] / a[0]) ** 2 + (j[None, :, None] / a[1]) ** 2 + (i[None, None, :] / a[2]) ** 2)
    r = r.astype(np.float32)
    width = np.float32(1.5 / float(a.min()))   # ~1.5 voxel partial-volume transition

    def inside(radius):
        return np.clip((radius - r) / width + 0.5, 0.0, 1.0).astype(np.float32)

    brain = inside(1.0)
    not_csf = inside(0.93)
    wm = inside(0.80)
    # ventricles: a small central ellipsoid of CSF inside WM
    rv = np.sqrt((k[:, None, None] / (0.25 * a[0])) ** 2 + (j[None, :, None] / (0.35 * a[1])) ** 2
                 + (i[None, None, :] / (0.12 * a[2])) ** 2).astype(np.float32)
    vent = np.clip((1.0 - rv) / np.float32(1.5 / (0.12 * float(a[2]))) + 0.5, 0.0, 1.0).astype(np.float32)
    lesion = np.zeros(shape, np.float32)
    for _ in range(n_lesions):
        c = rng.uniform(-0.5, 0.5, 3) * a * 0.9
        rad = rng.uniform(2.0, 5.0) / spacing_mm
        d = np.sqrt((k[:, None, None] - c[0]) ** 2 + (j[None, :, None] - c[1]) ** 2 + (i[None, None, :] - c[2]) ** 2)
        lesion = np.maximum(lesion, np.clip(rad - d + 0.5, 0.0, 1.0).astype(np.float32))
    wm_core = wm * (1.0 - vent)
    lesion = np.minimum(lesion, wm_core)
    wm_f = wm_core - lesion
    gm_f = not_csf - wm
    csf_f = brain - not_csf + wm * vent
    out = {"CSF": csf_f, "GM": gm_f, "WM": wm_f, "lesion": lesion}
    return {t: np.clip(v, 0.0, 1.0).astype(np.float32) for t, v in out.items()}
