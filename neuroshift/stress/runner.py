"""The stress-test engine: every case × grid point simulated, segmented and scored, resumably.

For each case the tissue model is fitted once (per worker process) and reused
for all its grid points. Each finished point is appended to
``OUTDIR/points.jsonl`` at once (see :mod:`neuroshift.stress.store`), so an
interrupted run (Ctrl-C, a crash, a Cancel in Slicer) keeps every finished
point and a rerun computes only the missing ones.

Per case the **baseline** point (the case's own parameters) is included: the
image simulated there is compared with the unsimulated image (max |difference|
reported; the tissue-wise model reproduces it bit for bit) and the model is run
on both, so the report shows the real image's metrics beside its simulated twin.

A bad case (missing mask, grids that differ, a parameter the sequence needs but
nobody gave, a file that cannot be read) is recorded with its message and the
run goes on with the others. A model that fails on one point is recorded for
that point only.

Execution: in-process (``workers=1``), local worker processes
(``workers=N``, :mod:`concurrent.futures`), or a Dask cluster (``scheduler=``
an address such as ``tcp://host:8786`` or a ``dask.distributed.Client``); the
workers need NeuroShift installed and the case files at the same paths. All
three give the same records. The simulator, the model and the metric function
are injected, so tests run the whole engine with synthetic ones.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError, NeuroShiftError
from ..io.volume import Volume
from ..progress import Cancelled, ProgressCallback, report
from .cases import Case, LoadedCase, load_cases
from .models import describe, resolve_model
from .simulator import PhysicsSimulator, baseline_point, point_key, point_seed, stress_grid, target_params
from .store import ResultStore

#: Metrics of each point, in report order. Volumes in ml; counts of connected lesions.
METRICS = ("lesion_f1", "dice", "lesion_recall", "lesion_precision", "pred_volume_ml", "gt_volume_ml",
           "n_gt_lesions", "n_pred_lesions")
BASELINE = "baseline"

MetricFunction = Callable[[Volume, Volume], dict]


def mask_metrics(pred: Volume, gt: Volume) -> dict[str, float]:
    """Lesion F1 / recall / precision (lesion-wise, 26-connected), DSC and volumes, challenge conventions.

    Uses :mod:`neuroshift.segment.metrics` (ground-truth label 2 is ignored); the
    surface-distance metrics are left out (they cost more than the rest together).
    """
    from ..segment.metrics import challenge_masks, dice, lesion_detection

    pred.require_same_grid(gt, "predicted mask and ground truth")
    p, g = challenge_masks(pred, gt)
    # Everything (components, overlaps, volumes) lies inside the bounding box of prediction ∪ ground
    # truth: measuring that box gives the same numbers at a fraction of the cost (it runs at every point).
    box = _bounding_box(p | g)
    p, g = p[box], g[box]
    det = lesion_detection(p, g)
    voxel_ml = float(np.prod(gt.spacing)) / 1000.0
    return {
        "lesion_f1": float(det["f1"]),
        "dice": float(dice(p, g)),
        "lesion_recall": float(det["recall"]),
        "lesion_precision": float(det["precision"]),
        "pred_volume_ml": float(np.count_nonzero(p)) * voxel_ml,
        "gt_volume_ml": float(np.count_nonzero(g)) * voxel_ml,
        "n_gt_lesions": float(det["n_gt"]),
        "n_pred_lesions": float(det["n_pred"]),
    }


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    if not mask.any():
        return tuple(slice(0, 0) for _ in mask.shape)
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


# --------------------------------------------------------------------------- results
@dataclass
class StressRun:
    """What a stress test produced: the records of its cases (finished now or before) and failures."""

    outdir: Path
    sequence: str
    grid: dict[str, np.ndarray]
    model_name: str
    case_ids: list[str]
    records: list[dict]                  #: status "ok" records, case order then grid order (baseline first)
    failures: list[dict]                 #: failed cases ("point" = "*") and failed points
    computed: int = 0                    #: points computed by this call (the rest came from the store)
    notes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def axes(self) -> list[str]:
        return list(self.grid)

    def grid_records(self) -> list[dict]:
        return [r for r in self.records if not r.get("baseline")]

    def baseline_records(self) -> list[dict]:
        return [r for r in self.records if r.get("baseline")]

    def failed_cases(self) -> list[dict]:
        return [f for f in self.failures if f.get("point") == "*"]


# --------------------------------------------------------------------------- worker side
_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()
_OBJECTS: dict[tuple, Any] = {}
_LOCK = threading.RLock()
CACHE_SIZE = 2


def _shared(token: str, role: str, obj: Any) -> Any:
    """One instance per process and run of the model / simulator / metric (loaded weights stay loaded)."""
    with _LOCK:
        return _OBJECTS.setdefault((token, role), obj)


def _prepared(token: str, case, sequence: str, simulator, needs: tuple[str, ...], shared: str | None = None):
    """((loaded case, fitted model, fit seconds) or the exception that case raised, computed now?).

    Cached per process and run, so a case is read and fitted once however many of its points this
    process evaluates. ``shared``: a file in which the parent stored the loaded case and its fitted
    model (:func:`_share_prepared`); a worker process reads it instead of reading and fitting again.
    """
    key = (token, case.case_id)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key], False
        t0 = time.perf_counter()
        try:
            if shared is not None:
                import pickle

                with open(shared, "rb") as fh:  # written by this run's parent process (private folder)
                    loaded, fitted, fit_s = pickle.load(fh)
                entry = (loaded, fitted, fit_s)
            else:
                loaded = case.load(sequence, inputs=needs)
                fitted = simulator.fit(loaded, sequence)
                entry = (loaded, fitted, time.perf_counter() - t0)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - reported per case
            entry = exc
        _CACHE[key] = entry
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
        return entry, True


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, NeuroShiftError) else f"{type(exc).__name__}: {text}"


def evaluate_points(token: str, case, sequence: str, model, simulator, metrics: MetricFunction | None,
                    axes: Sequence[str], items: Sequence[tuple[str, dict | None]], *, shared: str | None = None,
                    report_fit: bool | None = None) -> list[dict]:
    """Evaluate some points of one case (``point=None`` is the baseline); one record per point.

    A case that cannot be loaded or fitted gives a single record with ``point="*"``.
    Runs in the caller's process, a worker process or a Dask worker. ``shared``/``report_fit``: the
    case was read and fitted once by the parent (see :func:`_run_processes`); the fit time is reported
    with the job that has ``report_fit=True``.
    """
    model = _shared(token, "model", model)
    simulator = _shared(token, "simulator", simulator)
    metrics = metrics or mask_metrics
    t_prep = time.perf_counter()
    entry, fresh = _prepared(token, case, sequence, simulator, tuple(model.extra_inputs), shared)
    share_s = time.perf_counter() - t_prep if (fresh and shared is not None) else 0.0
    if isinstance(entry, BaseException):
        return [{"key": f"{case.case_id}|*", "case": case.case_id, "point": "*", "status": "case_failed",
                 "error": _error_text(entry), "error_type": type(entry).__name__}]
    loaded, fitted, fit_s = entry
    # reported once: with the first point evaluated after the fit (or the job the parent marked)
    fit_s = fit_s if (fresh if report_fit is None else report_fit) else 0.0
    out = []
    for key, point in items:
        rec = {"key": f"{loaded.case_id}|{key}", "case": loaded.case_id, "point": key, "baseline": point is None}
        try:
            rec.update(_evaluate_one(loaded, fitted, sequence, model, simulator, metrics, axes, key, point))
            rec["status"] = "ok"
            rec["notes"] = list(loaded.notes)
        except (KeyboardInterrupt, SystemExit, Cancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - reported per point
            rec.update(status="failed", error=_error_text(exc), error_type=type(exc).__name__)
        rec["timing"] = {**rec.get("timing", {}), "fit_s": fit_s}
        if share_s:
            rec["timing"]["shared_read_s"] = share_s  # worker reading the parent's fitted case
        fit_s = share_s = 0.0
        out.append(rec)
    return out


def _inputs(model, loaded: LoadedCase, image: Volume) -> dict[str, Volume]:
    inputs = {model.image_channel: image}
    for name in model.extra_inputs:
        inputs[name] = loaded.inputs[name]
    return inputs


def _evaluate_one(loaded: LoadedCase, fitted, sequence: str, model, simulator, metrics, axes, key, point) -> dict:
    baseline = point is None
    if baseline:
        point = baseline_point(axes, loaded.params, loaded.image)
        target, shifts = loaded.params, {}
    else:
        target, shifts = target_params(loaded.params, point)
        target.require(sequence, context=f"grid point {key}")
    t0 = time.perf_counter()
    sim = simulator.render(fitted, loaded, target, shifts, seed=point_seed(loaded.case_id, key))
    sim.meta = {**sim.meta, "acquisition": target.known(), "grid_point": dict(point)}
    t1 = time.perf_counter()
    pred = model.predict(_inputs(model, loaded, sim), case_id=loaded.case_id)
    t2 = time.perf_counter()
    loaded.image.require_same_grid(pred, f"{getattr(model, 'name', 'model')}: image and predicted mask")
    values = metrics(pred, loaded.mask)
    t3 = time.perf_counter()
    rec = {"grid": dict(point), "params": target.known(), "metrics": values,
           "timing": {"simulate_s": t1 - t0, "predict_s": t2 - t1, "metrics_s": t3 - t2}}
    unc = getattr(simulator, "uncertainty_of", None)  # per-tissue intervals of the derivative (posterior)
    unc = unc(fitted, loaded, target) if unc is not None else None
    if unc is not None:
        rec["uncertainty"] = unc
    if baseline:
        real = loaded.image.with_data(loaded.image.data)
        real.meta = {**real.meta, "acquisition": loaded.params.known(), "grid_point": dict(point)}
        t4 = time.perf_counter()
        real_pred = model.predict(_inputs(model, loaded, real), case_id=loaded.case_id)
        t5 = time.perf_counter()
        real_values = metrics(real_pred, loaded.mask)
        t6 = time.perf_counter()
        diff = np.abs(np.asarray(sim.data, np.float64) - np.asarray(loaded.image.data, np.float64))
        scale = float(np.max(np.abs(loaded.image.data))) or 1.0
        rec["baseline_check"] = {
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "rel_max_abs_diff": float(diff.max() / scale) if diff.size else 0.0,
            "image_max": scale,
            "real_metrics": real_values,
            "metric_diff": {m: float(values[m]) - float(real_values[m]) for m in values if m in real_values},
        }
        rec["timing"]["predict_s"] += t5 - t4
        rec["timing"]["metrics_s"] += t6 - t5
    return rec


def _init_worker(threads: int) -> None:
    """Worker processes: leave Ctrl-C to the parent; share the cores instead of oversubscribing them."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # read by torch / BLAS when they are first imported here
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


