"""Where stress-test points run: local worker processes or a Dask cluster (the in-process loop is in the runner).

* :func:`run_processes`: worker processes, one grid point per job, forked by a fork server that has
  imported torch and the kernels once (:func:`worker_context`; ``spawn`` where there is none). All workers
  start with the run, before the parent reads and fits the first case. The parent reads and fits
  each case once and hands it over in a pickle-free ``.npz`` + JSON file (:mod:`neuroshift.stress.share`)
  in a private temporary folder; a worker reads a case once and keeps it. The cores are split:
  :func:`worker_threads` torch/BLAS threads per worker. A fitted model the format cannot store (a class
  outside NeuroShift's dataclasses, e.g. an injected test simulator's) is not shared: the workers then
  read and fit that case themselves.
* :func:`run_dask`: the model and simulator are scattered once to every worker, each case once.
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .worker import error_text, evaluate_points, init_worker, prepared_case, shared_object


@dataclass(frozen=True)
class CaseRef:
    """What a worker needs of a case whose loaded form and fitted model come from a shared file: its id."""

    case_id: str


def worker_threads(workers: int) -> int:
    """Threads per worker process: the cores available to this process split between the workers."""
    from ..threads import available_cores

    return max(1, available_cores() // max(1, workers))


#: Environment variable: how stress-test workers start, ``forkserver`` (default where the platform has it) or
#: ``spawn`` (each worker a fresh interpreter that imports everything itself).
START_METHOD_ENV = "NEUROSHIFT_STRESS_START"


def preload_modules(model, simulator) -> list[str]:
    """Modules the fork server imports once for all workers: torch and the inference modules for a NeuroShift
    package (:mod:`.preload_torch`), the compiled kernels for the physics simulator (:mod:`.preload_physics`)."""
    from .models import PackageModel
    from .simulator import PhysicsSimulator

    return ((["neuroshift.stress.preload_torch"] if isinstance(model, PackageModel) else [])
            + (["neuroshift.stress.preload_physics"] if isinstance(simulator, PhysicsSimulator) else []))


def worker_context(model, simulator):
    """The multiprocessing context of the workers, with its fork server already starting (in the background).

    ``forkserver`` (Linux): one server process imports torch, the inference modules and the compiled kernels
    (:func:`preload_modules`) while the parent reads and fits the first case; each worker is a fork of it and
    starts with all of that done: ~1.9 s of imports once instead of in every worker (2 workers on 2 shared
    cores at load 2.6-3.3, bench/stress.py: 6.3 / 6.8 worker-s before the first point vs 10.3 / 10.3 with
    ``spawn``). The server runs no torch operator, so forking it is safe (forking a process whose OpenMP
    threads exist can hang). The server finds the modules on the interpreter's own path (an installed NeuroShift;
    Python 3.11 does not pass it the parent's ``sys.path``); where it cannot, the workers import them themselves
    (slower start, same results). It stays (idle, ~340 MB with torch) until this process exits, and a later run
    reuses it as it is (its modules were fixed when it started; measured, 2 workers at load 1.3: the first run's
    workers waited 5.07 worker-s for their process, a second run's in the same process 0.07).
    ``spawn`` where the platform has no fork server (Windows) or where forking a process that loaded system
    frameworks is unsafe (macOS), if the server cannot start, or when ``NEUROSHIFT_STRESS_START=spawn``.
    """
    import multiprocessing

    method = os.environ.get(START_METHOD_ENV, "").strip().lower() or "forkserver"
    if method not in ("forkserver", "spawn"):
        raise InputError(f"{START_METHOD_ENV}={method!r}: use forkserver or spawn")
    if method == "forkserver" and sys.platform.startswith("linux"):  # macOS: forking after framework loads is unsafe
        from multiprocessing import forkserver

        ctx = multiprocessing.get_context("forkserver")
        try:
            ctx.set_forkserver_preload(preload_modules(model, simulator))
            forkserver.ensure_running()  # starts the server process and returns: it imports in the background
            return ctx
        except OSError:
            pass
    return multiprocessing.get_context("spawn")


def start_workers(executor, workers: int):
    """Start all ``workers`` processes of ``executor`` now, from a background thread (returned).

    concurrent.futures starts a worker per submitted job while none is idle; one no-op job per worker makes
    them all start at once instead of one now and the rest with the first real jobs (after the parent's fit).
    With a fork server each start waits until the server has imported its modules; the thread waits for it
    instead of the parent, which meanwhile reads and fits the first case.
    """
    import threading

    def start() -> None:
        try:
            for _ in range(workers):
                executor.submit(int)
        except Exception:  # noqa: BLE001 - pool shut down meanwhile, or it broke: the real jobs report it
            pass

    thread = threading.Thread(target=start, name="neuroshift-stress-start", daemon=True)
    thread.start()
    return thread


def share_prepared(folder: Path, index: int, entry) -> str | None:
    """Store a loaded case and its fitted model once for the workers (:mod:`neuroshift.stress.share`, in this
    run's private folder); None when the fitted model cannot be stored without pickle."""
    from .share import NotShareable, save_shared

    try:
        return str(save_shared(folder / f"case{index}.npz", entry))
    except NotShareable:
        return None


def run_processes(workers: int, token: str, jobs, common, accept, failed_cases) -> None:
    """Worker processes, one grid point per job; each case is read and fitted once, by this process.

    The workers start before the first case is fitted (:func:`worker_context`, :func:`start_workers`) and
    meanwhile load the model (:func:`~neuroshift.stress.worker.warm_up`).
    The parent fits case k (and stores it for the workers) while the workers evaluate the points of
    the cases before it; a worker reads a stored case once and keeps it (no worker refits). The
    threads are split: each worker gets ``available cores // workers`` (:func:`worker_threads`).
    """
    import shutil
    import tempfile
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = worker_threads(workers)
    seq, model_obj, simulator, _metrics, _axes = common
    model_obj = shared_object(token, "model", model_obj)
    simulator = shared_object(token, "simulator", simulator)
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=worker_context(model_obj, simulator),
                                   initializer=init_worker, initargs=(threads, (token, model_obj, simulator)))
    start_workers(executor, workers)  # their start-up and model load overlap the first case's fit
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
            if left[case_id][0] == 0 and left[case_id][1]:  # every job of the case done: its file is not needed
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
            entry, _fresh = prepared_case(token, case, seq, simulator, tuple(model_obj.extra_inputs))
            if isinstance(entry, BaseException):
                accept([{"key": f"{case.case_id}|*", "case": case.case_id, "point": "*", "status": "case_failed",
                         "error": error_text(entry), "error_type": type(entry).__name__}])
                continue
            path = share_prepared(folder, index, entry)
            left[case.case_id] = [len(its_list), path]
            ref = CaseRef(case.case_id) if path is not None else case  # the shared file holds the case's data
            for j, its in enumerate(its_list):
                fut = executor.submit(evaluate_points, token, ref, *common, its, shared=path,
                                      report_fit=(j == 0) if path is not None else None)
                pending[fut] = case.case_id
            if pending:
                collect_finished(timeout=0)  # records of earlier cases as they come
        while pending:
            collect_finished()
        # every result is in: the workers exit in the background (seconds each under load; measured 5.2 s at
        # load 9) while the caller goes on with the report; the interpreter still joins them before it exits
        executor.shutdown(wait=False)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        for proc in list((getattr(executor, "_processes", None) or {}).values()):  # None once shut down
            proc.terminate()
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_dask(scheduler, token: str, jobs, common, accept, failed_cases) -> None:
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


__all__ = ["START_METHOD_ENV", "CaseRef", "preload_modules", "run_dask", "run_processes", "share_prepared",
           "start_workers", "worker_context", "worker_threads"]
