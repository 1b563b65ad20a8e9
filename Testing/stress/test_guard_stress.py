"""Guards from the mutation audit (issue 13): stress store and resume, response-surface influence and auto form.

SYNTHETIC in-memory cases (a constant image, a 4-voxel lesion mask) and a pass-through simulator keep
each run to a few predictions; the expected surface quantities are derived by hand in the comments.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuroshift.io import Volume
from neuroshift.io.params import AcquisitionParams
from neuroshift.stress.cases import LoadedCase
from neuroshift.stress.runner import run_stress_test
from neuroshift.stress.store import POINTS_FILE, ResultStore
from neuroshift.stress.surface import fit_surface

SHAPE = (1, 6, 6)
GRID3 = "TE=60:140:3,TI=2500"


def _case(case_id="c1") -> LoadedCase:
    img = Volume(np.full(SHAPE, 100.0, np.float32), spacing=(1, 1, 1))
    gt = np.zeros(SHAPE, np.uint8)
    gt[0, 1:3, 1:3] = 1
    return LoadedCase(case_id, img, AcquisitionParams(TE_ms=100.0, TI_ms=2500.0, TR_ms=9000.0),
                      {"WM": img.with_data(np.ones(SHAPE, np.float32))}, img.with_data(gt))


class PassThrough:
    def fit(self, case, sequence):
        return None

    def render(self, fitted, case, target, shifts, *, seed):
        return case.image.with_data(np.array(case.image.data, dtype=np.float32))


class Model:
    """Predicts the ground-truth square (F1 = 1); fails on the TE values in ``fail_te``; counts calls."""

    name = "guard-model"
    image_channel = "FLAIR"
    extra_inputs = ()

    def __init__(self, fail_te=()):
        self.fail_te, self.calls = set(fail_te), 0

    def predict(self, inputs, *, case_id=""):
        self.calls += 1
        image = inputs["FLAIR"]
        if image.meta["acquisition"]["TE_ms"] in self.fail_te:
            raise RuntimeError("transient failure")
        out = np.zeros(SHAPE, np.uint8)
        out[0, 1:3, 1:3] = 1
        return image.with_data(out)


def _run(model, grid, out, **kw):
    return run_stress_test([_case()], model, grid, out, simulator=PassThrough(), **kw)


# --------------------------------------------------------------------------- store and resume (item 5)
def test_a_later_failure_never_replaces_a_finished_record(tmp_path):
    store = ResultStore(tmp_path)
    store.open({"run": 1})
    store.append([{"key": "c|p1", "status": "ok", "metrics": {"f1": 0.5}},
                  {"key": "c|p2", "status": "failed", "error": "first"}])
    store.append([{"key": "c|p1", "status": "failed", "error": "late"},
                  {"key": "c|p2", "status": "ok", "metrics": {"f1": 0.25}}])
    recs = store.load()
    assert recs["c|p1"]["status"] == "ok" and recs["c|p1"]["metrics"] == {"f1": 0.5}
    assert recs["c|p2"]["status"] == "ok" and recs["c|p2"]["metrics"] == {"f1": 0.25}  # a retry that succeeded


def test_failed_points_are_retried_on_resume(tmp_path):
    first = _run(Model(fail_te={140.0}), GRID3, tmp_path)
    assert len(first.failures) == 1 and first.failures[0]["point"] == "TE=140,TI=2500"
    assert len(first.records) == 3  # baseline + TE 60, 100
    again = Model()
    second = _run(again, GRID3, tmp_path)
    assert again.calls == 1  # only the failed point is computed again
    assert not second.failures and len(second.records) == 4
    assert all(r["metrics"]["lesion_f1"] == 1.0 for r in second.records)
    third = Model()
    _run(third, GRID3, tmp_path)
    assert third.calls == 0


def test_restart_discards_the_old_points_file(tmp_path):
    _run(Model(), GRID3, tmp_path)
    assert len((tmp_path / POINTS_FILE).read_text().splitlines()) == 4
    counting = Model()
    run = _run(counting, "TE=60:140:4,TI=2500", tmp_path, restart=True)
    # baseline (two predictions: simulated and real image) + 4 grid points, nothing reused from the old run
    assert counting.calls == 2 + 4
    lines = [json.loads(x) for x in (tmp_path / POINTS_FILE).read_text().splitlines()]
    assert len(lines) == 5 and len(run.records) == 5
    assert sorted(r["point"] for r in lines) == sorted(
        ["baseline", "TE=60,TI=2500", "TE=86.6667,TI=2500", "TE=113.333,TI=2500", "TE=140,TI=2500"])


# --------------------------------------------------------------------------- surface (item 10)
def _grid3x3():
    te, ti = np.meshgrid([60.0, 100.0, 140.0], [2100.0, 2500.0, 2900.0], indexing="ij")
    return te.ravel(), ti.ravel()


def test_influence_shares_are_normalised_and_effect_range_is_max_minus_min():
    te, ti = _grid3x3()
    z_te, z_ti = (te - 100.0) / 40.0, (ti - 2500.0) / 400.0
    y = 5.0 + 2.0 * z_te + 1.0 * z_ti  # exact linear surface in coded units
    fit = fit_surface({"TE": te, "TI": ti}, y, form="linear")
    # partial SS of a coded variable on the 3x3 grid: coef^2 * sum(z^2) = coef^2 * 6 -> 24 and 6 -> shares 0.8 / 0.2
    assert fit.influence["TE"]["partial_ss"] == pytest.approx(24.0, rel=1e-9)
    assert fit.influence["TI"]["partial_ss"] == pytest.approx(6.0, rel=1e-9)
    assert fit.influence["TE"]["share"] == pytest.approx(0.8, rel=1e-9)
    assert fit.influence["TI"]["share"] == pytest.approx(0.2, rel=1e-9)
    # TE over its range with TI at the centre: 5 +- 2 -> max - min = 4 (max alone would be 7); TI: 2
    assert fit.influence["TE"]["effect_range"] == pytest.approx(4.0, rel=1e-9)
    assert fit.influence["TI"]["effect_range"] == pytest.approx(2.0, rel=1e-9)


def test_effect_range_of_a_curved_parameter():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    y = 10.0 - (x - 2.0) ** 2  # 6, 9, 10, 9, 6: range 4 over the grid, max 10
    fit = fit_surface({"FA": x}, y, form="quadratic")
    assert fit.influence["FA"]["effect_range"] == pytest.approx(4.0, rel=1e-9)
    assert fit.influence["FA"]["share"] == pytest.approx(1.0)


def test_auto_tries_the_cubic_when_the_quadratic_fits_badly():
    x = np.linspace(-1.0, 1.0, 7)
    y = 4.0 * x ** 3 - 3.0 * x  # Chebyshev T3: no quadratic captures it
    quad = fit_surface({"TE": x}, y, form="quadratic")
    assert quad.adj_r2 < 0.9
    auto = fit_surface({"TE": x}, y, form="auto")
    assert auto.form == "cubic"
    assert auto.r2 == pytest.approx(1.0, abs=1e-12)
    assert auto.coded_coefficients == pytest.approx([0.0, -3.0, 0.0, 4.0], abs=1e-9)
    # a well-fitting quadratic stays quadratic
    assert fit_surface({"TE": x}, 1.0 + x + x ** 2, form="auto").form == "quadratic"
