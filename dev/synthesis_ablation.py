"""The synthDIR lesion-focused-term ablation table: models trained identically but for the masked L1 (on / off;
same seed, data and steps) scored on the held-out SYNTHETIC phantom (seed 3).

    python dev/synthesis_ablation.py --pair ON_PKG OFF_PKG [--pair ON_PKG OFF_PKG ...] [--samples 20] [--json OUT]

Packages come from ``dev/train_demo_synthesis.py`` (``--task synthdir`` and ``--task nolfl``). Each model is scored
through ``synthesize`` (histogram matching on) on its MC-dropout mean (``--samples``; the product's prediction
with ``--uncertainty``) and on a single pass with dropout off: lesion-region MAE / PSNR / SSIM, brain PSNR / SSIM,
LBR (real DIR's LBR alongside; images normalised as :mod:`neuroshift.synthesis.metrics`). Printed: one row per
model, the on - off difference per pair and its mean over pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_demo_synthesis import TEST_SEED, subject  # noqa: E402

from neuroshift.synthesis import metrics  # noqa: E402
from neuroshift.synthesis.inference import load_package, synthesize  # noqa: E402

KEYS = ("mae_lesion", "psnr_lesion_db", "ssim_lesion", "lbr", "psnr_brain_db", "ssim_brain")


def scores(test: dict, pred: np.ndarray) -> dict:
    r = metrics.region_metrics(test["raw"]["DIR"], pred, {"brain": test["brain"], "lesion": test["lesion"]})
    return {"mae_lesion": r["lesion"]["mae"], "psnr_lesion_db": r["lesion"]["psnr_db"], "ssim_lesion": r["lesion"]["ssim"],
            "lbr": metrics.lbr(pred, test["lesion"], test["nawm"]), "psnr_brain_db": r["brain"]["psnr_db"],
            "ssim_brain": r["brain"]["ssim"]}


def score_model(folder: str, test: dict, samples: int) -> dict:
    model = load_package(folder)
    inputs = {"flair": test["raw"]["FLAIR"], "t1": test["raw"]["T1w"]}
    mc, _ = synthesize(model, inputs, test["brain"], mc_samples=samples)
    single, _ = synthesize(model, inputs, test["brain"])
    m = model.manifest
    return {"package": folder, "lambda1": m.get("lambda1"), "seed": m.get("seed", 0), "epochs": m.get("epochs_run"),
            "reduction": m.get("masked_l1_reduction", "all"),
            "decoder_dropout": model.architecture.get("decoder_dropout", 0.0),
            "mc_mean": scores(test, mc), "single_pass": scores(test, single)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pair", nargs=2, action="append", required=True, metavar=("ON_PKG", "OFF_PKG"))
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    test = subject(TEST_SEED)
    real_lbr = metrics.lbr(test["raw"]["DIR"], test["lesion"], test["nawm"])
    rows = [{"on": score_model(on, test, args.samples), "off": score_model(off, test, args.samples)}
            for on, off in args.pair]
    out = {"held_out": f"SYNTHETIC phantom seed {TEST_SEED}", "mc_samples": args.samples, "lbr_real_dir": real_lbr,
           "pairs": rows, "mean_on_minus_off": {}}
    print(f"real DIR LBR {real_lbr:.2f}")
    for pred in ("mc_mean", "single_pass"):
        print(f"[{pred}] " + " ".join(f"{k:>14s}" for k in KEYS))
        diffs = []
        for row in rows:
            for label in ("on", "off"):
                r = row[label]
                print(f"  {label:3s} seed {r['seed']} l1 {r['lambda1']} dec {r['decoder_dropout']} "
                      + " ".join(f"{r[pred][k]:14.4f}" for k in KEYS))
            diffs.append({k: row["on"][pred][k] - row["off"][pred][k] for k in KEYS})
        mean = {k: float(np.mean([d[k] for d in diffs])) for k in KEYS}
        out["mean_on_minus_off"][pred] = mean
        print("  on-off mean   " + " ".join(f"{mean[k]:14.4f}" for k in KEYS))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
