#!/usr/bin/env python
"""Choose a qSynth demo model's decision threshold on SYNTHETIC calibration maps (never on the real scans).

The model's fused probability is computed once per calibration subject; DSC and lesion F1 are then read at
every threshold of ``--thresholds``. Calibration subjects: label maps of seeds ``--seeds`` (other seeds than the
held-out evaluation's 9001-9004 and the training's 7 / 1007), lesions of the training lesion model, images drawn
at random within the training protocol set ``--protocols`` of ``dev/train_demo_qsynth.py`` (every qSynth
augmentation on). The threshold with the best mean DSC over all subjects is printed (JSON), with the table.
Usage::

    python dev/qsynth_threshold.py /tmp/run/pkg --protocols flair+t2w
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "dev"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package")
    ap.add_argument("--protocols", default="flair+t2w")
    ap.add_argument("--seeds", default="9101,9102,9103,9104,9105,9106")
    ap.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    import qsynth_demo_settings as T

    from neuroshift.qsynth import QSynthConfig, generate
    from neuroshift.qsynth.anatomy import LesionModel, random_label_maps
    from neuroshift.segment.inference import segment_volume
    from neuroshift.segment.metrics import evaluate_masks
    from neuroshift.segment.package import load_package

    pkg = load_package(args.package, "cpu")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    cfg = QSynthConfig(protocol=T.PROTOCOL_SETS[args.protocols])
    rows = []
    for n, s in enumerate(int(x) for x in args.seeds.split(",")):
        lab = random_label_maps(1, seed=s, model=LesionModel(mean_count=20.0, median_ml=0.4))[0]
        g = generate(lab, cfg, seed=5000 + n)
        truth = np.asarray(g["labels"].data) == 4
        prob = np.asarray(segment_volume({"FLAIR": g["image"]}, pkg, device="cpu").probability.data)
        for t in thresholds:
            m = evaluate_masks((prob >= t).astype(np.uint8), truth.astype(np.uint8), ignore_label=None)
            rows.append({"seed": s, "sequence": g["draw"].sequence, "threshold": t, "dsc": float(m["dsc"]),
                         "f1": float(m["f1"])})
    table = {t: {"dsc": round(float(np.mean([r["dsc"] for r in rows if r["threshold"] == t])), 4),
                 "f1": round(float(np.mean([r["f1"] for r in rows if r["threshold"] == t])), 4)} for t in thresholds}
    best = max(thresholds, key=lambda t: table[t]["dsc"])
    print(json.dumps({"best_threshold": best, "table": table,
                      "sequences": [r["sequence"] for r in rows if r["threshold"] == thresholds[0]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
