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


def register(sub) -> None:
    """Add ``train``; its setting flags come from :class:`~neuroshift.segment.train_config.TrainConfig`'s
    field metadata (one declaration per setting)."""
    from ..segment.train_config import TrainConfig
    from ..training.config import add_arguments

    p = sub.add_parser("train", help="train / cross-validate / fine-tune a U-Net ensemble into a model package",
                       description=plain(__doc__), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with the settings (keys = long option names)")
    add_arguments(p, TrainConfig)
    p.add_argument("--json", metavar="FILE", help="write a JSON summary of the run (packages, members, CV)")
    p.set_defaults(func=run)


def build_config(args) -> "TrainConfig":  # noqa: F821 - imported lazily
    """The config file's settings overridden by the flags given.

    Raises:
        InputError: the config file is unreadable or names an unknown setting.
    """
    from ..segment.train_config import TrainConfig, load_config
    from ..training.config import values_from_args

    data = load_config(args.config) if args.config else {}
    return TrainConfig.from_dict(values_from_args(args, TrainConfig, data))


def run(args) -> int:
    from ..progress import cli_progress
    from ..segment.train import train

    cfg = build_config(args)
    _refuse_overwrite(cfg, args)
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
        from ..io.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(summary, indent=2, default=str) + "\n")  # read back before the rename
    for p in result.packages:
        print(p)
    if result.cv:
        print("cross-validation mean: " + ", ".join(f"{k} {v:.4f}" for k, v in result.cv["mean"].items()),
              file=sys.stderr)
    return 0


def _refuse_overwrite(cfg, args) -> None:
    """The package folder (replaced as a whole) and --json must not be, or contain, an input."""
    from .common import refuse_overwriting_inputs

    inputs = []
    for key in ("images", "labels", "val_images", "val_labels", "init"):
        value = getattr(cfg, key, None)
        for entry in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(entry, str):
                inputs += [(f"--{key.replace('_', '-')}", part) for part in {entry, *entry.split(",")} if part]
    inputs.append(("--config", args.config))
    refuse_overwriting_inputs(inputs, [("--json", args.json)], replaced_folders=[("--out", cfg.out)])
