"""Compiled (numba) pass of the block layout of :mod:`.block_layout`; imported lazily (JIT on first use, cached).

One pass over the image: the voxels between tissue spans are copied with 8-voxel vector copies (``memcpy``
was slower on this AMD EPYC, at every gap length tried: 64³ head 1.33× vs 1.26× a copy, 256×256×176 1.22× vs
1.12× on one thread) and every 8-voxel block of a span is
``out = img + f_1·d_1 + f_2·d_2 + f_3·d_3 + f_4·d_4`` with the fractions read as ``uint16`` (fixed point,
``f = k·2⁻¹⁵``) from one contiguous 64-byte record per block, in memory order.

Why explicit 8-lane vector code (:func:`_mix8`, an llvmlite intrinsic): the spans are short (25–40 voxels
per image row at 64³) and numba's loop vectoriser only vectorises loops of ≥ 32 iterations (vector width 8
× interleave 4); numba leaves LLVM's SLP vectoriser off, so a block loop of 8 stayed scalar: 26 µs for
35 K voxels vs 9 µs vectorised, and a 64³ derivative 1.6× a copy instead of 1.3× (``bench/simulate.py``).
The tissue increments are computed in the same compiled call (:func:`derive`: the scalar signal equations of
:func:`neuroshift.physics.scalar_signal.signal_one`, compiled), so a small derivative is one dispatch.
Arithmetic: float32, in the order ``(((img + f_1·d_1) + f_2·d_2) + f_3·d_3) + f_4·d_4`` (no fused
multiply-add), so a crisp voxel (one fraction 2¹⁵, the others 0) gets exactly ``img + Δ_t``.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..physics.scalar_signal import signal_one

__all__ = ["apply_blocks", "derive_target", "derive", "derive_aligned", "tissue_deltas", "tissue_signals",
           "ALIGN_VOXELS", "LANES", "ROW", "SCALE", "TARGET_FIELDS"]

#: Voxels per block (one AVX2 vector of float32).
LANES = 8
#: uint16 values per block record: 4 tissues × 8 voxels.
ROW = 4 * LANES
#: float32 voxels per 64 bytes (a cache line): :func:`derive_aligned` starts its output on such a boundary.
ALIGN_VOXELS = 16
#: Fixed-point step of the stored fractions: ``f = k·SCALE``, ``k`` in [0, 2¹⁵] (1 is exact).
SCALE = 2.0 ** -15

_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, LANES)
_I16VEC = ir.VectorType(ir.IntType(16), LANES)
_I64 = ir.IntType(64)


def _ptr(builder, arr, index, vec_type):
    return builder.bitcast(builder.gep(arr.data, [index]), vec_type.as_pointer())


@intrinsic
def _mix8(typingctx, out, img, frac, base, rec, d1, d2, d3, d4):
    """``out[base:base+8] = img[base:base+8] + Σ_t float(frac[rec+8t : rec+8t+8])·d_t`` (t = 0..3), 8 lanes."""
    sig = types.void(out, img, frac, types.intp, types.intp, types.float32, types.float32, types.float32,
                     types.float32)

    fixed_point = isinstance(frac.dtype, types.Integer)  # uint16 records (k·2⁻¹⁵) or float32 records

    def codegen(context, builder, signature, args):
        o, im, fr, b, q = args[:5]
        oa = context.make_array(signature.args[0])(context, builder, o)
        ia = context.make_array(signature.args[1])(context, builder, im)
        fa = context.make_array(signature.args[2])(context, builder, fr)
        acc = builder.load(_ptr(builder, ia, b, _VEC), align=4)
        zero = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        for t, d in enumerate(args[5:]):
            dv = builder.insert_element(ir.Constant(_VEC, ir.Undefined), d, ir.Constant(ir.IntType(32), 0))
            dv = builder.shuffle_vector(dv, ir.Constant(_VEC, ir.Undefined), zero)
            at = builder.add(q, ir.Constant(_I64, LANES * t))
            if fixed_point:
                f = builder.uitofp(builder.load(_ptr(builder, fa, at, _I16VEC), align=2), _VEC)
            else:
                f = builder.load(_ptr(builder, fa, at, _VEC), align=4)
            acc = builder.fadd(acc, builder.fmul(f, dv))
        builder.store(acc, _ptr(builder, oa, b, _VEC), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _copy8(typingctx, out, img, base):
    """``out[base:base+8] = img[base:base+8]`` (one vector load and store)."""
    sig = types.void(out, img, types.intp)

    def codegen(context, builder, signature, args):
        o, im, b = args
        oa = context.make_array(signature.args[0])(context, builder, o)
        ia = context.make_array(signature.args[1])(context, builder, im)
        builder.store(builder.load(_ptr(builder, ia, b, _VEC), align=4), _ptr(builder, oa, b, _VEC), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _memcpy(typingctx, out, img, start, stop):
    """``out[start:stop] = img[start:stop]`` (float32) with ``llvm.memcpy``."""
    sig = types.void(out, img, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        o, im, a, b = args
        oa = context.make_array(signature.args[0])(context, builder, o)
        ia = context.make_array(signature.args[1])(context, builder, im)
        cgutils.raw_memcpy(builder, builder.gep(oa.data, [a]), builder.gep(ia.data, [a]), builder.sub(b, a), 4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _address(typingctx, arr):
    """The address of ``arr``'s first element (bytes, as an integer; for :func:`derive_aligned`)."""
    sig = types.intp(arr)

    def codegen(context, builder, signature, args):
        a = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(a.data, _I64)

    return sig, codegen


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _copy(out, img, a, b):  # pragma: no cover - compiled
    """``out[a:b] = img[a:b]``; ``b − a`` a multiple of 8."""
    for j in range(a, b, LANES):
        _copy8(out, img, j)


