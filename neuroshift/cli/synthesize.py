"""``neuroshift synthesize`` and ``neuroshift evaluate-synthesis`` (LesionSynth)."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  neuroshift synthesize out_DIR.nii.gz --target dir --model MODEL --flair FLAIR.nii.gz --t1 T1w.nii.gz
  neuroshift synthesize out_DIR.nii.gz --target dir --model MODEL --flair F.nii.gz --t1 T1.nii.gz \\
      --uncertainty dir_sd.nii.gz --mc-samples 20
  neuroshift synthesize out_T1c.nii.gz --target t1c --model MODEL --adc ADC.nii.gz --flair F.nii.gz \\
      --t1 T1w.nii.gz --low-dose T1c_low.nii.gz --tta

DiamondGAN models take any non-empty subset of --flair --t1 --t2; synthDIR needs --flair and --t1; the
virtual-T1c model needs --adc --flair --t1 --low-dose. Inputs share the first one's grid. The output (NIfTI)
has the first input's geometry, 'SYNTHETIC' in its header description and a JSON sidecar saying so.
"""

INPUT_FLAGS = {"flair": "--flair", "t1": "--t1", "t2": "--t2", "adc": "--adc", "low_dose": "--low-dose"}


def register(sub) -> None:
    from .common import add_device_arg

    p = sub.add_parser("synthesize", help="synthesise DIR or contrast-enhanced T1 from any available inputs",
                       description="LesionSynth: DIR from any subset of FLAIR/T1/T2 (DiamondGAN) or FLAIR+T1 "
                                   "with MC-dropout uncertainty (synthDIR); virtual T1c from ADC/FLAIR/T1/low-dose.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", metavar="OUTPUT", help="synthetic image to write (.nii or .nii.gz)")
    p.add_argument("--target", choices=("dir", "t1c"), required=True, help="contrast to synthesise")
    p.add_argument("--model", required=True, metavar="FOLDER", help="model package (manifest.json + weights)")
    for name, flag in INPUT_FLAGS.items():
        p.add_argument(flag, dest=name, metavar="IMAGE", help=f"{name.replace('_', '-')} input image")
    p.add_argument("--brain-mask", metavar="MASK", help="brain mask (default: non-zero voxels of the first input)")
    p.add_argument("--uncertainty", metavar="FILE", help="write a per-voxel SD map here (synthDIR; a.u. like OUTPUT; "
                   "the sidecar says which kind, see --uncertainty-kind)")
    p.add_argument("--uncertainty-kind", choices=("auto", "mc_dropout", "predictive", "residual"), default="auto",
                   help="auto (default): the package's error model when it has one (residual: the learned SD of "
                        "the image's error), else the predictive SD with an aleatoric head, else the MC-dropout SD")
    p.add_argument("--mc-samples", type=int, default=20, metavar="N",
                   help="MC-dropout passes (default 20; 1 = a single pass, enough for the residual kind)")
    p.add_argument("--tta", action="store_true", help="average over flip test-time augmentation")
    p.add_argument("--seed", type=int, default=0, help="seed of the MC-dropout passes (default 0)")
    p.add_argument("--no-histogram-match", dest="histogram_match", action="store_false",
                   help="keep the network's intensities (default: match the brain histogram to the model's "
                        "stored reference of its training targets, as the papers do)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                   help="network arithmetic: fp32 (default), auto (float16 on CUDA; bfloat16 on CPUs that run it "
                        "natively, AVX512-BF16/AMX; else float32), bf16, fp16 (CUDA only)")
    add_device_arg(p)
    p.set_defaults(func=run)

    e = sub.add_parser("evaluate-synthesis", help="PSNR/SSIM/MAE per region, LBR, CNR of a synthetic image",
                       description="Compare a synthetic image with the real one: PSNR, SSIM, MAE over brain, "
                                   "lesion and NAWM (each image clipped to its 0.5-99.5 brain percentiles and "
                                   "mapped to [0, 1]), LBR and CNR of both images.")
    e.add_argument("reference", metavar="REAL", help="real target image")
    e.add_argument("synthetic", metavar="SYNTHETIC", help="synthetic image on the same grid")
    e.add_argument("--brain-mask", required=True, metavar="MASK")
    e.add_argument("--lesion-mask", metavar="MASK", help="lesion mask (lesion metrics, LBR, CNR)")
    e.add_argument("--nawm-mask", metavar="MASK", help="normal-appearing WM mask (NAWM metrics, LBR, CNR)")
    e.add_argument("--output", metavar="JSON", help="write the metrics here (default: print only)")
    e.set_defaults(func=run_evaluate)

    t = sub.add_parser("turing-study", help="build a blinded visual Turing test from real/synthetic pairs",
                       description="Build a reader study (design 'turing', dissertation 003 layout: real source "
                                   "left, real or synthetic target right at random, 1-6 stars) for "
                                   "'neuroshift reader-study create'. PAIRS is a CSV with columns case, source, "
                                   "real and one column per synthetic image set (paths relative to the CSV).")
    t.add_argument("outdir", metavar="OUTDIR", help="new study folder (images are copied into it)")
    t.add_argument("--pairs", required=True, metavar="CSV", help="case,source,real,<synthetic set>... table")
    t.add_argument("--readers", required=True, metavar="IDS", help="comma-separated reader ids")
    t.add_argument("--target-label", default="DIR", help="name of the target contrast (default DIR)")
    t.add_argument("--seed", type=int, default=0, help="seed of the trial schedule (default 0)")
    t.set_defaults(func=run_turing)


def _device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from ..errors import InputError
        raise InputError("--device cuda: no CUDA device is available")
    return name


def run(args) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from ..errors import InputError
    from ..io.atomic import write_text_atomic
    from ..io.files import read_volume
    from ..synthesis.inference import RESIDUAL, load_package, synthesize, uncertainty_kind, write_synthetic
    from .common import refuse_overwriting_inputs

    given = {n: getattr(args, n) for n in INPUT_FLAGS if getattr(args, n)}
    if not given:
        raise InputError("give at least one input image (--flair, --t1, --t2, --adc, --low-dose)")
    if args.mc_samples < 1:
        raise InputError(f"--mc-samples must be >= 1, got {args.mc_samples}")
    out = Path(args.output)
    if not out.name.lower().endswith((".nii", ".nii.gz")):
        raise InputError(f"{out}: OUTPUT must end in .nii or .nii.gz")
    sidecar = out.with_name(out.name[: -len(".nii.gz") if out.name.endswith(".gz") else -len(".nii")] + ".json")
    outputs = [("OUTPUT", out), ("OUTPUT sidecar", sidecar)] + ([("--uncertainty", args.uncertainty)]
                                                               if args.uncertainty else [])
    refuse_overwriting_inputs([(INPUT_FLAGS[n], p) for n, p in given.items()] + [("--brain-mask", args.brain_mask)],
                              outputs)
    model = load_package(args.model)
    if model.target != args.target:
        raise InputError(f"--model {args.model} synthesises {model.target}, not {args.target}")
    if args.uncertainty and model.task != "synthdir":
        raise InputError("--uncertainty needs a synthDIR model (MC dropout)")
    kind = uncertainty_kind(model, args.uncertainty_kind) if args.uncertainty else None
    if kind is not None and kind != RESIDUAL and args.mc_samples < 2:
        raise InputError(f"--uncertainty ({kind}) needs --mc-samples >= 2, got {args.mc_samples}")
    vols = {n: read_volume(p, dtype=np.float32) for n, p in given.items()}
    first = next(iter(vols.values()))
    for n, v in vols.items():
        first.require_same_grid(v, f"{INPUT_FLAGS[n]} and the first input")
    if args.brain_mask:
        b = read_volume(args.brain_mask)
        first.require_same_grid(b, "--brain-mask and the inputs")
        brain = b.data > 0
    else:
        brain = first.data != 0
    device = _device(args.device)
    mc = args.mc_samples if args.uncertainty else 0
    data, sd = synthesize(model, {n: v.data for n, v in vols.items()}, brain, mc_samples=mc, tta=args.tta,
                          seed=args.seed, device=device, histogram_match=args.histogram_match,
                          precision=args.precision, uncertainty="residual" if kind == RESIDUAL else
                          args.uncertainty_kind)
    meta = {"Description": "SYNTHETIC image generated by NeuroShift LesionSynth; not an acquired scan",
            "Synthetic": True, "Target": args.target, "Inputs": {n: str(p) for n, p in given.items()},
            "Model": str(args.model), "ModelTask": model.task,
            "ModelProvenance": model.manifest.get("trained_on", "unknown"),
            "MCSamples": mc, "TTA": bool(args.tta), "Units": "a.u. (0-1000 inside the brain)",
            "Precision": args.precision,
            "HistogramMatched": bool(args.histogram_match and "histogram_reference" in model.manifest)}
    print(write_synthetic(first.with_data(data), out))
    if sd is not None:
        print(write_synthetic(first.with_data(sd), args.uncertainty, f"SYNTHETIC NeuroShift SD: {kind}"))
        meta["Uncertainty"] = str(args.uncertainty)
        meta["UncertaintyKind"] = kind
    write_text_atomic(sidecar, json.dumps(meta, indent=2) + "\n")
    print(sidecar)
    return 0


def run_evaluate(args) -> int:
    import json

    import numpy as np

    from ..io.atomic import write_text_atomic
    from ..io.files import read_volume
    from ..synthesis import metrics
    from .common import refuse_overwriting_inputs

    if args.output:
        refuse_overwriting_inputs([("REAL", args.reference), ("SYNTHETIC", args.synthetic),
                                   ("--brain-mask", args.brain_mask), ("--lesion-mask", args.lesion_mask),
                                   ("--nawm-mask", args.nawm_mask)], [("--output", args.output)])
    ref = read_volume(args.reference, dtype=np.float32)
    syn = read_volume(args.synthetic, dtype=np.float32)
    ref.require_same_grid(syn, "REAL and SYNTHETIC")
    masks = {}
    for name, path in (("brain", args.brain_mask), ("lesion", args.lesion_mask), ("nawm", args.nawm_mask)):
        if path:
            m = read_volume(path)
            ref.require_same_grid(m, f"the {name} mask and REAL")
            masks[name] = m.data > 0
    result = {"protocol": "each image clipped to its 0.5-99.5 brain percentiles, mapped to [0, 1]; PSNR data "
                          "range 1; SSIM Gaussian window 7, sigma 1.5, averaged over the region; MAE over the region",
              "regions": metrics.region_metrics(ref.data, syn.data, masks)}
    if "lesion" in masks and "nawm" in masks:
        for label, img in (("real", ref.data), ("synthetic", syn.data)):
            result[f"lbr_{label}"] = metrics.lbr(img, masks["lesion"], masks["nawm"])
            result[f"cnr_{label}"] = metrics.cnr(img, masks["lesion"], masks["nawm"])
    text = json.dumps(result, indent=2, default=lambda v: None if v != v else v)
    if args.output:
        write_text_atomic(args.output, text + "\n")
    print(text)
    return 0


def run_turing(args) -> int:
    import csv
    from pathlib import Path

    from ..errors import InputError
    from ..synthesis.turing import build_turing_study

    table = Path(args.pairs)
    try:
        with table.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"--pairs {table}: cannot read ({exc.strerror})") from None
    if not rows or not {"case", "source", "real"} <= set(rows[0]):
        raise InputError(f"--pairs {table}: needs a header with case, source, real and synthetic columns")
    sets = [c for c in rows[0] if c not in ("case", "source", "real")]
    base = table.parent
    cases = [{"id": r["case"], "source": base / r["source"], "real": base / r["real"],
              "synthetic": {s: base / r[s] for s in sets}} for r in rows]
    readers = [r.strip() for r in args.readers.split(",") if r.strip()]
    print(build_turing_study(args.outdir, cases, readers, target_label=args.target_label, seed=args.seed))
    return 0
