#!/usr/bin/env python
"""Benchmark: share of a stress-test run spent outside model inference (goal: under 10 % with wmh-demo).

    python bench/stress.py                         # 3 phantom subjects, 7 x 7 TE x TI grid, wmh-demo, CPU
    python bench/stress.py --subjects 1 --grid TE=84:150:4,TI=2200:2900:4   # quicker
    python bench/stress.py --device cuda --json out.json

What is timed, in one run of :func:`neuroshift.stress.run_stress_test` followed by
:func:`neuroshift.stress.report.write_report` (results.csv, surface.json, PNGs, report.html), into a
fresh folder (no resumed points), phantoms made beforehand (not timed):

* ``total``: wall time of the run plus the report;
* ``inference``: time inside the model's ``predict`` (NeuroShift ``segment_volume``: preprocessing,
  the networks, fusion, thresholding), summed over every point, the baseline twin included;
* the rest, split into tissue-model fits (once per subject), simulation of each derivative, metrics,
  and everything else (case I/O, the per-point fsync'ed store, scheduling, the report).

``outside = 1 - inference / total`` is the figure the goal is about.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--grid", default="TE=84:150:7,TI=2200:2900:7")
    ap.add_argument("--model", default="wmh-demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", help="keep the phantoms and results here (default: a temporary folder)")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args(argv)

    from neuroshift.cli.demo import make_demo_cases
    from neuroshift.stress.models import resolve_model
    from neuroshift.stress.report import write_report
    from neuroshift.stress.runner import run_stress_test

    with tempfile.TemporaryDirectory(prefix="neuroshift-bench-") as tmp:
        work = Path(args.workdir or tmp)
        make_demo_cases(work, args.subjects)
        model = resolve_model(args.model, device=args.device)
        out = work / f"run-{time.time_ns()}"
        t0 = time.perf_counter()
        run = run_stress_test(work / "cases", model, args.grid, out, device=args.device)
        t1 = time.perf_counter()
        write_report(run, out)
        t2 = time.perf_counter()
    total = t2 - t0
    sums = {k: sum(r.get("timing", {}).get(k, 0.0) for r in run.records)
            for k in ("predict_s", "simulate_s", "metrics_s", "fit_s")}
    other = total - sum(sums.values())
    inference = sums["predict_s"]
    outside = 1.0 - inference / total
    n = len(run.records)
    figures = {
        "points": n, "subjects": args.subjects, "grid": args.grid, "model": args.model, "device": args.device,
        "total_s": total, "run_s": t1 - t0, "report_s": t2 - t1, "inference_s": inference,
        "fit_s": sums["fit_s"], "simulate_s": sums["simulate_s"], "metrics_s": sums["metrics_s"],
        "other_s": other, "outside_inference_share": outside, "failures": len(run.failures),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(f"stress test: {args.subjects} subject(s) x ({args.grid} + baseline) = {n} points, model {args.model}, "
          f"device {args.device}, {os.cpu_count()} CPU(s)")
    print(f"  total            {total:8.2f} s  ({total / max(n, 1):.3f} s per point)")
    for label, key in (("inference", "predict_s"), ("case read + fit", "fit_s"), ("simulation", "simulate_s"),
                       ("metrics", "metrics_s")):
        print(f"  {label:16s} {sums[key]:8.2f} s  {100 * sums[key] / total:5.1f} %")
    print(f"  other (I/O, store, report) {other:6.2f} s  {100 * other / total:5.1f} %")
    print(f"share of the run outside model inference: {100 * outside:.1f} % (goal < 10 %)")
    if run.failures:
        print(f"warning: {len(run.failures)} failure(s): {run.failures[0].get('error')}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
