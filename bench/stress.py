#!/usr/bin/env python
"""Benchmark: share of a stress-test run spent outside model inference (goal: under 10 % with wmh-demo).

    python bench/stress.py                         # 3 phantom subjects, 7 x 7 TE x TI grid, wmh-demo, CPU
    python bench/stress.py --subjects 1 --grid TE=84:150:4,TI=2200:2900:4   # quicker (17 points)
    python bench/stress.py --subjects 1 --workers 2                         # efficiency vs the ideal
    python bench/stress.py --device cuda --json out.json

What is timed, in one run of :func:`neuroshift.stress.run_stress_test` followed by
:func:`neuroshift.stress.report.write_report` (results.csv, surface.json, PNGs, report.html), into a
fresh folder (no resumed points), phantoms made beforehand (not timed):

* ``total``: wall time of the run plus the report;
* ``inference``: time inside the model's ``predict`` (NeuroShift ``segment_volume``: preprocessing,
  the networks, fusion, thresholding), summed over every point, the baseline twin included;
* the rest, split into tissue-model fits (once per subject), simulation of each derivative, metrics,
  and everything else (case I/O, the per-point fsync'ed store, scheduling, the report).

``outside = 1 - inference / total`` is the figure the goal is about. With workers, the run's worker time is
also split by the points' process ids and times: waiting before the first point (start-up), between
points, the idle tail, and inside points.

``--workers N`` (N ≥ 2) runs the stress test with N worker processes (the product's
``--workers``: each case read and fitted once by the parent, threads split) and, in the same
invocation, the ideal it is compared with: N processes with one thread each running only the
model's ``predict`` on the first subject's image, as many predictions in total as the stress test
made. ``efficiency = ideal wall time / stress-test wall time`` (goal ≥ 0.85: throughput within
15 % of N single-threaded inferences in parallel). The ideal runs once before and once after the stress test
(``--ideal-rounds 2``) and the efficiency uses their mean, so that a load that changes during the bench (a
shared machine) does not favour either side; each round is printed. Load averages are printed with each figure.

The stress run's workers are forked by a fork server that imports torch and the kernels once
(``NEUROSHIFT_STRESS_START=spawn`` measures the former start: every worker a fresh interpreter); the
before-the-first-point time is split into process start, initialiser and waiting for the first case.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _predict_loop(model_name: str, device: str, case_dir: str, n: int) -> float:
    """Worker of the ideal: load the model and the case image, predict ``n`` times; returns seconds predicting."""
    from neuroshift.stress.cases import load_cases
    from neuroshift.stress.models import resolve_model

    model = resolve_model(model_name, device=device)
    case = load_cases(case_dir, sequence="flair")[0]
    loaded = case.load("flair", inputs=tuple(model.extra_inputs))
    inputs = {model.image_channel: loaded.image, **{k: loaded.inputs[k] for k in model.extra_inputs}}
    model.predict(inputs, case_id=loaded.case_id)  # warm-up (weights, caches), not counted
    t0 = time.perf_counter()
    for _ in range(n):
        model.predict(inputs, case_id=loaded.case_id)
    return time.perf_counter() - t0


def ideal_parallel(workers: int, predictions: int, model_name: str, device: str, cases_dir: Path) -> dict:
    """``workers`` single-threaded processes sharing ``predictions`` predictions: wall time of the predicting."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from neuroshift.stress.worker import init_worker

    share = [predictions // workers + (i < predictions % workers) for i in range(workers)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_worker, initargs=(1,)) as ex:
        secs = list(ex.map(_predict_loop, [model_name] * workers, [device] * workers,
                           [str(cases_dir)] * workers, share))
    pool_wall = time.perf_counter() - t0
    return {"predictions": predictions, "per_worker": share, "predict_s_per_worker": secs,
            "wall_s": max(secs), "s_per_prediction_per_worker": sum(secs) / max(predictions, 1),
            "wall_with_startup_s": pool_wall}


def _grid_size(grid: str) -> int:
    """Points of a grid text such as ``TE=84:150:7,TI=2200:2900:7`` (the product of the axes' counts)."""
    from neuroshift.simulate.grid import parse_grid

    return int(math.prod(len(v) for v in parse_grid(grid).values()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--grid", default="TE=84:150:7,TI=2200:2900:7")
    ap.add_argument("--model", default="wmh-demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", help="keep the phantoms and results here (default: a temporary folder)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (>= 2 also measures the ideal)")
    ap.add_argument("--ideal-rounds", type=int, default=2,
                    help="rounds of the ideal, alternately after and before the stress test (mean used)")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    from bench._timing import load_average

    load0 = load_average()

    from neuroshift.cli.demo import make_demo_cases
    from neuroshift.stress.models import resolve_model
    from neuroshift.stress.report import write_report
    from neuroshift.stress.runner import run_stress_test
    from neuroshift.stress.timing import worker_timeline

    with tempfile.TemporaryDirectory(prefix="neuroshift-bench-") as tmp:
        work = Path(args.workdir or tmp)
        make_demo_cases(work, args.subjects)
        model = resolve_model(args.model, device=args.device)
        n_pred = args.subjects * (1 + _grid_size(args.grid)) + args.subjects  # the baseline predicts twice
        rounds = []
        if args.workers > 1:
            for _ in range(args.ideal_rounds // 2):  # the rounds before the stress test
                rounds.append(ideal_parallel(args.workers, n_pred, args.model, args.device, work / "cases"))
                rounds[-1]["when"], rounds[-1]["load_after"] = "before", load_average()
        out = work / f"run-{time.time_ns()}"
        load_run = load_average()
        t0, u0 = time.perf_counter(), time.time()
        run = run_stress_test(work / "cases", model, args.grid, out, device=args.device, workers=args.workers)
        t1, u1 = time.perf_counter(), time.time()
        timeline = worker_timeline(run.records, u0, u1)
        write_report(run, out)
        t2 = time.perf_counter()
        load1 = load_average()
        ideal = None
        if args.workers > 1:
            made = sum(2 if r.get("baseline") else 1 for r in run.records)
            if made != n_pred:
                print(f"warning: the ideal makes {n_pred} predictions, the stress test's finished points {made}",
                      file=sys.stderr)
            for _ in range(max(1, args.ideal_rounds - args.ideal_rounds // 2)):  # the rounds after it
                rounds.append(ideal_parallel(args.workers, n_pred, args.model, args.device, work / "cases"))
                rounds[-1]["when"], rounds[-1]["load_after"] = "after", load_average()
            ideal = {"predictions": n_pred, "rounds": rounds,
                     "wall_s": statistics.mean(r["wall_s"] for r in rounds),
                     "wall_with_startup_s": statistics.mean(r["wall_with_startup_s"] for r in rounds)}
    total = t2 - t0
    sums = {k: sum(r.get("timing", {}).get(k, 0.0) for r in run.records)
            for k in ("predict_s", "simulate_s", "metrics_s", "fit_s")}
    busy = total * args.workers  # worker-seconds: with N workers the per-point timings add up to N x wall time
    other = busy - sum(sums.values())
    inference = sums["predict_s"]
    outside = 1.0 - inference / busy
    n = len(run.records)
    figures = {
        "points": n, "subjects": args.subjects, "grid": args.grid, "model": args.model, "device": args.device,
        "total_s": total, "run_s": t1 - t0, "report_s": t2 - t1, "inference_s": inference,
        "fit_s": sums["fit_s"], "simulate_s": sums["simulate_s"], "metrics_s": sums["metrics_s"],
        "other_s": other, "outside_inference_share": outside, "failures": len(run.failures),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "workers": args.workers, "load_before": load0,
        "load_before_run": load_run, "load_after_run": load1,
        # inference share and overhead of the run, for the report (stress/report.py may show them)
        "inference_share_of_worker_time": inference / max(busy, 1e-12),
        "overhead_worker_s": busy - inference,
        "worker_timeline": timeline,
    }
    if ideal is not None:
        figures["ideal_parallel"] = ideal
        figures["efficiency_vs_ideal"] = ideal["wall_s"] / figures["run_s"]
        # the same with the ideal's process start, imports, model load and warm-up prediction counted, as the
        # stress run's are (it starts its workers and loads the model in each)
        figures["efficiency_vs_ideal_with_startup"] = ideal["wall_with_startup_s"] / figures["run_s"]
    print(f"stress test: {args.subjects} subject(s) x ({args.grid} + baseline) = {n} points, model {args.model}, "
          f"device {args.device}, {os.cpu_count()} CPU(s), workers started by "
          f"{os.environ.get('NEUROSHIFT_STRESS_START') or 'forkserver (default)'}")
    print(f"  total            {total:8.2f} s  ({total / max(n, 1):.3f} s per point)")
    for label, key in (("inference", "predict_s"), ("case read + fit", "fit_s"), ("simulation", "simulate_s"),
                       ("metrics", "metrics_s")):
        print(f"  {label:16s} {sums[key]:8.2f} s  {100 * sums[key] / busy:5.1f} %")
    print(f"  other (I/O, store, report) {other:6.2f} s  {100 * other / busy:5.1f} %")
    if args.workers > 1:
        run_busy = figures["run_s"] * args.workers
        print(f"  of the run's {run_busy:.2f} worker-seconds ({timeline['processes']} processes): before the first "
              f"point (start-up, imports, model load, first fit) {timeline['startup_s']:.2f} s "
              f"{100 * timeline['startup_s'] / run_busy:.1f} %, between points {timeline['gaps_s']:.2f} s "
              f"{100 * timeline['gaps_s'] / run_busy:.1f} %, idle tail {timeline['tail_s']:.2f} s "
              f"{100 * timeline['tail_s'] / run_busy:.1f} %, in points {timeline['points_s']:.2f} s")
        if timeline.get("startup_split_processes"):
            print(f"  start-up of {timeline['startup_split_processes']} worker(s), summed: process start (fork "
                  f"server or interpreter, imports) {timeline['startup_process_s']:.2f} s, initialiser (threads, "
                  f"model load, warm-ups) {timeline['startup_init_s']:.2f} s, waiting for the first case (parent's "
                  f"read + fit) and reading it {timeline['startup_wait_s']:.2f} s")
    print(f"share of the run outside model inference: {100 * outside:.1f} % (goal < 10 %)"
          + (f" [shares of {args.workers} x the wall time]" if args.workers > 1 else ""))
    print(f"load at the start {load0}; stress test {load_run} -> {load1}")
    if ideal is not None:
        for r in ideal["rounds"]:
            print(f"  ideal round {r['when']} the stress test: {r['wall_s']:.2f} s predicting "
                  f"({r['wall_with_startup_s']:.2f} s with start-up); load after {r['load_after']}")
        print(f"ideal: {args.workers} single-threaded processes, {ideal['predictions']} predictions: "
              f"{ideal['wall_s']:.2f} s (mean of {len(ideal['rounds'])}); stress test with {args.workers} workers "
              f"{figures['run_s']:.2f} s -> efficiency {figures['efficiency_vs_ideal']:.2f} (goal >= 0.85)")
        print(f"ideal with its process start, imports, model load and warm-up counted: "
              f"{ideal['wall_with_startup_s']:.2f} s -> efficiency {figures['efficiency_vs_ideal_with_startup']:.2f} "
              f"(goal >= 0.85)")
    if run.failures:
        print(f"warning: {len(run.failures)} failure(s): {run.failures[0].get('error')}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
