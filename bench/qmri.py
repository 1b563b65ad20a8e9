#!/usr/bin/env python
"""Benchmark: qMRI fitting through :func:`neuroshift.qmri.fit` (what ``neuroshift qmri fit`` calls).

    python bench/qmri.py [--shape 176,256,256] [--rounds 5] [--before-voxels 20000] [--json out.json]

Images are synthesised (SYNTHETIC) from head-shaped maps (``bench/_maps.py``; brain ≈ 13 % of the
256×256×176 field of view, background 0 and skipped by the fit). Three measurements:

1. **closed form** (two spin echoes, TE 15/90 ms, TR 3000 ms, float32 images): ``fit`` against the
   bare formula ``T2 = ΔTE/ln(S1/S2)``, ``PD = S1·e^{TE1/T2}`` on the same arrays (no masking, no
   clipping, no checks). Interleaved rounds. Goal: ``fit`` ≤ 2× the bare formula.
2. **DESPOT1** (GRE FA 4°/25°, TR 20 ms): same comparison with the bare DESPOT1 line.
3. **Levenberg–Marquardt**, mixed sequences (SE TE 10/TR 500, SE TE 100/TR 4000, FLAIR TE 100/TI 2500/
   TR 9000, IR TE 10/TI 300/TR 5000 → PD, T1, T2): the whole volume through ``fit`` once (goal
   < 3 min on 2 cores), and the fit before issue 9 (``bench/_qmri_before.py``: central-difference
   Jacobian) against ours on the same ``--before-voxels`` random brain voxels (voxels/s, ratio,
   accuracy of both against the truth, noise-free and with Rician noise σ = 0.005).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._maps import synthetic_maps  # noqa: E402
from bench._timing import fmt, interleaved, load_average, machine  # noqa: E402

from neuroshift.io.params import AcquisitionParams as P  # noqa: E402
from neuroshift.qmri import fit, synthesize  # noqa: E402
from neuroshift.qmri.fit import BOUNDS_MS  # noqa: E402
from neuroshift.qmri.nlls import fit_nlls  # noqa: E402

MIXED = (["se", "se", "flair", "ir"], ["TE=10,TR=500", "TE=100,TR=4000", "TE=100,TI=2500,TR=9000",
                                       "TE=10,TI=300,TR=5000"])


def bare_echo(s1, s2, te1, te2):
    with np.errstate(all="ignore"):
        t2 = (te2 - te1) / np.log(s1 / s2)
        return s1 * np.exp(te1 / t2), t2


def bare_despot1(s1, s2, a1, a2, tr):
    """Two-point DESPOT1: slope of S/sin α against S/tan α; T1 = −TR/ln(slope)."""
    with np.errstate(all="ignore"):
        y1, y2 = s1 / np.sin(a1), s2 / np.sin(a2)
        x1, x2 = s1 / np.tan(a1), s2 / np.tan(a2)
        e1 = (y2 - y1) / (x2 - x1)
        return (y1 - e1 * x1) / (1 - e1), -tr / np.log(e1)


def _rel_err(est, true, m):
    return np.abs(est[m] / true[m] - 1)


def closed_forms(maps, rounds):
    out = {}
    ps = [P.parse("TE=15,TR=3000"), P.parse("TE=90,TR=3000")]
    ims = [synthesize(maps, "se", p) for p in ps]
    s1, s2 = ims[0].data, ims[1].data
    t = interleaved({"bare": lambda: bare_echo(s1, s2, 15.0, 90.0), "fit": lambda: fit(ims, "se", ps)}, rounds)
    r = fit(ims, "se", ps)
    m = maps.array("T2") > 0
    err = float(np.max(_rel_err(r.maps.array("T2"), maps.array("T2"), m)))
    out["two_echo"] = {"timings": t, "ratio": t["fit"]["median_s"] / t["bare"]["median_s"], "max_rel_err_T2": err,
                       "method": r.method}
    ps = [P.parse("TE=4,TR=20,FA=4"), P.parse("TE=4,TR=20,FA=25")]
    ims = [synthesize(maps, "gre", p) for p in ps]
    s1, s2 = ims[0].data, ims[1].data
    a1, a2 = np.deg2rad(4.0), np.deg2rad(25.0)
    t = interleaved({"bare": lambda: bare_despot1(s1, s2, a1, a2, 20.0), "fit": lambda: fit(ims, "gre", ps)},
                    rounds)
    r = fit(ims, "gre", ps)
    err = float(np.max(_rel_err(r.maps.array("T1"), maps.array("T1"), maps.array("T1") > 0)))
    out["despot1"] = {"timings": t, "ratio": t["fit"]["median_s"] / t["bare"]["median_s"], "max_rel_err_T1": err,
                      "method": r.method}
    return out


def mixed_lm(maps, n_before, seed=0, whole_noise=0.0):
    from bench import _qmri_before as before

    seqs, texts = MIXED
    ps = [P.parse(x) for x in texts]
    acqs = list(zip(seqs, ps))
    ims = [synthesize(maps, s, p, dtype=np.float64) for s, p in zip(seqs, ps)]
    whole = ims if not whole_noise else [synthesize(maps, s, p, noise_sigma=whole_noise, rng=10 + i, dtype=np.float64)
                                         for i, (s, p) in enumerate(zip(seqs, ps))]
    brain = maps.array("PD") > 0
    n_brain = int(brain.sum())
    load0 = load_average()
    t0 = time.perf_counter()
    # the brain mask (as a user passes --mask): with noise every background voxel has signal > 0 and
    # would be fitted too (11.5 M instead of 1.55 M voxels)
    r = fit(whole, seqs, ps, mask=maps["PD"].with_data((maps.array("PD") > 0).astype(np.uint8)))
    whole_s = time.perf_counter() - t0
    load1 = load_average()
    truth = {k: maps.array(k).astype(np.float64) for k in ("PD", "T1", "T2")}
    whole_err = {k: float((np.median if whole_noise else np.max)(_rel_err(r.maps.array(k), truth[k], brain)))
                 for k in truth}
    # same random voxels through the old and the new LM (noise-free, then with Rician noise)
    rng = np.random.default_rng(seed)
    idx = rng.choice(np.flatnonzero(brain.reshape(-1)), size=min(n_before, n_brain), replace=False)
    Y = np.stack([im.data.reshape(-1)[idx] for im in ims], -1)
    sigma = 0.005
    noisy = [synthesize(maps, s, p, noise_sigma=sigma, rng=10 + i, dtype=np.float64) for i, (s, p) in
             enumerate(zip(seqs, ps))]
    Yn = np.stack([im.data.reshape(-1)[idx] for im in noisy], -1)
    tv = {k: v.reshape(-1)[idx] for k, v in truth.items()}
    res = {}
    for label, data in (("noise_free", Y), ("noisy", Yn)):
        row = {}
        for name, f in (("before", lambda d: before.fit_nlls(d, acqs, ["T1", "T2"])),
                        ("ours", lambda d: fit_nlls(d, acqs, ["T1", "T2"], BOUNDS_MS, max_iter=60, chunk=200_000))):
            t0 = time.perf_counter()
            est = f(data)
            dt = time.perf_counter() - t0
            errs = {k: _rel_err(np.clip(est[k], *(BOUNDS_MS[k] if k != "PD" else (0, np.inf))), tv[k],
                                np.ones(len(idx), bool)) for k in ("PD", "T1", "T2")}
            row[name] = {"s": dt, "voxels_per_s": len(idx) / dt,
                         **{f"{k}_median_rel_err": float(np.median(e)) for k, e in errs.items()},
                         **{f"{k}_p99_rel_err": float(np.percentile(e, 99)) for k, e in errs.items()},
                         **{f"{k}_max_rel_err": float(np.max(e)) for k, e in errs.items()}}
        row["speedup"] = row["before"]["s"] / row["ours"]["s"]
        res[label] = row
    return {"voxels_fitted": n_brain, "whole_volume_s": whole_s, "whole_volume_noise_sigma": whole_noise, "whole_volume_max_rel_err": whole_err,
            "load_before": load0, "load_after": load1, "method": r.method, "sample_voxels": len(idx),
            "sample": res, "before_whole_volume_estimate_s": n_brain / res["noise_free"]["before"]["voxels_per_s"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="176,256,256", help="array shape k,j,i (default 176,256,256)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before-voxels", type=int, default=20000)
    ap.add_argument("--skip-lm", action="store_true")
    ap.add_argument("--whole-noise", type=float, default=0.0,
                    help="Rician sigma of the whole-volume LM images (default 0: noise-free; errors then median)")
    ap.add_argument("--json", help="also write the results as JSON")
    args = ap.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    maps = synthetic_maps(shape)
    info = machine()
    print(f"qMRI fit bench, {shape[::-1]} (SYNTHETIC maps), {info['cpu']}, {info['usable_cores']} usable cores, "
          f"numpy {info['numpy']}; load {load_average()}")
    results = {"machine": info, "shape": list(shape)}
    results["closed"] = closed_forms(maps, args.rounds)
    for k, v in results["closed"].items():
        print(f"[{k}] bare {fmt(v['timings']['bare'])} | fit {fmt(v['timings']['fit'])} | ratio {v['ratio']:.2f} "
              f"(goal <= 2); max rel. error {[e for n, e in v.items() if n.startswith('max_rel')][0]:.1e}")
    print(f"load {load_average()}")
    if not args.skip_lm:
        lm = mixed_lm(maps, args.before_voxels, whole_noise=args.whole_noise)
        results["lm"] = lm
        print(f"[LM mixed SE,SE,FLAIR,IR -> PD,T1,T2] whole volume: {lm['voxels_fitted']} voxels in "
              f"{lm['whole_volume_s']:.1f} s (goal < 180 s; noise sigma {args.whole_noise:g}; load {lm['load_before']} -> "
              f"{lm['load_after']}); {'median' if args.whole_noise else 'max'} rel. error vs truth "
              f"{lm['whole_volume_max_rel_err']}")
        for label, row in lm["sample"].items():
            b, o = row["before"], row["ours"]
            print(f"  {label}: {lm['sample_voxels']} voxels, before {b['voxels_per_s']:.0f} vox/s, ours "
                  f"{o['voxels_per_s']:.0f} vox/s, speed-up {row['speedup']:.2f}x; median rel. error T1 "
                  f"{b['T1_median_rel_err']:.2e} / {o['T1_median_rel_err']:.2e}, T2 {b['T2_median_rel_err']:.2e} / "
                  f"{o['T2_median_rel_err']:.2e}, p99 T1 {b['T1_p99_rel_err']:.2e} / {o['T1_p99_rel_err']:.2e}")
        print(f"  before, whole volume (extrapolated): {lm['before_whole_volume_estimate_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
