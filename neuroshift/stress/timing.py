"""Where a stress test's time went: model inference vs overhead, and how busy the workers were.

Each call of :func:`~neuroshift.stress.runner.run_stress_test` appends one entry to ``OUTDIR/timing.json``
(wall time in s, worker processes, threads per worker: 0 when in-process with the caller's threads,
points computed; also when interrupted). Each
point record carries its own ``timing`` (s): ``predict_s`` (the model, i.e. inference), ``simulate_s``,
``metrics_s``, and once per case ``fit_s`` (reading + fitting the tissue model) or ``shared_read_s``
(a worker reading the parent's fitted case).

:func:`run_timing` puts them together over the calls that computed the records:

* worker time = Σ wall time × workers (with N workers N × the wall time is available);
* inference share = Σ ``predict_s`` / worker time;
* overhead = worker time − inference, split into simulation, metrics, case read + fit, and the rest
  (I/O of the per-point store, scheduling, hand-over to workers, idle workers);
* worker efficiency = Σ per-point time (inference + simulation + metrics + fit) / worker time: the
  share of the available worker time spent on the points' own work (1.0 = never idle or waiting).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..io.atomic import write_text_atomic

TIMING_FILE = "timing.json"
#: Per-point timing keys (s) and their labels in the report.
PARTS = (("predict_s", "inference (model)"), ("simulate_s", "simulation"), ("metrics_s", "metrics"),
         ("fit_s", "case read + tissue-model fit"), ("shared_read_s", "worker reading the shared case"))


def read_calls(outdir: str | Path) -> list[dict]:
    """The calls recorded in ``OUTDIR/timing.json`` (empty when there is none or it is unreadable)."""
    path = Path(outdir) / TIMING_FILE
    try:
        calls = json.loads(path.read_text(encoding="utf-8")).get("calls", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [c for c in calls if isinstance(c, dict)]


def record_call(outdir: str | Path, *, wall_s: float, workers: int, threads_per_worker: int, computed: int,
                interrupted: bool = False, cores: int | None = None, executor: str = "in-process",
                timeline: dict | None = None) -> None:
    """Append one call of the runner to ``OUTDIR/timing.json`` (atomic write). ``executor``: ``in-process``,
    ``processes`` or ``dask`` (a Dask cluster's worker count is not known here: its shares count one worker).
    ``timeline``: the call's :func:`worker_timeline` (worker processes: start-up, gaps, idle tail; seconds)."""
    calls = read_calls(outdir)
    calls.append({"wall_s": round(float(wall_s), 4), "workers": int(workers), "executor": str(executor),
                  "threads_per_worker": int(threads_per_worker), "points_computed": int(computed),
                  "interrupted": bool(interrupted), **({"cores": int(cores)} if cores else {}),
                  **({"timeline": {k: round(v, 4) if isinstance(v, float) else v for k, v in timeline.items()}}
                     if timeline else {})})
    write_text_atomic(Path(outdir) / TIMING_FILE, json.dumps({"calls": calls}, indent=2) + "\n")


def run_timing(run) -> dict[str, Any]:
    """Inference share, overhead by kind and worker efficiency of a :class:`~neuroshift.stress.runner.StressRun`."""
    sums = {k: 0.0 for k, _ in PARTS}
    for rec in run.records:
        t = rec.get("timing") or {}
        for k in sums:
            sums[k] += float(t.get(k, 0.0) or 0.0)
    calls = read_calls(run.outdir)
    wall = sum(float(c.get("wall_s", 0.0)) for c in calls)
    worker_s = sum(float(c.get("wall_s", 0.0)) * max(1, int(c.get("workers", 1))) for c in calls)
    computed = sum(int(c.get("points_computed", 0)) for c in calls)
    point_work = sum(sums.values())
    out: dict[str, Any] = {"points": len(run.records), "points_in_recorded_calls": computed, "calls": len(calls),
                           "wall_s": wall, "worker_s": worker_s, "workers": [int(c.get("workers", 1)) for c in calls],
                           "dask": any(c.get("executor") == "dask" for c in calls),
                           **{k: v for k, v in sums.items()}}
    lines = [c["timeline"] for c in calls if isinstance(c.get("timeline"), dict)]
    if lines:  # worker processes' time before their first point, between points and after their last one
        out["timeline"] = {k: sum(float(t.get(k, 0.0)) for t in lines) for k in _TIMELINE_KEYS}
    if worker_s > 0:
        out["inference_share"] = sums["predict_s"] / worker_s
        out["overhead_s"] = worker_s - sums["predict_s"]
        out["other_s"] = max(0.0, worker_s - point_work)
        out["worker_efficiency"] = min(1.0, point_work / worker_s)  # Dask: may be capped at 1
        out["complete"] = computed >= len(run.records)
    return out


def worker_timeline(records, began_unix_s: float, ended_unix_s: float) -> dict[str, Any]:
    """How the workers of one call spent the call's wall time (from the records' ``pid`` / ``began_unix_s`` /
    ``ended_unix_s``): per process, the wait before its first point (start-up: process start, imports, model
    load, the parent's first fit), the gaps between its points (hand-over, queue) and the idle tail after its
    last point, in seconds, summed over the processes; ``points_s`` is the time inside points.

    Where workers reported their initialisation (``worker_init_unix_s`` / ``worker_ready_unix_s``, see
    :func:`neuroshift.stress.worker.init_worker`), their start-up is split further, summed over those processes:
    ``startup_process_s`` (call start to the worker's initialiser: starting the process, the interpreter and
    imports, or the fork server's imports), ``startup_init_s`` (thread set-up, model load, warm-ups) and
    ``startup_wait_s`` (ready to its first point: waiting for the parent's first fit, reading the shared case);
    ``startup_split_processes`` counts them."""
    runs: dict[int, list[tuple[float, float]]] = {}
    inits: dict[int, tuple[float, float]] = {}
    for rec in records:
        t = rec.get("timing") or {}
        if "pid" in t and "began_unix_s" in t and "ended_unix_s" in t:
            runs.setdefault(int(t["pid"]), []).append((float(t["began_unix_s"]), float(t["ended_unix_s"])))
            if "worker_init_unix_s" in t and "worker_ready_unix_s" in t:
                inits[int(t["pid"])] = (float(t["worker_init_unix_s"]), float(t["worker_ready_unix_s"]))
    out = {"processes": len(runs), "startup_s": 0.0, "gaps_s": 0.0, "tail_s": 0.0, "points_s": 0.0}
    if inits:
        out.update(startup_split_processes=0, startup_process_s=0.0, startup_init_s=0.0, startup_wait_s=0.0)
    for pid, spans in runs.items():
        spans.sort()
        startup = max(0.0, spans[0][0] - began_unix_s)
        out["startup_s"] += startup
        if pid in inits:  # clamped so that the three parts add up to this worker's start-up
            process = min(startup, max(0.0, inits[pid][0] - began_unix_s))
            init = min(startup - process, max(0.0, inits[pid][1] - inits[pid][0]))
            out["startup_split_processes"] += 1
            out["startup_process_s"] += process
            out["startup_init_s"] += init
            out["startup_wait_s"] += startup - process - init
        out["tail_s"] += max(0.0, ended_unix_s - spans[-1][1])
        out["points_s"] += sum(b - a for a, b in spans)
        out["gaps_s"] += sum(max(0.0, nxt[0] - prev[1]) for prev, nxt in zip(spans[:-1], spans[1:]))
    return out


_TIMELINE_KEYS = ("processes", "startup_s", "gaps_s", "tail_s", "points_s", "startup_split_processes",
                  "startup_process_s", "startup_init_s", "startup_wait_s")


def _pct(x: float, total: float) -> str:
    return f"{100.0 * x / total:.1f} %" if total > 0 else "–"


def timing_lines(t: dict[str, Any]) -> list[str]:
    """The timing summary as text lines (for the terminal and the HTML report)."""
    if not t.get("worker_s"):
        return ["no run timing recorded (timing.json missing): inference share unknown"]
    ws = t["worker_s"]
    lines = [f"wall time {t['wall_s']:.1f} s over {t['calls']} call(s), workers {', '.join(map(str, t['workers']))}: "
             f"{ws:.1f} worker-seconds for {t['points']} point(s)",
             f"inference (model) {t['predict_s']:.1f} s = {_pct(t['predict_s'], ws)} of worker time; "
             f"overhead {t['overhead_s']:.1f} s = {_pct(t['overhead_s'], ws)}"]
    for key, label in PARTS[1:]:
        if t.get(key):
            lines.append(f"  {label}: {t[key]:.1f} s = {_pct(t[key], ws)}")
    lines.append(f"  I/O, store, scheduling, idle workers: {t['other_s']:.1f} s = {_pct(t['other_s'], ws)}")
    tl = t.get("timeline")
    if tl:
        line = (f"    of which worker processes before their first point {tl['startup_s']:.1f} s = "
                f"{_pct(tl['startup_s'], ws)}")
        if tl.get("startup_split_processes"):
            line += (f" (process start {tl['startup_process_s']:.1f} s, initialiser {tl['startup_init_s']:.1f} s, "
                     f"waiting for the first case {tl['startup_wait_s']:.1f} s)")
        lines.append(line + f", idle at the end {tl['tail_s']:.1f} s = {_pct(tl['tail_s'], ws)}")
    lines.append(f"worker efficiency (points' own work / worker time): {100 * t['worker_efficiency']:.1f} %")
    if t.get("dask"):
        lines.append("note: points ran on a Dask cluster; its workers are not counted here, so the shares are "
                     "relative to the wall time (they can exceed 100 %)")
    if not t.get("complete", True):
        lines.append(f"note: only {t['points_in_recorded_calls']} of {t['points']} points were computed in calls "
                     "with recorded timing (an earlier call was cut short before it could record its wall time)")
    return lines


def timing_html(run) -> str:
    """The report's "Run time" section."""
    lines = timing_lines(run_timing(run))
    return ("<h2>Run time</h2><p>Share of the run spent in model inference, and the overhead (simulation, "
            "metrics, case reading and fitting, I/O); worker time = wall time × worker processes.</p><ul>"
            + "".join(f"<li>{html.escape(line.strip())}</li>" for line in lines) + "</ul>")


__all__ = ["PARTS", "TIMING_FILE", "read_calls", "record_call", "run_timing", "timing_html", "timing_lines",
           "worker_timeline"]
