"""Block layout of the tissue fractions: a derivative in one streaming pass over the image (issue 9).

The image is cut into blocks of 8 voxels in memory order. Blocks that hold any tissue are grouped into
*spans* (runs of consecutive tissue blocks); for each tissue block the layout keeps one 64-byte record: the
4 tissue fractions of its 8 voxels as ``uint16`` fixed point ``k = round(f·2¹⁵)`` (``f = 1`` is exactly
2¹⁵). A derivative ``S_new = S + Σ_t f_t·Δ_t`` is then one compiled pass (:mod:`.block_kernels`): voxels
between spans are copied, tissue blocks are 8-lane vector sums reading their record, in memory order, so
everything streams (no per-voxel index, no gather, no label byte for the tissue-free voxels).

Accuracy: crisp voxels (one tissue, fraction 1) get exactly ``S + Δ_t`` and tissue-free voxels exactly
``S``; any voxel is within ``Σ_t |Δ_t|·2⁻¹⁶`` (fraction rounding, at most half a step of 2⁻¹⁵ per tissue)
plus float32 rounding of the dense sum ``S + Σ_t f_t·Δ_t`` (tested). For a FLAIR with increments of a few
hundred that is < 0.01 intensity units.

Why this layout (measured with ``bench/simulate.py --sizes``, head-shaped fractions): the former label layout
(a uint8 label per voxel plus an index and 4 float32 fractions per partial-volume voxel) cost 2.9× a copy at
64³, where 60 % of the tissue voxels are partial volume (their scattered index/fraction reads, 24 bytes
each, and the label byte of every voxel); the block records are read sequentially, 8 bytes per tissue voxel,
and the tissue-free 87–90 % of a head volume are a plain copy. Memory held with the model: 8 bytes per voxel
of the tissue blocks (1.25× the tissue voxels of a head at 64³, 1.1× at 256×256×176).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..physics.scalar_signal import SEQUENCE_CODES, pack

__all__ = ["BlockLayout", "PARALLEL_MIN", "MAX_TISSUES", "MERGE_GAP_BLOCKS", "build", "available", "quantise",
           "aligned_empty", "aligned_copy", "entry_constants", "derive_target"]

#: Tissues the compiled pass handles (CSF, GM, WM, lesion); fewer are padded with zero fractions.
MAX_TISSUES = 4

#: Two spans separated by at most this many tissue-free blocks are merged (the gap then costs a zero record:
#: 64 bytes, cheaper than a span boundary).
MERGE_GAP_BLOCKS = 1

#: Volumes of at least this many voxels are split over the threads (``$NEUROSHIFT_THREADS``) of the persistent
#: pool of :func:`neuroshift.physics.parallel.run_parts` (a hand-over costs ~30 µs there). Measured on 2 cores
#: (AMD EPYC VM, idle, interleaved, product path ``TissueModel.simulate``, new output array per call): at 128³
#: one thread 0.87–1.00× a copy vs 1.31–1.34× on two (the pass is bound by one core's memory bandwidth; the
#: split only pays where the first touch of a fresh output, its page faults, is large: 176×256×256 1.05× on two
#: vs 1.35× on one); 160³ about even (0.93 vs 1.03). So from 2²² voxels (161³) on.
PARALLEL_MIN = 1 << 22


_KERNELS: list = []  # the compiled module, once imported


def available() -> bool:
    """True when the compiled pass imports (numba installed)."""
    try:
        from . import block_kernels  # noqa: F401
    except ImportError:
        return False
    return True


#: dtype of the fraction records: float32 (the dense sum to float32 rounding) or uint16 (fixed point, half the
#: bytes, error ≤ Σ_t |Δ_t|·2⁻¹⁶).
RECORD_DTYPE = np.uint16


def quantise(fractions: np.ndarray) -> np.ndarray:
    """Fractions in [0, 1] as ``uint16`` fixed point ``round(f·2¹⁵)`` (error ≤ 2⁻¹⁶; 0 and 1 exact)."""
    return np.rint(np.clip(fractions, 0.0, 1.0) * 32768.0).astype(np.uint16)


#: float32 voxels per 64 bytes: new outputs and the model's image start on a cache line (``derive_aligned``).
_ALIGN = 16


def aligned_empty(shape: tuple) -> np.ndarray:
    """An uninitialised C-contiguous float32 array of ``shape`` starting on a 64-byte boundary (a view into a
    buffer 15 voxels longer; numpy starts large arrays 16 bytes past a boundary)."""
    n = int(np.prod(shape))
    raw = np.empty(n + _ALIGN - 1, np.float32)
    off = (-(raw.ctypes.data >> 2)) & (_ALIGN - 1)
    return raw[off:off + n].reshape(shape)


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous float32 array on a 64-byte boundary (``a`` itself when it already is one)."""
    if a.dtype == np.float32 and a.flags.c_contiguous and a.ctypes.data % 64 == 0:
        return a
    out = aligned_empty(a.shape)
    np.copyto(out, a)
    return out


