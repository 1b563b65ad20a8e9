#!/usr/bin/env python
"""Benchmark (named signal_equations.py: a bench/signal.py would shadow the standard library module
``signal`` for every script in bench/): synthesis of every sequence from quantitative maps, through the entry point users call.

    python bench/signal_equations.py [--shape 176,256,256] [--rounds 7] [--maps head|fill] [--cornucopia-path DIR]
                                     [--json out.json]

Volume: float32 maps PD, T1, T2, T2* (SYNTHETIC, head-shaped tissue mixture; background 0) of
256×256×176 voxels; ``--maps fill`` stretches the brain over every voxel (no background blocks to skip:
the worst case). Per sequence, interleaved rounds of:

* ``ours``: :func:`neuroshift.qmri.synthesize` (``neuroshift qmri synth`` calls it), the compiled kernels of
  :mod:`neuroshift.physics.kernels_jit` (``mprage_eq6``, which no CLI synthesises, through
  :func:`~neuroshift.physics.signal.mprage_eq6_paper002`). numba compiles them on the first call of a process
  (cached in ``__pycache__`` for later ones); that call and one warm-up round run before the timing;
* ``numpy_blocks``: the same call with the block-wise numpy kernels (``kernels.JIT = False``: the fused path
  before the compiled kernels);
* ``api``: :func:`neuroshift.physics.signal.sequence_signal` with the single-echo physics (the equations the
  phantom and the simulate commands call), fused kernels;
* ``before``: the same call with the fused kernels off (the reference formulas) plus the float64
  ``nan_to_num`` pass the synthesis had before (what users got until this change);
* ``copy``: ``np.copy`` of the input maps the sequence reads (3 maps) — goal: ours ≤ 3× this;
* GRE only: ``textbook``, the plain numpy formula, and ``cornucopia``, cornucopia's
  ``GradientEchoTransform`` (same equation, times in s) in torch with 1 thread and with every usable core
  (ours uses ``NEUROSHIFT_THREADS`` threads, default the usable cores, from 1M voxels on; set
  ``NEUROSHIFT_THREADS=1`` to compare single-threaded), when cornucopia imports (``--cornucopia-path`` adds a folder, e.g. a
  ``pip install --target`` directory, to ``sys.path``). Goal: ours ≥ 2× faster than cornucopia.

``max |ours − ref64|``: against the reference formulas (fused kernels off) in float64 — float32 rounding only
(goal ≤ 1e-6 of the max signal). Median of the rounds, interquartile range and the load average are printed: on a shared machine
the ratios (same rounds) are the figures, not the absolute times.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402

from bench._maps import synthetic_maps  # noqa: E402
from bench._timing import cpu_clock, fmt, interleaved, load_average, machine  # noqa: E402

from neuroshift.io.params import AcquisitionParams  # noqa: E402
from neuroshift.physics import kernels  # noqa: E402
from neuroshift.physics.parallel import BUSY_LOAD_PER_CORE  # noqa: E402
from neuroshift.threads import requested_threads  # noqa: E402
from neuroshift.physics.signal import mprage_eq6_paper002, sequence_signal  # noqa: E402
from neuroshift.qmri import QMRIMaps, synthesize  # noqa: E402,F401
from neuroshift.qmri.synth import required_maps  # noqa: E402

PROTOCOLS = {
    "se": "TE=90,TR=3000", "ir": "TE=12,TI=400,TR=3000", "flair": "TE=112,TI=2500,TR=9000",
    "dir": "TE=25,TI1=3400,TI2=325,TR=15000", "gre": "TE=5,TR=20,FA=15",
    "mprage": "TE=3,TI=900,TR=2300,FA=9,TX=7,N=176", "mprage_eq6": "TE=3,TI=900,TR=2300,FA=9,TX=7,N=176",
}


# the synthesis uses the multi-echo convention of the qMRI route when physics.signal offers it
_MULTI = {"multi_echo": True} if "multi_echo" in __import__("inspect").signature(sequence_signal).parameters else {}


def signal(maps: QMRIMaps, seq: str, params: AcquisitionParams, *, multi_echo: bool, dtype=None) -> np.ndarray:
    """The equation of ``seq`` on the maps (``mprage_eq6``: paper 002's Eq. 6), in ``dtype`` (default the maps')."""
    arr = {n: maps.array(n) if dtype is None else maps.array(n).astype(dtype) for n in ("PD", "T1", "T2", "T2star")}
    with np.errstate(all="ignore"):
        if seq == "mprage_eq6":
            p = params
            return mprage_eq6_paper002(arr["PD"], arr["T1"], arr["T2star"], te_ms=p.TE_ms, ti_ms=p.TI_ms,
                                       tr_ms=p.TR_ms, fa_deg=p.FA_deg, tx_ms=p.TX_ms, n=p.N)
        if seq in ("se", "ir", "flair", "dir"):
            kw = {"t2_ms": arr["T2"], **(_MULTI if multi_echo else {})}
        else:
            kw = {"t2star_ms": arr["T2star"]}
        return sequence_signal(seq, params, pd=arr["PD"], t1_ms=arr["T1"], **kw)


def before(maps: QMRIMaps, seq: str, params: AcquisitionParams) -> np.ndarray:
    """The synthesis as it was: reference formulas, float64 nan_to_num pass, cast to float32."""
    kernels.ENABLED = False
    try:
        s = signal(maps, seq, params, multi_echo=True)
        s = np.nan_to_num(np.asarray(s, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return s.astype(np.float32)
    finally:
        kernels.ENABLED = True


def blocks(run):
    """``run()`` with the block-wise numpy kernels instead of the compiled ones (the fused path before them)."""
    kernels.JIT = False
    try:
        return run()
    finally:
        kernels.JIT = True


def reference64(maps: QMRIMaps, seq: str, params: AcquisitionParams) -> np.ndarray:
    """The reference formulas (fused kernels off) in float64: what the kernels must reproduce."""
    kernels.ENABLED = False
    try:
        return np.asarray(signal(maps, seq, params, multi_echo=True, dtype=np.float64))
    finally:
        kernels.ENABLED = True


def textbook_gre(pd, t1, t2s, te, tr, fa):
    a = math.radians(fa)
    with np.errstate(all="ignore"):  # background T = 0
        e1 = np.exp(-tr / t1)
        return pd * math.sin(a) * (1 - e1) / (1 - math.cos(a) * e1) * np.exp(-te / t2s)


def cornucopia_gre(pd, t1, t2s, te, tr, fa):
    """cornucopia's GradientEchoTransform on (PD, T1 [s], T2* [s]) channels, or None if it does not import."""
    try:
        import cornucopia as cc
        import torch
    except Exception:  # noqa: BLE001 - optional baseline
        return None
    x = torch.from_numpy(np.stack([pd, t1 / 1000.0, t2s / 1000.0]))
    xf = cc.GradientEchoTransform(tr=tr / 1000.0, te=te / 1000.0, alpha=fa, b1=1, mt=0)
    return lambda: xf(x), torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="176,256,256", help="array shape k,j,i (default 176,256,256)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sequences", default=",".join(PROTOCOLS))
    ap.add_argument("--maps", choices=("head", "fill"), default="head",
                    help="head: brain ~13%% of the voxels (default); fill: tissue in every voxel (worst case)")
    ap.add_argument("--cornucopia-path", help="folder added to sys.path for the cornucopia baseline")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time CPU seconds of one thread (NEUROSHIFT_THREADS=1, cornucopia 1 thread) instead of wall "
                         "time (robust on a busy machine)")
    ap.add_argument("--json", help="also write the results as JSON")
    args = ap.parse_args(argv)
    clock = cpu_clock() if args.cpu_time else __import__("time").perf_counter
    if args.cornucopia_path:
        sys.path.insert(0, args.cornucopia_path)
    shape = tuple(int(v) for v in args.shape.split(","))
    maps = synthetic_maps(shape, brain_fill=args.maps == "fill")
    info = machine()
    print(f"clock: {'CPU time of one thread' if args.cpu_time else 'wall time'}")
    print(f"synthesis bench, {shape[::-1]} float32 maps (SYNTHETIC, {args.maps}: "
          f"{100 * float(np.mean(maps.array('T1') > 0)):.0f}% tissue voxels), {info['cpu']}, {info['usable_cores']} usable "
          f"cores, numpy {info['numpy']}; compiled kernels (numba, nogil parts on NeuroShift's thread pool) on "
          f"{requested_threads()} thread(s) from {kernels.JIT_PARALLEL_MIN} voxels (one while the load exceeds "
          f"{BUSY_LOAD_PER_CORE}/core unless NEUROSHIFT_THREADS is set), numpy-block kernels from "
          f"{kernels.PARALLEL_MIN}; copy: numpy, one thread; load {load_average()}")
    results = {"machine": info, "shape": list(shape), "sequences": {}}
    for seq in args.sequences.split(","):
        params = AcquisitionParams.parse(PROTOCOLS[seq])
        eq6 = seq == "mprage_eq6"
        ins = [maps.array(n) for n in required_maps("mprage" if eq6 else seq)]
        run_ours = (lambda: signal(maps, seq, params, multi_echo=True)) if eq6 else \
            (lambda: synthesize(maps, seq, params).data)
        ours = run_ours()
        ref = before(maps, seq, params)
        ref64 = reference64(maps, seq, params)
        scale = float(np.abs(ref64).max())
        diff = float(np.max(np.abs(ours.astype(np.float64) - ref))) / scale
        diff64 = float(np.max(np.abs(ours.astype(np.float64) - ref64))) / scale
        funcs = {"copy": lambda: [a.copy() for a in ins], "ours": run_ours,
                 "numpy_blocks": lambda: blocks(run_ours), "before": lambda: before(maps, seq, params)}
        if not eq6:
            funcs["api"] = lambda: signal(maps, seq, params, multi_echo=False)
        if seq == "gre":
            pd, t1, t2s = ins
            p = (params.TE_ms, params.TR_ms, params.FA_deg)
            funcs["textbook"] = lambda: textbook_gre(pd, t1, t2s, *p)
            cc = cornucopia_gre(pd, t1, t2s, *p)
            if cc is not None:
                run_cc, torch = cc
                n_all = torch.get_num_threads()

                def cc1():
                    old = torch.get_num_threads()
                    torch.set_num_threads(1)
                    try:
                        return run_cc()
                    finally:
                        torch.set_num_threads(old)
                funcs["cornucopia_1thread"] = cc1
                funcs[f"cornucopia_{n_all}threads"] = run_cc
                with np.errstate(all="ignore"):
                    cdiff = float(np.nanmax(np.abs(run_cc().numpy().astype(np.float64) - ours)
                                            * (maps.array("T1") > 0))) / scale
                results.setdefault("cornucopia_max_rel_diff", cdiff)
        load0 = load_average()
        if args.cpu_time:  # one thread everywhere: drop the multi-threaded cornucopia call
            funcs = {k: v for k, v in funcs.items() if not (k.startswith("cornucopia") and "1thread" not in k)}
        t = interleaved(funcs, args.rounds, clock=clock)
        load1 = load_average()
        row = {"timings": t, "max_abs_diff_rel_to_max": diff, "max_abs_diff_vs_float64_reference": diff64,
               "load_before": load0, "load_after": load1,
               "ours_vs_copy": t["ours"]["median_s"] / t["copy"]["median_s"],
               "before_vs_ours": t["before"]["median_s"] / t["ours"]["median_s"],
               "numpy_blocks_vs_copy": t["numpy_blocks"]["median_s"] / t["copy"]["median_s"]}
        if "api" in t:
            row["api_vs_copy"] = t["api"]["median_s"] / t["copy"]["median_s"]
        print(f"[{seq}] params {PROTOCOLS[seq]}; load {load0} -> {load1}")
        for k, v in t.items():
            print(f"    {k:22s} {fmt(v)}")
        api = f"; api (single-echo sequence_signal) = {row['api_vs_copy']:.2f}x" if "api" in row else ""
        print(f"    GOAL {seq}: ours = {row['ours_vs_copy']:.2f}x a copy of its {len(ins)} input maps (goal <= 3x){api}; "
              f"numpy blocks {row['numpy_blocks_vs_copy']:.2f}x; before / ours = {row['before_vs_ours']:.2f}")
        print(f"    max |ours - ref64| = {diff64:.1e} of the max signal (goal <= 1e-6; float64 reference formulas); "
              f"max |ours - before (float32 reference)| = {diff:.1e}")
        for k in [k for k in t if k.startswith("cornucopia") or k == "textbook"]:
            row[f"{k}_vs_ours"] = t[k]["median_s"] / t["ours"]["median_s"]
            print(f"    {k} / ours = {row[f'{k}_vs_ours']:.2f} (goal for cornucopia >= 2)")
        results["sequences"][seq] = row
    if "cornucopia_max_rel_diff" in results:
        print(f"cornucopia vs ours (GRE, brain voxels): max difference {results['cornucopia_max_rel_diff']:.1e} "
              "of the max signal")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