# --------------------------------------------------------------------------- driver
def run_stress_test(cases: str | os.PathLike | Sequence[Case | LoadedCase], model: Any, grid: str | Mapping,
                    outdir: str | os.PathLike, *, sequence: str = "flair", simulator=None,
                    metrics: MetricFunction | None = None, workers: int = 1, scheduler: Any = None,
                    progress: ProgressCallback | None = None, restart: bool = False, baseline: bool = True,
                    device: str = "auto", confirm: Callable[[int, Any, Any], None] | None = None) -> StressRun:
    """Run (or resume) a stress test; every finished point is in ``OUTDIR/points.jsonl``.

    ``cases``: a folder / CSV (see :mod:`neuroshift.stress.cases`) or a list of cases.
    ``model``: ``--model`` text (package name or folder, ``cmd:TEMPLATE``) or a model object.
    ``grid``: text such as ``TE=84:150:7,TI=2200:2900:7`` or ``{axis: values}`` (ms, degrees, tesla).
    ``simulator``: default :class:`PhysicsSimulator`. ``metrics``: ``(pred, gt) -> dict`` (default
    :func:`mask_metrics`). ``progress`` may raise :class:`~neuroshift.progress.Cancelled` to stop.
    ``confirm(n_pending, model, first_pending_case)`` is called before anything is written (e.g. to
    estimate the cost and refuse by raising); ``n_pending`` counts the points not finished yet.
    """
    seq = sequence.lower()
    axes_grid = stress_grid(grid, seq)
    axes = list(axes_grid)
    case_list = load_cases(cases, sequence=seq) if isinstance(cases, (str, os.PathLike)) else list(cases)
    if not case_list:
        raise InputError("no cases to test")
    ids = [c.case_id for c in case_list]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"case ids must be unique; repeated: {', '.join(dupes)}")
    model_obj = resolve_model(model, device=device, sequence=seq)
    simulator = simulator if simulator is not None else PhysicsSimulator()
    from ..simulate.grid import grid_points

    points = [(point_key(p), p) for p in grid_points(axes_grid)]
    items: list[tuple[str, dict | None]] = ([(BASELINE, None)] if baseline else []) + points

    store = ResultStore(outdir)
    if confirm is not None:  # before anything is written, so that a refusal leaves no output
        ok = set() if restart else {k for k, r in store.load().items() if r.get("status") == "ok"}
        pending = [c for c in case_list for key, _ in items if f"{c.case_id}|{key}" not in ok]
        confirm(len(pending), model_obj, pending[0] if pending else None)
    store.open({"sequence": seq, "grid": {k: v.tolist() for k, v in axes_grid.items()},
                "model": describe(model_obj), "simulator": type(simulator).__name__,
                "metrics": getattr(metrics, "__name__", "mask_metrics"), "baseline": baseline},
               restart=restart)
    done = store.load()
    total = len(case_list) * len(items)
    jobs = []  # (case, [(key, point), ...]) one point per job; the fitted model is cached per process
    finished = 0
    for case in case_list:
        for key, point in items:
            if done.get(f"{case.case_id}|{key}", {}).get("status") == "ok":
                finished += 1
            else:
                jobs.append((case, [(key, point)]))
    token = f"{os.getpid()}-{time.time_ns()}"
    state = {"finished": finished, "computed": 0}
    failed_cases: set[str] = set()

    def accept(records: list[dict]) -> None:
        fresh = []
        for rec in records:
            if rec["case"] in failed_cases:
                continue
            if rec["status"] == "case_failed":
                failed_cases.add(rec["case"])
            fresh.append(rec)
        store.append(fresh)
        for rec in fresh:
            state["finished"] += len(items) if rec["status"] == "case_failed" else 1
            state["computed"] += rec["status"] == "ok"
        last = fresh[-1] if fresh else records[-1]
        report(progress, state["finished"] / total, f"{last['case']} {last['point']}")

    report(progress, finished / total, f"{finished} of {total} points already finished" if finished else "starting")
    common = (seq, model_obj, simulator, metrics, axes)  # evaluate_points arguments after token and case
    if scheduler is not None:
        _run_dask(scheduler, token, jobs, common, accept, failed_cases)
    elif workers > 1 and len(jobs) > 1:
        _run_processes(workers, token, jobs, common, accept, failed_cases)
    else:
        for case, its in jobs:
            if case.case_id not in failed_cases:
                accept(evaluate_points(token, case, *common, its))
    with _LOCK:  # this run's cached cases and objects are no longer needed in this process
        for key in [k for k in _CACHE if k[0] == token]:
            del _CACHE[key]
        for key in [k for k in _OBJECTS if k[0] == token]:
            del _OBJECTS[key]
    report(progress, 1.0, "done")
    return collect(store, case_list, items, axes_grid, seq, describe(model_obj), computed=state["computed"])


