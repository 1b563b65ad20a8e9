"""Derivatives vs literature priors on mismatched-prior phantoms (issue 15, item 3). SYNTHETIC data.

The phantom's tissue fractions (neuroshift.phantom) with true relaxation values
that differ from the 1.5 T table by about the spread between published sources
(T1 ±12 %, T2 ±12 %, PD ±6 %, signs drawn per tissue and case), imaged with a
T1-weighted spin echo (TE 10 / TR 600 ms) plus Rician noise; derivatives at
TE {10, 50, 100} × TR {600, 2000, 3000} ms are compared with the truth imaged at
those parameters (mean over voxels with fraction >= 0.9). Estimators: the
apparent-parameter fit, priors-only (c fitted), the posterior, and the posterior
joint with a FLAIR of the same subject (TE 140 / TI 2800 / TR 11000 ms).

    python dev/derivative_priors.py [--cases 8] [--random 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=8, help="mismatched-prior phantoms (fixed-size shifts)")
    ap.add_argument("--random", type=int, default=0, help="extra phantoms with truth drawn from the prior")
    ap.add_argument("--shift", type=float, nargs=3, default=(0.12, 0.12, 0.06), metavar=("T1", "T2", "PD"))
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)

    from dataclasses import replace

    from neuroshift.io.params import AcquisitionParams as P
    from neuroshift.phantom.make import build_phantom
    from neuroshift.physics.noise import add_rician_noise
    from neuroshift.physics.relaxation import relaxation_table
    from neuroshift.simulate.estimate import tissue_signals
    from neuroshift.simulate.posterior import PRIOR_LOG_SD
    from neuroshift.simulate.tissuewise import fit_tissue_model

    ph = build_phantom(seed=0, field_T=1.5)
    tissues = ("CSF", "GM", "WM", "lesion")
    fr = {t: ph.fractions[t].data.astype(np.float64) for t in tissues}
    prior = relaxation_table(1.5)
    src = P.parse("TE=10,TR=600,B0=1.5")
    flair = P.parse("TE=140,TI=2800,TR=11000,B0=1.5")
    targets = [P.parse(f"TE={te},TR={tr},B0=1.5") for te in (10, 50, 100) for tr in (600, 2000, 3000)]
    rng = np.random.default_rng(2026)
    cases = []
    s1, s2, sp = args.shift
    for _ in range(args.cases):
        truth = {}
        for t in tissues:
            a, b, c = rng.choice([-1.0, 1.0], 3)
            p = prior[t]
            truth[t] = replace(p, t1_ms=p.t1_ms * (1 + a * s1), t2_ms=p.t2_ms * (1 + b * s2), pd=p.pd * (1 + c * sp))
        cases.append(("shift", truth))
    for _ in range(args.random):
        truth = {}
        for t in tissues:
            p = prior[t]
            z = rng.standard_normal(3)
            truth[t] = replace(p, t1_ms=p.t1_ms * np.exp(PRIOR_LOG_SD["t1"] * z[0]),
                               t2_ms=p.t2_ms * np.exp(PRIOR_LOG_SD["t2"] * z[1]),
                               pd=p.pd * np.exp(PRIOR_LOG_SD["pd"] * z[2]))
        cases.append(("prior-draw", truth))

    def image(truth, params, seq, noise_rng):
        s = tissue_signals(seq, params, *[np.array([getattr(truth[t], k) for t in tissues])
                                          for k in ("pd", "t1_ms", "t2_ms", "t2star_ms")])
        img = sum(fr[t] * 1000.0 * s[i] for i, t in enumerate(tissues))
        if noise_rng is None:
            return img.astype(np.float32), 1000.0 * s
        return np.asarray(add_rician_noise(img, 0.02 * 1000.0 * s[2], rng=noise_rng), np.float32), 1000.0 * s

    rois = {t: fr[t] >= 0.9 for t in ("GM", "WM")}
    names = ("fit", "priors", "posterior", "joint")
    errors = {n: [] for n in names}
    t0 = time.perf_counter()
    for kind, truth in cases:
        base, _ = image(truth, src, "se", rng)
        second, _ = image(truth, flair, "flair", rng)
        models = {
            "fit": fit_tissue_model(base, ph.fractions, "se", src, field_T=1.5, estimator="fit"),
            "priors": fit_tissue_model(base, ph.fractions, "se", src, field_T=1.5, estimator="priors"),
            "posterior": fit_tissue_model(base, ph.fractions, "se", src, field_T=1.5, estimator="posterior"),
            "joint": fit_tissue_model(base, ph.fractions, "se", src, field_T=1.5, estimator="posterior",
                                      contrasts=[(second, "flair", flair)]),
        }
        for tgt in targets:
            _, s_true = image(truth, tgt, "se", None)
            for n, m in models.items():
                sim = m.simulate(tgt)
                for i, t in ((1, "GM"), (2, "WM")):
                    true_mean = float(np.mean(image(truth, tgt, "se", None)[0][rois[t]]))
                    errors[n].append((kind, t, tgt.label(), 100.0 * (float(np.mean(sim[rois[t]])) - true_mean)
                                      / true_mean))
    out = {}
    for n in names:
        e = np.abs([x[3] for x in errors[n]])
        out[n] = {"mean_abs_error_pct": float(e.mean()), "worst_abs_error_pct": float(e.max()),
                  "n": int(e.size)}
        print(f"{n:10s} GM/WM error: mean {e.mean():5.1f} %, worst {e.max():5.1f} %  ({e.size} tissue-targets)")
    print(f"({len(cases)} phantoms, {time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"summary": out, "errors": errors}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
