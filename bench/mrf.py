#!/usr/bin/env python
"""Benchmark of MR fingerprinting (issue 12), one run:

    python bench/mrf.py                      # quick: 4000 voxels, projection to a brain-masked 240x240x60 volume
    python bench/mrf.py --voxels 20000 --rounds 3 --json out.json

* dictionary build time (51 x 114 x 9 x 35 frames, torch float64);
* matching throughput on the same noisy signals (dictionary atoms x PD + 1 % Gaussian noise, magnitude):
  ``ours`` (chunked, float32 scores, float64 top-8 re-scoring; :func:`neuroshift.mrf.match.match_volume`, as the CLI),
  ``ours-svd`` (the same with SVD compression keeping 0.99999 of the energy) and ``brute-force``: one einsum over
  the WHOLE dictionary in float32 (MRpro's ``DictionaryMatchOp`` when mrpro is installed; it is not a
  dependency), with peak RSS growth (psutil sampling every 5 ms) and the fraction of voxels whose match agrees
  with brute force and with the exact float64 argmax;
* the projected time for a brain-masked 240 x 240 x 60 volume (voxels inside an ellipsoid of 0.8 x the
  half-extents, as a brain fills its field of view) from the measured throughput;
* U-Net (demo architecture) time per 240 x 240 slice.

Rounds are interleaved (median and IQR). Threads and the machine's load are printed with every figure: on a
shared machine the ratios are the figures to use.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


class PeakRSS:
    """Peak resident-set growth (MB) of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        import psutil

        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.stop = True
        self.t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.mb = (self.peak - self.base) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json")
    args = ap.parse_args()

    import numpy as np
    import torch

    from _timing import fmt, interleaved, load_average, machine
    from neuroshift.mrf.dictionary import build_dictionary
    from neuroshift.mrf.match import brute_force_match, match_volume, prepare
    from neuroshift.mrf.model import build_model
    from neuroshift.mrf.schedule import representative_schedule
    from neuroshift.threads import available_cores

    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    info = {**machine(), "torch_threads": torch.get_num_threads(), "device": args.device}
    print(f"machine: {info}")
    s = representative_schedule()
    t0 = time.perf_counter()
    d = build_dictionary(s)
    build_s = time.perf_counter() - t0
    print(f"dictionary {d.grid_shape} x {d.n_frames}: built in {build_s:.2f} s (load {load_average()})")

    rng = np.random.default_rng(0)
    atoms = d.atoms()
    idx = rng.choice(len(atoms), args.voxels, replace=False)
    noise = rng.normal(0, 0.01 * atoms.mean(), (args.voxels, 35))
    x = np.abs(atoms[idx] * rng.uniform(0.5, 2.0, (args.voxels, 1)) + noise)
    p_full = prepare(d, device=args.device)
    p_svd = prepare(d, svd_energy=0.99999, device=args.device)
    try:
        from mrpro.operators import DictionaryMatchOp  # noqa: F401

        baseline_name = "brute-force (mrpro installed; plain einsum used for identical data layout)"
    except ImportError:
        baseline_name = "brute-force einsum (plain torch, float32; mrpro not installed)"
    results, mem = {}, {}
    # ours through match_volume, the call `neuroshift mrf match` makes (x: (voxels, frames), frames last)
    funcs = {"ours": lambda: results.__setitem__("ours", match_volume(x, p_full)["index"]),
             "ours-svd": lambda: results.__setitem__("ours-svd", match_volume(x, p_svd)["index"]),
             "brute-force": lambda: results.__setitem__("brute-force", brute_force_match(x, d, dtype="float32"))}
    for name, f in funcs.items():
        with PeakRSS() as pk:
            f()
        mem[name] = round(pk.mb, 1)
    timing = interleaved(funcs, rounds=args.rounds, warmup=0)
    exact = brute_force_match(x, d, dtype="float64")
    print(f"\nmatching {args.voxels} voxels x {len(atoms)} atoms, threads {threads}, load {load_average()}; "
          f"SVD rank {p_svd.rank} ({p_svd.energy:.6f} energy); baseline: {baseline_name}")
    brain = _brain_voxels()
    rows = {}
    for name in funcs:
        med = timing[name]["median_s"]
        thr = args.voxels / med
        rows[name] = {"median_s": med, "iqr_s": timing[name]["iqr_s"], "voxels_per_s": thr,
                      "projected_240x240x60_s": brain / thr, "peak_rss_growth_mb": mem[name],
                      "agree_brute_force_pct": 100.0 * float(np.mean(results[name] == results["brute-force"])),
                      "agree_exact_float64_pct": 100.0 * float(np.mean(results[name] == exact))}
        r = rows[name]
        print(f"  {name:12s} {fmt(timing[name])}  {thr:9.0f} voxels/s  projected {r['projected_240x240x60_s']:7.1f} s "
              f"for {brain} brain voxels  peak +{mem[name]:7.1f} MB  agree bf {r['agree_brute_force_pct']:.2f} %  "
              f"exact {r['agree_exact_float64_pct']:.2f} %")
    bf = rows["brute-force"]["median_s"]
    print(f"  speed-up vs brute force: ours {bf / rows['ours']['median_s']:.2f}x, ours-svd "
          f"{bf / rows['ours-svd']['median_s']:.2f}x; brute-force memory grows with voxels x atoms "
          f"({args.voxels} x {len(atoms)} x 4 B = {args.voxels * len(atoms) * 4 / 1e6:.0f} MB of scores)")

    torch.manual_seed(0)
    net = build_model().eval()
    xs = torch.randn(1, 35, 240, 240)
    with torch.no_grad():
        unet = interleaved({"unet": lambda: net.forward_logits(xs)}, rounds=max(3, args.rounds), warmup=1)["unet"]
    print(f"\nU-Net (demo architecture) per 240x240 slice: {fmt(unet)} (threads {threads}, load {load_average()})")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "dictionary_build_s": build_s, "matching": rows,
                                               "unet_slice_s": unet, "brain_voxels": brain}, indent=1))
    return 0


def _brain_voxels(shape=(240, 240, 60), fill=0.8) -> int:
    import numpy as np

    axes = [np.linspace(-1, 1, n) / fill for n in shape]
    g = np.meshgrid(*axes, indexing="ij", sparse=True)
    return int(np.count_nonzero(sum(a ** 2 for a in g) <= 1.0))


if __name__ == "__main__":
    raise SystemExit(main())
