"""``neuroshift tissues``: built-in partial-volume tissue maps from a brain-masked T1w (+ FLAIR for lesions)."""

from __future__ import annotations

import argparse
import json

EPILOG = """\
examples:
  neuroshift tissues T1w.nii.gz tissues/ --mask brain_mask.nii.gz
  neuroshift tissues T1w.nii.gz tissues/ --flair FLAIR.nii.gz          # adds pv_lesion.nii.gz

Writes pv_CSF, pv_GM, pv_WM (and pv_lesion with --flair or --lesion-mask) .nii.gz fractions,
tissue_labels.nii.gz (CSF=1, GM=2, WM=3, lesion=4) and tissues.json (fitted intensity model,
tissue volumes). INPUT must be T1-weighted (CSF dark, WM bright); all inputs must share its grid.
The classifier has no spatial priors or bias correction: fine for acquisition-shift simulation,
not for morphometry; FAST/SPM/SynthSeg maps (neuroshift simulate --pv) are better when you have them.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "tissues", help="partial-volume CSF/GM/WM(/lesion) maps from a T1w image (built-in classifier)",
        description="Estimate partial-volume tissue fractions from a brain-masked T1-weighted image with a "
                    "Gaussian mixture with mixed (partial-volume) classes (Tohka et al. 2004 style).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="T1-weighted image (volume file or DICOM folder)")
    p.add_argument("outdir", metavar="OUTDIR", help="folder to write the maps into (created if needed)")
    p.add_argument("--flair", metavar="FLAIR", help="FLAIR on INPUT's grid: second pass for WM/lesion fractions")
    p.add_argument("--mask", metavar="MASK", help="brain mask (default: INPUT's non-zero voxels if skull-stripped, else Otsu)")
    p.add_argument("--lesion-mask", metavar="MASK", help="lesion mask on INPUT's grid (restricts/gives the lesion map)")
    p.add_argument("--mrf-beta", type=float, default=1.0, metavar="B",
                   help="strength of the spatial smoothing of class posteriors (0 = none; default 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..errors import InputError
    from ..io.atomic import write_text_atomic
    from ..io.files import read_volume, write_volume
    from ..tissues.classify import partial_volume_maps
    from ..tissues.maps import labels_from_fractions

    if args.mrf_beta < 0:
        raise InputError(f"--mrf-beta must be >= 0, got {args.mrf_beta:g}")
    from .common import refuse_overwriting_inputs

    out = Path(args.outdir)
    refuse_overwriting_inputs(
        [("INPUT", args.input), ("--flair", args.flair), ("--mask", args.mask), ("--lesion-mask", args.lesion_mask)],
        [(f"OUTDIR/{n}", out / n) for n in ("pv_CSF.nii.gz", "pv_GM.nii.gz", "pv_WM.nii.gz", "pv_lesion.nii.gz",
                                             "tissue_labels.nii.gz", "tissues.json")])
    t1w = read_volume(args.input, dtype=np.float32)
    flair = read_volume(args.flair, dtype=np.float32) if args.flair else None
    mask = read_volume(args.mask) if args.mask else None
    lesion = read_volume(args.lesion_mask) if args.lesion_mask else None
    fractions, fit = partial_volume_maps(t1w, flair, mask, lesion, mrf_beta=args.mrf_beta, return_fit=True)
    total = sum(np.asarray(v.data, dtype=np.float64) for v in fractions.values())
    labels = labels_from_fractions(fractions)
    voxel_ml = float(np.prod(t1w.spacing)) / 1000.0
    summary = {
        "input": str(args.input),
        "method": "neuroshift.tissues.classify.partial_volume_maps (3 pure + 2 mixed Gaussian classes, EM; "
                  "MRF beta %g%s)" % (args.mrf_beta, "; FLAIR lesion pass" if flair is not None else ""),
        "intensity_means": dict(zip(("CSF", "GM", "WM"), map(float, fit.means))),
        "intensity_sd": float(fit.sds[0]),
        "class_weights": dict(zip(("CSF", "GM", "WM", "CSF/GM", "GM/WM"), map(float, fit.weights))),
        "em_iterations": fit.iterations,
        "em_converged": bool(fit.converged),
        "volume_ml": {t: float(np.asarray(v.data, np.float64).sum() * voxel_ml) for t, v in fractions.items()},
        "brain_volume_ml": float((total > 0.5).sum() * voxel_ml),
    }
    # everything is computed: now write, each file atomically
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for tissue, vol in fractions.items():
        written.append(write_volume(vol, out / f"pv_{tissue}.nii.gz"))
    written.append(write_volume(labels, out / "tissue_labels.nii.gz"))
    write_text_atomic(out / "tissues.json", json.dumps(summary, indent=2) + "\n")
    for p in written:
        print(p)
    vols = ", ".join(f"{t} {v:.1f} ml" for t, v in summary["volume_ml"].items())
    print(f"tissue volumes: {vols}")
    return 0
