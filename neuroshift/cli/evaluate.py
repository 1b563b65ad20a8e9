"""``neuroshift evaluate PRED GT``: DSC, VS, AVD, HD95 (mm), lesion recall/precision/F1 of one case."""

from __future__ import annotations

import argparse
import json
import math

EPILOG = """\
examples:
  neuroshift evaluate seg.nii.gz wmh_gt.nii.gz
  neuroshift evaluate seg.nii.gz wmh_gt.nii.gz --json scores.json
  neuroshift evaluate claustrum.nii.gz manual.nii.gz --ignore-label none

Conventions (WMH challenge): GT label 1 is the structure, GT label 2 ("other pathology") is masked out
of the prediction (--ignore-label none: every non-zero GT label is foreground). An integer prediction is
foreground where >= 1, a floating-point one (a probability map) where >= --threshold. HD95 uses the
physical voxel spacing; --boundary 3d (default) takes surface voxels in 3D, --boundary 2d the challenge
scorer's in-plane rims. Lesions are 26-connected components. Empty masks: both empty -> DSC 1, HD95 0;
one empty -> DSC 0, HD95 NaN (null in JSON); see neuroshift.segment.metrics.
PRED and GT must share the grid (size, spacing, origin, direction), otherwise exit code 2.
"""

ROWS = (
    ("dsc", "Dice (DSC)", "", "{:.4f}"),
    ("hd95_mm", "HD95", "mm", "{:.2f}"),
    ("avd_percent", "AVD", "%", "{:.2f}"),
    ("vs", "Volume similarity", "", "{:.4f}"),
    ("recall", "Lesion recall", "", "{:.4f}"),
    ("precision", "Lesion precision", "", "{:.4f}"),
    ("f1", "Lesion F1", "", "{:.4f}"),
    ("n_gt", "GT components", "", "{:d}"),
    ("n_pred", "Predicted components", "", "{:d}"),
    ("volume_gt_mm3", "GT volume", "mm3", "{:.1f}"),
    ("volume_pred_mm3", "Predicted volume", "mm3", "{:.1f}"),
)


def _label_arg(text: str):
    if text.lower() in ("none", "off", "no"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer label or 'none'") from None


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="segmentation metrics of a prediction against a ground truth",
                       description="Compare a predicted mask with a ground-truth mask: DSC, HD95 (mm), AVD, volume "
                                   "similarity and lesion-wise recall, precision and F1 (26-connected).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pred", metavar="PRED", help="predicted mask or probability map (volume file)")
    p.add_argument("gt", metavar="GT", help="ground-truth label map (volume file)")
    p.add_argument("--json", metavar="OUT", help="also write the metrics as JSON (NaN as null)")
    p.add_argument("--ignore-label", type=_label_arg, default=2, metavar="N|none",
                   help="GT label masked out of the prediction (default 2, the WMH-challenge convention)")
    p.add_argument("--boundary", choices=("3d", "2d"), default="3d",
                   help="HD95 boundary: 3d surface voxels (default) or the challenge's in-plane rims")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T",
                   help="foreground of a floating-point PRED (default 0.5)")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..errors import InputError
    from ..io.atomic import write_text_atomic
    from ..io.jsonsafe import json_safe
    from ..io.files import read_volume
    from ..segment.metrics import evaluate_masks

    if not 0.0 < args.threshold < 1.0 + 1e-9:
        raise InputError(f"--threshold must be in (0, 1], got {args.threshold:g}")
    from .common import refuse_overwriting_inputs

    refuse_overwriting_inputs([("PRED", args.pred), ("GT", args.gt)], [("--json", args.json)])
    pred = read_volume(args.pred)
    gt = read_volume(args.gt)
    pred.require_same_grid(gt, f"PRED {args.pred} vs GT {args.gt}")
    if np.issubdtype(pred.data.dtype, np.floating):
        pred = pred.with_data(pred.data >= args.threshold)
    metrics = evaluate_masks(pred, gt, ignore_label=args.ignore_label, boundary_mode=args.boundary)
    width = max(len(label) for _, label, _, _ in ROWS)
    print(f"{'metric':<{width}}  {'value':>12}  unit")
    for key, label, unit, fmt in ROWS:
        value = metrics[key]
        text = "NaN" if isinstance(value, float) and math.isnan(value) else fmt.format(value)
        print(f"{label:<{width}}  {text:>12}  {unit}")
    if metrics["ignored_voxels"]:
        print(f"({metrics['ignored_voxels']} GT voxels with label {args.ignore_label} were ignored)")
    if args.json:
        doc = {
            "pred": str(args.pred), "gt": str(args.gt),
            "metrics": json_safe(metrics),
            "conventions": {"ignore_label": args.ignore_label, "hd95_boundary": args.boundary,
                            "prediction_threshold": args.threshold, "connectivity": 26,
                            "spacing_mm": [float(s) for s in gt.spacing]},
        }
        write_text_atomic(args.json, json.dumps(doc, indent=2, allow_nan=False) + "\n")
        print(args.json)
    return 0
