"""Simulated vs analytic tissue signals of a phantom image ("does the image obey the equations?").

For an image S(x) = c·Σ_t f_t(x)·S_t + noise, the per-tissue signals c·S_t are
recovered by least squares of the image on the fraction maps over the brain
(every voxel counts, partial-volume ones included), and, where a tissue has
voxels with f_t >= ``pure`` (0.999), as the mean over those pure voxels. Both are
compared with the analytic values ``ground_truth.json`` records. Rician noise
biases low signals upwards (mean σ·sqrt(π/2) at S = 0), so nulled CSF on FLAIR
differs by about a percent; the expected Rician mean is reported as well.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..io.volume import Volume

TISSUES = ("CSF", "GM", "WM", "lesion")


def simulated_vs_analytic(image: Volume, fractions: dict[str, Volume], brain_mask: Volume,
                          analytic: dict[str, float], noise_sigma: float = 0.0, *, pure: float = 0.999) -> dict:
    """Per tissue: analytic c·S_t, least-squares estimate, pure-voxel mean (if any) and relative errors."""
    from ..physics.noise import rician_mean

    mask = np.asarray(brain_mask.data) > 0
    names = [t for t in TISSUES if t in fractions and t in analytic]
    X = np.stack([np.asarray(fractions[t].data, dtype=np.float64)[mask] for t in names], axis=1)
    y = np.asarray(image.data, dtype=np.float64)[mask]
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    out = {}
    for t, b in zip(names, beta):
        a = float(analytic[t])
        sel = np.asarray(fractions[t].data)[mask] >= pure
        row = {
            "analytic": a,
            "rician_expected": float(rician_mean(a, noise_sigma)) if noise_sigma > 0 else a,
            "lstsq": float(b),
            "lstsq_rel_error": float((b - a) / a) if a else float("nan"),
            "pure_voxels": int(sel.sum()),
        }
        if sel.any():
            m = float(y[sel].mean())
            row.update({"pure_mean": m, "pure_rel_error": float((m - a) / a) if a else float("nan")})
        out[t] = row
    return out


def check_phantom_dir(folder: str | os.PathLike) -> dict:
    """Run :func:`simulated_vs_analytic` on both images of a phantom folder written by ``make_phantom``."""
    from ..io.files import read_volume

    d = Path(folder)
    gt = json.loads((d / "ground_truth.json").read_text(encoding="utf-8"))
    fractions = {t: read_volume(d / f"pv_{t}.nii.gz", dtype=np.float32) for t in TISSUES}
    brain = read_volume(d / "brain_mask.nii.gz")
    result = {}
    for name, info in gt["images"].items():
        img = read_volume(d / info["file"], dtype=np.float32)
        result[name] = simulated_vs_analytic(img, fractions, brain, info["tissue_signal"], info["noise_sigma"])
    return result


def format_table(result: dict) -> str:
    """Plain-text table of :func:`check_phantom_dir` / per-image results."""
    lines = [f"{'image':6} {'tissue':7} {'analytic':>9} {'lstsq':>9} {'err %':>7} {'pure n':>7} {'pure mean':>9} {'err %':>7}"]
    for name, rows in result.items():
        for t, r in rows.items():
            pm = f"{r['pure_mean']:9.2f} {100 * r['pure_rel_error']:7.3f}" if "pure_mean" in r else f"{'-':>9} {'-':>7}"
            lines.append(f"{name:6} {t:7} {r['analytic']:9.2f} {r['lstsq']:9.2f} {100 * r['lstsq_rel_error']:7.3f} "
                         f"{r['pure_voxels']:7d} {pm}")
    return "\n".join(lines)
