"""``neuroshift train``: train, cross-validate or fine-tune a multi-view U-Net ensemble into a model package."""

from __future__ import annotations

import argparse
import json
import sys

from .common import plain

EPILOG = """\
examples:
  neuroshift train --task wmh --images data.csv --out my-wmh
  neuroshift train --task wmh --images sub1/FLAIR.nii.gz,sub1/T1.nii.gz sub2/FLAIR.nii.gz,sub2/T1.nii.gz \\
                   --labels sub1/wmh.nii.gz sub2/wmh.nii.gz --out my-wmh
  neuroshift train --config train.yaml --resume
  neuroshift train --task claustrum --init adult-claustrum --recipe neonatal --images neonates/ --out neo
  neuroshift train --task wmh --images data/ --folds 5 --out cv-wmh
  torchrun --nproc_per_node 4 -m neuroshift train --config train.yaml      (multi-GPU)

--images takes a CSV file (columns: subject, one per channel, label[, brain_mask, group]), a folder of
subject folders, or one entry per subject (the channel files of a subject joined by commas, in the
model's channel order) with --labels giving one label file per entry. Settings on the command line
override the config file; the config file's keys are the long option names (with _ or -).
"""


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None


def _hw(text: str) -> list[int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not HxW (e.g. 200x200)") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not HxW (e.g. 200x200)")
    return values


def _spacing(text: str):
    if text.lower() in ("none", "native"):
        return "native"
    vals = [float(v) for v in _csv_list(text)]
    return vals[0] if len(vals) == 1 else vals


def register(sub) -> None:
    p = sub.add_parser("train", help="train / cross-validate / fine-tune a U-Net ensemble into a model package",
                       description=plain(__doc__), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with the settings (keys = long option names)")
    p.add_argument("--task", help="wmh, claustrum or a name of your own (sets defaults; default wmh)")
    p.add_argument("--images", nargs="+", metavar="IMAGES",
                   help="CSV file, folder of subject folders, or one entry per subject (channels joined by commas)")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one label file per --images entry")
    p.add_argument("--val-images", nargs="+", metavar="IMAGES", help="validation subjects (same forms as --images)")
    p.add_argument("--val-labels", nargs="+", metavar="LABEL", help="labels of --val-images")
    p.add_argument("--val-fraction", type=float, help="hold out this fraction of the subjects for validation")
    p.add_argument("--channels", type=_csv_list, help="input channel names in order (default by task: "
                                                     "wmh FLAIR,T1; claustrum T1)")
    p.add_argument("--views", type=_csv_list, help="views to train, e.g. axial,coronal")
    p.add_argument("--models-per-view", type=int, help="ensemble members per view (different seeds and shuffles)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch size in slices")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 2e-4)")
    p.add_argument("--init", metavar="PACKAGE", help="fine-tune every layer starting from this model package")
    p.add_argument("--recipe", help="named recipe, e.g. neonatal (30 epochs, batch 60, lr 2e-4)")
    p.add_argument("--folds", type=int, help="k-fold cross-validation by subject (one package per fold)")
    p.add_argument("--out", metavar="PACKAGE_DIR", help="output model package folder")
    p.add_argument("--work-dir", help="checkpoint folder (default: OUT.work)")
    p.add_argument("--resume", action="store_true", default=None, help="continue from the checkpoints in the work folder")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where torch runs (default auto)")
    p.add_argument("--seed", type=int, help="base random seed (default 0)")
    p.add_argument("--arch", help="U-Net preset: wmh, claustrum or demo (default by task)")
    p.add_argument("--crop", type=_hw, metavar="HxW", help="crop/pad size of the slices, e.g. 200x200")
    p.add_argument("--spacing", type=_spacing, metavar="MM", help="model voxel spacing in mm (one or three "
                                                                  "numbers, or 'native')")
    p.add_argument("--mask-mode", choices=("absolute", "relative"), help="brain-mask thresholds: raw intensities "
                                                                         "(as released) or relative to the 99th percentile")
    p.add_argument("--threshold", type=float, help="probability threshold stored in the package")
    p.add_argument("--slab-fraction", type=float, help="fraction of slices removed at each end of each view")
    p.add_argument("--positive-labels", type=_int_list, help="label values that are foreground (default: wmh 1, else >0)")
    p.add_argument("--ignore-labels", type=_int_list, help="label values left out of validation metrics (wmh: 2)")
    p.add_argument("--slices", choices=("all", "brain", "positive"), help="training slice selection (default brain)")
    p.add_argument("--negative-fraction", type=float, help="fraction of foreground-free slices kept")
    p.add_argument("--steps-per-epoch", type=int, help="cap on batches per epoch")
    p.add_argument("--loss", choices=("dice", "dice+bce"), help="batch-global Dice (as released; default) or Dice + "
                                                               "binary cross-entropy")
    p.add_argument("--patch", type=_hw, metavar="HxW", help="train on random patches of this size (half centred on "
                                                           "foreground; see --foreground-prob) instead of whole slices")
    p.add_argument("--foreground-prob", type=float, help="share of patches centred on foreground (default 0.5)")
    p.add_argument("--grad-clip", type=float, metavar="NORM", help="clip the gradient norm (default: no clipping)")
    p.add_argument("--amp", action="store_true", default=None, help="bfloat16 mixed precision on CUDA")
    p.add_argument("--keep-best", action="store_true", default=None, help="package the best-validation epoch")
    p.add_argument("--description", help="description stored in the manifest")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines on stderr")
    p.add_argument("--json", metavar="FILE", help="write a JSON summary of the run (packages, members, CV)")
    p.set_defaults(func=run)


