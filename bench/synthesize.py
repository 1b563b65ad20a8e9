"""LesionSynth benchmark, one command (< 3 min on 2 idle cores):

    python bench/synthesize.py [--threads 2] [--slices 155] [--rounds 3] [--tf-python /tmp/tfenv/bin/python]

* DiamondGAN, released layout (7,218,987 parameters), 240x240 slices: ours (inference mode, the domain stream
  once per distinct availability code), ours in bfloat16 autocast and channels_last, and a naive torch loop
  (autograd on, one slice per call, domain stream per slice as a straightforward port would run it),
  interleaved rounds on one slice and on a batch of 8; the Keras twin of the same architecture
  (``bench/_keras_diamondgan.py``, TensorFlow-Keras, same parameter count) in a subprocess when
  ``--tf-python`` has TensorFlow. GOAL line: ours >= 2x Keras (batch of 8, seconds per slice).
* A ``--slices`` x 240 x 240 volume through the product path (:func:`neuroshift.synthesis.inference.synthesize`,
  a package with the released generator, every slice in the brain): GOAL < 60 s and peak RSS < 2 GB
  (``ru_maxrss`` of this process, which includes Python, torch and the data).
* 20 MC-dropout samples of a 240x240 slice with the synthDIR U-Net (base 64, depth 5) through ``synthesize``:
  GOAL < 10 s.

Load averages are printed with the results (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _timing import interleaved, machine  # noqa: E402

from neuroshift.synthesis.diamondgan import DiamondGenerator, availability_tensor, count_parameters  # noqa: E402


def keras_run(tf_python: str, threads: int, rounds: int, batch: int) -> dict:
    if not tf_python or not Path(tf_python).exists():
        return {"skipped": f"no interpreter at {tf_python!r}"}
    cmd = [tf_python, str(Path(__file__).with_name("_keras_diamondgan.py")), "--threads", str(threads),
           "--rounds", str(rounds), "--batch", str(batch), "--volume-slices", str(batch)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"skipped": f"Keras run failed: {exc}"}


def naive_forward(g: DiamondGenerator, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """A straightforward port: autograd on, both streams for every slice."""
    from neuroshift.synthesis.diamondgan import apply_availability, domain_matrix
    xs = apply_availability(x, c)
    d = domain_matrix(c, tuple(x.shape[-2:]))
    return g.decoder(torch.cat([g.image_stream(xs), g.domain_stream(d)], 1)).detach()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slices", type=int, default=155)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tf-python", default=os.environ.get("NEUROSHIFT_TF_PYTHON", "/tmp/tfenv/bin/python"))
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res: dict = {"machine": machine(), "threads": args.threads}
    print(f"load before: {os.getloadavg()}", flush=True)

    torch.manual_seed(0)
    g = DiamondGenerator(3, 3).eval()  # the released layout
    res["params"] = count_parameters(g)
    x1 = torch.rand(1, 3, 240, 240) * 2 - 1
    xb = torch.rand(args.batch, 3, 240, 240) * 2 - 1
    c1, cb = availability_tensor((1, 1, 1)), availability_tensor((1, 1, 1), args.batch)
    g_cl = DiamondGenerator(3, 3).eval()
    g_cl.load_state_dict(g.state_dict())
    g_cl = g_cl.to(memory_format=torch.channels_last)

    def ours(x, c):
        with torch.inference_mode():
            return g(x, c)

    def ours_bf16(x, c):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return g(x, c).float()

    def ours_cl(x, c):
        with torch.inference_mode():
            return g_cl(x.contiguous(memory_format=torch.channels_last), c)

    with torch.inference_mode():
        ref = g(xb, cb)
        res["bf16_max_abs_diff"] = float((ours_bf16(xb, cb) - ref).abs().max())
        res["channels_last_max_abs_diff"] = float((ours_cl(xb, cb) - ref).abs().max())
        res["naive_max_abs_diff"] = float((torch.cat([naive_forward(g, xb[i:i + 1], cb[:1])
                                                      for i in range(2)]) - ref[:2]).abs().max())
    res["slice"] = interleaved({"ours": lambda: ours(x1, c1), "ours_bf16": lambda: ours_bf16(x1, c1),
                                "naive": lambda: naive_forward(g, x1, c1)}, args.rounds)
    res["batch"] = interleaved({"ours": lambda: ours(xb, cb), "ours_bf16": lambda: ours_bf16(xb, cb),
                                "ours_channels_last": lambda: ours_cl(xb, cb),
                                "naive_per_slice": lambda: [naive_forward(g, xb[i:i + 1], c1)
                                                            for i in range(args.batch)]}, max(1, args.rounds - 1))
    res["keras"] = keras_run(args.tf_python, args.threads, args.rounds, args.batch)

    # product path: a 155-slice volume
    from neuroshift.synthesis.inference import load_package, save_package, synthesize
    from neuroshift.synthesis.pix2pix import UNetGenerator
    with tempfile.TemporaryDirectory() as tmp:
        arch = {"in_channels": 3, "out_channels": 1, "n_blocks": 9, "code_width": 3}
        gen = DiamondGenerator(**arch)
        save_package(Path(tmp) / "dg", "diamondgan", "dir", ("flair", "t1", "t2"), arch, gen, {"trained_on": "bench"})
        model = load_package(Path(tmp) / "dg")
        rng = np.random.default_rng(0)
        shape = (args.slices, 240, 240)
        brain = np.zeros(shape, bool)
        brain[:, 20:220, 30:210] = True
        vols = {n: rng.random(shape, dtype=np.float32) * brain for n in ("flair", "t1", "t2")}
        t0 = time.perf_counter()
        out, _ = synthesize(model, vols, brain)
        res["volume_s"] = time.perf_counter() - t0
        res["volume_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        del out, vols
        uarch = {"in_channels": 2, "out_channels": 1, "base": 64, "depth": 5, "dropout": 0.3}
        save_package(Path(tmp) / "sd", "synthdir", "dir", ("flair", "t1"), uarch, UNetGenerator(**uarch),
                     {"trained_on": "bench"})
        um = load_package(Path(tmp) / "sd")
        sb = np.zeros((1, 240, 240), bool)
        sb[:, 20:220, 30:210] = True
        sv = {n: rng.random((1, 240, 240), dtype=np.float32) * sb for n in ("flair", "t1")}
        t0 = time.perf_counter()
        synthesize(um, sv, sb, mc_samples=20)
        res["mc20_slice_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        synthesize(um, sv, sb, mc_samples=20, tta=True)
        res["mc20_x_tta4_slice_s"] = time.perf_counter() - t0
    res["load_after"] = os.getloadavg()
    print(json.dumps(res, indent=1, default=str))
    per = {k: v["median_s"] / args.batch for k, v in res["batch"].items()}
    print(f"\nDiamondGAN (7,218,987 params: ours {res['params']:,}, Keras {res['keras'].get('params', 'n/a')}), "
          f"{args.threads} threads, load {os.getloadavg()}")
    for k, v in per.items():
        print(f"  batch of {args.batch}: {k:20s} {v:7.3f} s/slice")
    if "batch_s" in res["keras"]:
        k = res["keras"]["batch_s"] / args.batch
        print(f"  batch of {args.batch}: {'keras':20s} {k:7.3f} s/slice")
        best = min(per["ours"], per["ours_bf16"])
        print(f"GOAL ours >= 2x Keras: fp32 {k / per['ours']:.2f}x, bf16 {k / per['ours_bf16']:.2f}x "
              f"-> {'MET' if k / best >= 2 else 'NOT MET'}")
    else:
        print(f"GOAL ours >= 2x Keras: not measured ({res['keras']['skipped']}); "
              f"vs naive loop {per['naive_per_slice'] / per['ours']:.2f}x")
    print(f"GOAL volume {args.slices}x240x240 < 60 s: {res['volume_s']:.1f} s "
          f"-> {'MET' if res['volume_s'] < 60 else 'NOT MET'}; peak RSS {res['volume_peak_rss_gb']:.2f} GB "
          f"-> {'MET' if res['volume_peak_rss_gb'] < 2 else 'NOT MET'}")
    print(f"GOAL 20 MC-dropout samples of a 240x240 slice < 10 s: {res['mc20_slice_s']:.2f} s "
          f"-> {'MET' if res['mc20_slice_s'] < 10 else 'NOT MET'} (with 4-flip TTA: {res['mc20_x_tta4_slice_s']:.2f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
