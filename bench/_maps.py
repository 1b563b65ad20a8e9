"""SYNTHETIC quantitative maps for the benchmarks (head-shaped tissue mixture, 3 T literature values)."""

from __future__ import annotations

import numpy as np

from neuroshift.io.volume import Volume
from neuroshift.physics.relaxation import relaxation_table
from neuroshift.qmri import QMRIMaps
from neuroshift.simulate.synthetic import synthetic_fractions


def synthetic_maps(shape, seed: int = 0, *, brain_fill: bool = False) -> QMRIMaps:
    """PD, T1, T2, T2* (float32, ms): fraction-weighted 3 T tissue values; 0 outside the brain. SYNTHETIC.

    ``brain_fill=True``: the brain ellipsoid is stretched over the whole array (every voxel is tissue, the
    worst case for kernels that skip background); default: a 1-mm head, brain ≈ 13 % of the voxels.
    """
    if brain_fill:
        axes = tuple(0.9 * n for n in shape)  # semi-axes (voxels) reaching past the corners: no background
        fr = synthetic_fractions(shape, seed=seed, brain_semi_axes_mm=axes)
    else:
        fr = synthetic_fractions(shape, seed=seed)
    table = relaxation_table(3.0)
    total = sum(fr.values())
    ref = Volume(np.zeros(shape, np.float32), spacing=(1.0, 1.0, 1.0), meta={"description": "SYNTHETIC"})
    maps = {}
    for name, attr in (("PD", "pd"), ("T1", "t1_ms"), ("T2", "t2_ms"), ("T2star", "t2star_ms")):
        acc = np.zeros(shape, np.float32)
        for t, f in fr.items():
            acc += np.float32(getattr(table[t], attr)) * f
        acc = np.where(total > 0, acc / np.where(total > 0, total, 1), 0).astype(np.float32)
        maps[name] = ref.with_data(acc)
    return QMRIMaps(maps)
