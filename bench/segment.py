#!/usr/bin/env python
"""Benchmark: the 3+3-model claustrum ensemble on a 1 mm 256x256x176 volume, ours vs Keras in one run.

    python bench/segment.py                   # CPU: 12 slices per view, times projected to the full volume
    python bench/segment.py --slices all      # every slice the released pipeline predicts
    python bench/segment.py --device cuda     # GPU (all slices by default), float16 autocast
    python bench/segment.py --json out.json

Workload (as the released claustrum pipeline, test_two_views.py): a 176x256x256 float32 volume (1 mm),
z-scored; axial (176 slices of 256x256) and coronal (256 slices of 176x256) views, each slice
centre-cropped/zero-padded to 180x180; slices in the first/last 20 % of each view are removed by the
pipeline and not predicted; 3 random-weight networks per view (2,494,529 parameters each; random
weights time the same as trained ones), mean per view, mean of the views, threshold 0.40.

Runners, timed on the same slices and the same weights, in ``--repeats`` interleaved rounds (each
runner's best round counts, which discounts load from other processes):

* ``ours``: neuroshift UNet2D, eval mode, ``torch.inference_mode``, batches of ``--batch`` slices,
  channels-last memory, float32 (exact); ``ours-bf16`` (CPUs with AVX512-BF16/AMX): the same under
  bfloat16 autocast; ``ours-fp16`` (CUDA): float16 autocast. The agreement of every runner with the
  float32 result is printed (max probability difference, mask voxels that change at 0.40);
* ``naive``: the same torch network called slice by slice (batch 1, float32, ``torch.no_grad``), what a
  line-by-line port of the Keras scripts does;
* ``keras-b1``: the same architecture and weights in Keras with TensorFlow, ``model.predict`` with
  ``batch_size=1`` as in the released scripts, and ``keras``: the same with ``--batch`` (when TensorFlow
  is importable; otherwise a message says it was skipped);
* ``pipeline``: optional (``--pipeline``), ``neuroshift.segment.inference.segment_volume`` end to end.

With ``--slices N`` only N evenly spaced slices per view are predicted and every time is also given
projected to the full volume (x slices-predicted-by-the-pipeline / N): a quick run on 2 CPU cores
takes about 2-4 minutes. Ratios are runner time / ours.

On a machine shared with other busy processes, torch's OpenMP threads (static work split, a barrier
after every operator) lose far more than TensorFlow's work-stealing pool: compare with ``--threads 1``
(both libraries on one core) when the load average exceeds the core count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# GNU OpenMP threads spin while waiting; on a machine shared with other busy processes that costs
# torch 2-4x (measured here). Passive waiting costs nothing measurable when the machine is idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE = (176, 256, 256)  # [k, j, i]: 256 x 256 x 176 voxels of 1 mm
CROP = (180, 180)
SLAB = 0.20
THRESHOLD = 0.40
N_MODELS = 3


def make_raw_volume(seed: int = 0) -> np.ndarray:
    """A skull-stripped-looking head: a textured ellipsoid (~100) with noise, 0 outside."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(SHAPE, dtype=np.float32)
    r = ((k - 88) / 70) ** 2 + ((j - 128) / 100) ** 2 + ((i - 128) / 80) ** 2
    vol = np.where(r <= 1, 100 + 20 * np.sin(i / 5) * np.cos(j / 7), 0).astype(np.float32)
    vol += np.where(r <= 1, rng.normal(0, 5, SHAPE), 0).astype(np.float32)
    return vol


def zscore(raw: np.ndarray, threshold: float = 10.0) -> np.ndarray:
    """z-score inside the brain (raw >= threshold), as the released pipeline does."""
    mask = raw >= threshold
    return ((raw - raw[mask].mean()) / raw[mask].std()).astype(np.float32)


