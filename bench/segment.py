#!/usr/bin/env python
"""Benchmark: the 3+3-model claustrum ensemble through the product path vs the authors' Keras release, one run.

    python bench/segment.py                         # quick: a thin 1 mm slab (per-slice cost as the full volume)
    python bench/segment.py --volume full           # 256x256x176 @ 1 mm, every slice the pipeline predicts
    python bench/segment.py --tf-python /tmp/tfenv/bin/python --json out.json

``ours`` is :func:`neuroshift.segment.inference.segment_volume`, the engine call ``neuroshift segment
claustrum`` makes (package loading excluded, everything else included: preprocessing, both views, fusion,
back to the input grid), with a package imported like the authors' (``TASK_DEFAULTS["claustrum"]``:
stored orientation, 180x180 crop, 20 % slabs) holding 3+3 random-weight networks of the released size
(2,494,529 parameters each; random weights time the same as trained ones). Runners:

* ``ours-fp32``: ``precision="fp32"``; ``ours-auto``: ``precision="auto"`` (bfloat16 on CPUs with native
  bf16, float16 on CUDA; includes the float32 agreement check the product runs); both run ``T`` concurrent
  single-threaded streams of batches (the product default with ``T`` threads);
* ``ours-int8`` (CPU, where torch has oneDNN's int8 convolutions): ``precision="int8"`` (``neuroshift segment
  --precision int8``: 8-bit convolutions calibrated on the scan, with the float32 re-check);
* ``auto-1str`` (CPU, ``T >= 2``): ``ours-auto`` with ``NEUROSHIFT_CPU_STREAMS=1`` (one batch at a time over all
  ``T`` OpenMP threads, the product path before the streams), to show what the streams bring;
* ``keras-b1`` / ``keras-b16``: the authors' released claustrum inference (``test_two_views.py`` steps,
  re-implemented in ``dev/make_authors_parity_fixture.py``: z-score, crop/pad, ``model.predict`` with
  ``batch_size=1`` as released / 16, view fusion) with the same weights, in TensorFlow, run in the
  interpreter given by ``--tf-python`` (a separate environment: TensorFlow is no dependency of ours), as a
  worker process fed round by round so that its rounds interleave with ours;
* ``naive``: without TensorFlow, a naive torch loop (NCHW float32, one slice at a time, ``no_grad``) stands in.

Where CUDA is available, a GPU line follows: the same ensemble on a full 256x256x176 volume on the GPU
(``precision="auto"``: float16 autocast, batches sized to the free memory), seconds per volume (goal < 1 s).
Besides wall times, each runner's process CPU seconds (all threads) are reported with their ratios: on a
machine shared with other work they show the arithmetic cost that wall times blur.

Both libraries get the same CPU threads (``--threads``, default :func:`neuroshift.threads.available_cores`);
torch runs with ``OMP_WAIT_POLICY=PASSIVE`` (the product policy). Rounds interleave every runner; the
median and spread of the rounds are printed, with ratios (baseline median / ours median), the agreement
(mask voxels that differ, in % of the volume; max probability difference) and the machine's load average.
The slices each view predicts and those it reuses (bit-identical to another slice, e.g. all background) are
printed: the SYNTHETIC bench volumes have none to reuse in the kept slices (the ratios are those of a volume
without empty slices); ``--volume head`` pads the quick volume with 16 empty slices on either side of the
axial axis (a head that does not fill the field of view) to show the reuse.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from neuroshift.threads import available_cores, prepare_environment  # noqa: E402  (no torch import)

prepare_environment()  # before torch is imported

import numpy as np  # noqa: E402

SHAPES = {"quick": (40, 56, 256), "full": (176, 256, 256), "head": (72, 56, 256)}  # [k, j, i] at 1 mm
N_MODELS = 3
THRESHOLD = 0.40


def make_raw_volume(shape, seed: int = 0) -> np.ndarray:
    """SYNTHETIC skull-stripped-looking head: a textured ellipsoid (~100) with noise, 0 outside. The ``head``
    shape is the quick volume with 16 empty slices above and below (axial)."""
    if tuple(shape) == SHAPES["head"]:
        return np.pad(make_raw_volume(SHAPES["quick"], seed), ((16, 16), (0, 0), (0, 0)))
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape, dtype=np.float32)
    r = sum(((a - n / 2) / (0.45 * n)) ** 2 for a, n in zip((k, j, i), shape))
    vol = np.where(r <= 1, 100 + 20 * np.sin(i / 5) * np.cos(j / 7), 0).astype(np.float32)
    vol += np.where(r <= 1, rng.normal(0, 5, shape), 0).astype(np.float32)
    return vol


# ------------------------------------------------------------------------------ Keras worker (TF env)
def keras_worker(workdir: Path, threads: int) -> int:
    """Runs in the TensorFlow interpreter: build the release's networks, then time one release run per line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    sys.path.insert(0, str(ROOT / "dev"))
    from make_authors_parity_fixture import claustrum_release
    from make_keras_fixture import build_keras_unet

    arr = np.load(workdir / "volume.npy")
    weights = np.load(workdir / "weights.npz")
    models = {}
    for view in ("axial", "coronal"):
        models[view] = []
        for n in range(N_MODELS):
            m = build_keras_unet(tf.keras, 1, (32, 64, 96, 128, 256), (128, 96, 64, 32), 3, 180, 180)
            m.set_weights([weights[f"{view}_{n}_{i}"] for i in range(len(m.get_weights()))])
            models[view].append(m)
    claustrum_release(arr[: 12], models, batch_size=4)  # warm-up (graph tracing)
    print(json.dumps({"ready": f"tensorflow {tf.__version__}, keras {tf.keras.__version__}"}), flush=True)
    for line in sys.stdin:
        batch = int(line.strip())
        t0, c0 = time.perf_counter(), time.process_time()
        prob = claustrum_release(arr, models, batch_size=batch)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        np.save(workdir / f"keras_b{batch}.npy", prob)
        print(json.dumps({"seconds": sec, "cpu_seconds": cpu}), flush=True)
    return 0


