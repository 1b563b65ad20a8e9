"""Train the SMALL demo MRF U-Net shipped in neuroshift/data/mrf/demo_model (SYNTHETIC, not clinical).

    python dev/train_demo_mrf.py [--out neuroshift/data/mrf/demo_model] [--epochs 6] [--steps 20]

Phantom-trained (NeuroShift phantom seeds 1-3, held-out seeds 201 and 202), on the REPRESENTATIVE schedule,
a few minutes on 2 CPU cores. Deviations from paper 001's recipe, for time only (the CLI 'neuroshift mrf train'
has the paper's defaults): lr 1e-3 halved every 3 epochs (paper: 1e-4 every 20), 6 short epochs of
20 batches of 16 patches (paper: 100 epochs, 64 patches per slice, batch 64), a narrow network (16-128 channels).
The held-out metrics are written into the manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def held_out_sentence(mean: dict) -> str:
    """The measured held-out figures, written into the manifest's notes (so the caveat is never stale)."""
    return (f" Held-out phantoms (seeds 201, 202), measured after training: T1 relative deviation "
            f"{100 * mean['T1_rel_dev']:.1f} %, T2* {100 * mean['T2star_rel_dev']:.1f} %, NAWM Dice at 80 % "
            f"{mean['NAWM_dice_80pct']:.2f}, GM Dice at 80 % {mean['GM_dice_80pct']:.2f}, lesion Dice "
            f"{mean['lesion_dice_33pct']:.2f} and lesion detection rate {mean['lesion_ldr_33pct']:.2f} at 33 %"
            + (" (the lesion channel has not learned to reach 33 % in this short training)"
               if mean["lesion_ldr_33pct"] == 0 else "") + ".")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "neuroshift/data/mrf/demo_model"))
    ap.add_argument("--work", default="/tmp/neuroshift_mrf_demo_work")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="continue the work folder's checkpoint to --epochs")
    args = ap.parse_args()

    import numpy as np
    import torch

    from neuroshift.mrf.dataset import simulate_subject
    from neuroshift.mrf.model import save_package
    from neuroshift.mrf.schedule import representative_schedule
    from neuroshift.mrf.train import MRFTrainConfig, config_dict, evaluate_subject, train_model
    from neuroshift.training.history import software_provenance

    torch.set_num_threads(args.threads)
    schedule = representative_schedule()
    cfg = MRFTrainConfig(train_seeds=(1, 2, 3), val_seeds=(), epochs=args.epochs, batch_size=16, patches_per_slice=4,
                         steps_per_epoch=args.steps, lr=1e-3, lr_halve_epochs=3, seed=0, arch={})
    t0 = time.perf_counter()
    import shutil
    if not args.resume:
        shutil.rmtree(args.work, ignore_errors=True)
    model, result = train_model(cfg, schedule, args.work, resume=args.resume)
    train_s = time.perf_counter() - t0
    rows = []
    for seed in (201, 202):
        subj = simulate_subject(schedule, seed)
        t = time.perf_counter()
        r = evaluate_subject(model, subj)
        per_slice = (time.perf_counter() - t) / subj.frames.shape[0]
        s = r["summary"]
        rows.append({"seed": seed, "T1_rel_dev": s["T1_rel_dev"], "T2star_rel_dev": s["T2star_rel_dev"],
                     "NAWM_dice_80pct": s.get("NAWM_dice_80pct"), "GM_dice_80pct": s.get("GM_dice_80pct"),
                     "lesion_dice_33pct": s["lesion_dice_33pct"], "lesion_ldr_33pct": s["lesion_ldr_33pct"],
                     "n_gt_lesions": s["n_gt_lesions"], "seconds_per_slice_incl_metrics": round(per_slice, 4)})
        print(json.dumps(rows[-1]))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k not in ("seed",)}
    manifest = {
        "name": "mrf-demo-unet",
        "notes": ("DEMO model, NOT for clinical use. Trained on SYNTHETIC NeuroShift phantom frames (one template brain, "
                  "seed-dependent lesions, B1 field 0.6-1.4, 1 % Rician noise) simulated with the REPRESENTATIVE "
                  "schedule (not the scanner schedule of paper 001), briefly (see training.train_seconds; 2 CPU cores) with a "
                  "shortened recipe (see training.deviations). Expect it to be far from the paper's accuracy; it exists so that "
                  "'neuroshift mrf predict' runs out of the box.") + held_out_sentence(mean),
        "training": {"config": config_dict(cfg), "train_seconds": round(sum(float(r.get("seconds", 0)) for r in result.history), 1), "history": result.history,
                     "deviations": f"lr 1e-3 halved every 3 epochs; {args.epochs} epochs x {args.steps} batches of 16 "
                                   "patches; 4 patches per slice; narrow network (16-32-64-128)",
                     "software": software_provenance()},
        "held_out": {"seeds": [201, 202], "per_subject": rows, "mean": mean,
                     "reference": "phantom ground truth (fraction-weighted T1/T2*, tissue fractions in %)"},
    }
    save_package(model, args.out, schedule, manifest)
    print("mean held-out:", json.dumps(mean))
    print(f"written {args.out} ({train_s:.0f} s of training in this run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
