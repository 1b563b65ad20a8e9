"""SYNTHETIC training data: MRF frames simulated from NeuroShift phantoms (no downloads).

For each phantom seed (:func:`neuroshift.phantom.make.build_phantom`: the shipped template brain with
seed-dependent MS-like lesions whose T1/T2* exceed NAWM's, values of the 3 T relaxation table
:func:`neuroshift.physics.relaxation.relaxation_table` - the one source of tissue parameters):

* frames = sum over tissues of ``fraction x PD_tissue x simulate(schedule, T1_tissue, T2*_tissue, B1)``
  (partial volume mixes signals, as in a real voxel), with a smooth B1 field
  (:func:`neuroshift.physics.noise.bias_field`, clipped to 0.6-1.4) and Rician noise of
  ``noise_fraction`` x the mean white-matter signal of the frames;
* reference maps: T1 and T2* of :func:`neuroshift.phantom.quantitative.phantom_maps` (fraction-weighted
  means, ms); NAWM = WM fraction, GM = GM fraction, lesion = lesion fraction, in percent.

Slices are taken along the first array axis (k) and kept only when they contain brain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import OUTPUT_NAMES, OUTPUT_SCALE, normalisation_scale
from .schedule import Schedule

TISSUES = ("CSF", "GM", "WM", "lesion")


@dataclass
class Subject:
    """One SYNTHETIC subject: frames ``(K, J, I, F)``, reference maps ``(K, J, I)``, brain mask, B1 field."""

    seed: int
    frames: np.ndarray
    maps: dict[str, np.ndarray]
    brain: np.ndarray
    b1: np.ndarray
    volume: object  # a neuroshift.io.volume.Volume with the phantom's geometry


def simulate_subject(schedule: Schedule, seed: int, *, noise_fraction: float = 0.01, b1_strength: float = 0.25,
                     field_T: float = 3.0) -> Subject:
    """Frames and reference maps of phantom ``seed`` (SYNTHETIC)."""
    from ..phantom.make import build_phantom
    from ..phantom.quantitative import phantom_maps
    from ..physics.noise import add_rician_noise, bias_field
    from ..physics.relaxation import relaxation_table
    ph = build_phantom(seed=seed, field_T=field_T)
    table = relaxation_table(field_T)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4D5246]))
    brain = np.asarray(ph.brain_mask.data) > 0
    shape = brain.shape
    b1 = np.clip(1.0 + (bias_field(shape, b1_strength, rng, order=2) - 1.0), 0.6, 1.4).astype(np.float64)
    frames = np.zeros(shape + (len(schedule),), dtype=np.float64)
    for t in TISSUES:
        f = np.asarray(ph.fractions[t].data, dtype=np.float64) * brain
        sel = f > 0
        tp = table[t]
        sig = _b1_lookup(schedule, tp.t1_ms, tp.t2star_ms, b1[sel])
        frames[sel] += (f[sel] * tp.pd)[:, None] * sig
    wm = brain & (np.asarray(ph.fractions["WM"].data) > 0.9)
    sigma = noise_fraction * float(frames[wm].mean()) if wm.any() else noise_fraction * float(frames.max())
    noisy = np.asarray(add_rician_noise(frames, sigma, rng=rng), dtype=np.float32)
    noisy[~brain] = 0.0  # skull-stripped, as the reference pipeline's brain-masked frames
    gt = phantom_maps(ph, table)
    maps = {"T1": gt["T1"].data, "T2star": gt["T2star"].data,
            "NAWM": 100.0 * np.asarray(ph.fractions["WM"].data) * brain,
            "GM": 100.0 * np.asarray(ph.fractions["GM"].data) * brain,
            "lesion": 100.0 * np.asarray(ph.fractions["lesion"].data) * brain}
    maps = {k: np.asarray(v, dtype=np.float32) for k, v in maps.items()}
    return Subject(seed, noisy, maps, brain, b1.astype(np.float32), ph.brain_mask)


def _b1_lookup(schedule: Schedule, t1_ms: float, t2star_ms: float, b1: np.ndarray, step: float = 5e-4) -> np.ndarray:
    """Signals ``(n, F)`` of one tissue at the B1 values ``b1``: the Bloch simulation on a 5e-4 B1 grid over
    0.6-1.4, linearly interpolated per frame (largest error 1.1e-4 on signals of 0.1-0.9 at PD 1, measured on
    1000 random B1 for WM; far below the added noise; ~4x faster than simulating every voxel)."""
    from .simulate import simulate

    grid = np.linspace(0.6, 1.4, int(round(0.8 / step)) + 1)
    table = simulate(schedule, t1_ms, t2star_ms, grid).numpy()  # (G, F)
    return np.stack([np.interp(b1, grid, table[:, f]) for f in range(table.shape[1])], axis=1)


@dataclass
class SliceSet:
    """Training slices: inputs ``(n, F, H, W)`` (normalised frames), targets ``(n, 5, H, W)`` (scaled), lesion flags."""

    x: np.ndarray
    y: np.ndarray
    has_lesion: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])


def slices_of(subjects: list[Subject]) -> SliceSet:
    """Brain-containing k-slices of every subject, frames normalised per subject (:func:`normalisation_scale`)."""
    xs, ys, les = [], [], []
    for s in subjects:
        x = s.frames / np.float32(normalisation_scale(s.frames))
        keep = np.flatnonzero(s.brain.reshape(s.brain.shape[0], -1).any(axis=1))
        xs.append(np.moveaxis(x[keep], -1, 1))
        ys.append(np.stack([s.maps[n][keep] / np.float32(OUTPUT_SCALE[n]) for n in OUTPUT_NAMES], axis=1))
        les.append((s.maps["lesion"][keep] >= 50.0).reshape(len(keep), -1).any(axis=1))
    return SliceSet(np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32), np.concatenate(les))


def oversampled_indices(has_lesion: np.ndarray, factor: int = 5) -> np.ndarray:
    """Slice indices with every lesion slice repeated ``factor`` times (paper 001: x5)."""
    reps = np.where(has_lesion, int(factor), 1)
    return np.repeat(np.arange(len(has_lesion)), reps)


def random_patches(ds: SliceSet, slice_idx: np.ndarray, patch_hw: int, rng: np.random.Generator):
    """``(x, y)`` patches of size ``patch_hw`` at random positions of the given slices (zero-padded if smaller)."""
    n = len(slice_idx)
    _, f, h, w = ds.x.shape
    ph, pw = patch_hw, patch_hw
    x = np.zeros((n, f, ph, pw), dtype=np.float32)
    y = np.zeros((n, ds.y.shape[1], ph, pw), dtype=np.float32)
    for j, s in enumerate(slice_idx):
        r0 = int(rng.integers(0, max(h - ph, 0) + 1))
        c0 = int(rng.integers(0, max(w - pw, 0) + 1))
        hh, ww = min(ph, h), min(pw, w)
        x[j, :, :hh, :ww] = ds.x[s, :, r0:r0 + hh, c0:c0 + ww]
        y[j, :, :hh, :ww] = ds.y[s, :, r0:r0 + hh, c0:c0 + ww]
    return x, y


__all__ = ["SliceSet", "Subject", "oversampled_indices", "random_patches", "simulate_subject", "slices_of"]
