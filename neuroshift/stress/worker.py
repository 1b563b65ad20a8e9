"""Stress-test worker side: evaluating grid points of one case (simulate, predict, score).

Runs in the caller's process, a local worker process or a Dask worker (see :mod:`neuroshift.stress.runner`).
Per process and run, the model / simulator / metric objects are kept once (:func:`shared_object`) and each
case is read and fitted once (:func:`prepared_case`, a small LRU cache); with local worker processes the
parent hands the fitted case over in a pickle-free file (:mod:`neuroshift.stress.share`) instead.

Per point the record's ``timing`` holds ``simulate_s``, ``predict_s`` (model inference), ``metrics_s``
and, once per case, ``fit_s`` (reading + fitting) or ``shared_read_s`` (reading the parent's file), in
seconds; :mod:`neuroshift.stress.timing` sums them for the report. ``pid``, ``began_unix_s`` and
``ended_unix_s`` say which process ran the point and when (:func:`neuroshift.stress.timing.worker_timeline`).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import NeuroShiftError
from ..io.volume import Volume
from ..progress import Cancelled
from .cases import LoadedCase
from .simulator import baseline_point, point_seed, target_params

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


# --------------------------------------------------------------------------- worker side
_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()
_OBJECTS: dict[tuple, Any] = {}
#: This worker process's start-up (Unix times, s), set by :func:`init_worker`, reported with its first point.
_STARTUP: dict[str, float] = {}
_LOCK = threading.RLock()
CACHE_SIZE = 2


def shared_object(token: str, role: str, obj: Any) -> Any:
    """One instance per process and run of the model / simulator / metric (loaded weights stay loaded)."""
    with _LOCK:
        return _OBJECTS.setdefault((token, role), obj)


def prepared_case(token: str, case, sequence: str, simulator, needs: tuple[str, ...], shared: str | None = None):
    """((loaded case, fitted model, fit seconds) or the exception that case raised, computed now?).

    Cached per process and run, so a case is read and fitted once however many of its points this
    process evaluates. ``shared``: a file in which the parent stored the loaded case and its fitted
    model (:func:`neuroshift.stress.executors.share_prepared`); a worker process reads it instead of reading
    and fitting again.
    """
    key = (token, case.case_id)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key], False
        t0 = time.perf_counter()
        try:
            if shared is not None:  # written by this run's parent process (private folder), no pickle
                from .share import load_shared

                loaded, fitted, fit_s = load_shared(shared)
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


def release(token: str) -> None:
    """Forget this process's cached cases and objects of the run ``token`` (called when the run ends)."""
    with _LOCK:
        for key in [k for k in _CACHE if k[0] == token]:
            del _CACHE[key]
        for key in [k for k in _OBJECTS if k[0] == token]:
            del _OBJECTS[key]


def error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, NeuroShiftError) else f"{type(exc).__name__}: {text}"


def evaluate_points(token: str, case, sequence: str, model, simulator, metrics: MetricFunction | None,
                    axes: Sequence[str], items: Sequence[tuple[str, dict | None]], *, shared: str | None = None,
                    report_fit: bool | None = None) -> list[dict]:
    """Evaluate some points of one case (``point=None`` is the baseline); one record per point.

    A case that cannot be loaded or fitted gives a single record with ``point="*"``.
    Runs in the caller's process, a worker process or a Dask worker. ``shared``/``report_fit``: the
    case was read and fitted once by the parent (see :func:`neuroshift.stress.executors.run_processes`); the fit time is reported
    with the job that has ``report_fit=True``.
    """
    model = shared_object(token, "model", model)
    simulator = shared_object(token, "simulator", simulator)
    metrics = metrics or mask_metrics
    t_prep = time.perf_counter()
    entry, fresh = prepared_case(token, case, sequence, simulator, tuple(model.extra_inputs), shared)
    share_s = time.perf_counter() - t_prep if (fresh and shared is not None) else 0.0
    if isinstance(entry, BaseException):
        return [{"key": f"{case.case_id}|*", "case": case.case_id, "point": "*", "status": "case_failed",
                 "error": error_text(entry), "error_type": type(entry).__name__}]
    loaded, fitted, fit_s = entry
    # reported once: with the first point evaluated after the fit (or the job the parent marked)
    fit_s = fit_s if (fresh if report_fit is None else report_fit) else 0.0
    out = []
    for key, point in items:
        rec = {"key": f"{loaded.case_id}|{key}", "case": loaded.case_id, "point": key, "baseline": point is None}
        began = time.time()
        try:
            rec.update(_evaluate_one(loaded, fitted, sequence, model, simulator, metrics, axes, key, point))
            rec["status"] = "ok"
            rec["notes"] = list(loaded.notes)
        except (KeyboardInterrupt, SystemExit, Cancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - reported per point
            rec.update(status="failed", error=error_text(exc), error_type=type(exc).__name__)
        # where and when (Unix time, s) the point ran: start-up, idle gaps and the idle tail of each worker follow
        rec["timing"] = {**rec.get("timing", {}), "fit_s": fit_s, "pid": os.getpid(), "began_unix_s": began,
                         "ended_unix_s": time.time()}
        if share_s:
            rec["timing"]["shared_read_s"] = share_s  # worker reading the parent's fitted case
        with _LOCK:  # a worker process's first point: when its init began and ended
            rec["timing"].update(_STARTUP)
            _STARTUP.clear()
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


def init_worker(threads: int, warm: tuple | None = None) -> None:
    """Worker processes: leave Ctrl-C to the parent; share the cores instead of oversubscribing them.

    ``warm``: ``(token, model, simulator)`` of the run: import the heavy modules and load the model now
    (:func:`warm_up`), so that a worker's start-up overlaps the parent's reading and fitting of the first case.
    """
    import signal

    began = time.time()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # read by torch / BLAS when they are first imported here
    from ..threads import prepare_environment

    prepare_environment()  # OMP_WAIT_POLICY=PASSIVE before torch is imported in this process
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if warm is not None:
        warm_up(*warm)
    with _LOCK:  # reported with this process's first point (neuroshift.stress.timing.worker_timeline)
        _STARTUP.update(worker_init_unix_s=began, worker_ready_unix_s=time.time())


def warm_up(token: str, model, simulator) -> None:
    """Keep ``model`` and ``simulator`` as this process's shared objects of run ``token`` and load the model now
    when it has ``load()`` (a NeuroShift package: torch, the inference modules and the networks, the longest
    part of a worker's start-up); for the physics simulator, import its compiled kernels. A failure here is
    left to the first point to report."""
    try:
        model = shared_object(token, "model", model)
        shared_object(token, "simulator", simulator)
        load = getattr(model, "load", None)
        if callable(load):
            load()
        from .simulator import PhysicsSimulator

        if isinstance(simulator, PhysicsSimulator):  # kernels, scipy, numba's contexts: 0.76 s idle (done once
            from .preload_physics import warm  # in a fork server, which makes this a no-op: already imported)

            warm()
    except Exception:  # noqa: BLE001 - the points of the run report it with their own records
        pass
