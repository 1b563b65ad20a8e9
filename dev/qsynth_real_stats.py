#!/usr/bin/env python
"""Image statistics of real FLAIR scans next to qSynth's SYNTHETIC FLAIR (issue 10: what differs?).

For every ``<real-dir>/<case>/FLAIR.nii.gz`` + ``lesion.nii.gz`` (MNI-space, skull-stripped scans such as the
Lesjak 2018 set; kept outside the repository) and for ``--synthetic`` qSynth subjects rendered with the demo
model's training FLAIR range, on the model's 2 mm grid (real scans: 2x2x2 block means of the 1 mm MNI grid):

* ``lesion/WM`` — median lesion intensity / median normal-appearing WM intensity (and the 10th percentile of
  the lesion voxels / WM median: how dark the darkest lesion voxels are); ``GM/WM``, ``CSF/WM`` alike;
* ``noise`` — robust SD (1.4826 x MAD / sqrt 2) of neighbour differences inside WM, per axis (k, j, i), as a
  fraction of the WM median: white noise gives equal values on every axis, a thick-slice or smoothed axis a
  lower one (resolution);
* ``bias`` — coefficient of variation of the WM medians of 24 mm blocks (low-frequency intensity variation:
  residual bias field plus real WM heterogeneity).

Tissue masks of the real scans come from the packaged ICBM152 2009a template (the scans are in MNI space):
WM probability >= 0.9, GM >= 0.7, CSF >= 0.9, minus lesions dilated by 2 voxels; synthetic masks are the
labels themselves. Usage::

    python dev/qsynth_real_stats.py /tmp/h6/real --synthetic 6
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "dev"))
#: the demo model's training FLAIR ranges (2D TR 9000 ms and 3D TR 5000 ms; ms), one picked per subject
from qsynth_demo_settings import FLAIR3D_RANGE, FLAIR_RANGE  # noqa: E402

FLAIR_RANGES = [FLAIR_RANGE, FLAIR3D_RANGE]


def stats(img: np.ndarray, masks: dict[str, np.ndarray], block_vox: int = 12) -> dict:
    """Ratios, noise per axis and block CV (see the module docstring); ``img`` and masks on one grid."""
    wm = masks["WM"]
    wm_med = float(np.median(img[wm]))
    out = {f"{t}/WM": round(float(np.median(img[m])) / wm_med, 3) for t, m in masks.items() if t != "WM" and m.any()}
    if masks.get("lesion") is not None and masks["lesion"].any():
        out["lesion_p10/WM"] = round(float(np.percentile(img[masks["lesion"]], 10)) / wm_med, 3)
    noise = []
    for ax in range(3):
        a = np.swapaxes(img, 0, ax)
        m = np.swapaxes(wm, 0, ax)
        d = (a[1:] - a[:-1])[m[1:] & m[:-1]]
        noise.append(round(1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2) / wm_med, 4))
    out["noise_kji"] = noise
    meds = []
    for k in range(0, img.shape[0], block_vox):
        for j in range(0, img.shape[1], block_vox):
            for i in range(0, img.shape[2], block_vox):
                sl = (slice(k, k + block_vox), slice(j, j + block_vox), slice(i, i + block_vox))
                if wm[sl].sum() >= 50:
                    meds.append(float(np.median(img[sl][wm[sl]])))
    out["bias_cv"] = round(float(np.std(meds) / np.mean(meds)), 4) if len(meds) > 1 else None
    return out


def _block2(a: np.ndarray) -> np.ndarray:
    k, j, i = (n // 2 * 2 for n in a.shape)
    a = a[:k, :j, :i].astype(np.float64)
    return a.reshape(k // 2, 2, j // 2, 2, i // 2, 2).mean(axis=(1, 3, 5))


def real_case(folder: Path) -> dict:
    from scipy.ndimage import binary_dilation, map_coordinates

    from neuroshift.io.files import read_volume
    from neuroshift.phantom.template import load_template

    img_v = read_volume(folder / "FLAIR.nii.gz")
    les_v = read_volume(folder / "lesion.nii.gz")
    img = _block2(np.asarray(img_v.data))
    les = _block2((np.asarray(les_v.data) > 0.5).astype(np.float64)) >= 0.5
    # 2 mm block centres in RAS, then template voxel coordinates (data index order k, j, i)
    a1 = img_v.ijk_to_ras()
    k, j, i = np.indices(img.shape, dtype=np.float64)
    ijk1 = np.stack([2 * i + 0.5, 2 * j + 0.5, 2 * k + 0.5, np.ones_like(i)]).reshape(4, -1)
    ras = a1 @ ijk1
    tpl = load_template()
    t_ijk = np.linalg.inv(tpl.wm.ijk_to_ras()) @ ras
    coords = np.stack([t_ijk[2], t_ijk[1], t_ijk[0]])
    prob = {n: map_coordinates(np.asarray(getattr(tpl, n).data, np.float64), coords, order=1, cval=0.0).reshape(img.shape)
            for n in ("wm", "gm", "csf")}
    inside = img > 0
    near_les = binary_dilation(les, iterations=2)
    masks = {"WM": (prob["wm"] >= 0.9) & inside & ~near_les, "GM": (prob["gm"] >= 0.7) & inside & ~near_les,
             "CSF": (prob["csf"] >= 0.9) & inside & ~near_les, "lesion": les & inside}
    return stats(img, masks)


def synthetic_cases(n: int, protocol=FLAIR_RANGES) -> list[dict]:
    from scipy.ndimage import binary_dilation

    from neuroshift.qsynth import QSynthConfig, generate
    from neuroshift.qsynth.anatomy import LesionModel, random_label_maps

    maps = random_label_maps(n, seed=9100, model=LesionModel(mean_count=20, median_ml=0.4))
    cfg = QSynthConfig(protocol=protocol)
    rows = []
    for s, lab in enumerate(maps):
        g = generate(lab, cfg, seed=s)
        img = np.asarray(g["image"].data, np.float64)
        lb = np.asarray(g["labels"].data)
        near = binary_dilation(lb == 4, iterations=2)
        masks = {"WM": (lb == 3) & ~near, "GM": (lb == 2) & ~near, "CSF": (lb == 1) & ~near, "lesion": lb == 4}
        r = stats(img, masks)
        d = g["draw"]
        r["draw"] = {"TR_ms": round(d.params.TR_ms, 1), "TE_ms": round(d.params.TE_ms, 1), "TI_ms": round(d.params.TI_ms, 1),
                     "noise_fraction": round(d.noise_fraction, 4), "bias_strength": round(d.bias_strength, 3),
                     "slice_thickness_mm": d.slice_thickness_mm and round(d.slice_thickness_mm, 2),
                     "low_res_axis": d.low_res_axis}
        rows.append(r)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("real_dir", help="folder of <case>/FLAIR.nii.gz + lesion.nii.gz (MNI space)")
    ap.add_argument("--synthetic", type=int, default=6, help="number of qSynth FLAIR subjects to compare")
    args = ap.parse_args(argv)
    cases = sorted(d for d in Path(args.real_dir).iterdir() if (d / "FLAIR.nii.gz").is_file())
    if not cases:
        print(f"{args.real_dir}: no <case>/FLAIR.nii.gz", file=sys.stderr)
        return 2
    out = {"real": {d.name: real_case(d) for d in cases}}
    if args.synthetic:
        out["synthetic"] = synthetic_cases(args.synthetic)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
