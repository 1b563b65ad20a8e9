"""Train tiny SYNTHETIC-phantom LesionSynth demo models through the shared engine and report held-out scores.

    python dev/train_demo_synthesis.py OUT [--task synthdir|diamondgan|all] [--epochs N] [--slices N]

Data: phantoms of seeds 0..2 (training) and 3 (held out), every contrast from one set of tissue maps
(neuroshift.phantom.contrasts); axial slices with brain, each volume clipped to its 1-99 brain percentiles and
mapped to [-1, 1], padded to a multiple of 8. Models are tiny (CPU minutes), phantom-trained, NOT clinical.

Reports (OUT/report.json): held-out PSNR / SSIM / LBR (region metrics of neuroshift.synthesis.metrics)
per input subset for DiamondGAN; for synthDIR with and without the lesion-focused term (ablation:
lesion-region MAE) and the Spearman correlation of the per-voxel MC-dropout SD (20 samples) with the
absolute error over brain voxels. Model packages: OUT/<task>/ (manifest says phantom-trained, not clinical).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from neuroshift.phantom import build_phantom
from neuroshift.phantom.contrasts import build_contrasts
from neuroshift.synthesis import metrics
from neuroshift.synthesis.inference import normalise_volume, save_package
from neuroshift.training.loop import LoopSettings, run_loop

PROVENANCE = {"trained_on": "SYNTHETIC NeuroShift phantoms (seeds 0-2), phantom-trained demo, NOT clinical",
              "held_out": "phantom seed 3"}


def subject(seed: int):
    ph = build_phantom(seed=seed)
    cs = build_contrasts(ph, seed=seed)
    brain = ph.brain_mask.data > 0
    vols = {n: normalise_volume(cs.images[n].data, brain, (-1.0, 1.0)) for n in ("FLAIR", "T1w", "T2w", "DIR")}
    lesion = ph.lesion_mask.data > 0
    nawm = (ph.fractions["WM"].data >= 0.9) & ~lesion
    return vols, brain, lesion, nawm


def slices(vols, brain, lesion, n_max, rng):
    ks = np.flatnonzero(brain.any(axis=(1, 2)))
    with_lesion = [k for k in ks if lesion[k].any()]
    others = [k for k in ks if not lesion[k].any()]
    pick = with_lesion + list(rng.permutation(others)[: max(0, n_max - len(with_lesion))])
    pick = sorted(pick[:n_max])

    def pad(a):
        h, w = a.shape[-2:]
        return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, (-h) % 8), (0, (-w) % 8)], mode="edge")
    src = pad(np.stack([vols[n][pick] for n in ("FLAIR", "T1w", "T2w")], 1))
    tgt = pad(vols["DIR"][pick][:, None])
    les = pad(lesion[pick][:, None].astype(np.float32))
    return torch.from_numpy(src), torch.from_numpy(tgt), torch.from_numpy(les), pick


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--task", choices=("synthdir", "diamondgan", "all"), default="all")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--slices", type=int, default=24, help="training slices per subject")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    train = [subject(s) for s in (0, 1, 2)]
    test_vols, test_brain, test_lesion, test_nawm = subject(3)
    parts = [slices(*t[:3], args.slices, rng) for t in train]
    src = torch.cat([p[0] for p in parts])
    tgt = torch.cat([p[1] for p in parts])
    les = torch.cat([p[2] for p in parts])
    t_src, t_tgt, t_les, t_pick = slices(test_vols, test_brain, test_lesion, 10 ** 6, rng)
    h, w = test_brain.shape[1:]
    report: dict = {"provenance": PROVENANCE, "train_slices": len(src), "held_out_slices": len(t_src),
                    "epochs": args.epochs}

    def score(pred: np.ndarray) -> dict:
        ref = t_tgt[:, 0, :h, :w].numpy()
        p = pred[:, :h, :w]
        b, le, nw = test_brain[t_pick], test_lesion[t_pick], test_nawm[t_pick]
        r = metrics.region_metrics(ref, p, {"brain": b, "lesion": le})
        return {"psnr_brain_db": r["brain"]["psnr_db"], "ssim_brain": r["brain"]["ssim"],
                "mae_lesion": r["lesion"]["mae"], "lbr_synthetic": metrics.lbr(p + 1, le, nw),
                "lbr_real": metrics.lbr(ref + 1, le, nw)}

    if args.task in ("synthdir", "all"):
        from scipy.stats import spearmanr

        from neuroshift.synthesis.pix2pix import mc_sample
        from neuroshift.synthesis.train_steps import SynthDIRStep
        arch = {"in_channels": 2, "out_channels": 1, "base": 16, "depth": 3, "dropout": 0.3}
        for lam1, name in ((1.0, "synthdir"), (0.0, "synthdir_no_lesion_term")):
            t0 = time.time()
            step = SynthDIRStep(src[:, :2], tgt, les, lambda1=lam1, base=16, depth=3, lr=1e-3, batch_size=4)
            run_loop(step, LoopSettings(epochs=args.epochs, directory=out / "work" / name, seed=0, verbose=False))
            g = step.models["generator"]
            mean, sd = mc_sample(g, t_src[:, :2], 20, seed=0)
            pred = mean[:, 0].numpy()
            s = score(pred)
            err = np.abs(pred - t_tgt[:, 0].numpy())[:, :h, :w][test_brain[t_pick]]
            s["spearman_mc_sd_vs_abs_error"] = float(spearmanr(sd[:, 0, :h, :w].numpy()[test_brain[t_pick]], err)[0])
            s["train_s"] = time.time() - t0
            report[name] = s
            if lam1:
                save_package(out / name, "synthdir", "dir", ("flair", "t1"), arch, g, PROVENANCE)
            print(name, s, flush=True)
    if args.task in ("diamondgan", "all"):
        from neuroshift.synthesis.diamondgan import all_subsets, availability_tensor
        from neuroshift.synthesis.train_steps import DiamondGANStep
        t0 = time.time()
        step = DiamondGANStep(src, tgt, n_blocks=2, batch_size=4)
        run_loop(step, LoopSettings(epochs=args.epochs, directory=out / "work" / "diamondgan", seed=0, verbose=False))
        g1 = step.models["g1"].eval()
        per = {}
        with torch.no_grad():
            for code in all_subsets(3):
                pred = torch.cat([g1(t_src[i:i + 8], availability_tensor(code, len(t_src[i:i + 8])))
                                  for i in range(0, len(t_src), 8)])[:, 0].numpy()
                per["".join(k for k, c in zip(("F", "T1", "T2"), code) if c)] = score(pred)
        report["diamondgan"] = {"per_subset": per, "train_s": time.time() - t0}
        save_package(out / "diamondgan", "diamondgan", "dir", ("flair", "t1", "t2"),
                     {"in_channels": 3, "out_channels": 1, "n_blocks": 2, "code_width": 3}, g1, PROVENANCE)
        print("diamondgan", report["diamondgan"], flush=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
