"""Fused, allocation-light numpy kernels of the signal equations (the fast path of :mod:`.signal`).

The reference formulas in :mod:`neuroshift.physics.signal` build several
full-size temporaries per call (``exp``, masks, ``where``). For the common
case — numpy maps of one shape and scalar sequence parameters — the functions
here evaluate the same equations block by block: every block of
:data:`BLOCK` voxels is written straight into the output with in-place ufuncs
(``out=``) and two block-sized scratch buffers that stay in the CPU cache, so
the only full-size memory traffic is reading the maps and writing the result
once. Same equations, same dtype as the reference; ``1 − e^{−x}`` is evaluated as
``−expm1(−x)``, which removes a cancellation of the reference at short TR /
long T1, so the float32 kernel is within ~1e-6 of the float64 formula
(``Testing/physics/test_perf_signal.py``).

Units: times in ms, flip angles in degrees (as in :mod:`.signal`). A voxel
whose T1 or T2/T2* is not > 0 (or NaN) gives 0, as in the reference.

Threads: volumes of :data:`PARALLEL_MIN` voxels or more are split into one
contiguous part per thread (``$NEUROSHIFT_THREADS``, else the cores available).

Why numpy and not torch: measured on 256×256×176 float32 maps (``bench/signal_equations.py``)
the blocked numpy kernel runs single-threaded at about 2× a copy of its input
maps; torch's elementwise ops allocate a full-size tensor per operation unless
written with ``out=`` everywhere and then gain nothing over numpy on one core.
The torch path of :mod:`.signal` stays as it was (differentiable, any device).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .kernels_blocks import KERNELS, SCRATCH, exp_neg as _exp_neg
from .parallel import run_parts

__all__ = ["BLOCK", "ENABLED", "JIT", "JIT_PARALLEL_MIN", "PARALLEL_MIN", "fused_signal", "eligible", "decay_inplace",
           "run_parts"]

#: Voxels per block (float32: 64 KiB per scratch buffer, well inside L2).
BLOCK = 1 << 14

#: Switch for the fused path (tests and ``bench/signal_equations.py`` turn it off to run the reference formulas).
ENABLED = True

_DEG = math.pi / 180.0


def _scalar(x) -> float | None:
    """``x`` as a Python float when it is a real scalar (Python number, numpy scalar or 0-d array)."""
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    if isinstance(x, np.ndarray) and x.ndim == 0 and np.issubdtype(x.dtype, np.number):
        return float(x)
    return None


def eligible(maps: tuple, params: tuple):
    """``(shape, dtype)`` when the fused path applies, else ``None``.

    Applies when every sequence parameter is a real scalar, every map is a real
    scalar or a numpy array, the arrays share one shape of at least one voxel,
    and the working dtype (numpy promotion of the floating arrays, as in the
    reference) is float32 or float64.
    """
    if any(_scalar(p) is None for p in params):
        return None
    shape = None
    # precision as in the reference: every numpy array or numpy scalar counts, Python numbers do not
    floats = [x.dtype for x in maps + params
              if isinstance(x, (np.ndarray, np.generic)) and np.issubdtype(x.dtype, np.floating)]
    for m in maps:
        if _scalar(m) is not None:
            continue
        if not isinstance(m, np.ndarray) or m.ndim == 0 or not np.issubdtype(m.dtype, np.number) \
                or np.issubdtype(m.dtype, np.complexfloating):
            return None
        if shape is None:
            shape = m.shape
        elif m.shape != shape:
            return None
    if shape is None or 0 in shape:
        return None
    dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        return None
    return shape, dtype


def fused_signal(kind: str, pd, t1_ms, t2_ms, b1, params: dict, *, check=None):
    """Signal of ``kind`` evaluated block-wise (:data:`.kernels_blocks.KERNELS`), or ``None``.

    Kinds: "ir" (also SE and FLAIR), "dir", "dir_se", "gre", "mprage", "mprage_eq6". ``None``
    means the fused path does not apply (see :func:`eligible`) and the caller must use the
    reference formula. ``params`` holds scalar times in ms (``te`` — the echo time of the decay
    factor —, ``tr``, ``ti``, ``trec``, ``ti1``, ``ti2``, ``tra``, ``tx``, ``ta``, ``td``), ``fa`` in
    degrees, ``n``, ``eta`` and the ``magnitude`` flag; ``t2_ms`` is T2* for "gre" and the MPRAGEs.

    Background: per block, the voxels whose T1 or T2 is not > 0 (NaN included) are found first; a
    block with none valid is written as 0 without evaluating the equation (most of a head volume's
    field of view), a block with all valid needs no mask.
    """
    if not ENABLED:
        return None
    scal = {k: v for k, v in params.items() if k != "magnitude"}
    elig = eligible((pd, t1_ms, t2_ms, b1), tuple(scal.values()))
    if elig is None:
        return None
    shape, dtype = elig
    p = {k: _scalar(v) for k, v in scal.items()}
    p["magnitude"] = bool(params.get("magnitude", True))
    if "fa" in p:
        a = p["fa"] * _DEG
        p["sin"], p["cos"] = math.sin(a), math.cos(a)
        if not p["cos"] < 1.0:  # α = 0 (mod 360°): 0/0 at T1 = ∞; the reference handles it
            return None
    if "n" in p:
        if not all(math.isfinite(v) for v in p.values() if isinstance(v, float)):
            return None  # an infinite TR/TD: the reference handles the limits
        p["n"] = float(np.round(p["n"]))  # as the reference (round half to even)
        p["cn"] = p["cos"] ** p["n"]
        if kind == "mprage":
            p["kc"] = math.floor(p["n"] / 2.0)
            p["ckc"] = p["cos"] ** p["kc"]
            p["ta"] = max(p["ti"] - p["kc"] * p["tx"], 0.0)
            p["td"] = max(p["tr"] - p["ta"] - p["n"] * p["tx"], 0.0)
        elif "td" not in p:
            p["td"] = max(p["tr"] - p["ti"] - p["n"] * p["tx"], 0.0)  # signal_mprage.mprage_delay_time
    kernel, n_scratch = KERNELS[kind], SCRATCH[kind]
    out = np.empty(shape, dtype)
    flat = out.reshape(-1)
    n = flat.size

    def view(x):
        s = _scalar(x)
        return s if s is not None else np.ravel(x)  # a copy only for non-contiguous input

    pd_v, t1_v, t2_v, b1_v = (view(x) for x in (pd, t1_ms, t2_ms, b1))
    gain = 1.0
    for v in (pd_v, b1_v):
        if not isinstance(v, np.ndarray):
            gain *= v
    kernels_jit = _compiled() if isinstance(t1_v, np.ndarray) and isinstance(t2_v, np.ndarray) else None
    jit = _jit_parameters(kind, p) if kernels_jit is not None else None
    if jit is not None:  # the compiled one-pass kernel (kernels_jit): every voxel in float64, one read, one write
        t1_j, t2_j = t1_v.astype(dtype, copy=False), t2_v.astype(dtype, copy=False)
        # PD and B1 as (array, array), (array, gain) or (gain, 1): three compiled variants per dtype, not four
        w = [v.astype(dtype, copy=False) for v in (pd_v, b1_v) if isinstance(v, np.ndarray)]
        w1, w2 = (w + [gain, 1.0])[:2]
        run_parts(lambda lo, hi: kernels_jit.run_signal(
            kind, p["magnitude"], _part(w1, lo, hi), t1_j[lo:hi], t2_j[lo:hi], _part(w2, lo, hi), p["te"], *jit,
            flat[lo:hi]), n, JIT_PARALLEL_MIN, kernels_jit.CHUNK)
        return out
    if not isinstance(t1_v, np.ndarray) and not t1_v > 0 or not isinstance(t2_v, np.ndarray) and not t2_v > 0:
        flat[:] = 0.0  # a scalar T1/T2 that is not > 0: every voxel is background
        return out
    maps_t = [t for t in (t1_v, t2_v) if isinstance(t, np.ndarray)]

    compact = n_scratch >= COMPACT_MIN_SCRATCH  # heavy kernels: evaluate only the tissue voxels of sparse blocks

    def run(lo: int, hi: int) -> None:
        block = min(BLOCK, hi - lo)
        scratch = [np.empty(block, dtype) for _ in range(max(1, n_scratch))]
        ok = np.empty(block, bool)
        packed = [np.empty(block, dtype) for _ in range(3)] if compact else None
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            for s in range(lo, hi, block):
                e = min(s + block, hi)
                m = e - s
                o = flat[s:e]
                # background first: T1 or T2 not > 0 (NaN included) -> 0
                valid = ok[:m]
                if len(maps_t) == 2:
                    np.greater(np.minimum(maps_t[0][s:e], maps_t[1][s:e], out=scratch[0][:m]), 0.0, out=valid)
                elif maps_t:
                    np.greater(maps_t[0][s:e], 0.0, out=valid)
                n_valid = np.count_nonzero(valid) if maps_t else m
                if n_valid == 0:
                    o.fill(0.0)
                    continue
                if compact and n_valid < COMPACT_SHARE * m:
                    _compact_block(s, e, np.flatnonzero(valid), o, packed, scratch)
                    continue
                t1 = t1_v[s:e] if isinstance(t1_v, np.ndarray) else t1_v
                t2 = t2_v[s:e] if isinstance(t2_v, np.ndarray) else t2_v
                kernel(o, [b[:m] for b in scratch], t1, t2, p)
                if isinstance(pd_v, np.ndarray):
                    o *= pd_v[s:e]
                if isinstance(b1_v, np.ndarray):
                    o *= b1_v[s:e]
                if gain != 1.0:
                    o *= gain
                if n_valid < m:
                    np.logical_not(valid, out=valid)
                    np.putmask(o, valid, 0.0)

    def _compact_block(s, e, idx, o, packed, scratch):
        """The block's tissue voxels ``idx`` gathered, evaluated, scattered; the rest of the block 0."""
        v = idx.size
        res, c1, c2 = (b[:v] for b in packed)
        t1 = np.take(t1_v[s:e], idx, out=c1) if isinstance(t1_v, np.ndarray) else t1_v
        t2 = np.take(t2_v[s:e], idx, out=c2) if isinstance(t2_v, np.ndarray) else t2_v
        kernel(res, [b[:v] for b in scratch], t1, t2, p)
        for g in (pd_v, b1_v):
            if isinstance(g, np.ndarray):
                res *= np.take(g[s:e], idx, out=scratch[0][:v])
        if gain != 1.0:
            res *= gain
        o.fill(0.0)
        o[idx] = res

    _parallel(run, n)
    return out


