"""Physics-based lesion insertion through the tissue-wise model of paper 000 (:mod:`neuroshift.simulate`).

For an image of known acquisition parameters ``theta_0`` with tissue fractions ``f_t`` the model is
``S = c * sum_t f_t S_t(theta_0) + T`` (apparent ``S_t`` and scale ``c`` fitted, texture ``T`` the rest).
Inserting a lesion of partial-volume fraction ``f_L`` replaces that share of every host tissue::

    f_t' = (1 - f_L) f_t,    f_lesion' = f_lesion (1 - f_L) + f_L
    S'   = S + c * f_L * (S_L(theta_0) - sum_t f_t S_t(theta_0))

with ``S_L`` the lesion's signal from its relaxation values (the relaxation table's ``lesion`` entry or
given values) through the same sequence equation. The texture (and noise) ``T`` is kept; voxels with
``f_L = 0`` are returned bit for bit. The same ``f_L`` is used for every contrast of a subject, so the
lesions are consistent across contrasts.

Lesion shapes: a given fraction map or binary mask, or :func:`generate_lesions` (ellipsoids with partial
volume from :func:`neuroshift.phantom.lesions.ellipsoid_fraction`, count, diameter range and an allowed
location mask, deterministic per seed). The binary mask of the inserted lesions is ``f_L >= 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import InputError

#: Binary lesion mask threshold on the inserted partial-volume fraction.
MASK_THRESHOLD = 0.5


@dataclass
class InsertedContrast:
    """One contrast after insertion."""

    image: np.ndarray            # float32
    scale_c: float
    lesion_signal: float         # S_L(theta_0), before c
    host_signals: dict[str, float]  # apparent S_t(theta_0), before c


@dataclass
class InsertionResult:
    images: dict[str, InsertedContrast]
    lesion_fraction: np.ndarray  # float32, the inserted f_L
    mask: np.ndarray             # uint8, f_L >= 0.5
    fractions: dict[str, np.ndarray]  # updated tissue fractions
    meta: dict[str, Any] = field(default_factory=dict)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation (3x3, columns orthonormal, det +1) from ``rng``."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def generate_lesions(shape: tuple[int, int, int], ijk_to_ras: np.ndarray, allowed: np.ndarray, *, count: int = 3,
                     diameter_range_mm: tuple[float, float] = (4.0, 10.0), seed: int = 0,
                     max_tries: int = 200) -> np.ndarray:
    """Partial-volume fraction map (float32, array order) of ``count`` random ellipsoids centred in ``allowed``.

    Each lesion has semi-axes drawn uniformly from half the diameter range, a random orientation, and is kept
    only if it has at least one voxel with fraction >= 0.5 and lies within ``allowed`` dilated by 2 voxels.
    Overlapping lesions combine by the maximum. Deterministic per ``seed``.

    Raises:
        InputError: an empty ``allowed`` mask, a bad count/diameter range, or no room for the lesions.
    """
    from scipy import ndimage as ndi

    from ..phantom.lesions import ellipsoid_fraction

    allowed = np.asarray(allowed).astype(bool)
    if allowed.shape != tuple(shape):
        raise InputError(f"location mask has shape {allowed.shape}, image has {tuple(shape)}")
    if not allowed.any():
        raise InputError("location mask is empty: nowhere to put lesions")
    if int(count) < 1:
        raise InputError(f"lesion count must be >= 1, got {count}")
    lo, hi = (float(v) for v in diameter_range_mm)
    if not 0 < lo <= hi:
        raise InputError(f"diameter range must satisfy 0 < min <= max, got {diameter_range_mm}")
    rng = np.random.default_rng(seed)
    region = ndi.binary_dilation(allowed, iterations=2)
    candidates = np.argwhere(allowed)
    out = np.zeros(shape, np.float32)
    placed = 0
    for _ in range(int(max_tries)):
        if placed == int(count):
            break
        kji = candidates[int(rng.integers(len(candidates)))]
        centre = ijk_to_ras[:3, :3] @ kji[::-1].astype(float) + ijk_to_ras[:3, 3]
        semi = rng.uniform(lo / 2, hi / 2, 3)
        frac, box = ellipsoid_fraction(tuple(shape), ijk_to_ras, centre, semi, random_rotation(rng))
        full = np.zeros(shape, np.float32)
        full[box] = frac
        if not (full >= MASK_THRESHOLD).any() or (full[~region] > 0).any():
            continue
        np.maximum(out, full, out=out)
        placed += 1
    if placed < int(count):
        raise InputError(f"could place only {placed} of {count} lesions inside the location mask; "
                         "use fewer or smaller lesions or a larger mask")
    return out


def insert_lesions(images: Mapping[str, tuple[Any, str, Any]], fractions: Mapping[str, Any],
                   lesion_fraction: np.ndarray, *, brain_mask=None, field_T: float | None = None,
                   lesion_params=None, relaxation=None, estimator: str = "fit") -> InsertionResult:
    """Insert the lesions ``lesion_fraction`` (0..1, image grid) into every contrast of one subject.

    ``images``: name -> (image Volume/array, sequence, AcquisitionParams or mapping); ``fractions``: tissue
    fractions (CSF, GM, WM[, lesion]) on the same grid. ``lesion_params``: a
    :class:`~neuroshift.physics.relaxation.TissueParameters` (default: the relaxation table's lesion at the
    image's field).

    Raises:
        InputError: fractions outside [0, 1], a grid mismatch, or an empty lesion map.
    """
    from ..io.params import AcquisitionParams
    from ..physics.relaxation import relaxation_table
    from ..simulate import estimate as est
    from ..simulate.tissuewise import fit_tissue_model

    f_l = np.asarray(getattr(lesion_fraction, "data", lesion_fraction), dtype=np.float64)
    if not np.all(np.isfinite(f_l)) or f_l.min() < 0 or f_l.max() > 1:
        raise InputError("lesion fraction must be finite and within [0, 1]")
    if not (f_l >= MASK_THRESHOLD).any():
        raise InputError("lesion map is empty (no voxel with fraction >= 0.5): nothing to insert")
    host = {t: np.asarray(getattr(v, "data", v), dtype=np.float64) for t, v in fractions.items()}
    for t, v in host.items():
        if v.shape != f_l.shape:
            raise InputError(f"fraction map {t} has shape {v.shape}, lesion map has {f_l.shape}")
    out: dict[str, InsertedContrast] = {}
    where = f_l > 0
    for name, (image, sequence, params) in images.items():
        img = np.asarray(getattr(image, "data", image), dtype=np.float32)
        if img.shape != f_l.shape:
            raise InputError(f"image {name} has shape {img.shape}, lesion map has {f_l.shape}")
        if not isinstance(params, AcquisitionParams):
            params = AcquisitionParams.from_mapping(params)
        model = fit_tissue_model(img, host, sequence, params, field_T=field_T, brain_mask=brain_mask,
                                 relaxation=relaxation, estimator=estimator)
        s_host = model.tissue_signals(model.source)
        lp = lesion_params if lesion_params is not None else relaxation_table(model.field_T, relaxation)["lesion"]
        s_les = float(est.tissue_signals(model.sequence, model.source, [lp.pd], [lp.t1_ms], [lp.t2_ms],
                                         [lp.t2star_ms])[0])
        mix = np.zeros(int(where.sum()))
        for t, s in s_host.items():
            mix += host[t][where] * s
        new = img.copy()
        new[where] = (img[where].astype(np.float64)
                      + model.scale_c * f_l[where] * (s_les - mix)).astype(np.float32)
        out[name] = InsertedContrast(new, float(model.scale_c), s_les, s_host)
    new_fr = {t: (v * (1 - f_l)).astype(np.float32) for t, v in host.items() if t != "lesion"}
    new_fr["lesion"] = (host.get("lesion", np.zeros_like(f_l)) * (1 - f_l) + f_l).astype(np.float32)
    mask = (f_l >= MASK_THRESHOLD).astype(np.uint8)
    return InsertionResult(out, f_l.astype(np.float32), mask, new_fr,
                           {"description": "SYNTHETIC lesions inserted by NeuroShift (physics-based)",
                            "estimator": estimator})


class RandomLesionInsertion:
    """A seeded transform: generated lesions inserted into every contrast of a subject.

    ``sample``: ``{"images": {name: (array, sequence, params)}, "fractions": {tissue: array},
    "ijk_to_ras": 4x4, "brain": mask or None}`` -> :class:`InsertionResult`. Call ``i`` of a transform with
    seed ``s`` uses the lesion seed ``(s, i)``, so a run is reproducible from its seed.
    """

    def __init__(self, *, count: int = 3, diameter_range_mm: tuple[float, float] = (4.0, 10.0),
                 min_wm_fraction: float = 0.95, seed: int = 0):
        self.count, self.diameter_range_mm = int(count), diameter_range_mm
        self.min_wm_fraction, self.seed, self.calls = float(min_wm_fraction), int(seed), 0

    def __call__(self, sample: Mapping[str, Any]) -> InsertionResult:
        fr = {t: np.asarray(v, np.float64) for t, v in sample["fractions"].items()}
        allowed = fr["WM"] >= self.min_wm_fraction
        if "lesion" in fr:
            allowed &= fr["lesion"] < MASK_THRESHOLD
        seed = int(np.random.SeedSequence([self.seed, self.calls]).generate_state(1)[0])
        self.calls += 1
        fl = generate_lesions(fr["WM"].shape, np.asarray(sample["ijk_to_ras"]), allowed, count=self.count,
                              diameter_range_mm=self.diameter_range_mm, seed=seed)
        return insert_lesions(sample["images"], fr, fl, brain_mask=sample.get("brain"))


__all__ = ["MASK_THRESHOLD", "InsertedContrast", "InsertionResult", "RandomLesionInsertion", "generate_lesions",
           "insert_lesions"]
