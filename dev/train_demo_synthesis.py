"""Train the small SYNTHETIC-phantom LesionSynth demo models through the shared engine, score them on a held-out
phantom through the product path (:func:`neuroshift.synthesis.inference.synthesize`) and write the packages.

    python dev/train_demo_synthesis.py OUT --task synthdir|nolfl|diamondgan|vt1c [--epochs N] [--base W]

Data: phantoms of seeds 0, 1, 2, 4, 5 (training) and 3 (held out), every contrast from one set of tissue maps
(:mod:`neuroshift.phantom.contrasts`). 2D tasks: every axial slice with brain, each volume clipped to its 1-99
brain percentiles and mapped to [-1, 1] (as inference does), edge-padded to a multiple of 8; vT1c: whole
volumes in [0, 1], padded to a multiple of 16. No augmentation (the papers' gamma/blur/shift/flip are left out
for the CPU budget). Packages (OUT/<name>/) carry the reference histogram of the training DIR (brain voxels of
the brain slice range, :mod:`neuroshift.synthesis.histmatch`) and say "phantom-trained, not clinical". The
DiamondGAN package's manifest writes out every network option (domain encoding, residual / resample padding:
the released values; a manifest without them loads the legacy ones), the discriminator padding, ``--seed``,
``--version`` and its held-out scores.

Scores (OUT/<task>.json), all on held-out phantom seed 3 through ``synthesize`` (histogram matching on):
region PSNR / SSIM / MAE (each image clipped to its 0.5-99.5 brain percentiles, mapped to [0, 1]), LBR of the
real and synthetic image; DiamondGAN per input subset (7); synthDIR: Spearman of the per-voxel MC-dropout SD
(20 samples; also MC x 4-flip TTA; with ``--aleatoric`` also the predictive SD) with the absolute error, every variant of ``dev/synthesis_uncertainty.py``
(acquired and noise-free DIR; brain, lesion, NAWM voxels; per voxel and local means); ablation (``--task
nolfl``): lesion-region MAE and LBR with the lesion-focused term on vs off (same ``--seed``, data and epochs;
``--reduction`` and ``--decoder-dropout`` as for the model it is compared with); vT1c: SSIM / PSNR / enhancement AUC with and without 8-flip TTA and of the low-dose
image itself.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from neuroshift.io.atomic import write_text_atomic
from neuroshift.phantom import build_phantom
from neuroshift.phantom.contrasts import build_contrasts
from neuroshift.synthesis import metrics
from neuroshift.synthesis.histmatch import MANIFEST_KEY, reference_from_values
from neuroshift.synthesis.inference import load_package, normalise_volume, save_package, synthesize
from neuroshift.training.loop import LoopSettings, run_loop

TRAIN_SEEDS, TEST_SEED = (0, 1, 2, 4, 5), 3
NOTE = ("DEMO MODEL, NOT FOR CLINICAL USE: trained only on SYNTHETIC NeuroShift phantoms (seeds 0, 1, 2, 4, 5) "
        "by dev/train_demo_synthesis.py; it has never seen a real scan")
SOURCE_NAMES = {"flair": "FLAIR", "t1": "T1w", "t2": "T2w"}


def subject(seed: int) -> dict:
    ph = build_phantom(seed=seed)
    cs = build_contrasts(ph, seed=seed)
    brain = ph.brain_mask.data > 0
    lesion = ph.lesion_mask.data > 0
    raw = {n: np.asarray(v.data, np.float32) for n, v in cs.images.items()}
    raw["ADC"] = np.asarray(cs.adc.data, np.float32)
    return {"raw": raw, "clean_dir": np.asarray(cs.clean_images["DIR"].data, np.float32), "brain": brain,
            "lesion": lesion, "nawm": (ph.fractions["WM"].data >= 0.9) & ~lesion,
            "enhancing": cs.enhancing_mask.data > 0}


def _pad(a: np.ndarray, m: int) -> np.ndarray:
    pads = [(0, 0)] * (a.ndim - 2) + [(0, (-s) % m) for s in a.shape[-2:]]
    return np.pad(a, pads, mode="edge")


def slices2d(subj: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sources (N, 3, H, W) FLAIR/T1w/T2w, DIR (N, 1, H, W), lesion (N, 1, H, W), DIR in [0, 1] brain values)."""
    b = subj["brain"]
    ks = np.flatnonzero(b.any(axis=(1, 2)))
    vol = {n: normalise_volume(subj["raw"][n], b, (-1.0, 1.0)) for n in ("FLAIR", "T1w", "T2w", "DIR")}
    src = _pad(np.stack([vol[n][ks] for n in ("FLAIR", "T1w", "T2w")], 1), 8)
    tgt = _pad(vol["DIR"][ks][:, None], 8)
    les = _pad(subj["lesion"][ks][:, None].astype(np.float32), 8)
    return src, tgt, les, (vol["DIR"][b] + 1.0) / 2.0