@nb.njit(nogil=True, cache=True, boundscheck=False)
def apply_blocks(img, out, starts, counts, offsets, frac, a1, a2, a3, a4, lo, hi):  # pragma: no cover - compiled
    """Voxels ``[lo, hi)`` of ``out = img + Σ_t f_t·Δ_t`` (flat float32 arrays of ``size`` voxels).

    ``lo`` a multiple of 8, ``hi`` a multiple of 8 or ``size``. Span ``s`` covers blocks
    ``starts[s] .. starts[s] + counts[s]`` (ascending, disjoint) whose records begin at block record
    ``offsets[s]`` of ``frac`` (uint16, ``ROW`` values per block). ``a_t``: the increments Δ_t (float64,
    rounded to float32 here, then scaled by :data:`SCALE`, exactly: a power of two).
    """
    scale = np.float32(SCALE) if frac.itemsize == 2 else np.float32(1.0)  # uint16 fixed point or float32
    d1 = np.float32(a1) * scale
    d2 = np.float32(a2) * scale
    d3 = np.float32(a3) * scale
    d4 = np.float32(a4) * scale
    pos = lo
    n_spans = starts.size
    s = max(np.searchsorted(starts, lo // LANES, side="right") - 1, 0)
    full = hi // LANES  # blocks entirely below hi
    while s < n_spans:
        b0 = starts[s]
        b1 = b0 + counts[s]
        if b0 * LANES >= hi:
            break
        if b1 * LANES <= lo:
            s += 1
            continue
        first = max(b0, lo // LANES)
        _copy(out, img, pos, first * LANES)
        rec0 = (offsets[s] - b0) * ROW
        for blk in range(first, min(b1, full)):
            _mix8(out, img, frac, blk * LANES, rec0 + blk * ROW, d1, d2, d3, d4)
        if b1 > full:  # the image's last, partial block
            q = rec0 + full * ROW
            for j in range(full * LANES, hi):
                k = j - full * LANES
                out[j] = (img[j] + np.float32(frac[q + k]) * d1 + np.float32(frac[q + LANES + k]) * d2
                          + np.float32(frac[q + 2 * LANES + k]) * d3 + np.float32(frac[q + 3 * LANES + k]) * d4)
            return
        pos = b1 * LANES
        s += 1
    tail = pos + (hi - pos) // LANES * LANES
    _copy(out, img, pos, tail)
    for j in range(tail, hi):
        out[j] = img[j]


_signal = nb.njit(nogil=True, cache=True)(signal_one)


@nb.njit(nogil=True, cache=True)
def tissue_signals(code, p1, p2, p3, p4, p5, p6, table, out):  # pragma: no cover - compiled
    """``out[t] = S_t`` (float64) for the tissues of ``table`` (3 × T: PD, T1, T2 or T2* in ms): compiled
    :func:`~neuroshift.physics.scalar_signal.signal_one` with the values of ``scalar_signal.pack``."""
    for t in range(table.shape[1]):
        out[t] = _signal(code, p1, p2, p3, p4, p5, p6, table[0, t], table[1, t], table[2, t])


@nb.njit(nogil=True, cache=True)
def tissue_deltas(code, p1, p2, p3, p4, p5, p6, table, s0, c):  # pragma: no cover - compiled
    """The 4 increments ``c·(S_t(θ) − s0_t)`` (float64; ``table`` 3 × 4, padded tissues PD = T1 = 0, s0 = 0)."""
    return (c * (_signal(code, p1, p2, p3, p4, p5, p6, table[0, 0], table[1, 0], table[2, 0]) - s0[0]),
            c * (_signal(code, p1, p2, p3, p4, p5, p6, table[0, 1], table[1, 1], table[2, 1]) - s0[1]),
            c * (_signal(code, p1, p2, p3, p4, p5, p6, table[0, 2], table[1, 2], table[2, 2]) - s0[2]),
            c * (_signal(code, p1, p2, p3, p4, p5, p6, table[0, 3], table[1, 3], table[2, 3]) - s0[3]))


@nb.njit(nogil=True, cache=True)
def derive(img, out, starts, counts, offsets, frac, code, p1, p2, p3, p4, p5, p6, table, s0, c):  # pragma: no cover
    """The whole derivative on one thread: :func:`tissue_deltas` then :func:`apply_blocks` over every voxel
    (a plain copy when every increment is 0, so the source parameters give the input bit for bit)."""
    a1, a2, a3, a4 = tissue_deltas(code, p1, p2, p3, p4, p5, p6, table, s0, c)
    n = img.size
    src = img.reshape(n)  # C-contiguous image-shaped arrays (checked by the caller): flat views
    dst = out.reshape(n)
    if a1 == 0.0 and a2 == 0.0 and a3 == 0.0 and a4 == 0.0:
        _memcpy(dst, src, 0, n)
    else:
        apply_blocks(src, dst, starts, counts, offsets, frac, a1, a2, a3, a4, 0, n)


@nb.njit(nogil=True, cache=True)
def derive_aligned(img, raw, starts, counts, offsets, frac, code, p1, p2, p3, p4, p5, p6, table, s0,
                   c):  # pragma: no cover - compiled
    """:func:`derive` into ``raw[off : off + img.size]``, ``off`` < 16 the first voxel of ``raw`` on a 64-byte
    boundary (``raw``: 1-D float32 of at least ``img.size + ALIGN_VOXELS − 1`` voxels); returns ``off``.

    Why: numpy starts a large array 16 bytes past a 64-byte boundary, so half of the pass's 32-byte vector stores
    straddle two cache lines. With the output (and the model's image, ``block_layout.aligned_copy``) on 64-byte
    boundaries, ``bench/simulate.py --sizes 64,64,64 --cases head`` gave 1.34–1.44× a copy (median 1.41) vs
    1.44–1.69× (median 1.52) in 6 alternating runs (load 1.5–1.9 on 2 cores); the bare pass 29.0 µs vs 31.2 µs."""
    off = (-(_address(raw) >> 2)) & (ALIGN_VOXELS - 1)
    derive(img, raw[off:off + img.size], starts, counts, offsets, frac, code, p1, p2, p3, p4, p5, p6, table, s0, c)
    return off


# ------------------------------------------------------------------ one compiled entry per derivative (issue 9)
#: Target values :func:`derive_target` takes, in this order (``AcquisitionParams`` fields; NaN: unknown).
TARGET_FIELDS = ("TE_ms", "TI_ms", "TR_ms", "FA_deg", "TI1_ms", "TI2_ms", "TX_ms", "N", "Trec_ms")
#: Layout of the model constants ``consts`` (float64) of :func:`derive_target`: the 3 × 4 parameter table (PD, T1,
#: T2 or T2* in ms, row-major), the 4 signals at the source, the scale ``c``, the source's values of
#: :data:`TARGET_FIELDS` (NaN: unknown), then per field of :data:`TARGET_FIELDS` its check (needed by the
#: sequence 1/0, low, high, low bound excluded 1/0: ``AcquisitionParams._meets``).
C_TABLE, C_S0, C_SCALE, C_SOURCE, C_CHECKS = 0, 12, 16, 17, 26
C_SIZE = C_CHECKS + 4 * len(TARGET_FIELDS)


@nb.njit(nogil=True, cache=True, inline="always")
def _merge(x, consts, i):  # pragma: no cover - compiled
    """The target's value of field ``i``, the source's where the target leaves it unknown (NaN)."""
    return consts[C_SOURCE + i] if np.isnan(x) else x


@nb.njit(nogil=True, cache=True, inline="always")
def _passes(x, consts, i):  # pragma: no cover - compiled
    """False when field ``i`` is needed by the sequence and unknown or outside its range (``_meets``)."""
    q = C_CHECKS + 4 * i
    if consts[q] == 0.0:
        return True
    if np.isnan(x):
        return False
    lo = consts[q + 1]
    return not (x < lo or (consts[q + 3] != 0.0 and x == lo) or x > consts[q + 2])


@nb.njit(nogil=True, cache=True)
def derive_target(img, dst, spans, frac, consts, align, code, te, ti, tr, fa, ti1, ti2, tx, n_pulses,
                  trec):  # pragma: no cover - compiled
    """One derivative in one call: the target values (:data:`TARGET_FIELDS`, NaN = unknown) merged with the
    source's and checked as ``AcquisitionParams.merged(...)._meets(sequence)`` does, the 4 increments from the
    scalar signal equations (:func:`tissue_deltas`' numbers), then the pass (:func:`derive`). ``spans``: int64
    (3, S) rows starts, counts, offsets; ``consts``: see :data:`C_TABLE` .. :data:`C_CHECKS`.

    ``align`` True: ``dst`` is a 1-D buffer of ≥ ``img.size + 15`` voxels and the output its view from the first
    voxel on a 64-byte boundary (as :func:`derive_aligned`); else ``dst`` is image-shaped and written from 0.
    Returns that offset, or −1 (nothing written) when the merged target fails the checks (the caller raises
    with the full message). Why one entry: the Python merge, check and packing of the parameters and a
    17-argument dispatch cost ~5 µs per call, a fifth of a 64³ copy (``bench/simulate.py --sizes 64,64,64``)."""
    te, ti, tr = _merge(te, consts, 0), _merge(ti, consts, 1), _merge(tr, consts, 2)
    fa, ti1, ti2 = _merge(fa, consts, 3), _merge(ti1, consts, 4), _merge(ti2, consts, 5)
    tx, n_pulses, trec = _merge(tx, consts, 6), _merge(n_pulses, consts, 7), _merge(trec, consts, 8)
    if not (_passes(te, consts, 0) and _passes(ti, consts, 1) and _passes(tr, consts, 2) and _passes(fa, consts, 3)
            and _passes(ti1, consts, 4) and _passes(ti2, consts, 5) and _passes(tx, consts, 6)
            and _passes(n_pulses, consts, 7)):
        return -1
    if te >= tr or (code == 3 and ti1 <= ti2) or ((code == 1 or code == 2) and ti > tr):
        return -1
    # the values of scalar_signal.pack for the sequence
    p1, p2, p3, p4, p5, p6 = te, 0.0, 0.0, 0.0, 0.0, 0.0
    if code == 0:
        p2 = tr
    elif code == 1:
        p2, p3 = ti, tr
    elif code == 2:
        p2, p3 = ti, (tr if np.isnan(trec) else trec)
    elif code == 3:
        p2, p3, p4 = ti1, ti2, tr
    elif code == 4:
        p2, p3 = tr, fa
    else:
        p2, p3, p4, p5, p6 = ti, tr, fa, tx, n_pulses
    table, s0, c = consts[C_TABLE:C_TABLE + 12].reshape((3, 4)), consts[C_S0:C_S0 + 4], consts[C_SCALE]
    if align:
        return derive_aligned(img, dst, spans[0], spans[1], spans[2], frac, code, p1, p2, p3, p4, p5, p6, table,
                              s0, c)
    derive(img, dst, spans[0], spans[1], spans[2], frac, code, p1, p2, p3, p4, p5, p6, table, s0, c)
    return 0
