"""LesionSynth benchmark, one command (< 3 min on 2 idle cores):

    python bench/synthesize.py [--threads 2] [--slices 155] [--rounds 3] [--tf-python /tmp/tfenv/bin/python]
    python bench/synthesize.py --rounds 5    # the idle goal run: 4 interleaved batch rounds (~2.5 min idle)
    python bench/synthesize.py --cpu-time    # busy machine: 1 thread, CPU seconds (ours and Keras alike)

* Agreement, released layout (7,218,987 parameters) on one 240x240 slice, max |difference| on the tanh scale
  against the same eager generator in float64: plain eager float32, our inference kernels
  (:class:`neuroshift.synthesis.diamond_infer.DiamondInference`, the product path) in float32 and under
  bfloat16 autocast, eager bfloat16 autocast and channels_last. Measured on a generator whose norm
  scales/offsets are spread like a trained one's: with init values (scale 1, offset 0) the domain stream is
  degenerate (every norm sees a constant map, its output is rounding amplified by 1/sqrt(eps)), so any two
  summation orders differ by O(1) there (printed too: "init generator").
* Timing, interleaved rounds, one slice and a batch of 8: ours (DiamondInference: fused group-norm kernel,
  in-place ops, domain stream once per code, per-layer channels_last, row-folded last conv, single-threaded
  streams), ours in bfloat16 autocast, the plain
  eager module (what ``synthesize`` ran before issue 11's kernels) and a naive torch loop (autograd on, one
  slice per call, domain stream per slice); the Keras twin of the same architecture
  (``bench/_keras_diamondgan.py``, TensorFlow-Keras, same parameter count and the release's padding) in a
  worker process when ``--tf-python`` has TensorFlow, its calls interleaved with ours round by round.
  Keras parity: the twin loaded with our weights vs ours (released padding) and vs ours with the legacy
  padding, on one slice. GOAL line: ours >= 2x Keras (batch of 8, seconds per slice).
* A ``--slices`` x 240 x 240 volume through the product path (:func:`neuroshift.synthesis.inference.synthesize`,
  a package with the released generator and a 1-channel target, every slice in the brain): GOAL < 60 s and
  peak RSS < 2 GB (``ru_maxrss`` of this process, which includes Python, torch and the data).
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

from neuroshift.threads import prepare_environment

prepare_environment()  # OMP_WAIT_POLICY=PASSIVE before torch is imported, as the CLI does
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _timing import interleaved, machine  # noqa: E402

from neuroshift.synthesis.diamond_infer import DiamondInference  # noqa: E402
from neuroshift.synthesis.diamondgan import DiamondGenerator, availability_tensor, count_parameters  # noqa: E402


class KerasRounds:
    """The Keras twin in a worker process (``_keras_diamondgan.py --serve``) that times one ``predict_on_batch``
    per request, so its rounds interleave with ours (a load change hits both alike). ``info``: its parameter
    count and versions, or ``{"skipped": why}``; :meth:`__call__` returns the seconds it reported (its own
    clock: wall, or its process CPU time with ``--cpu-time``)."""

    def __init__(self, tf_python: str, threads: int, batch: int, cpu_time: bool):
        self.proc = None
        if not tf_python or not Path(tf_python).exists():
            self.info = {"skipped": f"no interpreter at {tf_python!r}"}
            return
        cmd = [tf_python, str(Path(__file__).with_name("_keras_diamondgan.py")), "--serve", "--threads",
               str(threads), "--batch", str(batch)] + (["--cpu-time"] if cpu_time else [])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        try:
            self.info = json.loads(self.proc.stdout.readline())
        except ValueError as exc:
            self.close()
            self.info = {"skipped": f"Keras worker failed to start: {exc}"}

    def __call__(self, what: str) -> float:
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return float(json.loads(self.proc.stdout.readline())["s"])

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait(timeout=60)
            self.proc = None


def with_keras(funcs: dict, keras: KerasRounds, what: str, rounds: int, clock) -> dict:
    """:func:`_timing.interleaved` over ``funcs`` plus the Keras worker's ``what`` call in the same rounds (its
    own reported seconds, the first call of each kind being the warm-up as for ours)."""
    if keras.proc is None:
        return interleaved(funcs, rounds, clock=clock)
    reported: list[float] = []
    res = interleaved({**funcs, "keras": lambda: reported.append(keras(what))}, rounds, clock=clock)
    a = np.asarray(reported[1:])
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    res["keras"] = {"median_s": float(med), "min_s": float(a.min()), "max_s": float(a.max()),
                    "iqr_s": float(q3 - q1), "rounds": len(a)}
    return res


def keras_parity(tf_python: str, g: DiamondGenerator, x: torch.Tensor, c: torch.Tensor) -> dict:
    """Max |output difference| between the Keras twin (the release's layers and padding) loaded with ``g``'s
    weights and ``g`` through DiamondInference, and ``g`` rebuilt with the legacy padding (reflect /
    symmetric: what packages before the options compute), on one slice."""
    if not tf_python or not Path(tf_python).exists():
        return {"skipped": f"no interpreter at {tf_python!r}"}
    from neuroshift.synthesis.diamondgan import apply_availability, domain_matrix
    from neuroshift.synthesis.diamond_padding import LEGACY_OPTIONS
    dm = domain_matrix(c, tuple(x.shape[-2:]), g.domain_encoding)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npy"
        np.savez(src, x=apply_availability(x, c).permute(0, 2, 3, 1).numpy(), dm=dm.permute(0, 2, 3, 1).numpy(),
                 **{k: v.detach().numpy() for k, v in g.state_dict().items()})
        cmd = [tf_python, str(Path(__file__).with_name("_keras_diamondgan.py")), "--parity", str(src), str(dst)]
        try:
            subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
            k = torch.from_numpy(np.load(dst)).permute(0, 3, 1, 2)
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            return {"skipped": f"Keras parity run failed: {exc}"}
    legacy = DiamondGenerator(**{**g.architecture(), **LEGACY_OPTIONS}).eval()
    legacy.load_state_dict(g.state_dict())
    with torch.inference_mode():
        ours = DiamondInference(g)(x, c)
        old = DiamondInference(legacy)(x, c)
    return {"options": g.options(), "ours_vs_keras_max": float((ours - k).abs().max()),
            "legacy_padding_vs_keras_max": float((old - k).abs().max())}


def naive_forward(g: DiamondGenerator, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """A straightforward port: autograd on, both streams for every slice."""
    from neuroshift.synthesis.diamondgan import apply_availability, domain_matrix
    xs = apply_availability(x, c)
    d = domain_matrix(c, tuple(x.shape[-2:]), g.domain_encoding)
    return g.decoder(torch.cat([g.image_stream(xs), g.domain_stream(d)], 1)).detach()


def trained_like(g: DiamondGenerator, seed: int = 0) -> DiamondGenerator:
    """Norm scales in [0.5, 1.5] and offsets ~ N(0, 0.5), as a trained generator has (not the init 1 / 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.5)
    return g


def agreement(g: DiamondGenerator, x: torch.Tensor, c: torch.Tensor) -> dict:
    """Max and mean |output - float64 eager output| of each way to run ``g`` (tanh scale, [-1, 1])."""
    g64 = DiamondGenerator(3, 3).double().eval()
    g64.load_state_dict(g.state_dict())
    g_cl = DiamondGenerator(3, 3).eval()
    g_cl.load_state_dict(g.state_dict())
    g_cl = g_cl.to(memory_format=torch.channels_last)
    fast = DiamondInference(g)
    with torch.inference_mode():
        ref = g64(x.double(), c)
        runs = {"eager_fp32": g(x, c), "ours_fp32": fast(x, c),
                "eager_channels_last": g_cl(x.contiguous(memory_format=torch.channels_last), c)}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            runs["ours_bf16"] = fast(x, c).float()
            runs["eager_bf16"] = g(x, c).float()
    return {k: {"max": float((v.double() - ref).abs().max()), "mean": float((v.double() - ref).abs().mean())}
            for k, v in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slices", type=int, default=155)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cpu-time", action="store_true",
                    help="1 thread, 1 stream, process CPU seconds for ours and Keras (a busy machine)")
    ap.add_argument("--no-agreement", action="store_true", help="skip the float64 agreement (~10 s)")
    ap.add_argument("--tf-python", default=os.environ.get("NEUROSHIFT_TF_PYTHON", "/tmp/tfenv/bin/python"))
    ap.add_argument("--json")
    args = ap.parse_args()
    threads = 1 if args.cpu_time else args.threads
    clock = time.process_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(threads)
    res: dict = {"machine": machine(), "threads": threads, "clock": "process CPU s" if args.cpu_time else "wall s"}
    print(f"load before: {os.getloadavg()}", flush=True)

    # product path first (peak RSS is a high-water mark: the float64 agreement models come later)
    from neuroshift.synthesis.inference import load_package, save_package, synthesize
    from neuroshift.synthesis.pix2pix import UNetGenerator
    with tempfile.TemporaryDirectory() as tmp:
        arch = {"in_channels": 3, "out_channels": 1, "n_blocks": 9, "code_width": 3}
        gen = trained_like(DiamondGenerator(**arch))
        save_package(Path(tmp) / "dg", "diamondgan", "dir", ("flair", "t1", "t2"), arch, gen, {"trained_on": "bench"})
        model = load_package(Path(tmp) / "dg")
        rng = np.random.default_rng(0)
        shape = (args.slices, 240, 240)
        brain = np.zeros(shape, bool)
        brain[:, 20:220, 30:210] = True
        vols = {n: rng.random(shape, dtype=np.float32) * brain for n in ("flair", "t1", "t2")}
        t0, c0 = time.perf_counter(), time.process_time()
        out, _ = synthesize(model, vols, brain)
        res["volume_s"], res["volume_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        res["volume_load_after"] = os.getloadavg()
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
    torch.manual_seed(0)
    g = DiamondGenerator(3, 3).eval()  # the released layout
    res["params"] = count_parameters(g)
    x1 = torch.rand(1, 3, 240, 240) * 2 - 1
    xb = torch.rand(args.batch, 3, 240, 240) * 2 - 1
    c1, cb = availability_tensor((1, 1, 1)), availability_tensor((1, 1, 1), args.batch)
    if not args.no_agreement:
        res["agreement_init_generator"] = agreement(g, x1, c1)
        res["agreement"] = agreement(trained_like(g), x1, c1)
        res["keras_parity"] = keras_parity(args.tf_python, trained_like(g), x1, c1)
    fast = DiamondInference(g, streams=1 if args.cpu_time else None)

    def ours(x, c):
        with torch.inference_mode():
            return fast(x, c)

    def ours_bf16(x, c):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return fast(x, c).float()

    def eager(x, c):
        with torch.inference_mode():
            return g(x, c)

    keras = KerasRounds(args.tf_python, threads, args.batch, args.cpu_time)
    try:
        res["slice"] = with_keras({"ours": lambda: ours(x1, c1), "ours_bf16": lambda: ours_bf16(x1, c1),
                                   "eager": lambda: eager(x1, c1), "naive": lambda: naive_forward(g, x1, c1)},
                                  keras, "slice", args.rounds, clock)
        res["batch"] = with_keras({"ours": lambda: ours(xb, cb), "ours_bf16": lambda: ours_bf16(xb, cb),
                                   "eager": lambda: eager(xb, cb),
                                   "naive_per_slice": lambda: [naive_forward(g, xb[i:i + 1], c1)
                                                               for i in range(args.batch)]},
                                  keras, "batch", max(1, args.rounds - 1), clock)
    finally:
        keras.close()
    res["keras"] = keras.info
    if "keras" in res["batch"]:
        res["keras"] = {**keras.info, "slice_s": res["slice"]["keras"]["median_s"],
                        "batch_s": res["batch"]["keras"]["median_s"], "interleaved": True}

    res["load_after"] = os.getloadavg()
    print(json.dumps(res, indent=1, default=str))
    report(res, args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str) + "\n")


def report(res: dict, args) -> None:
    per = {k: v["median_s"] / args.batch for k, v in res["batch"].items() if k != "keras"}
    unit = "CPU s" if args.cpu_time else "s"
    print(f"\nDiamondGAN (7,218,987 params: ours {res['params']:,}, Keras {res['keras'].get('params', 'n/a')}), "
          f"{res['threads']} thread(s), clock: {res['clock']}, load {os.getloadavg()}")
    for name in ("agreement", "agreement_init_generator"):
        if name in res:
            print(f"  {name} (max / mean |out - float64 eager| on [-1, 1]): "
                  + ", ".join(f"{k} {v['max']:.2g} / {v['mean']:.2g}" for k, v in res[name].items()))
    kp = res.get("keras_parity", {})
    if "ours_vs_keras_max" in kp:
        print(f"  Keras parity (same weights, one 240x240 slice, tanh scale): released padding {kp['options']} "
              f"max |ours - Keras| {kp['ours_vs_keras_max']:.2g}; legacy padding (reflect/symmetric) "
              f"{kp['legacy_padding_vs_keras_max']:.2g}")
    elif kp:
        print(f"  Keras parity: {kp['skipped']}")
    for k, v in per.items():
        print(f"  batch of {args.batch}: {k:20s} {v:7.3f} {unit}/slice")
    if "batch_s" in res["keras"]:
        k = res["keras"]["batch_s"] / args.batch
        print(f"  batch of {args.batch}: {'keras':20s} {k:7.3f} {unit}/slice")
        print(f"GOAL ours >= 2x Keras: fp32 {k / per['ours']:.2f}x (eager module {k / per['eager']:.2f}x), "
              f"bf16 {k / per['ours_bf16']:.2f}x -> {'MET' if k / per['ours'] >= 2 else 'NOT MET'} in float32")
    else:
        print(f"GOAL ours >= 2x Keras: not measured ({res['keras']['skipped']}); "
              f"vs naive loop {per['naive_per_slice'] / per['ours']:.2f}x")
    print(f"  ours vs eager module {per['eager'] / per['ours']:.2f}x, vs naive loop "
          f"{per['naive_per_slice'] / per['ours']:.2f}x (batch of {args.batch})")
    print(f"GOAL volume {args.slices}x240x240 < 60 s: {res['volume_s']:.1f} s wall ({res['volume_cpu_s']:.1f} CPU s, "
          f"{res['threads']} thread(s)) -> {'MET' if res['volume_s'] < 60 else 'NOT MET'}; peak RSS "
          f"{res['volume_peak_rss_gb']:.2f} GB -> {'MET' if res['volume_peak_rss_gb'] < 2 else 'NOT MET'}")
    print(f"GOAL 20 MC-dropout samples of a 240x240 slice < 10 s: {res['mc20_slice_s']:.2f} s "
          f"-> {'MET' if res['mc20_slice_s'] < 10 else 'NOT MET'} (with 4-flip TTA: {res['mc20_x_tta4_slice_s']:.2f} s)")


if __name__ == "__main__":
    main()
