"""Compiled (numba) loop of the label layout of :mod:`.label_layout`; imported lazily (numba JIT on first use).

Why numba: a derivative is ``out = image + Δ[label]`` plus a few partial-volume voxels, one pass over
the image. numpy has no fused gather-and-add: ``np.take`` costs 4–6 ns per voxel (10–25× a copy per
voxel) and a ufunc chain is at least two passes (≥ 2× a copy). Here the crisp voxels compile to SIMD
selects (no gather); the partial-volume voxels (sorted flat indices) of each chunk are written right
after it, while its lines are in cache (a second pass over a volume larger than the cache cost ~20 ns per
partial-volume voxel in cache misses: 256×256×176 head 2.2× a copy). Measured in
``bench/simulate.py --sizes``. Compiled once per machine (``cache=True`` keeps it in ``__pycache__``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["apply_labels", "CHUNK"]

#: Voxels per chunk (image + output + labels: 36 KiB, inside L1/L2).
CHUNK = 4096

@nb.njit(nogil=True, cache=True, boundscheck=False)
def _crisp(img, labels, d1, d2, d3, d4, out):  # pragma: no cover - compiled
    # range(size) on contiguous views: no index wrap-around checks, so LLVM vectorises the selects
    zero = np.float32(0.0)
    for i in range(img.size):
        lab = labels[i]
        d = zero
        d = d1 if lab == 1 else d
        d = d2 if lab == 2 else d
        d = d3 if lab == 3 else d
        d = d4 if lab == 4 else d
        out[i] = img[i] + d


@nb.njit(nogil=True, cache=True, boundscheck=False)
def apply_labels(img, labels, d1, d2, d3, d4, index, fractions, offset, out):  # pragma: no cover - compiled
    """``out = img + Δ_label`` (labels 1–4; others add 0), then at ``j = index[k] − offset``
    ``out[j] = img[j] + Σ_t fractions[k, t]·Δ_t`` (4 columns), chunk by chunk: the partial-volume voxels
    of a chunk are written while its image and output lines are still in cache (views of one part)."""
    n = img.size
    n_pv = index.size
    k = 0
    for c0 in range(0, n, CHUNK):
        c1 = min(c0 + CHUNK, n)
        _crisp(img[c0:c1], labels[c0:c1], d1, d2, d3, d4, out[c0:c1])
        while k < n_pv and index[k] - offset < c1:
            j = index[k] - offset
            out[j] = (img[j] + fractions[k, 0] * d1 + fractions[k, 1] * d2 + fractions[k, 2] * d3
                      + fractions[k, 3] * d4)
            k += 1