#: Kernels with at least this many scratch buffers (MPRAGE, Eq. 6: ~4–6 ns per voxel) evaluate blocks in which
#: fewer than :data:`COMPACT_SHARE` of the voxels are tissue on those voxels only (gather, evaluate, scatter:
#: ~1 ns per block voxel + ~3 ns per tissue voxel); in a head volume most blocks that hold tissue hold
#: little (brain ≈ 13 % of the voxels, but ≈ 70 % of the 16 K-voxel blocks touch it).
COMPACT_MIN_SCRATCH = 2

#: Tissue share of a block below which the heavy kernels use the gathered (compact) evaluation (measured on
#: the 256×256×176 head, MPRAGE, one thread: 3.55× a copy of the maps without, 2.4× at 0.5, 2.2× at 0.7–1).
COMPACT_SHARE = 0.8


#: Volumes with fewer voxels than this run on one thread (a thread pool costs more than it saves there).
PARALLEL_MIN = 1 << 20


def _jit_parameters(kind: str, p: dict) -> tuple | None:
    """``(times, parameters)`` tuples of the compiled kernel of ``kind`` (see :mod:`.kernels_jit`), or None when a time
    that enters an exponential is negative or not finite (the numpy kernels and the reference handle those)."""
    if kind == "ir":
        times, t = (p["ti"], p["trec"]), ()
    elif kind == "dir":
        times, t = (p["ti1"], p["ti2"], p["tr"]), ()
    elif kind == "dir_se":
        times, t = (p["ti1"], p["ti2"], p["tr"], p["tra"]), ()
    elif kind == "gre":
        times, t = (p["tr"],), (p["cos"], p["sin"])
    elif kind == "mprage":
        times = (p["tx"], p["kc"] * p["tx"], p["td"], p["ta"])
        t = (p["n"] - 2.0 * p["kc"], p["cn"], p["ckc"], p["eta"], p["sin"], p["cos"])
    else:  # mprage_eq6
        times, t = (p["tr"], p["td"], p["n"] * p["tx"] + p["td"]), (p["cos"], p["sin"], p["cn"])
    if not all(math.isfinite(v) and v >= 0.0 for v in times + (p["te"],)):
        return None
    return times, t


