"""MRF metrics (issue 12): relative deviation, Dice and LDR vs threshold, CSV and PNG curves."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.mrf.metrics import (at_threshold, curves_csv_text, relative_deviation, summarise, threshold_curves,
                                    write_curves_csv)


def _lesions():
    gt = np.zeros((20, 20, 10), dtype=bool)
    gt[2:5, 2:5, 2:5] = True  # lesion 1: 27 voxels
    gt[10:12, 10:12, 5:7] = True  # lesion 2: 8 voxels
    gt[15, 15, 8] = True  # lesion 3: 1 voxel
    return gt


def test_relative_deviation_literal_and_zero_reference_ignored():
    ref = np.array([100.0, 200.0, 0.0, 50.0])
    pred = np.array([110.0, 180.0, 999.0, 50.0])
    assert relative_deviation(pred, ref) == pytest.approx((0.1 + 0.1 + 0.0) / 3)
    assert relative_deviation(pred, ref, mask=np.array([1, 0, 1, 1], bool)) == pytest.approx(0.05)
    assert np.isnan(relative_deviation(pred, np.zeros(4)))


def test_ground_truth_fed_back_gives_dice_and_ldr_one_at_every_threshold():
    gt = _lesions()
    rows = threshold_curves(gt * 100.0, gt)
    assert len(rows) == 100
    assert all(r["dice"] == 1.0 and r["ldr"] == 1.0 and r["n_gt_lesions"] == 3 for r in rows)


def test_ldr_never_increases_with_threshold_and_literal_values():
    gt = _lesions()
    rng = np.random.default_rng(0)
    prob = np.clip(rng.normal(0, 10, gt.shape), 0, 100)
    prob[gt] = rng.uniform(0, 100, gt.sum())
    rows = threshold_curves(prob, gt, thresholds_pct=np.arange(1, 101))
    ldr = np.array([r["ldr"] for r in rows])
    assert np.all(np.diff(ldr) <= 0)
    assert np.all(np.diff([r["predicted_voxels"] for r in rows]) <= 0)
    # literal case: lesion 1 at 60 %, lesion 2 at 20 %, lesion 3 missed; one false-positive voxel at 90 %
    p = np.zeros(gt.shape)
    p[2:5, 2:5, 2:5] = 60.0
    p[10:12, 10:12, 5:7] = 20.0
    p[0, 19, 0] = 90.0
    r = threshold_curves(p, gt, [10.0, 33.0, 70.0])
    assert [x["ldr"] for x in r] == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert r[0]["dice"] == pytest.approx(2 * 35 / (36 + 36))
    assert r[1]["dice"] == pytest.approx(2 * 27 / (28 + 36))
    assert r[2]["dice"] == 0.0
    assert at_threshold(r)["threshold_pct"] == 33.0


def test_curves_csv_and_png(tmp_path):
    from neuroshift.mrf.plots import write_curves_png

    gt = _lesions()
    rows = threshold_curves(gt * 50.0, gt, [25.0, 33.0, 75.0])
    text = curves_csv_text(rows)
    assert text.splitlines()[0] == "threshold_pct,dice,ldr,n_gt_lesions,detected_lesions,predicted_voxels"
    assert text.splitlines()[2] == "33.0,1.0,1.0,3,3,36"
    assert text.splitlines()[3] == "75.0,0.0,0.0,3,0,0"
    write_curves_csv(rows, tmp_path / "c.csv")
    png = write_curves_png(rows, tmp_path / "c.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_summarise_reports_paper_point():
    gt = _lesions()
    ref = {"T1": np.full(gt.shape, 1000.0), "T2star": np.full(gt.shape, 50.0), "lesion": gt.astype(float)}
    pred = {"T1": np.full(gt.shape, 1050.0), "T2star": np.full(gt.shape, 45.0), "lesion": gt * 100.0}
    s = summarise(pred, ref)
    assert s["T1_rel_dev"] == pytest.approx(0.05) and s["T2star_rel_dev"] == pytest.approx(0.1)
    assert s["lesion_dice_33pct"] == 1.0 and s["lesion_ldr_33pct"] == 1.0 and s["n_gt_lesions"] == 3
