"""``neuroshift segment``: claustrum and white-matter-hyperintensity segmentation with multi-view U-Net ensembles."""

from __future__ import annotations

import argparse

from .common import add_device_arg, key_value_arg

EPILOG = """\
examples:
  neuroshift segment wmh --flair FLAIR.nii.gz wmh.nii.gz         # bundled wmh-demo model (FLAIR only)
  neuroshift segment wmh --flair FLAIR.nii.gz --t1 T1_in_FLAIR_space.nii.gz wmh.nii.gz --model my-wmh
  neuroshift segment claustrum T1_brain.nii.gz claustrum.nii.gz --model claustrum \\
      --probabilities prob.nii.gz --uncertainty unc.nii.gz --tta --json volumes.json
  neuroshift segment claustrum T2w.nii.gz out.nii.gz --model claustrum-neonatal --age-weeks 37

The label (0/1, uint8) has the input's grid: spacing, origin and direction (for WMH: the FLAIR's).
Inside, the scan is reoriented to the orientation the model was trained in (RAS for our packages;
imported authors' packages: LPS for WMH, the stored order for the claustrum, as their releases),
resampled to its voxel spacing, z-scored in a brain mask, cut into the slices of each view of the
model, and the ensemble's probabilities are averaged per view and then across views; slabs at the
ends of each slicing axis are cleared (imported: 12.5 % WMH, 20 % claustrum); outputs go back to the
input grid (nearest neighbour for the label). All files are written atomically. The JSON run info
gives the precision used and, for reduced precision, its measured agreement with float32.

Models: --model takes a package folder or the name of an installed one ('neuroshift models list').
No claustrum weights ship with NeuroShift: import the authors' Keras files with
'neuroshift models import-keras' or train your own with 'neuroshift train'.
"""

NO_CLAUSTRUM_MODEL = (
    "no claustrum model is installed, and none is bundled: the only published claustrum weights are the "
    "authors' own (no trained claustrum network can honestly ship with NeuroShift). Either\n"
    "  - import the authors' released Keras files (axial_0.h5 ... coronal_2.h5) with\n"
    "        neuroshift models import-keras axial_*.h5 coronal_*.h5 --task claustrum --name claustrum\n"
    "  - or train one on your labelled scans with\n"
    "        neuroshift train --task claustrum --images DATA.csv --out ~/.neuroshift/models/claustrum\n"
    "    ('neuroshift train --help'; --init PACKAGE --recipe neonatal fine-tunes an adult model for neonates),\n"
    "then run again, or pass --model PACKAGE_FOLDER|NAME ('neuroshift models list' shows what is installed)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH|NAME", help="model package folder or installed name")
    add_device_arg(p)
    p.add_argument("--probabilities", metavar="FILE", help="also write the fused probability map (float32)")
    p.add_argument("--uncertainty", metavar="FILE", help="also write the ensemble-disagreement map (float32)")
    p.add_argument("--uncertainty-kind", choices=("variance", "entropy"), default="variance",
                   help="variance of all members' probabilities (default) or binary entropy (bits) of the fused one")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (left-right flipped slices as extra members)")
    p.add_argument("--batch-size", type=int, metavar="N", help="slices per network call (default: 4 on CPU; on CUDA sized to the free memory)")
    p.add_argument("--threshold", type=float, metavar="T", help="probability threshold (default: the model's)")
    p.add_argument("--slab-fraction", type=float, metavar="F",
                   help="fraction of slices cleared at each end of each slicing axis (default: the model's)")
    p.add_argument("--age-weeks", type=float, metavar="W", help="gestational age in weeks (neonates: QC below 35)")
    p.add_argument("--brain-mask", metavar="FILE", help="brain mask to z-score in, instead of the threshold mask")
    p.add_argument("--mask-mode", choices=("absolute", "relative"),
                   help="brain-mask thresholds as raw intensities (as released) or as fractions of the 99th percentile")
    p.add_argument("--mask-thresholds", type=key_value_arg, metavar="CH=V,...",
                   help="brain-mask thresholds per channel, e.g. FLAIR=70,T1=30 (absolute) or FLAIR=0.1 (relative)")
    p.add_argument("--json", metavar="FILE", help="write volumes (mm^3), QC warnings and run information as JSON")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16", "int8"), default="auto",
                   help="network arithmetic: auto (float16 on CUDA; bfloat16 on CPUs that run it natively, "
                        "AVX512-BF16/AMX; else float32), bf16, fp16 (CUDA only), fp32, int8 (CPU: 8-bit "
                        "convolutions calibrated on the scan, ~2x bf16 speed with AVX512-VNNI/AMX). Reduced "
                        "precision is checked against float32 on a few slices; the JSON run info gives the agreement")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: $NEUROSHIFT_THREADS, else the cores available to the process)")