def _compiled():
    """:mod:`.kernels_jit` when :data:`JIT` is on and numba imports, else None (the numpy block kernels run)."""
    if not JIT:
        return None
    import sys

    name = f"{__package__}.kernels_jit"
    if name in sys.modules:  # imported already (None: an import that failed or was blocked)
        return sys.modules[name]
    if _JIT_FAILED:
        return None
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:  # numba missing or broken: the numpy path gives the same values (not retried)
        _JIT_FAILED.append(name)
        return None


_JIT_FAILED: list = []


def _part(v, lo: int, hi: int):
    """``v[lo:hi]`` for an array, ``v`` for a scalar."""
    return v[lo:hi] if isinstance(v, np.ndarray) else v


#: Use the compiled kernels of :mod:`.kernels_jit` (False: the block-wise numpy kernels; tests and benches).
JIT = True

#: Volumes of at least this many voxels run the compiled kernels on several threads (a voxel costs 1–3 ns
#: there, a hand-over to the thread pool ~30 µs).
JIT_PARALLEL_MIN = 1 << 17

def _parallel(run, n: int) -> None:
    """``run(lo, hi)`` over [0, n) split into contiguous parts, one per thread.

    Threads: ``neuroshift.threads.requested_threads()`` (``$NEUROSHIFT_THREADS``, else the cores this process
    may use); numpy releases the GIL inside the ufuncs, so the parts run in parallel. Each part has its own
    scratch buffers; the parts write disjoint slices of the output.
    """
    run_parts(run, n, PARALLEL_MIN, BLOCK)


