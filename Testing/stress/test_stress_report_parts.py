"""Stress-test report: provenance, per-case results, volumes, example slices, fixed scale, followable advice."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from neuroshift.io import Volume
from neuroshift.io.params import AcquisitionParams
from neuroshift.stress.cases import LoadedCase
from neuroshift.stress.report import write_report
from neuroshift.stress.report_parts import (best_slice, case_rows, corner_points, example_figure, example_panels,
                                            metric_limits, model_sha256, provenance)
from neuroshift.stress.runner import run_stress_test
from neuroshift.stress.surface import fit_surface

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (3, 20, 20)
N_GT = 50
GRID = "TE=60:140:3,TI=2100:2900:3"


def spots():
    """50 isolated one-voxel lesions on slice k = 1 (every other voxel: none 26-connected)."""
    return [(1, 2 * (i // 10), 2 * (i % 10)) for i in range(N_GT)]


def detected(te_ms: float) -> int:
    return int(te_ms // 10)  # TE 60 / 100 / 140 ms -> 6 / 10 / 14 of the 50 lesions, no false ones


class PassThroughSimulator:
    def fit(self, case, sequence):
        return {}

    def render(self, fitted, case, target, shifts, *, seed):
        return case.image.with_data(np.array(case.image.data, dtype=np.float32))


class TeModel:
    name = "te-model"
    image_channel = "FLAIR"
    extra_inputs = ()

    def predict(self, inputs, *, case_id=""):
        image = inputs["FLAIR"]
        out = np.zeros(image.data.shape, np.uint8)
        for p in spots()[:detected(image.meta["acquisition"]["TE_ms"])]:
            out[p] = 1
        return image.with_data(out)


def memory_case(case_id):
    data = np.full(SHAPE, 100.0, np.float32)
    gt = np.zeros(SHAPE, np.uint8)
    for p in spots():
        gt[p] = 1
        data[p] = 300.0
    img = Volume(data, spacing=(1, 1, 1))
    return LoadedCase(case_id, img, AcquisitionParams(TE_ms=100.0, TI_ms=2500.0, TR_ms=9000.0),
                      {"WM": img.with_data(np.ones(SHAPE, np.float32))}, img.with_data(gt))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("stress") / "out"
    run = run_stress_test([memory_case("c1"), memory_case("c2")], TeModel(), GRID, out,
                          simulator=PassThroughSimulator())
    prov = provenance("wmh-demo", started=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), duration_s=12.345,
                      argv=["/usr/bin/neuroshift", "stress-test", "out", "--model", "wmh-demo"])
    png, k = example_figure(example_panels(memory_case("c1"), TeModel(), run.grid, simulator=PassThroughSimulator()),
                            "c1")
    rep = write_report(run, out, provenance=prov, examples=(png, f"slice k = {k}"))
    return run, rep, rep["paths"]["html"].read_text(encoding="utf-8"), prov


def f1(tp):
    return 2.0 * tp / (tp + N_GT)  # precision 1, recall tp / 50


def test_per_case_results_and_volumes_have_the_right_numbers(report):
    run, _, html, _ = report
    rows = case_rows(run, "lesion_f1")
    assert [r["case"] for r in rows] == ["c1", "c2"]
    r = rows[0]
    assert r["points"] == 9
    assert r["baseline"] == pytest.approx(f1(10)) and r["original"] == pytest.approx(f1(10))
    assert r["mean"] == pytest.approx((f1(6) + f1(10) + f1(14)) / 3)
    assert (r["min"], r["max"]) == (pytest.approx(f1(6)), pytest.approx(f1(14)))
    assert r["worst_point"].startswith("TE=60")
    assert r["gt_volume_ml"] == pytest.approx(0.050)  # 50 voxels of 1 mm^3
    assert r["pred_volume_ml_original"] == pytest.approx(0.010)
    assert (r["pred_volume_ml_min"], r["pred_volume_ml_mean"], r["pred_volume_ml_max"]) == (
        pytest.approx(0.006), pytest.approx(0.010), pytest.approx(0.014))
    assert "<h2>Per case</h2>" in html and "<h2>Lesion volumes</h2>" in html
    # ground truth next to the predictions, as printed (4 significant digits for volumes, 3 for F1)
    assert "<td><b>0.05</b></td><td>0.01</td><td>0.01</td><td>0.01</td><td>0.006</td><td>0.014</td>" in html
    assert f"<td>{f1(10):.3g}</td><td>{f1(10):.3g}</td><td>{r['mean']:.3g}</td><td>{f1(6):.3g}</td>" in html


def test_provenance_names_version_model_hash_command_date_duration(report):
    _, rep, html, prov = report
    from neuroshift import __version__

    manifest = ROOT / "neuroshift" / "data" / "models" / "wmh-demo" / "manifest.json"
    sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert prov["model_sha256"] == sha and prov["neuroshift_version"] == __version__
    for text in ("<h2>Provenance</h2>", __version__, sha, "neuroshift stress-test out --model wmh-demo",
                 "2026-01-02T03:04:05+00:00", "12.3 s"):
        assert text in html, text
    import json

    assert json.loads(rep["paths"]["surface"].read_text())["provenance"]["model_sha256"] == sha
    assert model_sha256("cmd:tool {input} {output}")[0] == hashlib.sha256(b"tool {input} {output}").hexdigest()


def test_bounded_metrics_have_a_fixed_colour_scale(report):
    _, _, html, _ = report
    assert [metric_limits(m) for m in ("lesion_f1", "dice", "lesion_recall", "lesion_precision")] == [(0.0, 1.0)] * 4
    assert metric_limits("pred_volume_ml") is None
    assert "colour scale fixed to 0–1" in html
    from neuroshift.stress import report as rep_mod

    captured = {}
    original = rep_mod._png

    def spy(fig):
        for ax in fig.axes:
            for im in ax.get_images():
                captured["clim"] = im.get_clim()
        return original(fig)

    rep_mod._png = spy
    try:
        rep_mod.plot_heatmap(report[0], "lesion_f1")
    finally:
        rep_mod._png = original
    assert captured["clim"] == (0.0, 1.0)  # not the data range (0.21..0.44)


def test_example_slices_show_outlines_at_baseline_and_corners(report):
    run, rep, html, _ = report
    assert corner_points(run.grid) == [{"TE": 60.0, "TI": 2100.0}, {"TE": 60.0, "TI": 2900.0},
                                       {"TE": 140.0, "TI": 2100.0}, {"TE": 140.0, "TI": 2900.0}]
    panels = example_panels(memory_case("c1"), TeModel(), run.grid, simulator=PassThroughSimulator())
    assert [p["title"] for p in panels] == ["original TE=100,TI=2500,TR=9000", "TE=60,TI=2100", "TE=60,TI=2900",
                                            "TE=140,TI=2100", "TE=140,TI=2900"]
    assert [int(p["pred"].sum()) for p in panels] == [10, 6, 6, 14, 14]
    assert best_slice(panels[0]["gt"]) == 1
    import matplotlib.image

    png = rep["paths"]["examples.png"].read_bytes()
    rgb = matplotlib.image.imread(io.BytesIO(png))[..., :3]
    green = (rgb[..., 1] > 0.6) & (rgb[..., 0] < 0.3) & (rgb[..., 2] < 0.3)
    red = (rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)
    assert green.sum() > 50 and red.sum() > 50
    assert "<h2>Example slices</h2>" in html and "slice k = 1" in html


def _checkerboard(n):
    te, ti = np.meshgrid(np.linspace(60, 140, n), np.linspace(2100, 2900, n), indexing="ij")
    y = ((np.arange(n)[:, None] + np.arange(n)[None, :]) % 2).astype(float)
    return np.column_stack([te.ravel(), ti.ravel()]), y.ravel()


def test_cubic_advice_only_where_the_grid_can_fit_one():
    x, y = _checkerboard(3)  # 9 points: a cubic in two parameters has 10 coefficients
    notes = " ".join(fit_surface(x, y, form="quadratic", names=["TE", "TI"]).notes)
    assert "fits badly" in notes and "--surface cubic" not in notes
    assert "at least 10 grid points" in notes and "this grid: 9 points" in notes
    x, y = _checkerboard(4)  # 16 points, 4 values each: the cubic is identifiable
    notes = " ".join(fit_surface(x, y, form="quadratic", names=["TE", "TI"]).notes)
    assert "try --surface cubic or auto" in notes
    fit_surface(x, y, form="cubic", names=["TE", "TI"])  # and the advice can be followed