def _records(fractions: np.ndarray) -> np.ndarray:
    return quantise(fractions) if RECORD_DTYPE == np.uint16 else fractions


@dataclass(eq=False)
class BlockLayout:
    """Tissue spans (in 8-voxel blocks) and one uint16 fraction record per tissue block (see the module)."""

    size: int                  # voxels of the image
    starts: np.ndarray         # int64 (S,), first block of each span, ascending
    counts: np.ndarray         # int64 (S,), blocks of each span
    offsets: np.ndarray        # int64 (S,), first record of each span
    records: np.ndarray        # uint16 (blocks × 32): [tissue 0 × 8 voxels, tissue 1 × 8, ...] per block
    tissue_voxels: int         # voxels with any tissue

    @property
    def block_voxels(self) -> int:
        """Voxels inside the tissue blocks (tissue voxels plus the padding of their blocks)."""
        return int(self.counts.sum()) * 8

    @staticmethod
    def kernels():
        """The compiled module :mod:`.block_kernels` (imported on first use: numba)."""
        if not _KERNELS:
            from . import block_kernels

            _KERNELS.append(block_kernels)
        return _KERNELS[0]

    def derive(self, img: np.ndarray, out: np.ndarray | None, sequence: str, params, table: np.ndarray,
               s0: np.ndarray, c: float) -> np.ndarray:
        """``out = img + Σ_t f_t·c·(S_t(params) − s0_t)``: the increments from the compiled scalar signal
        equations (``table``: 3 × 4 PD, T1, T2 or T2* in ms; ``s0``: 4 signals at the source), then the pass; a
        plain copy when every increment is 0. Below :data:`PARALLEL_MIN` voxels one compiled call does both.
        ``out`` None: a new array starting on a 64-byte boundary (``block_kernels.derive_aligned``)."""
        k = _KERNELS[0] if _KERNELS else self.kernels()
        p = [float(v) for v in pack(sequence, params)]  # floats: one compiled version, whatever the caller typed
        code = SEQUENCE_CODES[sequence]
        size = self.size
        if size < PARALLEL_MIN:
            if out is None:  # the kernel finds the aligned start in a slightly longer buffer (no ctypes call here)
                raw = np.empty(size + _ALIGN - 1, np.float32)
                off = k.derive_aligned(img, raw, self.starts, self.counts, self.offsets, self.records, code, *p, table,
                                       s0, c)
                return raw[off:off + size].reshape(img.shape)
            k.derive(img, out, self.starts, self.counts, self.offsets, self.records, code, *p, table, s0, c)
            return out
        if out is None:
            out = aligned_empty(img.shape)
        delta = k.tissue_deltas(code, *p, table, s0, c)
        if not any(delta):
            np.copyto(out, img)
            return out
        return self.apply(img, delta, out)

    def apply(self, img: np.ndarray, delta, out: np.ndarray) -> np.ndarray:
        """``out = img + Σ_t Δ_t·f_t`` (C-contiguous float32 arrays of the image shape; ``delta``: up to 4 floats
        in stack order, rounded to float32 in the pass)."""
        d = [float(v) for v in delta] + [0.0] * (MAX_TISSUES - len(delta))
        apply_blocks = self.kernels().apply_blocks
        src, dst = img.reshape(-1), out.reshape(-1)
        if self.size < PARALLEL_MIN:  # one thread: call the pass directly (a 64³ copy takes ~25 µs)
            apply_blocks(src, dst, self.starts, self.counts, self.offsets, self.records, d[0], d[1], d[2], d[3],
                         0, self.size)
            return out
        from ..physics.parallel import run_parts

        def run(lo: int, hi: int) -> None:
            apply_blocks(src, dst, self.starts, self.counts, self.offsets, self.records, d[0], d[1], d[2], d[3],
                         lo, hi)

        run_parts(run, self.size, PARALLEL_MIN, align=8)
        return out


