"""Train the residual error model of a synthDIR package (neuroshift.synthesis.error_model) and attach it.

    python dev/train_error_model.py OUT [--generator synthdir-demo] [--subjects 16] [--epochs 40] [--seed 0]

1. Copies the generator package to ``OUT/<name>`` (its weights are not touched).
2. Builds ``--subjects`` varied SYNTHETIC subjects (``dev/synthesis_heldout.py``'s ``varied_subject``: the
   qSynth-deformed template anatomy, qSynth lesions, the phantom's contrasts and 2 % Rician noise) with seeds
   from :data:`TRAIN_SEED0` on, and one validation subject after them. None of these seeds is one the generator
   was trained on (phantoms 0, 1, 2, 4, 5) or one the uncertainty is scored on (phantom 3, varied 101-106).
3. Runs the frozen generator on each (one pass, dropout off, and the mean of ``--mc-mean`` MC-dropout passes,
   histogram matching as the CLI), and takes the residuals acquired DIR - synthetic (both normalised as the
   metrics): the error model then serves ``--mc-samples 1`` and the MC mean alike.
4. Trains the error network by the Gaussian NLL through the shared loop (``neuroshift.training.run_loop``,
   checkpoints, resume, keep-best by the validation Spearman), attaches the best epoch to the package.
5. Scores it on the held-out set (``dev/synthesis_uncertainty.py --heldout varied``'s subjects) and writes the
   figures into the manifest (``error_model.held_out``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthesis_heldout import qsynth_subject, varied_subject  # noqa: E402

from neuroshift.synthesis import error_model as em  # noqa: E402
from neuroshift.synthesis.inference import load_package, normalised_sources, synthesize  # noqa: E402
from neuroshift.training.loop import LoopSettings, run_loop  # noqa: E402

TRAIN_SEED0 = 301
SOURCE_NAMES = {"flair": "FLAIR", "t1": "T1w", "t2": "T2w"}


def residual_slices(model, subject: dict, mc_samples: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(inputs (n, C, H, W), residual (n, 1, H, W), brain (n, 1, H, W))`` of the subject's brain slices, for
    the single pass (``mc_samples`` 0) or the mean of ``mc_samples`` MC-dropout passes."""
    b = subject["brain"]
    inputs = {n: subject["raw"][SOURCE_NAMES[n]] for n in model.inputs}
    out, _ = synthesize(model, inputs, b, mc_samples=mc_samples, uncertainty="mc_dropout")
    x = em.network_input(normalised_sources(model, inputs, b), out, b)
    r = em.residual(subject["raw"]["DIR"], out, b)
    keep = b.any(axis=(1, 2))
    return x[:, keep].transpose(1, 0, 2, 3), r[keep][:, None], b[keep][:, None].astype(np.float32)