def crop_or_pad(slices: np.ndarray, hw=CROP) -> np.ndarray:
    """Centre crop/zero-pad (N, H, W) to (N, *hw)."""
    n, h, w = slices.shape
    out = np.zeros((n, *hw), np.float32)
    sh, dh = max(0, (h - hw[0]) // 2), max(0, (hw[0] - h) // 2)
    sw, dw = max(0, (w - hw[1]) // 2), max(0, (hw[1] - w) // 2)
    ch, cw = min(h, hw[0]), min(w, hw[1])
    out[:, dh:dh + ch, dw:dw + cw] = slices[:, sh:sh + ch, sw:sw + cw]
    return out


def view_inputs(vol: np.ndarray, n_slices: int | None) -> dict[str, tuple[np.ndarray, int]]:
    """{view: (slices (N, 180, 180) float32, number of slices the full pipeline predicts)}."""
    out = {}
    for view, arr in (("axial", vol), ("coronal", np.transpose(vol, (1, 0, 2)))):
        n = arr.shape[0]
        keep = np.arange(int(n * SLAB), n - int(n * SLAB))
        if n_slices is not None and n_slices < keep.size:
            keep = keep[np.linspace(0, keep.size - 1, n_slices).round().astype(int)]
        out[view] = (crop_or_pad(arr[keep]), n - 2 * int(n * SLAB))
    return out


# ------------------------------------------------------------------------------------------ runners
def run_ours(models, inputs, device, batch, amp_dtype=None):
    """Batched, inference_mode, channels-last; ``amp_dtype`` float16 (CUDA) or bfloat16 (CPU) autocast."""
    import torch

    means = {}
    fmt = torch.channels_last
    with torch.inference_mode():
        for view, (slices, _) in inputs.items():
            x_all = torch.from_numpy(slices[:, None])
            acc = None
            for net in models[view]:
                outs = []
                for s in range(0, x_all.shape[0], batch):
                    x = x_all[s:s + batch].to(device, non_blocking=True).contiguous(memory_format=fmt)
                    with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32,
                                        enabled=amp_dtype is not None):
                        outs.append(net(x).float())
                y = torch.cat(outs)
                acc = y if acc is None else acc + y
            means[view] = (acc / len(models[view]))[:, 0].cpu().numpy()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return means


def run_naive(models, inputs, device):
    import torch

    means = {}
    with torch.no_grad():
        for view, (slices, _) in inputs.items():
            preds = []
            for net in models[view]:
                preds.append(np.stack([net(torch.from_numpy(s[None, None]).to(device))[0, 0].cpu().numpy()
                                       for s in slices]))
            means[view] = np.mean(preds, axis=0)
    return means


def run_keras(kmodels, inputs, batch):
    means = {}
    for view, (slices, _) in inputs.items():
        x = slices[..., None]
        preds = [m.predict(x, batch_size=batch, verbose=0)[..., 0] for m in kmodels[view]]
        means[view] = np.mean(preds, axis=0)
    return means


def bf16_supported() -> bool:
    """True when this CPU has native bfloat16 dot products (AVX512-BF16 or AMX), which oneDNN uses."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load_keras(threads: int | None = None):
    """(keras module, tensorflow version) or (None, reason); ``threads`` sets TensorFlow's intra-op pool."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import tensorflow as tf
    except ImportError:
        return None, "TensorFlow is not installed (python -m pip install tensorflow-cpu)"
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    for name in ("tf_keras", "keras"):
        try:
            mod = __import__(name)
        except ImportError:
            continue
        if name == "keras" and getattr(mod.backend, "backend", lambda: "tensorflow")() != "tensorflow":
            continue
        return mod, f"{name} {mod.__version__} on TensorFlow {tf.__version__}"
    return None, "no Keras with the TensorFlow backend is importable"


def keras_copy(keras, net):
    """The same network and weights in Keras (dev/make_keras_fixture.py builds the released graph)."""
    sys.path.insert(0, str(ROOT / "dev"))
    from make_keras_fixture import build_keras_unet

    cfg = net.config()
    km = build_keras_unet(keras, cfg["in_channels"], cfg["encoder"], cfg["decoder"], cfg["first_kernel"], *CROP)
    weights = []
    for conv in net.conv_layers():
        weights += [conv.weight.detach().cpu().numpy().transpose(2, 3, 1, 0), conv.bias.detach().cpu().numpy()]
    km.set_weights(weights)
    return km


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    ap.add_argument("--slices", default=None, help="slices per view to predict, or 'all' "
                                                   "(default: 12 on CPU, all on CUDA)")
    ap.add_argument("--batch", type=int, default=None, help="slices per batch for ours and keras "
                                                            "(default 4 on CPU, 64 on CUDA)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; each runner's best counts (default 3)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch and TensorFlow alike (default: each library's own, all cores)")
    ap.add_argument("--no-keras", action="store_true", help="skip the Keras runners")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive batch-1 torch runner")
    ap.add_argument("--pipeline", action="store_true", help="also time segment_volume end to end (all slices)")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = ap.parse_args(argv)

    import torch

    from neuroshift.segment.unet import claustrum_unet, count_parameters
    from neuroshift.torch_device import resolve_device

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    n_slices = None if (args.slices == "all" or (args.slices is None and cuda)) else int(args.slices or 12)
    batch = args.batch or (64 if cuda else 4)
    torch.manual_seed(0)
    models = {v: [claustrum_unet().to(device).eval() for _ in range(N_MODELS)] for v in ("axial", "coronal")}
    for nets in models.values():
        for net in nets:
            net.to(memory_format=torch.channels_last)
    raw = make_raw_volume()
    vol = zscore(raw)
    inputs = view_inputs(vol, n_slices)
    n_pred = sum(s.shape[0] for s, _ in inputs.values())
    n_full = sum(full for _, full in inputs.values())
    scale = n_full / n_pred
    info = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if cuda else None,
            "cpu_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "volume": "256x256x176 @ 1 mm", "networks": f"{N_MODELS}+{N_MODELS}",
            "params_per_network": count_parameters(models["axial"][0]), "slices_predicted_per_network": n_pred,
            "slices_full_pipeline_per_network": n_full, "batch": batch}
    print(f"claustrum ensemble {N_MODELS}+{N_MODELS} x {info['params_per_network']:,} params, volume 256x256x176 "
          f"@ 1 mm, {device}{' (' + info['gpu'] + ')' if cuda else ''}, {info['cpu_threads']} CPU threads")
    print(f"predicting {n_pred} of the {n_full} slices per network the pipeline predicts "
          f"(x{N_MODELS} networks); projected times x{scale:.2f}")

    results: dict[str, dict] = {}
    outputs = {}
    runners: list[tuple[str, object, str]] = []  # (name, callable, note)

    # warm-up (allocators, cuDNN autotuning, Keras graph tracing) on a few slices, not timed
    warm = {v: (s[:min(batch, 4)], f) for v, (s, f) in inputs.items()}
    variants = [("ours", None, f"batch {batch}, inference_mode, channels_last, float32")]
    if cuda:
        variants.append(("ours-fp16", torch.float16, f"batch {batch}, inference_mode, channels_last, fp16 autocast"))
    elif bf16_supported():
        variants.append(("ours-bf16", torch.bfloat16, f"batch {batch}, inference_mode, channels_last, "
                                                      "bf16 autocast (AVX512-BF16)"))
    for name, dtype, note in variants:
        run_ours(models, warm, device, batch, dtype)
        runners.append((name, (lambda dtype=dtype: run_ours(models, inputs, device, batch, dtype)), note))

    if not args.no_naive:
        import copy

        plain = {v: [copy.deepcopy(m).to(memory_format=torch.contiguous_format) for m in ms]
                 for v, ms in models.items()}
        runners.append(("naive", lambda: run_naive(plain, inputs, device), "batch 1, float32, no_grad"))

    keras_note = None
    if not args.no_keras:
        keras, why = load_keras(args.threads)
        if keras is None:
            keras_note = f"Keras comparison skipped: {why}"
            print("  " + keras_note)
        else:
            sd = {v: [{k: t.detach().to("cpu", torch.float32) for k, t in m.state_dict().items()} for m in ms]
                  for v, ms in models.items()}
            cpu_models = {v: [claustrum_unet().eval() for _ in ms] for v, ms in sd.items()}
            for v in sd:
                for m, state in zip(cpu_models[v], sd[v]):
                    m.load_state_dict(state)
            kmodels = {v: [keras_copy(keras, m) for m in ms] for v, ms in cpu_models.items()}
            run_keras(kmodels, warm, 1)
            run_keras(kmodels, warm, batch)
            runners.append(("keras-b1", lambda: run_keras(kmodels, inputs, 1),
                            f"{why}, predict(batch_size=1) as released"))
            runners.append(("keras", lambda: run_keras(kmodels, inputs, batch), f"{why}, predict(batch_size={batch})"))

    # Rounds interleave the runners, so that changing load on the machine hits all of them alike;
    # each runner's best round counts.
    best = {name: float("inf") for name, _, _ in runners}
    for rnd in range(args.repeats):
        for name, fn, _ in runners:
            t0 = time.perf_counter()
            out = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            outputs.setdefault(name, out)
        print(f"  round {rnd + 1}/{args.repeats}: " + ", ".join(f"{n} {best[n]:.2f} s" for n, _, _ in runners),
              flush=True)
    print(f"best of {args.repeats} round(s), and projected to the whole volume:")
    for name, _, note in runners:
        sec = best[name]
        results[name] = {"seconds": sec, "projected_volume_s": sec * scale, "note": note}
        print(f"  {name:<9} {sec:8.2f} s  -> {sec * scale:8.2f} s per volume  {note}")

    if args.pipeline:
        try:
            from neuroshift.io import Volume
            from neuroshift.segment.inference import segment_volume
            from neuroshift.segment.keras_import import TASK_DEFAULTS
            from neuroshift.segment.package import save_package
        except ImportError as exc:
            print(f"  pipeline skipped: {exc}")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                manifest = {k: v for k, v in TASK_DEFAULTS["claustrum"].items()}
                manifest.update(demo=True, description="random weights (benchmark)")
                pkg = save_package(Path(tmp) / "bench", manifest, {v: [m.cpu() for m in ms]
                                                                    for v, ms in models.items()})
                t0 = time.perf_counter()
                segment_volume(Volume(raw), pkg, device=str(device), batch_size=batch)
                t = time.perf_counter() - t0
                results["pipeline"] = {"seconds": t, "projected_volume_s": t, "note": "segment_volume, all slices"}
                print(f"  pipeline  {t:8.2f} s  (segment_volume end to end, all slices)")

    ours_names = [n for n in results if n.startswith("ours")]
    others = [n for n in results if not n.startswith("ours") and n != "pipeline"]
    print("speed-up (other runner's time / ours):")
    for o in others:
        row = []
        for name in ours_names:
            ratio = results[o]["seconds"] / results[name]["seconds"]
            results[o][f"speedup_of_{name}"] = ratio
            row.append(f"{name} {ratio:5.2f}x")
        print(f"  vs {o:<9} " + "   ".join(row))
    print("agreement with ours (float32), max |probability difference| and mask (>0.40) voxels that differ:")
    for name in results:
        if name == "ours" or name not in outputs:
            continue
        diff = max(float(np.abs(outputs[name][v] - outputs["ours"][v]).max()) for v in outputs["ours"])
        flips = sum(int(((outputs[name][v] > THRESHOLD) != (outputs["ours"][v] > THRESHOLD)).sum())
                    for v in outputs["ours"])
        results[name].update(max_abs_diff_vs_ours=diff, mask_voxels_differing=flips)
        print(f"  {name:<9} {diff:.1e}  {flips} voxel(s)")
    if cuda:
        best = min(results[n]["projected_volume_s"] for n in ours_names)
        print(f"GPU goal: whole ensemble < 1 s per volume: {best:.2f} s ({'met' if best < 1 else 'NOT met'})")
    if args.json:
        doc = {"info": info, "results": results, "keras_note": keras_note}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