_DIRECT = ("task", "images", "labels", "val_images", "val_labels", "val_fraction", "channels", "views",
           "models_per_view", "epochs", "batch_size", "lr", "init", "recipe", "folds", "out", "work_dir", "resume",
           "device", "seed", "threshold", "slab_fraction", "positive_labels", "ignore_labels", "slices",
           "negative_fraction", "steps_per_epoch", "amp", "keep_best", "description", "loss", "foreground_prob",
           "grad_clip")


def build_config(args) -> "TrainConfig":  # noqa: F821 - imported lazily
    from ..segment.train import TrainConfig, load_config

    data = load_config(args.config) if args.config else {}
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    for key in _DIRECT:
        v = getattr(args, key, None)
        if v is not None:
            data[key] = v
    if args.patch is not None:
        data["patch_hw"] = args.patch
    if args.arch:
        data["architecture"] = {**dict(data.get("architecture") or {}), "preset": args.arch}
    pre = dict(data.get("preprocessing") or {})
    if args.crop is not None:
        pre["crop_hw"] = args.crop
    if args.spacing is not None:
        pre["spacing_mm"] = None if args.spacing == "native" else args.spacing
    if args.mask_mode:
        bm = pre.get("brain_mask")
        pre["brain_mask"] = {**(bm if isinstance(bm, dict) else {}), "mode": args.mask_mode}
    if pre:
        data["preprocessing"] = pre
    if args.quiet:
        data["verbose"] = False
    return TrainConfig.from_dict(data)


def run(args) -> int:
    from ..progress import cli_progress
    from ..segment.train import train

    cfg = build_config(args)
    if cfg.verbose:
        result = train(cfg)
    else:
        with cli_progress("training") as progress:
            result = train(cfg, progress=progress)
    if result.rank != 0:  # torchrun: rank 0 reports
        return 0
    summary = {"packages": [str(p) for p in result.packages], "work_dir": str(result.work_dir),
               "members": result.members, "cross_validation": result.cv}
    if args.json:
        from pathlib import Path

        from ..io.atomic import atomic_path

        with atomic_path(Path(args.json)) as tmp:
            tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    for p in result.packages:
        print(p)
    if result.cv:
        print("cross-validation mean: " + ", ".join(f"{k} {v:.4f}" for k, v in result.cv["mean"].items()),
              file=sys.stderr)
    return 0
