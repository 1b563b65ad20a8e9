"""Copy a synthDIR package trained by ``dev/train_demo_synthesis.py`` into the bundled ``synthdir-demo`` with its
model card (held-out scores, protocol, recipe, uncertainty figures, ablation) in the manifest.

    python dev/ship_synthdir_demo.py RUN_DIR [--ablation ABLATION.json] [--dest neuroshift/data/models/synthdir-demo]

``RUN_DIR`` holds ``synthdir-demo/`` (the package) and ``synthdir.json`` (its scores). ``--ablation`` takes the
``--json`` output of ``dev/synthesis_ablation.py`` (lesion-focused term on vs off), copied into the card as it is;
``--uncertainty`` the ``--json`` output of ``dev/synthesis_uncertainty.py`` (both SD kinds), stored as
``uncertainty_evaluation``; ``--uncertainty-varied`` the ``--json`` output of ``dev/synthesis_uncertainty.py --heldout
varied`` (this package's entry, per held-out subject and pooled, without the per-subject tables), stored as
``uncertainty_evaluation_varied``. When ``--version`` differs from the card already at ``--dest``, that card (without its
histogram) is kept under ``history`` (newest first), so earlier versions' recorded figures stay. The package's
weights are copied byte for byte; the manifest is rewritten atomically.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from neuroshift.io.atomic import atomic_path, write_text_atomic

DESCRIPTION = ("DEMO MODEL, NOT FOR CLINICAL USE: phantom-trained (SYNTHETIC NeuroShift phantoms only), never seen a "
               "real scan; exists so the synthesis CLI, benchmarks and Slicer module run offline")
PROTOCOL = ("held-out phantom seed 3 through neuroshift.synthesis.inference.synthesize with 20 MC-dropout samples "
            "(the prediction is the MC mean); each image clipped to its 0.5-99.5 brain percentiles and mapped to "
            "[0, 1]; PSNR data range 1; SSIM Gaussian window 7; MAE over the region; LBR = mean(lesion)/mean(NAWM) "
            "of the raw images")
SPEARMAN_PROTOCOL = ("Spearman of the per-voxel MC SD (20 samples) with |error| (images normalised as the metrics), "
                     "reported against the acquired (noisy, Rician) DIR and against the noise-free DIR rendered from "
                     "the same tissue maps; over brain, lesion and NAWM voxels; per voxel, and for 3x3 in-plane "
                     "(the model is 2D, axial) and 3x3x3 local means over brain voxels; MC and MC x 4-flip TTA. "
                     "The headline figure is per voxel over brain voxels against the acquired DIR (the issue's "
                     "definition); every other figure is listed, none left out")

def _scores(report: Path) -> dict:
    d = json.loads(report.read_text())
    key = next(k for k in d if k.startswith("synthdir"))
    return {"args": d["args"], **d[key]}


def varied_record(path: Path, pkg: Path) -> dict:
    """This package's entry of a ``--heldout varied`` evaluation, compact: per subject the headline per SD kind,
    neighbour ceiling, noise share and MC-mean scores; the pooled figures and subject means; the set's recipe."""
    d = json.loads(path.read_text())
    entries = {k: v for k, v in d["models"].items() if Path(k).resolve() == pkg.resolve()}
    if len(entries) != 1:
        raise SystemExit(f"{path}: no single entry for {pkg} (has {sorted(d['models'])})")
    m = next(iter(entries.values()))
    keep = ("headline_brain_voxel_vs_acquired", "ceiling_neighbour_oracle", "scores_mc_mean", "scores_single_pass")
    return {"held_out_set": d["held_out_set"], "mc_samples": d["mc_samples"], "tta": d["tta"],
            "subjects": d["subjects"], "recipe": d["varied_recipe"],
            "per_subject": {n: {**{k: r[k] for k in keep},
                                "noise_share_of_acquired_mse": r["noise"]["noise_share_of_acquired_mse"]}
                            for n, r in m["per_subject"].items()},
            **{k: v for k, v in m.items() if k.startswith(("pooled_", "mean_of_subjects_"))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--ablation", default="", help="dev/synthesis_ablation.py --json output")
    ap.add_argument("--dest", default="neuroshift/data/models/synthdir-demo")
    ap.add_argument("--training", default="", help="the training command line, for the card")
    ap.add_argument("--note", default="", help="the card's uncertainty_note (what the Spearman figures mean)")
    ap.add_argument("--uncertainty", default="", help="dev/synthesis_uncertainty.py --json output")
    ap.add_argument("--uncertainty-varied", default="",
                    help="dev/synthesis_uncertainty.py --heldout varied --json output (this package's entry)")
    ap.add_argument("--version", default="", help="the card's version (e.g. 0.3.0-demo)")
    args = ap.parse_args()
    run = Path(args.run_dir)
    pkg, report = run / "synthdir-demo", _scores(run / "synthdir.json")
    manifest = json.loads((pkg / "manifest.json").read_text())
    held = {k: v for k, v in report.items() if k != "args"}
    a = report["args"]
    manifest.update({
        "description": DESCRIPTION,
        "held_out_scores": held,
        "scores_protocol": PROTOCOL,
        "spearman_protocol": SPEARMAN_PROTOCOL,
        "training": args.training or (
            f"dev/train_demo_synthesis.py --task synthdir --epochs {a['epochs']} --lambda1 {a.get('lambda1', 1.0)} "
            f"--reduction {a.get('reduction')} --decoder-dropout {a.get('decoder_dropout', 0.0)} --seed "
            f"{a.get('seed', 0)}: 10*(1 - SSIM + lambda1 * masked L1) + LSGAN, Adam {a['lr']}, batch {a['batch']}, "
            f"{report.get('steps')} steps over every brain slice of 5 phantoms (390 slices), no augmentation"),
    })
    if args.ablation:
        manifest["ablation_lesion_term"] = json.loads(Path(args.ablation).read_text())
    manifest.pop("uncertainty_note", None)
    if args.note:
        manifest["uncertainty_note"] = args.note
    if args.uncertainty:
        manifest["uncertainty_evaluation"] = json.loads(Path(args.uncertainty).read_text())
    if args.uncertainty_varied:
        manifest["uncertainty_evaluation_varied"] = varied_record(Path(args.uncertainty_varied), pkg)
    dest = Path(args.dest)
    if args.version:
        manifest["version"] = args.version
        old_path = dest / "manifest.json"
        old = json.loads(old_path.read_text()) if old_path.exists() else {}
        if old and old.get("version") != args.version:
            history = old.pop("history", [])
            old.pop("histogram_reference", None)
            manifest["history"] = [old] + history
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest / "weights.safetensors") as tmp:
        shutil.copyfile(pkg / "weights.safetensors", tmp)
    write_text_atomic(dest / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    print(f"shipped {pkg} -> {dest}")


if __name__ == "__main__":
    main()