def register(sub) -> None:
    p = sub.add_parser("segment", help="claustrum / WMH segmentation with multi-view U-Net ensembles",
                       description="Segment the claustrum (T1w) or white-matter hyperintensities (FLAIR [+ T1]) "
                                   "with the multi-view 2D U-Net ensembles of dissertation 003.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = p.add_subparsers(dest="task", metavar="TASK")
    c = tasks.add_parser("claustrum", help="claustrum from a skull-stripped T1w (adult) or T2w (neonatal model)",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("input", metavar="INPUT", help="input scan (volume file or DICOM folder)")
    c.add_argument("output", metavar="OUTPUT", help="label file to write (e.g. claustrum.nii.gz)")
    _common(c)
    c.set_defaults(func=run, model_default="claustrum")
    w = tasks.add_parser("wmh", help="white-matter hyperintensities from FLAIR (+ T1 registered to it)",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--flair", required=True, metavar="FILE", help="FLAIR scan (the output grid)")
    w.add_argument("--t1", metavar="FILE", help="T1 scan registered to the FLAIR (needed by two-channel models)")
    w.add_argument("output", metavar="OUTPUT", help="label file to write (e.g. wmh.nii.gz)")
    _common(w)
    w.set_defaults(func=run, model_default="wmh-demo")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _only_model_of_task(task: str):
    """The folder of the one installed package of ``task`` (None when there are none; error when several)."""
    from ..errors import InputError
    from ..segment.registry import list_models

    hits = [m for m in list_models() if str(m.get("task") or "").lower().startswith(task) and not m.get("error")]
    if not hits:
        return None
    if len(hits) > 1:
        raise InputError(f"several {task} models are installed ({', '.join(m['name'] for m in hits)}); "
                         "choose one with --model NAME")
    return hits[0]["path"]


def _load_package(args, device):
    from ..errors import InputError
    from ..segment.package import load_package
    from ..segment.registry import ModelNotFoundError, find_model

    name = args.model or args.model_default
    try:
        path = find_model(name)
    except ModelNotFoundError as exc:
        if args.model:
            if args.task == "claustrum":
                raise InputError(f"{exc}\n{NO_CLAUSTRUM_MODEL}") from None
            raise
        path = _only_model_of_task(args.task)
        if path is None:
            if args.task == "claustrum":
                raise InputError(NO_CLAUSTRUM_MODEL) from None
            raise
    pkg = load_package(path, device)
    task = str(pkg.manifest.get("task", "")).lower()
    if task and not task.startswith(args.task):
        raise InputError(f"model '{name}' is a '{pkg.manifest.get('task')}' model, not a {args.task} model; "
                         f"use 'neuroshift segment {task.split('-')[0]}' or another --model")
    return pkg


def run(args) -> int:
    import json
    import sys

    from ..threads import configure as configure_threads, prepare_environment

    prepare_environment()  # OMP_WAIT_POLICY=PASSIVE before torch is imported (OpenMP reads it once)
    import numpy as np

    from ..errors import InputError
    from ..io.atomic import write_text_atomic
    from ..io.files import read_volume, write_volume
    from ..progress import cli_progress
    from ..segment.inference import segment_volume
    from ..segment.preprocess import BrainMaskSpec
    from ..torch_device import resolve_device

    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise InputError(f"--threshold must be in [0, 1], got {args.threshold:g}")
    if args.slab_fraction is not None and not 0.0 <= args.slab_fraction < 0.5:
        raise InputError(f"--slab-fraction must be in [0, 0.5), got {args.slab_fraction:g}")
    from .common import is_folder_output, refuse_overwriting_inputs

    outputs = [("OUTPUT", args.output), ("--probabilities", args.probabilities),
               ("--uncertainty", args.uncertainty), ("--json", args.json)]
    inputs = [("--flair", getattr(args, "flair", None)), ("--t1", getattr(args, "t1", None)),
              ("INPUT", getattr(args, "input", None)), ("--brain-mask", args.brain_mask), ("--model", args.model)]
    folders = [(n, p) for n, p in outputs[:3] if p and is_folder_output(p)]
    refuse_overwriting_inputs(inputs, [o for o in outputs if o not in folders], replaced_folders=folders)
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    configure_threads(args.threads)
    device = resolve_device(args.device)
    pkg = _load_package(args, device)
    channels = list(pkg.manifest["input_channels"])
    inputs = {}
    if args.task == "wmh":
        inputs[channels[0]] = read_volume(args.flair, dtype=np.float32)
        if len(channels) > 1:
            if not args.t1:
                raise InputError(f"this model needs {' and '.join(channels)}: give --t1 (registered to the FLAIR), "
                                 "or use a FLAIR-only model")
            inputs[channels[1]] = read_volume(args.t1, dtype=np.float32)
        elif args.t1:
            print("neuroshift: note: the model is FLAIR-only; --t1 is ignored", file=sys.stderr)
    else:
        if len(channels) != 1:
            raise InputError(f"this claustrum model needs {len(channels)} channels ({', '.join(channels)}); "
                             "the claustrum command takes one input")
        inputs[channels[0]] = read_volume(args.input, dtype=np.float32)
    mask_spec = None
    if args.mask_mode or args.mask_thresholds:
        current = BrainMaskSpec.from_manifest((pkg.manifest.get("preprocessing", {}) or {}).get("brain_mask"),
                                              str(pkg.manifest.get("task", "")))
        mode = args.mask_mode or current.mode
        spec = {"mode": mode, "largest_component": current.largest_component, "fill_holes": current.fill_holes,
                "channel": current.channel}
        if args.mask_thresholds:
            try:
                spec["thresholds"] = {k: float(v) for k, v in args.mask_thresholds.items()}
            except ValueError:
                raise InputError(f"--mask-thresholds values must be numbers, got {args.mask_thresholds}") from None
        elif mode == current.mode:
            spec["thresholds"] = current.thresholds
        mask_spec = BrainMaskSpec.from_manifest(spec, str(pkg.manifest.get("task", "")))
    brain_mask = read_volume(args.brain_mask) if args.brain_mask else None

    with cli_progress(f"segment {args.task}") as progress:
        result = segment_volume(inputs, pkg, device=device, tta=args.tta, progress=progress,
                                batch_size=args.batch_size, threshold=args.threshold,
                                slab_fraction=args.slab_fraction, uncertainty=args.uncertainty_kind,
                                age_weeks=args.age_weeks, brain_mask=brain_mask, mask_spec=mask_spec,
                                precision=args.precision)
    write_volume(result.label, args.output)
    if args.probabilities:
        write_volume(result.probability, args.probabilities)
    if args.uncertainty:
        write_volume(result.uncertainty, args.uncertainty)
    summary = {"output": str(args.output), **result.summary(),
               "probabilities": args.probabilities, "uncertainty_file": args.uncertainty}
    if args.json:
        write_text_atomic(args.json, json.dumps(summary, indent=2, default=str) + "\n")
    for name, mm3 in result.volumes_mm3.items():
        print(f"{name}: {mm3:.1f} mm^3 ({mm3 / 1000.0:.3f} mL)")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {args.output}" + "".join(f", {p}" for p in (args.probabilities, args.uncertainty, args.json) if p))
    return 0
