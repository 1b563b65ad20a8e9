"""Test helpers moved out of test_stress_engine.py, which other tests imported them from (issue 16).

Names: GRID, N_GT, PassThroughSimulator, QuadraticF1Model, SHAPE, by_key, gt_mask, lesion_positions, memory_case,
true_f1, true_tp.
"""

from __future__ import annotations

import numpy as np

from neuroshift.io import Volume
from neuroshift.io.params import AcquisitionParams
from neuroshift.stress.cases import LoadedCase


GRID = "TE=60:140:5,TI=2100:2900:5"
N_GT = 50
SHAPE = (1, 20, 20)


def lesion_positions():
    """100 isolated one-voxel spots (every other voxel: no two are 26-connected)."""
    return [(0, 2 * (i // 10), 2 * (i % 10)) for i in range(100)]


def true_tp(te: float, ti: float) -> int:
    """Detected lesions, an integer-valued quadratic of TE and TI on the test grid."""
    a, b = (te - 100.0) / 40.0, (ti - 2500.0) / 400.0
    return int(round(25 + 8 * a + 4 * b - 4 * a * a - 4 * b * b + 4 * a * b))


def true_f1(te, ti):
    # N_GT lesions, TP of them detected plus N_GT - TP false spots: precision = recall = TP / N_GT.
    return true_tp(te, ti) / N_GT


class PassThroughSimulator:
    """Returns the case image unchanged (the model reads the target parameters from meta)."""

    def fit(self, case, sequence):
        return {"fitted_for": case.case_id}

    def render(self, fitted, case, target, shifts, *, seed):
        return case.image.with_data(np.array(case.image.data, dtype=np.float32))


class QuadraticF1Model:
    """Detects ``true_tp(TE, TI)`` of the 50 ground-truth lesions and adds ``50 - TP`` false ones."""

    name = "quadratic-f1"
    image_channel = "FLAIR"
    extra_inputs = ()

    def predict(self, inputs, *, case_id=""):
        image = inputs["FLAIR"]
        acq = image.meta["acquisition"]
        tp = true_tp(acq["TE_ms"], acq["TI_ms"])
        pos = lesion_positions()
        out = np.zeros(image.data.shape, np.uint8)
        for i in range(tp):
            out[pos[i]] = 1
        for i in range(N_GT, 2 * N_GT - tp):
            out[pos[i]] = 1
        return image.with_data(out)


def gt_mask() -> np.ndarray:
    g = np.zeros(SHAPE, np.uint8)
    for p in lesion_positions()[:N_GT]:
        g[p] = 1
    return g


def memory_case(case_id="c1", te=100.0, ti=2500.0) -> LoadedCase:
    img = Volume(np.full(SHAPE, 100.0, np.float32), spacing=(1, 1, 1))
    frac = {"WM": img.with_data(np.ones(SHAPE, np.float32))}
    return LoadedCase(case_id, img, AcquisitionParams(TE_ms=te, TI_ms=ti, TR_ms=9000.0), frac, img.with_data(gt_mask()))


def by_key(run):
    return {r["key"]: r["metrics"] for r in run.records}
