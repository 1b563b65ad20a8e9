"""Label layout of the tissue fractions: a derivative in one pass over the image (issue 9).

Most voxels of a tissue map are *crisp* (one tissue, fraction exactly 1). For those the derivative
``S_new = S + Σ_t Δ_t·f_t`` is ``S + Δ_label``: the layout stores a ``uint8`` label per voxel
(0: no tissue, 1..T: the crisp tissue, :data:`PARTIAL`: partial volume) and, for the partial-volume
voxels only, their flat indices and fraction rows. A derivative is then one compiled pass over
image + labels (≈ 9 bytes per voxel moved, a copy moves 8) and a short pass over the partial-volume
list (:mod:`.label_kernels`). Same sums as the dense layouts: crisp voxels get exactly
``S + Δ_t`` (bit for bit the dense sum ``S + 1·Δ_t + 0·…``), partial-volume voxels
``S + Σ_t f_t·Δ_t`` in float32 (summation order may differ from BLAS: float32 rounding).

Chosen by :func:`build` when the compiled loops import (numba) and at most :data:`MAX_PARTIAL_SHARE`
of the tissue voxels are partial volume; otherwise the model keeps the dense (slab/box) layouts.
Memory: 1 byte per voxel plus 8 + 4·T bytes per partial-volume voxel, held with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LabelLayout", "PARTIAL", "MAX_PARTIAL_SHARE", "MAX_TISSUES", "PARALLEL_MIN", "build", "available"]

#: Label of a partial-volume voxel.
PARTIAL = 255

#: Use the label layout when at most this share of the tissue voxels is partial volume.
MAX_PARTIAL_SHARE = 0.75

#: Tissues the compiled crisp loop handles (CSF, GM, WM, lesion).
MAX_TISSUES = 4

#: Volumes of at least this many voxels are split over the threads (``$NEUROSHIFT_THREADS``) of the persistent
#: pool of :func:`neuroshift.physics.parallel.run_parts` (a hand-over costs ~30 µs there; a new thread pool per call
#: cost more than it saved below 8.4 M voxels: 128³ 4.6× vs 2.3× a copy with 2 threads on a busy machine).
PARALLEL_MIN = 1 << 19


def available() -> bool:
    """True when the compiled loops import (numba installed)."""
    try:
        from . import label_kernels  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(eq=False)
class LabelLayout:
    """Per-voxel tissue labels (uint8, image shape) and the partial-volume voxels' flat indices and fractions."""

    labels: np.ndarray            # uint8, C-contiguous, image shape
    partial_index: np.ndarray     # int64 (P,), ascending flat indices
    partial_fractions: np.ndarray  # float32 (P, 4), stack order, padded with zeros

    @property
    def partial_share(self) -> float:
        """Partial-volume voxels / voxels with any tissue."""
        n_tissue = int(np.count_nonzero(self.labels))
        return self.partial_index.size / n_tissue if n_tissue else 0.0

    def apply(self, img: np.ndarray, delta: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = img + Σ_t Δ_t·f_t`` (float32 arrays of the image shape; ``delta`` in stack order)."""
        from . import label_kernels as lk

        d = np.zeros(MAX_TISSUES, np.float32)
        d[:delta.size] = delta
        d1, d2, d3, d4 = (np.float32(v) for v in d)
        src, dst, lab = img.reshape(-1), out.reshape(-1), self.labels.reshape(-1)
        idx, fr = self.partial_index, self.partial_fractions

        def run(lo: int, hi: int) -> None:
            k0, k1 = np.searchsorted(idx, [lo, hi])
            lk.apply_labels(src[lo:hi], lab[lo:hi], d1, d2, d3, d4, idx[k0:k1], fr[k0:k1], lo, dst[lo:hi])

        from ..physics.parallel import run_parts

        run_parts(run, src.size, PARALLEL_MIN)
        return out


def build(shape: tuple, stack: np.ndarray, box: tuple) -> LabelLayout | None:
    """The label layout of a fraction ``stack`` (T, voxels of ``box``), or None when it does not pay or apply.

    None: more than :data:`MAX_TISSUES` tissues, more than :data:`MAX_PARTIAL_SHARE` of the tissue voxels
    partial volume, or numba not importable (the dense layouts are used then).
    """
    n_t = stack.shape[0]
    if n_t == 0 or n_t > MAX_TISSUES or not available():
        return None
    box_shape = tuple(s.stop - s.start for s in box)
    nonzero = np.count_nonzero(stack > 0, axis=0)
    crisp = (nonzero == 1) & (stack.max(axis=0) == 1.0)
    partial = (nonzero > 0) & ~crisp
    n_tissue = int(np.count_nonzero(nonzero))
    if n_tissue and np.count_nonzero(partial) > MAX_PARTIAL_SHARE * n_tissue:
        return None
    lab_box = np.zeros(stack.shape[1], np.uint8)
    lab_box[crisp] = (np.argmax(stack[:, crisp], axis=0) + 1).astype(np.uint8)
    lab_box[partial] = PARTIAL
    labels = np.zeros(shape, np.uint8)
    labels[box] = lab_box.reshape(box_shape)
    flat = labels.reshape(-1)
    index = np.flatnonzero(flat == PARTIAL).astype(np.int64)
    # the partial-volume rows in the same (ascending flat index) order: box-local positions of those voxels
    local = np.flatnonzero(lab_box.reshape(box_shape) == PARTIAL) if index.size else np.zeros(0, np.int64)
    fractions = np.zeros((index.size, MAX_TISSUES), np.float32)  # rows padded to 4 tissues (zeros add 0)
    fractions[:, :n_t] = stack[:, local].T
    return LabelLayout(labels, index, fractions)