def worker_threads(workers: int) -> int:
    """Threads per worker process: the cores available to this process split between the workers."""
    from ..threads import available_cores

    return max(1, available_cores() // max(1, workers))


def _share_prepared(folder: Path, index: int, entry) -> str:
    """Store a loaded case and its fitted model once for the workers (pickle, in this run's private folder)."""
    import pickle

    path = folder / f"case{index}.pkl"
    with open(path, "wb") as fh:
        pickle.dump(entry, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return str(path)


def _run_processes(workers: int, token: str, jobs, common, accept, failed_cases) -> None:
    """Worker processes, one grid point per job; each case is read and fitted once, by this process.

    The parent fits case k (and stores it for the workers) while the workers evaluate the points of
    the cases before it; a worker reads a stored case once and keeps it (no worker refits). The
    threads are split: each worker gets ``available cores // workers`` (:func:`worker_threads`).
    """
    import multiprocessing
    import shutil
    import tempfile
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = worker_threads(workers)
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(threads,))
    seq, model_obj, simulator, _metrics, _axes = common
    model_obj = _shared(token, "model", model_obj)
    simulator = _shared(token, "simulator", simulator)
    folder = Path(tempfile.mkdtemp(prefix="neuroshift-stress-"))  # private (mode 0700), removed at the end
    by_case: "OrderedDict[str, list]" = OrderedDict()
    for case, its in jobs:
        by_case.setdefault(case.case_id, [case, []])[1].append(its)
    pending = {}
    left: dict[str, list] = {}  # case id -> [jobs not finished, stored file]

    def collect_finished(timeout=None):
        finished, _ = wait(list(pending), timeout=timeout, return_when=FIRST_COMPLETED)
        for fut in finished:
            case_id = pending.pop(fut)
            left[case_id][0] -= 1
            if left[case_id][0] == 0:  # every job of the case is done: its stored copy is not needed
                Path(left[case_id][1]).unlink(missing_ok=True)
            if fut.cancelled():
                continue
            accept(fut.result())
            if case_id in failed_cases:
                for other, cid in list(pending.items()):
                    if cid == case_id and other.cancel():
                        pending.pop(other)

    try:
        for index, (case, its_list) in enumerate(by_case.values()):
            entry, _fresh = _prepared(token, case, seq, simulator, tuple(model_obj.extra_inputs))
            if isinstance(entry, BaseException):
                accept([{"key": f"{case.case_id}|*", "case": case.case_id, "point": "*", "status": "case_failed",
                         "error": _error_text(entry), "error_type": type(entry).__name__}])
                continue
            path = _share_prepared(folder, index, entry)
            left[case.case_id] = [len(its_list), path]
            for j, its in enumerate(its_list):
                fut = executor.submit(evaluate_points, token, case, *common, its, shared=path, report_fit=j == 0)
                pending[fut] = case.case_id
            if pending:
                collect_finished(timeout=0)  # records of earlier cases as they come
        while pending:
            collect_finished()
        executor.shutdown(wait=True)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        for proc in list(getattr(executor, "_processes", {}).values() or []):
            proc.terminate()
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_dask(scheduler, token: str, jobs, common, accept, failed_cases) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise InputError("--scheduler needs dask.distributed: pip install 'neuroshift[dask]'") from None
    own = not isinstance(scheduler, Client)
    client = Client(str(scheduler)) if own else scheduler
    futures = {}
    try:
        seq, model_obj, simulator, metrics, axes = common
        shared = [client.scatter(obj, broadcast=True, hash=False) for obj in (model_obj, simulator)]
        case_futures = {}
        for case, its in jobs:
            if case.case_id not in case_futures:
                case_futures[case.case_id] = client.scatter(case, hash=False)
            fut = client.submit(evaluate_points, token, case_futures[case.case_id], seq, *shared, metrics, axes,
                                its, pure=False)
            futures[fut] = case.case_id
        for fut in as_completed(list(futures)):
            case_id = futures[fut]
            if fut.status == "cancelled":
                continue
            accept(fut.result())
            if case_id in failed_cases:
                client.cancel([f for f, cid in futures.items() if cid == case_id and not f.done()])
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        if own:
            client.close()


def collect(store: ResultStore, case_list, items, grid, sequence: str, model_name: str, *,
            computed: int = 0) -> StressRun:
    """The run's records from the store, in case and grid order."""
    done = store.load()
    records, failures, notes = [], [], {}
    for case in case_list:
        cid = case.case_id
        case_failure = done.get(f"{cid}|*")
        recs = [done.get(f"{cid}|{key}") for key, _ in items]
        ok = [r for r in recs if r and r.get("status") == "ok"]
        records.extend(ok)
        failures.extend(r for r in recs if r and r.get("status") == "failed")
        if case_failure is not None and len(ok) < len(items):
            failures.append(case_failure)
        for r in ok:
            for n in r.get("notes", []):
                notes.setdefault(cid, [])
                if n not in notes[cid]:
                    notes[cid].append(n)
    return StressRun(Path(store.outdir), sequence, grid, model_name, [c.case_id for c in case_list], records,
                     failures, computed, notes)


def load_run(outdir: str | os.PathLike) -> StressRun:
    """The results already in a stress-test folder (e.g. after a background run), without running anything."""
    import json
    from types import SimpleNamespace

    from ..errors import UnreadableFileError
    from ..simulate.grid import grid_points

    store = ResultStore(outdir)
    if not store.run_path.is_file():
        raise UnreadableFileError(f"{outdir}: no stress-test results here (run.json is missing)")
    fp = json.loads(store.run_path.read_text(encoding="utf-8"))
    grid = {k: np.asarray(v, dtype=np.float64) for k, v in fp["grid"].items()}
    items = ([(BASELINE, None)] if fp.get("baseline", True) else []) + [(point_key(p), p) for p in grid_points(grid)]
    case_ids: list[str] = []
    for rec in store.load().values():
        if rec.get("case") not in case_ids:
            case_ids.append(rec["case"])
    cases = [SimpleNamespace(case_id=c) for c in case_ids]
    return collect(store, cases, items, grid, fp["sequence"], fp["model"])
