#!/usr/bin/env python
"""Quick held-out check of a running (or finished) qSynth demo training: per-contrast DSC of its latest checkpoint.

Loads the weights a ``dev/train_demo_qsynth.py --work-dir WORK`` run last saved (``WORK/axial_0/model-model.safetensors``)
into the network of a package with the same layout (``--package``, default the bundled ``wmh-qsynth-demo``) and
scores them on a few held-out SYNTHETIC label maps (seeds ``--seeds``, lesions of the training lesion model) at the
fixed evaluation protocols of ``dev/train_demo_qsynth.py`` (FLAIR, T2w, T1w). Meant to be run every few minutes
beside a training (one thread, a few seconds per map and contrast) to stop a run that has plateaued. Usage::

    python dev/qsynth_watch.py /tmp/run/work --contrasts FLAIR,T2w --seeds 9001,9002 [--real-dir /tmp/real]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "dev"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", help="--work-dir of the training run")
    ap.add_argument("--package", default="wmh-qsynth-demo", help="package (name or folder) with the same layout")
    ap.add_argument("--seeds", default="9001,9002")
    ap.add_argument("--contrasts", default="FLAIR,T2w")
    ap.add_argument("--lesion-count", type=float, default=20.0)
    ap.add_argument("--lesion-median-ml", type=float, default=0.4)
    ap.add_argument("--save", default=None, help="also write the checkpoint as a package folder here (manifest of "
                    "--package plus a note of the run and step; for a run stopped by its time limit)")
    ap.add_argument("--real-dir", default=None, help="also score real cases (<case>/FLAIR.nii.gz + lesion.nii.gz)")
    args = ap.parse_args(argv)

    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    import qsynth_demo_eval as E
    from qsynth_demo_settings import CONTRASTS

    from neuroshift.qsynth.anatomy import LesionModel
    from neuroshift.segment.package import load_package
    from neuroshift.segment.registry import find_model

    member = Path(args.work) / "axial_0"
    state = json.loads((member / "state.json").read_text(encoding="utf-8"))
    pkg_path = Path(args.package) if Path(args.package).is_dir() else find_model(args.package)
    pkg = load_package(pkg_path, "cpu")
    pkg.models["axial"][0].load_state_dict(load_file(str(member / "model-model.safetensors"), device="cpu"))
    contrasts = {c: CONTRASTS[c] for c in args.contrasts.split(",")}
    scores = E.evaluate({"checkpoint": pkg}, [int(s) for s in args.seeds.split(",")], "cpu",
                        LesionModel(mean_count=args.lesion_count, median_ml=args.lesion_median_ml), contrasts)
    row = {"epoch": state.get("epoch"), "step": state.get("step")}
    for c, v in scores["checkpoint"].items():
        row[c] = {"dsc": v["dsc"], "f1": v["f1"], "pred_ml": [r["pred_ml"] for r in v["cases"]],
                  "gt_ml": [r["gt_ml"] for r in v["cases"]]}
    if args.real_dir:
        real = E.evaluate_real({"checkpoint": pkg}, Path(args.real_dir))["checkpoint"]
        row["real"] = {"dsc": real["dsc"], "f1": real["f1"],
                       "cases": {r["case"]: [r["dsc"], r["f1"], r["pred_ml"]] for r in real["cases"]}}
    print(json.dumps(row))
    if args.save:
        from neuroshift.segment.package import save_package

        man = json.loads(json.dumps(pkg.manifest))
        for k in ("files", "weights"):
            man.pop(k, None)
        man["training"]["checkpoint"] = {"work_dir": str(Path(args.work).name), "epoch": state.get("epoch"),
                                         "step": state.get("step"), "epochs_planned": state.get("epochs_planned"),
                                         "history": state.get("history")}
        save_package(args.save, man, {"axial": [pkg.models["axial"][0]]})
        print(f"wrote {args.save}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
