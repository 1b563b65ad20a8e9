#!/usr/bin/env python
"""Benchmark: qSynth generation of one 2 mm training subject vs training on it (paper 002's goal: the generator
must cost well under a training step so that on-the-fly synthesis does not slow training).

    python bench/qsynth.py                 # 3 interleaved rounds
    python bench/qsynth.py --rounds 5 --json out.json

Subject: the phantom's tissue labels (ICBM152 anatomy, 86x99x81 voxels at 2 mm, SYNTHETIC lesions).
Runners (interleaved rounds, medians):

* ``generate``: :func:`neuroshift.qsynth.generate` with the default config: priors, texture fields, maps,
  a random paper-002 sequence, bias field, thick slices (half the draws), Rician noise, deformation. Each round
  draws a new subject (seed = round), so the sequence differs between rounds: the spread shows it;
* ``generate+prep``: the same plus the model's preprocessing (``prepare_subject``: reorientation, brain mask,
  z-score), i.e. everything a ``--synth qsynth`` DataLoader worker does per subject;
* ``train-step``: one optimiser step (AdamW, Dice + BCE, forward + backward) of the ``wmh-demo``-sized 2D U-Net
  on a batch of 16 whole axial slices (112x96) of that subject;
* ``train-subject``: one pass over all brain slices of the subject (batches of 16), what "training on it" costs
  for a 2D network.

Printed: medians, the ratios generator / train-step and generator / train-subject, threads and load average.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)

    import torch
    from _timing import fmt, interleaved, machine

    from neuroshift.phantom.make import build_phantom
    from neuroshift.qsynth import QSynthConfig, generate
    from neuroshift.segment.dataset import SliceDataset, Subject, prepare_subject
    from neuroshift.segment.loss import batch_dice_loss
    from neuroshift.segment.package import read_manifest
    from neuroshift.segment.registry import find_model
    from neuroshift.segment.unet import build_unet

    if args.threads:
        torch.set_num_threads(args.threads)
    ph = build_phantom(seed=0)
    labels = ph.labels
    man = read_manifest(find_model("wmh-demo"))
    man = {k: v for k, v in man.items() if k not in ("training", "qc", "files", "weights")}
    cfg = QSynthConfig()
    counter = {"n": 0}

    def gen():
        counter["n"] += 1
        return generate(labels, cfg, seed=counter["n"])

    def gen_prep():
        out = gen()
        return prepare_subject(Subject("s", {"FLAIR": out["image"]}, out["labels"]), man, [4], None)

    prepared = gen_prep()
    ds = SliceDataset([prepared], "axial", man["preprocessing"]["crop_hw"], slices="brain")
    torch.manual_seed(0)
    net = build_unet(man["architecture"]["params"])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01)
    net.train()

    def one_step(idx):
        x, y = ds.batch(idx)
        logits = net.forward_logits(x)
        loss = batch_dice_loss(torch.sigmoid(logits), y) + torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    n = len(ds)
    batch16 = np.arange(min(16, n))

    def train_subject():
        for i in range(0, n, 16):
            one_step(np.arange(i, min(i + 16, n)))

    res = interleaved({"generate": gen, "generate+prep": gen_prep, "train-step": lambda: one_step(batch16),
                       "train-subject": train_subject}, rounds=args.rounds, warmup=1)
    info = machine()
    print(f"qSynth benchmark — subject {labels.data.shape} voxels at 2 mm, {n} axial brain slices "
          f"({tuple(ds.images.shape[-2:])}); torch threads {torch.get_num_threads()}; "
          f"load {info['load_1_5_15']} (shared machine)")
    for k, v in res.items():
        print(f"  {k:14s} {fmt(v)}")
    g, gp = res["generate"]["median_s"], res["generate+prep"]["median_s"]
    st, ss = res["train-step"]["median_s"], res["train-subject"]["median_s"]
    ratios = {"generate/train-step": g / st, "generate+prep/train-step": gp / st,
              "generate/train-subject": g / ss, "generate+prep/train-subject": gp / ss}
    for k, v in ratios.items():
        print(f"  ratio {k:28s} {v:6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "timings": res, "ratios": ratios,
                                               "slices": n}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