def train_2d(subjects: list[dict], max_slices: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Training tensors (``max_slices`` > 0: that many evenly spaced slices per subject) and the reference
    histogram of the training DIR (all brain voxels)."""
    parts = [slices2d(s) for s in subjects]
    ref = reference_from_values(np.concatenate([p[3] for p in parts]))
    if max_slices:
        keep = [np.unique(np.linspace(0, len(p[0]) - 1, max_slices).round().astype(int)) for p in parts]
        parts = [tuple(a[k] for a in p[:3]) + (p[3],) for p, k in zip(parts, keep)]
    return (torch.from_numpy(np.concatenate([p[0] for p in parts])), torch.from_numpy(np.concatenate([p[1] for p in parts])),
            torch.from_numpy(np.concatenate([p[2] for p in parts])), ref)


def dir_scores(test: dict, pred: np.ndarray) -> dict:
    real = test["raw"]["DIR"]
    masks = {"brain": test["brain"], "lesion": test["lesion"], "nawm": test["nawm"]}
    r = metrics.region_metrics(real, pred, masks)
    return {"psnr_brain_db": r["brain"]["psnr_db"], "ssim_brain": r["brain"]["ssim"], "mae_brain": r["brain"]["mae"],
            "mae_lesion": r["lesion"]["mae"], "psnr_lesion_db": r["lesion"]["psnr_db"], "ssim_lesion": r["lesion"]["ssim"],
            "lbr_synthetic": metrics.lbr(pred, test["lesion"], test["nawm"]),
            "lbr_real": metrics.lbr(real, test["lesion"], test["nawm"])}


SCORES_PROTOCOL = (f"held-out phantom seed {TEST_SEED} through neuroshift.synthesis.inference.synthesize; each image "
                   "clipped to its 0.5-99.5 brain percentiles and mapped to [0, 1]; PSNR data range 1; SSIM Gaussian "
                   "window 7; MAE over the region; LBR = mean(lesion)/mean(NAWM) of the raw images")


def provenance(extra: dict) -> dict:
    return {"trained_on": NOTE, "demo": True, "held_out": f"phantom seed {TEST_SEED}",
            "version": "0.1.0-demo", **extra}


def run_synthdir(out: Path, args, data, test, lambda1: float, name: str, save: bool) -> dict:
    from neuroshift.synthesis.train_steps import SynthDIRStep
    src, tgt, les, ref = data
    arch = {"in_channels": 2, "out_channels": 1, "base": args.base, "depth": 3, "dropout": 0.3}
    if args.decoder_dropout:
        arch["decoder_dropout"] = args.decoder_dropout
    if args.aleatoric:
        arch["aleatoric"] = True
        if args.aleatoric_features != "dropped":
            arch["aleatoric_features"] = args.aleatoric_features
    t0 = time.time()
    step = SynthDIRStep(src[:, :2], tgt, les, lambda1=lambda1, base=args.base, depth=3, lr=args.lr,
                        batch_size=args.batch, d_base=16, seed=args.seed, decoder_dropout=args.decoder_dropout,
                        reduction=args.reduction, aleatoric=args.aleatoric, nll_weight=args.nll_weight,
                        nll_beta=args.nll_beta, nll_detach_features=args.nll_detach_features,
                        aleatoric_features=args.aleatoric_features)
    res = run_loop(step, LoopSettings(epochs=args.epochs, directory=out / "work" / name, seed=args.seed,
                                      verbose=False, resume=args.resume))
    train_s = time.time() - t0
    pkg = save_package(out / name, "synthdir", "dir", ("flair", "t1"), arch, step.models["generator"],
                       provenance({"epochs_run": len(res.history), "train_s": round(train_s), "lambda1": lambda1,
                                   "masked_l1_reduction": args.reduction, "seed": args.seed, MANIFEST_KEY: ref,
                                   **({"aleatoric_nll": {"weight": args.nll_weight, "beta": args.nll_beta,
                                                         "detach_features": args.nll_detach_features}}
                                      if args.aleatoric else {})}))
    model = load_package(pkg)
    inputs = {n: test["raw"][SOURCE_NAMES[n]] for n in ("flair", "t1")}
    pred, sd = synthesize(model, inputs, test["brain"], mc_samples=20)
    s = dir_scores(test, pred)
    pred_t, sd_t = synthesize(model, inputs, test["brain"], mc_samples=20, tta=True)
    s["mc_tta"] = dir_scores(test, pred_t)
    s["single_pass"] = dir_scores(test, synthesize(model, inputs, test["brain"])[0])  # dropout off
    raw_pred, _ = synthesize(model, inputs, test["brain"], histogram_match=False)
    s["without_histogram_matching"] = dir_scores(test, raw_pred)
    s.update(train_s=train_s, epochs_run=len(res.history), steps=res.steps)
    from synthesis_uncertainty import spearman_table  # dev/ is on sys.path when run as a script
    from neuroshift.synthesis.inference import PREDICTIVE, uncertainty_kind
    if uncertainty_kind(model) == PREDICTIVE:  # synthesize gave the predictive SD; the MC-dropout SD alone too
        s["spearman_table_predictive"] = spearman_table(test, pred, sd)
        s["spearman_table_predictive_x_tta"] = spearman_table(test, pred_t, sd_t)
        pred, sd = synthesize(model, inputs, test["brain"], mc_samples=20, uncertainty="mc_dropout")
        pred_t, sd_t = synthesize(model, inputs, test["brain"], mc_samples=20, tta=True, uncertainty="mc_dropout")
    s["spearman_table_mc"] = spearman_table(test, pred, sd)
    s["spearman_table_mc_x_tta"] = spearman_table(test, pred_t, sd_t)
    if not save:
        import shutil
        shutil.rmtree(pkg)
    return s


def run_diamondgan(out: Path, args, data, test) -> dict:
    from neuroshift.synthesis.train_steps import DiamondGANStep
    src, tgt, _, ref = data
    t0 = time.time()
    step = DiamondGANStep(src, tgt, n_blocks=args.blocks, base=args.base, d_base=16, batch_size=args.batch,
                          lr=args.lr, seed=args.seed, domain_encoding=args.domain_encoding)
    res = run_loop(step, LoopSettings(epochs=args.epochs, directory=out / "work" / "dir-demo", seed=args.seed,
                                      verbose=False, resume=args.resume))
    train_s = time.time() - t0
    # every option written out (the released residual/resample padding, the domain matrix), so the package says
    # which network it is; a manifest without them would load the legacy (pre-release) values
    arch = step.models["g1"].architecture()
    pkg = save_package(out / "dir-demo", "diamondgan", "dir", ("flair", "t1", "t2"), arch, step.models["g1"],
                       provenance({"epochs_run": len(res.history), "train_s": round(train_s),
                                   "discriminator_padding": step.models["d1"].padding, "version": args.version,
                                   "seed": args.seed,
                                   MANIFEST_KEY: ref}))
    scores = {**diamondgan_scores(pkg, test), "epochs_run": len(res.history), "steps": res.steps}
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest.update(held_out_scores=scores, scores_protocol=SCORES_PROTOCOL)
    write_text_atomic(pkg / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    load_package(pkg)  # still a valid package
    return {**scores, "train_s": train_s}


def diamondgan_scores(pkg: Path, test: dict) -> dict:
    """Held-out scores of a DiamondGAN package per input subset (7), through ``synthesize``, and their means."""
    from neuroshift.synthesis.diamondgan import all_subsets
    model = load_package(pkg)
    per = {}
    for code in all_subsets(3):
        names = [n for n, c in zip(("flair", "t1", "t2"), code) if c]
        pred, _ = synthesize(model, {n: test["raw"][SOURCE_NAMES[n]] for n in names}, test["brain"])
        per["+".join(names)] = dir_scores(test, pred)
    means = {k: float(np.mean([v[k] for v in per.values()])) for k in next(iter(per.values()))}
    return {"per_subset": per, "mean_over_subsets": means}


def run_vt1c(out: Path, args, subjects, test) -> dict:
    from neuroshift.synthesis.train_steps import VirtualT1cStep
    order = ("ADC", "FLAIR", "T1w", "T1c_low")

    def vol(s):
        b = s["brain"]
        x = np.stack([normalise_volume(s["raw"][n], b, (0.0, 1.0)) for n in order])
        y = normalise_volume(s["raw"]["T1c"], b, (0.0, 1.0))[None]
        pads = [(0, 0)] + [(0, (-n) % 16) for n in b.shape]
        return np.pad(x, pads, mode="edge"), np.pad(y, pads, mode="edge")
    vs = [vol(s) for s in subjects]
    x = torch.from_numpy(np.stack([v[0] for v in vs]))
    y = torch.from_numpy(np.stack([v[1] for v in vs]))
    feats = tuple(args.features)
    t0 = time.time()
    step = VirtualT1cStep(x, y, features=feats, lr=args.lr, batch_size=args.batch, seed=0, crop=args.crop or None,
                          steps_per_epoch=args.steps or None)
    res = run_loop(step, LoopSettings(epochs=args.epochs, directory=out / "work" / "vt1c-demo", seed=0, verbose=False,
                                      resume=args.resume))
    train_s = time.time() - t0
    pkg = save_package(out / "vt1c-demo", "vt1c", "t1c", ("adc", "flair", "t1", "low_dose"),
                       {"features": list(feats), "in_channels": 4}, step.models["unet"],
                       provenance({"epochs_run": len(res.history), "train_s": round(train_s)}))
    model = load_package(pkg)
    raw, b = test["raw"], test["brain"]
    inputs = {"adc": raw["ADC"], "flair": raw["FLAIR"], "t1": raw["T1w"], "low_dose": raw["T1c_low"]}
    p1, p99 = np.percentile(raw["T1c"][b], [1, 99])

    def scores(img: np.ndarray, in_au: bool) -> dict:
        post = p1 + img / 1000.0 * (p99 - p1) if in_au else img  # back to the T1c scale for the enhancement
        r = metrics.region_metrics(raw["T1c"], img, {"brain": b, "lesion": test["lesion"]})
        return {"ssim_brain": r["brain"]["ssim"], "psnr_brain_db": r["brain"]["psnr_db"],
                "mae_lesion": r["lesion"]["mae"],
                "enhancement_auc": metrics.enhancement_auc(raw["T1w"], raw["T1c"], post, b)}
    out_s = {"low_dose_image": scores(raw["T1c_low"], False)}
    for tta in (False, True):
        pred, _ = synthesize(model, inputs, b, tta=tta)
        out_s["tta8" if tta else "single"] = scores(pred, True)
    out_s.update(train_s=train_s, epochs_run=len(res.history), steps=res.steps,
                 enhancement_note="post (synthetic, mapped to the real T1c's 1-99 % range) minus pre T1w")
    return out_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--task", choices=("synthdir", "nolfl", "diamondgan", "vt1c"), required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--base", type=int, default=16, help="generator width")
    ap.add_argument("--blocks", type=int, default=3, help="DiamondGAN residual blocks")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--slices", type=int, default=0, help="DiamondGAN: slices per training subject (0: all)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--score-only", type=Path, default=None,
                    help="diamondgan: only score this existing package on the held-out phantom (no training)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the shared machine: 1)")
    ap.add_argument("--domain-encoding", choices=("patterns", "constant"), default="patterns",
                    help="DiamondGAN domain matrix: the authors' released 0/1 patterns or the legacy constant map")
    ap.add_argument("--crop", type=int, default=0, help="vT1c: random cubes of this size (0: whole volumes)")
    ap.add_argument("--steps", type=int, default=0, help="vT1c with --crop: batches per epoch")
    ap.add_argument("--version", default="0.1.0-demo", help="diamondgan: the package version written to the manifest")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/work/<name> checkpoints")
    ap.add_argument("--lambda1", type=float, default=1.0, help="synthDIR: weight of the lesion-focused masked L1")
    ap.add_argument("--seed", type=int, default=0, help="synthDIR, DiamondGAN: initialisation and batch-order seed")
    ap.add_argument("--decoder-dropout", type=float, default=0.0, help="synthDIR: dropout in the inner decoder blocks")
    ap.add_argument("--reduction", choices=("lesion", "all"), default="lesion",
                    help="synthDIR masked L1: per lesion voxel (default) or over all voxels (the earlier one)")
    ap.add_argument("--aleatoric", action="store_true",
                    help="synthDIR: log-variance head trained with a Gaussian NLL (predictive uncertainty)")
    ap.add_argument("--nll-weight", type=float, default=1.0, help="synthDIR --aleatoric: weight of the NLL term")
    ap.add_argument("--nll-beta", type=float, default=None,
                    help="synthDIR --aleatoric: beta-NLL exponent (default: NLL on the detached mean)")
    ap.add_argument("--nll-detach-features", action="store_true",
                    help="synthDIR --aleatoric: the NLL trains the log-variance conv only (image network as without)")
    ap.add_argument("--aleatoric-features", choices=("dropped", "deterministic"), default="dropped",
                    help="synthDIR --aleatoric: log variance from the dropped-out or the eval-mode features")
    ap.add_argument("--features", type=int, nargs=6, default=(8, 8, 16, 32, 64, 8), help="vT1c U-Net widths")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    subjects = [] if args.score_only else [subject(s) for s in TRAIN_SEEDS]
    test = subject(TEST_SEED)
    report = {"task": args.task, "args": vars(args), "note": NOTE}
    if args.task == "synthdir":
        report["synthdir"] = run_synthdir(out, args, train_2d(subjects), test, args.lambda1, "synthdir-demo", save=True)
    elif args.task == "nolfl":  # the ablation: same seed and epochs, lesion-focused term off
        report["synthdir_without_lesion_term"] = run_synthdir(out, args, train_2d(subjects), test, 0.0,
                                                              "synthdir-nolfl", save=True)
    elif args.task == "diamondgan" and args.score_only:
        report["diamondgan"] = {"package": str(args.score_only), **diamondgan_scores(args.score_only, test)}
    elif args.task == "diamondgan":
        report["diamondgan"] = run_diamondgan(out, args, train_2d(subjects, args.slices), test)
    else:
        report["vt1c"] = run_vt1c(out, args, subjects, test)
    text = json.dumps(report, indent=2, default=lambda o: str(o) if isinstance(o, Path) else float(o))
    (out / f"{args.task}.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
