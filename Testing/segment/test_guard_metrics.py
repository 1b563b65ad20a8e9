"""Guards from the mutation audit (issue 13): directional HD95 and the WMH-challenge boundaries.

Every expected value is derived by hand in the comments (1-voxel-thick rows, where every mask
voxel is a boundary voxel), not by calling the metric code a second time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroshift.io.volume import Volume
from neuroshift.segment.metrics import dice, evaluate_masks, hd95_mm, volume_similarity


def row(n: int, on) -> np.ndarray:
    """A (1, 1, n) mask with the listed voxels set (every set voxel is a boundary voxel)."""
    a = np.zeros((1, 1, n), bool)
    a[0, 0, list(on)] = True
    return a


def test_hd95_is_the_larger_directed_percentile_with_a_distant_false_positive():
    gt = row(16, [0, 1])
    pred = row(16, [0, 1, 10, 11])
    # pred -> gt distances (voxels): 0, 0, 9, 10; numpy's linear 95th percentile: rank 0.95 * 3 = 2.85
    # -> 9 + 0.85 * (10 - 9) = 9.85.  gt -> pred: 0, 0 -> 0.  HD95 = max = 9.85 (min would be 0).
    assert hd95_mm(pred, gt, spacing=(1.0, 1.0, 1.0)) == pytest.approx(9.85, abs=1e-12)
    assert hd95_mm(gt, pred, spacing=(1.0, 1.0, 1.0)) == pytest.approx(9.85, abs=1e-12)  # symmetric
    # spacing along the row's axis (array axis 2) scales it: 0.5 mm voxels -> 4.925 mm
    assert hd95_mm(pred, gt, spacing=(3.0, 2.0, 0.5)) == pytest.approx(4.925, abs=1e-12)


def test_hd95_of_a_one_voxel_shift_is_one_voxel_not_within_five_percent():
    gt = row(12, [2, 3, 4])
    pred = row(12, [3, 4, 5])
    # pred->gt: 0, 0, 1; gt->pred: 1, 0, 0 -> each 95th percentile: rank 1.9 -> 0 + 0.9 * 1 = 0.9 voxel
    assert hd95_mm(pred, gt, spacing=(1, 1, 0.8)) == pytest.approx(0.9 * 0.8, abs=1e-12)


def test_hd95_uses_the_volume_spacing_in_ijk_order():
    gt = Volume(row(16, [0, 1]).astype(np.uint8), spacing=(0.5, 2.0, 3.0))  # i spacing 0.5 mm = array axis 2
    pred = gt.with_data(row(16, [0, 1, 10, 11]).astype(np.uint8))
    assert hd95_mm(pred, gt) == pytest.approx(4.925, abs=1e-12)


def test_a_probability_of_exactly_one_half_is_foreground():
    gt = row(6, [1, 2])
    pred = np.zeros((1, 1, 6), np.float32)
    pred[0, 0, 1:3] = 0.5
    assert dice(pred, gt) == 1.0
    pred[0, 0, 2] = np.nextafter(np.float32(0.5), np.float32(0))  # just below 0.5: background
    assert dice(pred, gt) == pytest.approx(2 * 1 / (1 + 2))
    out = evaluate_masks(pred, gt)
    assert out["dsc"] == pytest.approx(2 / 3) and out["n_pred"] == 1


def test_float_ground_truth_label_two_is_ignored_after_rounding():
    # float64 GT as written by resampling: 2.0000001 and 1.9999999 are label 2 (other pathology), 0.9999999 is 1
    gt = np.zeros((1, 1, 10), np.float64)
    gt[0, 0, [0, 1]] = 0.9999999
    gt[0, 0, 4] = 2.0000001
    gt[0, 0, 6] = 1.9999999
    pred = np.zeros((1, 1, 10), np.uint8)
    pred[0, 0, [0, 1, 4, 6]] = 1
    out = evaluate_masks(pred, gt)
    assert out["ignored_voxels"] == 2
    assert out["dsc"] == 1.0 and out["n_gt"] == 1 and out["n_pred"] == 1  # the prediction there is masked out
    assert out["volume_gt_mm3"] == 2.0 and out["volume_pred_mm3"] == 2.0
    # without the ignore label both voxels count as lesion: 4 GT voxels, all predicted
    out_all = evaluate_masks(pred, gt, ignore_label=None)
    assert out_all["ignored_voxels"] == 0 and out_all["volume_gt_mm3"] == 4.0 and out_all["dsc"] == 1.0


def test_hd95_nan_and_zero_conventions():
    empty = np.zeros((1, 1, 5), bool)
    assert hd95_mm(empty, empty) == 0.0
    assert math.isnan(hd95_mm(row(5, [1]), empty))


def test_volume_similarity_is_symmetric_in_over_and_under_segmentation():
    gt = np.zeros((1, 1, 8), bool)
    gt[0, 0, :1] = True
    pred = np.zeros((1, 1, 8), bool)
    pred[0, 0, :3] = True
    # VS = 1 - |V_G - V_P| / (V_G + V_P) = 1 - 2/4 = 0.5 whichever mask is larger
    assert volume_similarity(pred, gt) == 0.5
    assert volume_similarity(gt, pred) == 0.5