def decay_inplace(s, te_ms, t2_ms) -> bool:
    """``s *= e^{−TE/T2}`` block-wise in place (0 where T2 is not > 0); False when it does not apply.

    For a numpy float array ``s`` and a T2 (or T2*) map of the same shape (or a scalar) with a scalar
    TE in ms: the multi-echo convention of :func:`neuroshift.physics.signal.sequence_signal` multiplies
    a longitudinal factor by the echo's decay; done here without full-size temporaries.
    """
    te = _scalar(te_ms)
    if not ENABLED or te is None or not isinstance(s, np.ndarray) or s.dtype not in (np.float32, np.float64) \
            or not s.flags.c_contiguous or not s.flags.writeable or s.ndim == 0:
        return False
    t2s = _scalar(t2_ms)
    if t2s is None and not (isinstance(t2_ms, np.ndarray) and t2_ms.shape == s.shape
                            and np.issubdtype(t2_ms.dtype, np.floating)):
        return False
    if t2s is None and np.result_type(s.dtype, t2_ms.dtype) != s.dtype:
        return False  # the reference would promote (float32 signal, float64 map)
    flat = s.reshape(-1)
    n = flat.size
    if t2s is not None:
        if not t2s > 0:
            flat[:] = 0.0
        elif te != 0.0:
            flat *= math.exp(-te / t2s)
        return True
    t2 = np.ravel(t2_ms)
    kernels_jit = _compiled() if math.isfinite(te) and te >= 0.0 else None
    if kernels_jit is not None:  # compiled one-pass loop
        run_parts(lambda lo, hi: kernels_jit.run_decay(flat[lo:hi], t2[lo:hi], te), n, JIT_PARALLEL_MIN)
        return True

    def run(lo: int, hi: int) -> None:
        block = min(BLOCK, hi - lo)
        a = np.empty(block, s.dtype)
        ok = np.empty(block, bool)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            for i in range(lo, hi, block):
                e = min(i + block, hi)
                m = e - i
                o, t = flat[i:e], t2[i:e]
                o *= _exp_neg(te, t, a[:m])
                np.greater(t, 0.0, out=ok[:m])
                np.logical_not(ok[:m], out=ok[:m])
                np.putmask(o, ok[:m], 0.0)

    _parallel(run, n)
    return True