class KerasRunner:
    """The worker process, fed one round at a time."""

    def __init__(self, tf_python: str, workdir: Path, threads: int):
        self.workdir = workdir
        self.proc = subprocess.Popen([tf_python, __file__, "--keras-worker", str(workdir), "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.version = json.loads(self._line())["ready"]

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the Keras worker stopped (see its error above)")
        return line

    def run(self, batch: int):
        self.proc.stdin.write(f"{batch}\n")
        self.proc.stdin.flush()
        msg = json.loads(self._line())
        return msg, np.load(self.workdir / f"keras_b{batch}.npy")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ------------------------------------------------------------------------------ main process
def naive_release(models, raw: np.ndarray) -> np.ndarray:
    """Fallback baseline: the release's steps with the torch networks called one slice at a time (NCHW, fp32)."""
    import torch

    sys.path.insert(0, str(ROOT / "dev"))
    from make_authors_parity_fixture import CLAUSTRUM_VIEWS, claustrum_view_back, claustrum_view_input, claustrum_zscore

    z, _ = claustrum_zscore(raw)
    probs = []
    with torch.no_grad():
        for view, order in CLAUSTRUM_VIEWS.items():
            x, back = claustrum_view_input(z, order)
            preds = [np.stack([net(torch.from_numpy(s[None, ..., 0].copy())[None])[0, 0].numpy() for s in x])
                     for net in models[view]]
            probs.append(claustrum_view_back(np.mean(preds, axis=0), order, back))
    return (probs[0] + probs[1]) / 2


def gpu_line(pkg_dir: Path, rounds: int = 3) -> dict:
    """Where CUDA is present: the 3+3 ensemble on a full 256x256x176 volume on the GPU (precision auto: float16
    autocast, batches sized to the free memory); prints the per-volume time against the < 1 s goal."""
    import torch

    from neuroshift.io.volume import Volume
    from neuroshift.segment.inference import segment_volume
    from neuroshift.segment.package import load_package

    dev = torch.device("cuda")
    pkg = load_package(pkg_dir, dev)
    vol = Volume(make_raw_volume(SHAPES["full"]), spacing=(1.0, 1.0, 1.0))
    segment_volume(vol, pkg, device=dev, precision="auto")  # warm-up (cuDNN autotuning, allocator)
    secs = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        r = segment_volume(vol, pkg, device=dev, precision="auto")
        torch.cuda.synchronize()
        secs.append(time.perf_counter() - t0)
    out = {"gpu": torch.cuda.get_device_name(dev), "median_s_per_volume": float(np.median(secs)), "seconds": secs,
           "precision": r.info.get("precision"), "batch_size": r.info.get("batch_size")}
    print(f"GPU {out['gpu']}: 3+3 ensemble on 256x256x176 @ 1 mm, {out['precision']}, batch {out['batch_size']}: "
          f"{out['median_s_per_volume']:.2f} s per volume (median of {rounds}; goal < 1 s)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volume", choices=tuple(SHAPES), default="quick")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch and TensorFlow (default: "
                                                              "the cores available to this process)")
    ap.add_argument("--tf-python", default=os.environ.get("NEUROSHIFT_TF_PYTHON", "/tmp/tfenv/bin/python"),
                    help="interpreter with TensorFlow for the Keras baseline (default /tmp/tfenv/bin/python)")
    ap.add_argument("--keras-batch", type=int, nargs="*", default=[1, 16], help="Keras predict batch sizes")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    ap.add_argument("--keras-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    threads = args.threads or available_cores()
    if args.keras_worker:
        return keras_worker(args.keras_worker, threads)

    import torch

    from neuroshift.io.volume import Volume
    from neuroshift.segment.inference import segment_volume
    from neuroshift.segment.keras_import import TASK_DEFAULTS
    from neuroshift.segment.package import load_package, save_package
    from neuroshift.segment.unet import claustrum_unet, count_parameters
    from neuroshift.threads import configure
    from neuroshift.torch_device import resolve_device

    thread_info = configure(threads)
    device = resolve_device(args.device)
    shape = SHAPES[args.volume]
    raw = make_raw_volume(shape)
    torch.manual_seed(0)
    nets = {v: [claustrum_unet().eval() for _ in range(N_MODELS)] for v in ("axial", "coronal")}
    tmp = Path(tempfile.mkdtemp(prefix="bench-segment-"))
    manifest = dict(TASK_DEFAULTS["claustrum"], demo=True, description="random weights (benchmark)")
    pkg = load_package(save_package(tmp / "pkg", manifest, nets), device)
    volume = Volume(raw, spacing=(1.0, 1.0, 1.0))
    info = {"device": str(device), "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "volume_kji": list(shape), "networks": f"{N_MODELS}+{N_MODELS}",
            "params_per_network": count_parameters(nets["axial"][0]), **thread_info,
            "load_average_start": os.getloadavg()}
    print(f"claustrum ensemble {N_MODELS}+{N_MODELS} x {info['params_per_network']:,} parameters, volume "
          f"{shape[2]}x{shape[1]}x{shape[0]} @ 1 mm, {device}, torch threads {thread_info['torch_threads']} "
          f"(available cores {thread_info['available_cores']}, OMP_WAIT_POLICY={thread_info['omp_wait_policy']}), "
          f"load average {info['load_average_start'][0]:.2f}")

    def ours(precision, streams=None):
        def fn():
            if streams is not None:
                os.environ["NEUROSHIFT_CPU_STREAMS"] = str(streams)
            try:
                r = segment_volume(volume, pkg, device=device, precision=precision)
            finally:
                os.environ.pop("NEUROSHIFT_CPU_STREAMS", None)
            return r.probability.data, r.label.data, r.info
        return fn

    runners = {"ours-fp32": ours("fp32"), "ours-auto": ours("auto")}
    from neuroshift.segment.int8 import int8_available

    if device.type == "cpu" and int8_available():
        runners["ours-int8"] = ours("int8")
    if device.type == "cpu" and thread_info["torch_threads"] >= 2:
        runners["auto-1str"] = ours("auto", streams=1)
    keras = None
    if Path(args.tf_python).exists():
        np.save(tmp / "volume.npy", raw)
        weights = {}
        for view, ms in nets.items():
            for n, m in enumerate(ms):
                i = 0
                for conv in m.conv_layers():
                    weights[f"{view}_{n}_{i}"] = conv.weight.detach().numpy().transpose(2, 3, 1, 0)
                    weights[f"{view}_{n}_{i + 1}"] = conv.bias.detach().numpy()
                    i += 2
        np.savez(tmp / "weights.npz", **weights)
        keras = KerasRunner(args.tf_python, tmp, threads)
        info["keras"] = keras.version
        for b in args.keras_batch:
            runners[f"keras-b{b}"] = (lambda b=b: (lambda r: (r[1], r[1] > THRESHOLD, r[0]))(keras.run(b)))
        print(f"baseline: the authors' release steps in {keras.version} (worker: {args.tf_python}), "
              f"intra-op threads {threads}")
    else:
        runners["naive"] = lambda: (lambda p: (p, p > THRESHOLD, {}))(naive_release(nets, raw))
        print(f"baseline: TensorFlow interpreter {args.tf_python} not found; naive torch loop instead")

    # One untimed call of every runner first, ours and the baseline alike: Keras's predict retraces for each new
    # batch shape (a cold batch-1 round took 14.8 s against 8.7-10.8 s warm), ours compiles and allocates.
    outputs = {name: fn() for name, fn in runners.items()}
    slices = outputs["ours-fp32"][2]["slices"]
    info["slices"] = slices
    print("slices per view (kept after the slab rule / predicted / reused as bit-identical to another): " + "; ".join(
        f"{v} {c['kept']}/{c['predicted']}/{c['reused_identical']}" for v, c in slices.items()))
    times = {n: [] for n in runners}
    cpu_times = {n: [] for n in runners}  # process CPU seconds (all threads): less sensitive to a busy machine
    for rnd in range(args.repeats):
        for name, fn in runners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
            if name.startswith("keras"):
                sec, cpu = out[2]["seconds"], out[2]["cpu_seconds"]
            times[name].append(sec)
            cpu_times[name].append(cpu)
            outputs.setdefault(name, out)
        print(f"  round {rnd + 1}/{args.repeats}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()),
              flush=True)
    if keras is not None:
        keras.close()
    info["load_average_end"] = os.getloadavg()
    results = {}
    print(f"median (min-max) of {args.repeats} interleaved rounds:")
    for name, t in times.items():
        c = cpu_times[name]
        results[name] = {"median_s": float(np.median(t)), "min_s": min(t), "max_s": max(t),
                         "median_cpu_s": float(np.median(c)), "cpu_s": c}
        print(f"  {name:<10} {np.median(t):8.2f} s  ({min(t):.2f}-{max(t):.2f}); CPU {np.median(c):8.2f} s")
    ref_p, ref_l, _ = outputs["ours-fp32"]
    print("speed-up (baseline median / ours median) and agreement with ours-fp32:")
    for name in runners:
        p, lab, run_info = outputs[name]
        differ = 100.0 * float((np.asarray(lab).astype(bool) != ref_l.astype(bool)).mean())
        results[name].update(mask_voxels_differing_pct=differ,
                             max_abs_probability_difference=float(np.abs(np.asarray(p) - ref_p).max()))
        if name.startswith(("ours", "auto")):
            results[name].update(precision=run_info.get("precision"), precision_check=run_info.get("precision_check"))
        line = f"  {name:<10} mask voxels differing {differ:.4f} %, max |dp| {results[name]['max_abs_probability_difference']:.1e}"
        if not name.startswith(("ours", "auto")):
            for o in [o for o in ("ours-fp32", "ours-auto", "ours-int8") if o in results]:
                ratio = results[name]["median_s"] / results[o]["median_s"]
                cpu_ratio = results[name]["median_cpu_s"] / max(results[o]["median_cpu_s"], 1e-9)
                results[name][f"ratio_to_{o}"] = ratio
                results[name][f"cpu_ratio_to_{o}"] = cpu_ratio
                line += f"; {o} {ratio:.2f}x faster (CPU time {cpu_ratio:.2f}x)"
        print(line)
    print(f"ours-auto precision: {results['ours-auto'].get('precision')}; load average at the end "
          f"{info['load_average_end'][0]:.2f}")
    if "auto-1str" in results:
        print(f"streams: ours-auto ({thread_info['torch_threads']} single-threaded streams) takes "
              f"{results['ours-auto']['median_s'] / results['auto-1str']['median_s']:.2f}x the time of one batch at a "
              f"time over {thread_info['torch_threads']} threads (auto-1str)")
    base = "keras-b1" if "keras-b1" in results else next((n for n in results if not n.startswith(("ours", "auto"))),
                                                         None)
    if base is not None:
        auto = results["ours-auto"]
        r32, rauto = results[base]["ratio_to_ours-fp32"], results[base]["ratio_to_ours-auto"]
        print(f"GOAL fp32 >= 1.2x vs {base}: {r32:.2f}x ({'met' if r32 >= 1.2 else 'NOT met'}); "
              f"GOAL {auto.get('precision')} >= 3x with <= 0.1 % mask voxels different: {rauto:.2f}x, "
              f"{auto['mask_voxels_differing_pct']:.4f} % ({'met' if rauto >= 3 and auto['mask_voxels_differing_pct'] <= 0.1 else 'NOT met'}); "
              f"threads {thread_info['torch_threads']}, load {info['load_average_start'][0]:.1f} -> "
              f"{info['load_average_end'][0]:.1f}")
        if "ours-int8" in results:
            q8 = results["ours-int8"]
            r8 = results[base]["ratio_to_ours-int8"]
            print(f"GOAL int8 (--precision int8) >= 3x with <= 0.1 % mask voxels different: {r8:.2f}x, "
                  f"{q8['mask_voxels_differing_pct']:.4f} % ({'met' if r8 >= 3 and q8['mask_voxels_differing_pct'] <= 0.1 else 'NOT met'}); "
                  f"float32 re-check in the run: {q8.get('precision_check')}")
    if torch.cuda.is_available():
        info["gpu"] = gpu_line(pkg_dir=tmp / "pkg")
    else:
        print("GPU: none here (torch.cuda.is_available() is False); no GPU line")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "results": results}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