def to_tensors(parts: list[tuple[np.ndarray, ...]], m: int) -> tuple[torch.Tensor, ...]:
    """Concatenate slices and pad H, W to a multiple of ``m`` as inference does (:func:`em.pad_slices`; the
    residual and mask get zeros, i.e. the padding is outside the brain)."""
    return tuple(em.pad_slices(torch.from_numpy(np.ascontiguousarray(np.concatenate(arrays), np.float32)), m)
                 for arrays in zip(*parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--generator", default="synthdir-demo")
    ap.add_argument("--subjects", type=int, default=16)
    ap.add_argument("--qsynth-subjects", type=int, default=0, metavar="N",
                    help="also N subjects with qSynth-drawn tissue parameters and texture (qsynth_subject: the "
                         "contrast shift of --heldout varied_qsynth), seeds after the others")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--channels", default=",".join(str(c) for c in em.ARCHITECTURE["channels"]))
    ap.add_argument("--mc-mean", type=int, default=20, metavar="N",
                    help="also the residuals of the mean of N MC-dropout passes (what --uncertainty with "
                         "--mc-samples N returns; 0: the single pass only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-score", action="store_true", help="skip the held-out scoring")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = load_package(args.generator)
    src = next(p for p in (Path(args.generator), *_registry_path(args.generator)) if (p / "manifest.json").exists())
    pkg = Path(args.out) / src.name
    if not args.resume or not pkg.exists():
        shutil.copytree(src, pkg, dirs_exist_ok=False, ignore=shutil.ignore_patterns(em.WEIGHTS))
    arch = {**em.ARCHITECTURE, "channels": [int(c) for c in args.channels.split(",")]}
    t0 = time.time()
    seeds = list(range(TRAIN_SEED0, TRAIN_SEED0 + args.subjects))
    val_seed = TRAIN_SEED0 + args.subjects
    m = em.size_multiple(arch)
    passes = [0] + ([args.mc_mean] if args.mc_mean > 1 else [])
    subjects = {s: varied_subject(s) for s in seeds + [val_seed]}
    q_seeds = list(range(val_seed + 1, val_seed + 1 + args.qsynth_subjects))
    subjects.update({s: qsynth_subject(s) for s in q_seeds})
    train = to_tensors([residual_slices(gen, subjects[s], k) for s in seeds + q_seeds for k in passes], m)
    val = to_tensors([residual_slices(gen, subjects[val_seed], k) for k in passes], m)
    data_s = time.time() - t0
    print(f"data: {len(train[0])} training slices from {len(seeds) + len(q_seeds)} subjects x {len(passes)} "
          f"prediction(s) in {data_s:.0f} s", flush=True)
    step = em.ErrorModelStep(*train, val=val, architecture=arch, seed=args.seed)
    t1 = time.time()
    res = run_loop(step, LoopSettings(epochs=args.epochs, directory=Path(args.out) / "work", seed=args.seed,
                                      keep_best="val_spearman", resume=args.resume, label="error model"))
    train_s = time.time() - t1
    net = step.models["error_net"]
    if res.best:
        net.load_state_dict(res.states["error_net"])
    qsynth = f", and seeds {q_seeds[0]}-{q_seeds[-1]} with qSynth-drawn tissue parameters (qsynth_subject)" \
        if q_seeds else ""
    mc_mean = f" and its mean of {args.mc_mean} MC-dropout passes" if args.mc_mean > 1 else ""
    command = (f"dev/train_error_model.py OUT --subjects {args.subjects} --epochs {args.epochs} --channels "
               f"{args.channels} --mc-mean {args.mc_mean} --qsynth-subjects {args.qsynth_subjects} --seed {args.seed}")
    record = {"trained_on": f"SYNTHETIC varied subjects (dev/synthesis_heldout.py varied_subject) seeds "
                            f"{seeds[0]}-{seeds[-1]}{qsynth}; validation seed {val_seed}; residual = acquired DIR - "
                            f"the frozen generator's single pass{mc_mean}, both normalised as the metrics",
              "loss": "Gaussian NLL of the residual under N(0, sigma^2), brain voxels (Kendall & Gal 2017)",
              "training": f"{command}: AdamW 2e-3, batch 16, left-right flips; {train_s:.0f} s on {args.threads} "
                          "CPU threads; best epoch by val_spearman",
              "best": res.best, "parameters": sum(p.numel() for p in net.parameters())}
    em.attach(pkg, net, arch, record)
    print(json.dumps({"best": res.best, "train_s": round(train_s), "data_s": round(data_s)}), flush=True)
    if not args.no_score:
        from synthesis_uncertainty import evaluate_set, summary_lines
        scores = evaluate_set([str(pkg)], 20, "varied")
        print("\n".join(summary_lines(scores)), flush=True)
        mres = scores["models"][str(pkg)]
        manifest = json.loads((pkg / "manifest.json").read_text())
        manifest[em.MANIFEST_KEY]["held_out"] = {
            "protocol": "dev/synthesis_uncertainty.py --heldout varied --samples 20: per-voxel Spearman of the SD "
                        "with |error| over brain voxels against the acquired DIR, pooled over the 6 varied "
                        "subjects (seeds 101-106) and over all (phantom seed 3 too)",
            "pooled_varied": mres["pooled_varied"], "pooled_all": mres["pooled_all"],
            "mean_of_subjects_varied": mres["mean_of_subjects_varied"]}
        from neuroshift.io.atomic import write_text_atomic
        write_text_atomic(pkg / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def _registry_path(name: str) -> list[Path]:
    from neuroshift.segment.registry import find_model
    try:
        return [find_model(name)]
    except Exception:  # noqa: BLE001 - a folder was given
        return []


if __name__ == "__main__":
    main()
