"""What each synthDIR uncertainty map costs, and what it is worth, through the user's entry point.

    python bench/synthesis_uncertainty.py [--rounds 3] [--threads 2] [--samples 20]

One held-out SYNTHETIC phantom (seed 3, 2 mm, the phantom's FLAIR and T1w) through
:func:`neuroshift.synthesis.inference.synthesize` (what ``neuroshift synthesize`` and the LesionSynth module run)
with the bundled ``synthdir-demo``, in interleaved rounds (median wall seconds):

* ``image``: the synthetic DIR alone (one pass, dropout off) - the baseline;
* ``residual_1pass``: the image and the error model's SD (``uncertainty="residual"``, ``--mc-samples 1``);
* ``mc_dropout``: the MC mean and MC-dropout SD of ``--samples`` passes;
* ``residual_mc``: the MC mean and the error model's SD of it (the CLI default with ``--uncertainty``).

Printed: threads, load, the medians, each as a multiple of ``image``, and each map's Spearman(SD, |error|) over
brain voxels against the acquired DIR (the issue's figure; images normalised as the metrics).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from neuroshift.phantom.contrasts import build_contrasts
    from neuroshift.phantom.make import build_phantom
    from neuroshift.synthesis import metrics
    from neuroshift.synthesis.inference import load_package, synthesize

    ph = build_phantom(seed=3)
    cs = build_contrasts(ph, seed=3)
    brain = ph.brain_mask.data > 0
    inputs = {"flair": cs.images["FLAIR"].data, "t1": cs.images["T1w"].data}
    model = load_package("synthdir-demo")
    runs = {"image": lambda: synthesize(model, inputs, brain),
            "residual_1pass": lambda: synthesize(model, inputs, brain, uncertainty="residual"),
            "mc_dropout": lambda: synthesize(model, inputs, brain, mc_samples=args.samples, uncertainty="mc_dropout"),
            "residual_mc": lambda: synthesize(model, inputs, brain, mc_samples=args.samples, uncertainty="residual")}
    times: dict[str, list[float]] = {k: [] for k in runs}
    outputs = {k: f() for k, f in runs.items()}  # one untimed call each (warm-up), kept for the figures
    for _ in range(args.rounds):
        for name, f in runs.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"synthdir-demo on phantom seed 3 {brain.shape} (2 mm), {args.rounds} interleaved rounds, "
          f"{torch.get_num_threads()} thread(s), load {os.getloadavg()}, {args.samples} MC samples")
    for name, t in med.items():
        img, sd = outputs[name]
        fig = "-"
        if sd is not None:
            ref, syn = metrics.normalise_pair(cs.images["DIR"].data, img, brain)
            fig = f"{metrics.spearman(sd[brain], np.abs(ref - syn)[brain]):.3f}"
        print(f"  {name:15s} {t:7.2f} s  {t / med['image']:6.2f}x the image alone  Spearman(SD, |error|) {fig}")


if __name__ == "__main__":
    main()
