#!/usr/bin/env python
"""Benchmark of MR fingerprinting (issue 12), one run (< 3 min on 2 idle cores):

    python bench/mrf.py                      # 4000 voxels per signal set + a full brain-masked 240x240x60 volume
    python bench/mrf.py --voxels 20000 --rounds 3 --no-volume --json out.json

* dictionary build time (51 x 114 x 9 x 35 frames, torch float64);
* matching throughput on two signal sets: ``atoms`` (dictionary atoms x PD 0.5-2 + 1 % Gaussian noise,
  magnitude) and ``phantom`` (brain voxels of SYNTHETIC phantom seed 1: partial-volume tissue mixtures, a B1
  field, 1 % Rician noise), for
  ``ours`` (:func:`neuroshift.mrf.match.match_volume` as ``neuroshift mrf match`` calls it: exact k-d tree on
  the CPU), ``ours-scores`` (chunked float32 scores + float64 top-8 re-scoring, the GPU path),
  ``ours-svd`` (tree on the rank keeping 0.99999 of the energy, 8 candidates re-scored), ``ours-b1map`` (tree
  restricted to the grid B1 nearest the true B1) and ``brute-force``: one einsum over the WHOLE dictionary
  in float32 (plain torch; MRpro's ``DictionaryMatchOp`` is not a dependency). Per method: voxels/s, the
  projected time for a brain-masked 240 x 240 x 60 volume (voxels inside an ellipsoid of 0.8 x the
  half-extents), peak RSS growth (psutil, 5 ms sampling) and the share of voxels agreeing with brute force
  (float32) and with the exact float64 argmax (computed in chunks; for ``ours-b1map`` the exact argmax over
  the atoms of the voxel's grid B1, the search it is asked to do);
* ``--volume`` (default): the real thing, a 240 x 240 x 60 x 35 float32 volume whose brain-mask voxels hold
  phantom signals (drawn with replacement, fresh 1 % noise), matched by ``match_volume``: wall time, peak
  RSS of the process and agreement of 3000 random voxels with the exact float64 argmax;
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

GOAL_VOLUME_S, GOAL_PEAK_GB, GOAL_AGREE_PCT = 60.0, 2.0, 99.9


class PeakRSS:
    """Peak resident-set size (and its growth, MB) of this process while the block runs (sampled every 5 ms)."""

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
        self.peak_mb = self.peak / 1e6


def exact_argmax(x, d, chunk: int = 512, b1=None):
    """float64 argmax of the normalised inner product over the whole dictionary, in voxel chunks; with ``b1``
    (per voxel) over the atoms of the nearest grid B1 only (the reference of the B1-map search)."""
    import numpy as np
    import torch

    unit = torch.as_tensor(d.atoms() / np.linalg.norm(d.atoms(), axis=1, keepdims=True))
    out = np.empty(len(x), dtype=np.int64)
    if b1 is not None:
        params = d.parameters()
        grid = np.unique(params[:, 2])
        near = np.abs(np.asarray(b1)[:, None] - grid[None, :]).argmin(axis=1)
        for g in np.unique(near):
            ids = np.flatnonzero(params[:, 2] == grid[g])
            sel = near == g
            sub = torch.as_tensor(np.asarray(x[sel], dtype=np.float64)) @ unit[ids].T
            out[sel] = ids[sub.argmax(dim=1).numpy()]
        return out
    for i in range(0, len(x), chunk):
        xc = torch.as_tensor(np.asarray(x[i:i + chunk], dtype=np.float64))
        out[i:i + chunk] = (xc @ unit.T).argmax(dim=1).numpy()
    return out


def signal_sets(d, n: int, rng):
    """``{name: (signals (n, 35), true B1 (n,))}``: noisy atoms and SYNTHETIC phantom brain voxels."""
    import numpy as np

    from neuroshift.mrf.dataset import simulate_subject

    atoms, params = d.atoms(), d.parameters()
    idx = rng.choice(len(atoms), n, replace=False)
    noise = rng.normal(0, 0.01 * atoms.mean(), (n, atoms.shape[1]))
    x = np.abs(atoms[idx] * rng.uniform(0.5, 2.0, (n, 1)) + noise)
    sub = simulate_subject(d.schedule, 1)
    ph, b1 = sub.frames[sub.brain].astype(np.float64), sub.b1[sub.brain].astype(np.float64)
    pick = rng.choice(len(ph), n, replace=False)
    return {"atoms": (x, params[idx, 2]), "phantom": (ph[pick], b1[pick])}, sub


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--volume", action=argparse.BooleanOptionalAction, default=True,
                    help="also match a full brain-masked 240x240x60 volume (default: yes)")
    ap.add_argument("--json")
    args = ap.parse_args()

    import numpy as np
    import torch

    from _timing import fmt, interleaved, load_average, machine
    from neuroshift.mrf.dictionary import build_dictionary
    from neuroshift.mrf.match import brute_force_match, match_volume, prepare
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
    print(f"dictionary {d.grid_shape} x {d.n_frames}: built in {build_s:.2f} s (goal < 30 s; load {load_average()})")

    rng = np.random.default_rng(0)
    sets, sub = signal_sets(d, args.voxels, rng)
    t0 = time.perf_counter()
    p_full = prepare(d, device=args.device)
    p_full.tree()
    for g in np.unique(d.parameters()[:, 2]):  # the B1-map search's per-B1 trees, built once like the full tree
        p_full.subset(np.flatnonzero(d.parameters()[:, 2] == g), key=("b1", float(g))).tree()
    prep_s = time.perf_counter() - t0
    p_svd = prepare(d, svd_energy=0.99999, device=args.device)
    brain = _brain_mask().sum()
    rows = {}
    for set_name, (x, b1) in sets.items():
        results, mem = {}, {}
        # ours through match_volume, the call `neuroshift mrf match` makes (x: (voxels, frames), frames last)
        funcs = {"ours": lambda: match_volume(x, p_full, threads=threads)["index"],
                 "ours-scores": lambda: match_volume(x, p_full, method="scores")["index"],
                 "ours-svd": lambda: match_volume(x, p_svd, threads=threads)["index"],
                 "ours-b1map": lambda: match_volume(x, p_full, b1_map=b1, threads=threads)["index"],
                 "brute-force": lambda: brute_force_match(x, d, dtype="float32")}
        for name, f in funcs.items():
            with PeakRSS() as pk:
                results[name] = f()
            mem[name] = round(pk.mb, 1)
        timing = interleaved(funcs, rounds=args.rounds, warmup=0)
        exact = exact_argmax(x, d)
        exact_b1 = exact_argmax(x, d, b1=b1)
        print(f"\n[{set_name}] matching {len(x)} voxels x {len(d.atoms())} atoms, threads {threads}, load "
              f"{load_average()}; SVD rank {p_svd.rank} ({p_svd.energy:.6f} energy); trees built in {prep_s:.2f} s; "
              "baseline: brute-force einsum (plain torch, float32)")
        for name in funcs:
            med = timing[name]["median_s"]
            thr = len(x) / med
            r = rows[f"{set_name}/{name}"] = {
                "median_s": med, "iqr_s": timing[name]["iqr_s"], "voxels_per_s": thr,
                "projected_240x240x60_s": brain / thr, "peak_rss_growth_mb": mem[name],
                "agree_brute_force_pct": 100.0 * float(np.mean(results[name] == results["brute-force"])),
                "agree_exact_float64_pct": 100.0 * float(np.mean(results[name] == (exact_b1 if name == "ours-b1map"
                                                                                     else exact)))}
            print(f"  {name:12s} {fmt(timing[name])}  {thr:9.0f} voxels/s  projected {r['projected_240x240x60_s']:7.1f} s "
                  f"for {brain} brain voxels  peak +{mem[name]:7.1f} MB  agree bf {r['agree_brute_force_pct']:.2f} %  "
                  f"exact {r['agree_exact_float64_pct']:.2f} %")
        bf = timing["brute-force"]["median_s"]
        print(f"  speed-up vs brute force: " + ", ".join(
            f"{k} {bf / timing[k]['median_s']:.2f}x" for k in funcs if k != "brute-force"))

    volume = _volume_run(d, p_full, sub, threads, rng) if args.volume else None

    from neuroshift.mrf.model import build_model

    torch.manual_seed(0)
    net = build_model().eval()
    xs = torch.randn(1, 35, 240, 240)
    with torch.no_grad():
        unet = interleaved({"unet": lambda: net.forward_logits(xs)}, rounds=max(3, args.rounds), warmup=1)["unet"]
    print(f"\nU-Net (demo architecture) per 240x240 slice: {fmt(unet)} (goal < 0.5 s; threads {threads}, "
          f"load {load_average()})")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "dictionary_build_s": build_s, "matching": rows,
                                               "volume": volume, "unet_slice_s": unet, "brain_voxels": int(brain)},
                                              indent=1))
    return 0


def _volume_run(d, p, sub, threads, rng) -> dict:
    """Match a full 240 x 240 x 60 brain-masked volume of phantom signals with ``match_volume``."""
    import numpy as np

    from _timing import load_average
    from neuroshift.mrf.match import match_volume

    mask = _brain_mask()
    ph = sub.frames[sub.brain].astype(np.float32)
    n = int(mask.sum())
    sigma = np.float32(0.01 * ph.mean())
    frames = np.zeros(mask.shape + (ph.shape[1],), dtype=np.float32)
    frames[mask] = np.abs(ph[rng.integers(0, len(ph), n)] + rng.normal(0, sigma, (n, ph.shape[1])).astype(np.float32))
    t0 = time.perf_counter()
    with PeakRSS() as pk:
        res = match_volume(frames, p, mask, threads=threads)
    secs = time.perf_counter() - t0
    check = rng.choice(np.flatnonzero(mask.ravel()), 3000, replace=False)
    agree = 100.0 * float(np.mean(res["index"].ravel()[check] == exact_argmax(frames.reshape(-1, 35)[check], d)))
    ok = secs < GOAL_VOLUME_S and pk.peak_mb < GOAL_PEAK_GB * 1e3 and agree >= GOAL_AGREE_PCT
    print(f"\n[volume] 240x240x60x35 float32, {n} brain voxels (phantom signals): match_volume {secs:.1f} s "
          f"(goal < {GOAL_VOLUME_S:.0f} s) = {n / secs:.0f} voxels/s; process peak RSS {pk.peak_mb:.0f} MB "
          f"(goal < {GOAL_PEAK_GB * 1e3:.0f} MB; +{pk.mb:.0f} MB while matching, the frames themselves "
          f"{frames.nbytes / 1e6:.0f} MB); exact float64 agreement {agree:.2f} % of 3000 voxels (goal >= "
          f"{GOAL_AGREE_PCT} %); threads {threads}, load {load_average()}  -> {'GOAL MET' if ok else 'goal missed'}")
    return {"seconds": secs, "voxels": n, "peak_rss_mb": pk.peak_mb, "rss_growth_mb": pk.mb,
            "agree_exact_float64_pct": agree, "goal_met": ok}


def _brain_mask(shape=(240, 240, 60), fill=0.8):
    import numpy as np

    axes = [np.linspace(-1, 1, n) / fill for n in shape]
    g = np.meshgrid(*axes, indexing="ij", sparse=True)
    return sum(a ** 2 for a in g) <= 1.0


if __name__ == "__main__":
    raise SystemExit(main())