def build(shape: tuple, stack: np.ndarray, box: tuple) -> BlockLayout | None:
    """The block layout of a fraction ``stack`` (T, voxels of ``box``), or None when it does not apply.

    None: more than :data:`MAX_TISSUES` tissues, or numba not importable (the dense layouts are used then).
    """
    n_t = stack.shape[0]
    if n_t == 0 or n_t > MAX_TISSUES or not available():
        return None
    size = int(np.prod(shape))
    n_blocks = -(-size // 8)
    box_shape = tuple(s.stop - s.start for s in box)
    tissue = np.zeros(n_blocks * 8, bool)
    tissue[:size].reshape(shape)[box] = (stack > 0).any(axis=0).reshape(box_shape)
    blocks = np.flatnonzero(tissue.reshape(n_blocks, 8).any(axis=1))
    if blocks.size:
        cut = np.flatnonzero(np.diff(blocks) > MERGE_GAP_BLOCKS + 1)
        starts = np.concatenate([blocks[:1], blocks[cut + 1]]).astype(np.int64)
        stops = np.concatenate([blocks[cut], blocks[-1:]]).astype(np.int64) + 1
    else:
        starts = stops = np.zeros(0, np.int64)
    counts = stops - starts
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    # block index of every record (span blocks in order) and the quantised fractions, one tissue at a time
    rec_blocks = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    records = np.zeros((rec_blocks.size, MAX_TISSUES, 8), RECORD_DTYPE)
    full = np.zeros(n_blocks * 8, np.float32)
    for t in range(n_t):
        full[:size].reshape(shape)[box] = stack[t].reshape(box_shape)
        records[:, t, :] = _records(full.reshape(n_blocks, 8)[rec_blocks])
    return BlockLayout(size, starts, counts, offsets, records.reshape(-1), int(np.count_nonzero(tissue)))


# ------------------------------------------------------------------ the one-call derivative (simulate's fast path)
#: Compiled entries of :func:`block_kernels.derive_target` by (image ndim, new output?, record dtype): numba's
#: wrapper of the compiled signature, called without the dispatcher's type resolution of its 16 arguments
#: (1.3 µs of a 64³ derivative's ~30 µs, ``bench/simulate.py``). Safe because every argument's type is fixed by
#: that key: the model's own C-contiguous float32 image, int64 spans, float64 constants, a float32 output
#: (a new 1-D buffer, or ``out`` checked to be C-contiguous float32 of the image shape), a bool, an int and floats.
_ENTRY: dict = {}
_NAN = float("nan")


def entry_constants(table: np.ndarray, s0: np.ndarray, c: float, sequence: str, source) -> np.ndarray:
    """The model constants of :func:`block_kernels.derive_target` (float64; layout ``block_kernels.C_TABLE`` ..
    ``C_CHECKS``): the 3 × 4 parameter table at the model's field (ms), the 4 source signals, ``c``, the source's
    values of ``TARGET_FIELDS`` (NaN: unknown) and the range checks of ``sequence`` (``AcquisitionParams._meets``)."""
    from ..io.params import range_checks
    from . import block_kernels as k

    consts = np.zeros(k.C_SIZE, np.float64)
    consts[k.C_TABLE:k.C_TABLE + 12] = np.asarray(table, np.float64)[:, :MAX_TISSUES].reshape(-1)
    consts[k.C_S0:k.C_S0 + MAX_TISSUES] = np.asarray(s0, np.float64)[:MAX_TISSUES]
    consts[k.C_SCALE] = float(c)
    values = source.__dict__
    for i, name in enumerate(k.TARGET_FIELDS):
        v = values[name]
        consts[k.C_SOURCE + i] = _NAN if v is None else float(v)
    for name, lo, hi, lo_open in range_checks(sequence):
        q = k.C_CHECKS + 4 * k.TARGET_FIELDS.index(name)
        consts[q:q + 4] = 1.0, lo, hi, float(lo_open)
    return consts


def derive_target(img: np.ndarray, spans: np.ndarray, records: np.ndarray, consts: np.ndarray, code: int,
                  target, out: np.ndarray | None) -> np.ndarray | None:
    """The derivative at ``target`` (an ``AcquisitionParams`` at the model's field strength) in one compiled call
    (:func:`block_kernels.derive_target`: merge with the source, checks, increments, pass), or None when the
    merged target fails the checks (nothing written; the caller's general path raises, naming the problem).
    ``out`` None: a new array on a 64-byte boundary; else a C-contiguous float32 image-shaped array (checked by
    the caller), filled in place. Only below :data:`PARALLEL_MIN` voxels (one thread)."""
    new = out is None
    kern = _ENTRY.get((img.ndim, new, records.dtype.char))
    t = target.__dict__
    n = img.size
    raw = np.empty(n + _ALIGN - 1, np.float32) if new else out
    if kern is None:
        kern = _entry(img, raw, spans, records, consts, new)
    off = kern(img, raw, spans, records, consts, new, code,
               _NAN if (x := t["TE_ms"]) is None else float(x), _NAN if (x := t["TI_ms"]) is None else float(x),
               _NAN if (x := t["TR_ms"]) is None else float(x), _NAN if (x := t["FA_deg"]) is None else float(x),
               _NAN if (x := t["TI1_ms"]) is None else float(x), _NAN if (x := t["TI2_ms"]) is None else float(x),
               _NAN if (x := t["TX_ms"]) is None else float(x), _NAN if (x := t["N"]) is None else float(x),
               _NAN if (x := t["Trec_ms"]) is None else float(x))
    if off < 0:
        return None
    return raw[off:off + n].reshape(img.shape) if new else out


def _entry(img, dst, spans, records, consts, new: bool):
    """The compiled entry for these argument types (compiled or read from numba's cache on first use)."""
    from numba import typeof

    from .block_kernels import derive_target as dispatcher

    sig = tuple(typeof(a) for a in (img, dst, spans, records, consts, True, 0)) + (typeof(0.0),) * 9
    entry = _ENTRY[(img.ndim, new, records.dtype.char)] = dispatcher.compile(sig)
    return entry
