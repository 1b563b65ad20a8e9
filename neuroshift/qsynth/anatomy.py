"""Anatomical variety for qSynth: many SYNTHETIC label maps from the one packaged template.

* :func:`template_labels` — hard labels (1 CSF, 2 GM, 3 WM, 0 outside the brain) of the packaged MNI ICBM152
  2009a template at 2 mm (:mod:`neuroshift.phantom.template`; its copyright notice travels with it);
* :func:`deform_labels` — a random large-scale elastic deformation (smooth displacement of up to
  ``amplitude_mm``, correlated over ``scale_mm``; nearest-neighbour resampling), which changes ventricle size,
  cortical folding position and head shape between subjects;
* :func:`add_lesions` — MS-like lesions from a generative shape model (label 4, white matter only).

Lesion model (why: no openly licensed MS lesion-mask database is available offline here, and the phantom's
ellipsoids are too regular for training): count ``1 + Poisson(mean_count)`` (≤ ``max_count``); volume
log-normal with median ``median_ml`` and log-SD ``log_sd`` clipped to ``volume_ml`` (MS lesion volumes span
~0.01-several ml with a heavy right tail); shape the sub-level set ``ρ(x)/r + a·f(x) < 1`` of a random ovoid
(axis ratios up to 1:2.5) perturbed by a smooth random field ``f`` (irregular, lobulated borders, confluence
when lesions touch); location in white matter, a share ``periventricular`` of them within 10 mm of the
ventricular CSF (probability ∝ exp(-d/5 mm)), the rest anywhere in white matter. Lesion voxels replace white
matter only, so they never spill into cortex or CSF. The parameters are [assumption]s of typical MS lesion
loads, not fitted to a cohort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.volume import Volume
from .fields import displacement_field, smooth_field, warp

__all__ = ["LesionModel", "template_labels", "deform_labels", "add_lesions", "random_label_maps"]


@dataclass(frozen=True)
class LesionModel:
    """Parameters of the generative lesion model (see the module docstring; volumes in ml = 1000 mm³)."""

    mean_count: float = 8.0
    max_count: int = 30
    median_ml: float = 0.12
    log_sd: float = 1.0
    volume_ml: tuple[float, float] = (0.02, 4.0)
    periventricular: float = 0.6
    roughness: float = 0.35


def template_labels() -> Volume:
    """Hard tissue labels of the packaged template (argmax of CSF/GM/WM + 1 inside the brain, 0 outside)."""
    from ..phantom.template import load_template

    tpl = load_template()
    brain = tpl.brain.data >= 0.5
    stack = np.stack([tpl.csf.data, tpl.gm.data, tpl.wm.data])
    lab = (np.argmax(stack, axis=0) + 1).astype(np.int16)
    lab[~brain] = 0
    return tpl.gm.with_data(lab, labels={"CSF": 1, "GM": 2, "WM": 3}, synthetic="SYNTHETIC label map")


def deform_labels(labels: Volume, rng: np.random.Generator, amplitude_mm: float = 6.0,
                  scale_mm: float = 40.0) -> Volume:
    """Labels warped by a smooth random displacement of max component ``amplitude_mm`` (same grid)."""
    sp = float(np.mean(labels.spacing))
    disp = displacement_field(labels.data.shape, rng, amplitude_mm / sp, scale_mm / sp)
    return labels.with_data(warp(np.asarray(labels.data), disp, order=0))


def _lesion_shape(rng: np.random.Generator, radius_vox: float, roughness: float) -> np.ndarray:
    half = int(np.ceil(radius_vox * 2.0)) + 2
    k, j, i = np.mgrid[-half:half + 1, -half:half + 1, -half:half + 1].astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    axes = np.sort(rng.uniform(1.0, 2.5, 3))[::-1]
    axes = axes / np.cbrt(np.prod(axes))  # same volume as the sphere
    pts = np.stack([k, j, i], axis=-1) @ q
    rho = np.sqrt(sum((pts[..., n] / axes[n]) ** 2 for n in range(3)))
    f = smooth_field(rho.shape, rng, max(2.0, radius_vox / 1.5))
    return (rho / max(radius_vox, 0.5) + roughness * f) < 1.0


def add_lesions(labels: Volume, rng: np.random.Generator, model: LesionModel | None = None,
                wm_label: int = 3, csf_label: int = 1, lesion_label: int = 4) -> tuple[Volume, list[dict]]:
    """Labels with lesions drawn from ``model`` (white matter voxels become ``lesion_label``) and per-lesion
    records (centre voxel, target and placed volume in ml)."""
    from scipy.ndimage import distance_transform_edt

    m = model or LesionModel()
    lab = np.asarray(labels.data).copy()
    wm = lab == wm_label
    if not wm.any():
        return labels.with_data(lab), []
    voxel_ml = float(np.prod(labels.spacing)) / 1000.0
    d_csf = distance_transform_edt(lab != csf_label, sampling=labels.spacing)
    near = np.flatnonzero(wm.ravel() & (d_csf.ravel() <= 10.0))
    all_wm = np.flatnonzero(wm.ravel())
    w_near = np.exp(-d_csf.ravel()[near] / 5.0) if near.size else None
    count = int(min(m.max_count, 1 + rng.poisson(m.mean_count)))
    records = []
    for _ in range(count):
        vol_ml = float(np.clip(m.median_ml * np.exp(m.log_sd * rng.standard_normal()), *m.volume_ml))
        r = float(np.cbrt(3.0 * vol_ml / voxel_ml / (4.0 * np.pi)))
        if near.size and rng.random() < m.periventricular:
            flat = near[rng.choice(near.size, p=w_near / w_near.sum())]
        else:
            flat = all_wm[rng.integers(all_wm.size)]
        c = np.unravel_index(flat, lab.shape)
        shape = _lesion_shape(rng, r, m.roughness)
        h = shape.shape[0] // 2
        sl_dst, sl_src = [], []
        for ax in range(3):
            lo, hi = c[ax] - h, c[ax] + h + 1
            sl_dst.append(slice(max(lo, 0), min(hi, lab.shape[ax])))
            sl_src.append(slice(max(lo, 0) - lo, shape.shape[ax] - (hi - min(hi, lab.shape[ax]))))
        region = lab[tuple(sl_dst)]
        put = shape[tuple(sl_src)] & (wm[tuple(sl_dst)])
        region[put] = lesion_label
        records.append({"centre_kji": [int(v) for v in c], "target_ml": vol_ml,
                        "placed_ml": float(put.sum()) * voxel_ml})
    return labels.with_data(lab.astype(np.int16)), records


def random_label_maps(n: int, seed: int = 0, *, amplitude_mm: float = 6.0, model: LesionModel | None = None
                      ) -> list[Volume]:
    """``n`` SYNTHETIC label maps: the template deformed, then lesions added (seeded, reproducible)."""
    base = template_labels()
    out = []
    for k in range(int(n)):
        g = np.random.default_rng([int(seed), k])
        lab, rec = add_lesions(deform_labels(base, g, amplitude_mm), g, model)
        lab.meta.update(lesions=len(rec), lesion_ml=round(float(sum(r["placed_ml"] for r in rec)), 3))
        out.append(lab)
    return out
