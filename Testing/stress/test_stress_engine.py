"""Stress-test engine with synthetic simulators and models: surface recovery, resume, bad cases, parallel runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neuroshift.errors import InputError, ParameterRangeError, PathEscapeError
from neuroshift.io import Volume, write_volume
from neuroshift.stress.cases import load_cases
from neuroshift.stress.report import result_rows, write_report
from neuroshift.stress.runner import run_stress_test
from neuroshift.stress.store import POINTS_FILE, RunMismatchError
from neuroshift.stress.surface import fit_surface

from helpers.stress_engine import (GRID, PassThroughSimulator, QuadraticF1Model, SHAPE, by_key, gt_mask, memory_case,
                                   true_f1)


class InterruptingModel(QuadraticF1Model):
    """Raises KeyboardInterrupt (a Ctrl-C) at its ``k``-th prediction."""

    def __init__(self, k):
        self.k, self.calls = k, 0

    def predict(self, inputs, *, case_id=""):
        self.calls += 1
        if self.calls >= self.k:
            raise KeyboardInterrupt
        return super().predict(inputs, case_id=case_id)


class CountingModel(QuadraticF1Model):
    def __init__(self):
        self.calls = 0

    def predict(self, inputs, *, case_id=""):
        self.calls += 1
        return super().predict(inputs, case_id=case_id)


def write_case(folder: Path, *, te=0.100, ti=2.5, mask=True, mask_shape=SHAPE, sidecar_ti=True):
    folder.mkdir(parents=True)
    img = Volume(np.full(SHAPE, 100.0, np.float32), spacing=(1, 1, 1))
    write_volume(img, folder / "FLAIR.nii.gz")
    side = {"EchoTime": te, "RepetitionTime": 9.0, "MagneticFieldStrength": 3}
    if sidecar_ti:
        side["InversionTime"] = ti
    (folder / "FLAIR.json").write_text(json.dumps(side))
    write_volume(img.with_data(np.ones(SHAPE, np.float32)), folder / "pv_WM.nii.gz")
    if mask:
        m = gt_mask() if mask_shape == SHAPE else np.zeros(mask_shape, np.uint8)
        write_volume(Volume(m, spacing=(1, 1, 1)), folder / "lesion_mask.nii.gz")


# --------------------------------------------------------------------------- surface recovery
def test_known_quadratic_f1_gives_back_its_coefficients_and_r2_of_one(tmp_path):
    run = run_stress_test([memory_case()], QuadraticF1Model(), GRID, tmp_path / "out",
                          simulator=PassThroughSimulator())
    assert len(run.records) == 26 and not run.failures
    f1 = {(r["grid"]["TE"], r["grid"]["TI"]): r["metrics"]["lesion_f1"] for r in run.grid_records()}
    assert all(f1[k] == pytest.approx(true_f1(*k), abs=1e-12) for k in f1)
    out = write_report(run, metric="lesion_f1")
    fit = out["surfaces"]["lesion_f1"]
    assert fit.term_names == ["1", "TE", "TI", "TE^2", "TI^2", "TE*TI"]
    # The truth in original units, from six exact evaluations of the known function.
    pts = [(60, 2100), (140, 2100), (60, 2900), (100, 2300), (140, 2700), (80, 2500)]
    design = np.array([[1, te, ti, te * te, ti * ti, te * ti] for te, ti in pts], float)
    truth = np.linalg.solve(design, [true_f1(*p) for p in pts])
    assert np.allclose(fit.coefficients, truth, rtol=1e-8, atol=1e-14)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12) and fit.adj_r2 == pytest.approx(1.0, abs=1e-12)
    assert np.all(fit.std_errors < 1e-9)
    # TE has the larger coefficients in this function, so it has the larger influence.
    assert fit.influence["TE"]["share"] > fit.influence["TI"]["share"]
    doc = json.loads((tmp_path / "out" / "surface.json").read_text())
    terms = {t["term"]: t["coefficient"] for t in doc["surfaces"]["lesion_f1"]["terms"]}
    assert terms["TE*TI"] == pytest.approx(truth[5], rel=1e-8)
    assert doc["surfaces"]["lesion_f1"]["r2"] == pytest.approx(1.0)


def test_baseline_point_is_checked_against_the_unsimulated_image(tmp_path):
    run = run_stress_test([memory_case(te=120, ti=2700)], QuadraticF1Model(), "TE=60:140:3,TI=2100:2900:3",
                          tmp_path, simulator=PassThroughSimulator())
    (base,) = run.baseline_records()
    assert base["grid"] == {"TE": 120.0, "TI": 2700.0}
    chk = base["baseline_check"]
    assert chk["max_abs_diff"] == 0.0 and chk["rel_max_abs_diff"] == 0.0
    assert chk["real_metrics"]["lesion_f1"] == pytest.approx(true_f1(120, 2700))
    assert chk["metric_diff"]["lesion_f1"] == 0.0
    rows = result_rows(run)
    assert {r["point"] for r in rows if r["baseline"]} == {"baseline", "original"}


# --------------------------------------------------------------------------- resume
def test_resume_after_interruption_gives_identical_results_without_recomputing(tmp_path):
    cases = [memory_case("a"), memory_case("b", te=80, ti=2300)]
    reference = run_stress_test(cases, QuadraticF1Model(), GRID, tmp_path / "ref", simulator=PassThroughSimulator())
    out = tmp_path / "run"
    k = 17  # the 17th prediction raises; the baseline point makes two predictions
    with pytest.raises(KeyboardInterrupt):
        run_stress_test(cases, InterruptingModel(k), GRID, out, simulator=PassThroughSimulator())
    lines = (out / POINTS_FILE).read_text().splitlines()
    assert len(lines) == k - 2  # every point finished before the interruption is on disk
    counting = CountingModel()
    resumed = run_stress_test(cases, counting, GRID, out, simulator=PassThroughSimulator())
    assert counting.calls == 2 * 26 + 2 - (k - 2) - 1  # only the missing points are computed
    assert resumed.computed == 2 * 26 - (k - 2)
    assert by_key(resumed) == by_key(reference)
    again = CountingModel()
    run_stress_test(cases, again, GRID, out, simulator=PassThroughSimulator())
    assert again.calls == 0
    assert len((out / POINTS_FILE).read_text().splitlines()) == 2 * 26


def test_a_line_cut_short_by_a_crash_is_ignored_and_recomputed(tmp_path):
    case = memory_case()
    run_stress_test([case], QuadraticF1Model(), "TE=60:140:3,TI=2500", tmp_path, simulator=PassThroughSimulator())
    path = tmp_path / POINTS_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # the last write was cut off
    counting = CountingModel()
    run = run_stress_test([case], counting, "TE=60:140:3,TI=2500", tmp_path, simulator=PassThroughSimulator())
    assert counting.calls == 1 and len(run.records) == 4
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_different_run_in_the_same_folder_is_refused_unless_restarted(tmp_path):
    run_stress_test([memory_case()], QuadraticF1Model(), "TE=60:140:3,TI=2500", tmp_path,
                    simulator=PassThroughSimulator())
    with pytest.raises(RunMismatchError, match="grid"):
        run_stress_test([memory_case()], QuadraticF1Model(), "TE=60:140:4,TI=2500", tmp_path,
                        simulator=PassThroughSimulator())
    run = run_stress_test([memory_case()], QuadraticF1Model(), "TE=60:140:4,TI=2500", tmp_path,
                          simulator=PassThroughSimulator(), restart=True)
    assert len(run.records) == 5


# --------------------------------------------------------------------------- bad cases
def test_bad_cases_are_reported_per_case_and_the_others_finish(tmp_path):
    root = tmp_path / "cases"
    write_case(root / "good")
    write_case(root / "no_mask", mask=False)
    write_case(root / "wrong_grid", mask_shape=(1, 20, 21))
    write_case(root / "no_ti", sidecar_ti=False)
    run = run_stress_test(root, QuadraticF1Model(), "TE=60:140:3,TI=2100:2900:3", tmp_path / "out",
                          simulator=PassThroughSimulator())
    assert {r["case"] for r in run.records} == {"good"} and len(run.records) == 10
    failed = {f["case"]: f["error"] for f in run.failed_cases()}
    assert set(failed) == {"no_mask", "wrong_grid", "no_ti"}
    assert "lesion mask" in failed["no_mask"]
    assert "grid sizes differ" in failed["wrong_grid"]
    assert "TI" in failed["no_ti"] and "not known" in failed["no_ti"]
    html = write_report(run)["paths"]["html"].read_text()
    for name in failed:
        assert name in html
    # A rerun retries the failed cases (perhaps fixed meanwhile) but not the finished points.
    write_case(root / "no_mask2")
    counting = CountingModel()
    rerun = run_stress_test(root, counting, "TE=60:140:3,TI=2100:2900:3", tmp_path / "out",
                            simulator=PassThroughSimulator())
    assert counting.calls == 11 and {r["case"] for r in rerun.records} == {"good", "no_mask2"}


def test_a_model_failing_on_one_point_is_reported_for_that_point(tmp_path):
    class Flaky(QuadraticF1Model):
        def predict(self, inputs, *, case_id=""):
            if inputs["FLAIR"].meta["acquisition"]["TE_ms"] == 140:
                raise RuntimeError("out of memory on this one")
            return super().predict(inputs, case_id=case_id)

    run = run_stress_test([memory_case()], Flaky(), "TE=60:140:3,TI=2500", tmp_path, simulator=PassThroughSimulator())
    assert len(run.records) == 3
    (fail,) = run.failures
    assert fail["point"] == "TE=140,TI=2500" and "out of memory" in fail["error"]


# --------------------------------------------------------------------------- cases
def test_cases_from_csv_with_parameter_columns_and_escape_refused(tmp_path):
    write_case(tmp_path / "s1", te=0.090)
    write_case(tmp_path / "s2", sidecar_ti=False)
    (tmp_path / "cases.csv").write_text(
        "case,image,mask,pv_WM,TE,TI\n"
        "one,s1/FLAIR.nii.gz,s1/lesion_mask.nii.gz,s1/pv_WM.nii.gz,,\n"
        "two,s2/FLAIR.nii.gz,s2/lesion_mask.nii.gz,s2/pv_WM.nii.gz,120,2600\n")
    cases = load_cases(tmp_path / "cases.csv")
    assert [c.case_id for c in cases] == ["one", "two"]
    one, two = (c.load("flair") for c in cases)
    assert one.params.TE_ms == pytest.approx(90) and one.params.TI_ms == pytest.approx(2500)
    assert two.params.TE_ms == 120 and two.params.TI_ms == 2600 and two.params.TR_ms == pytest.approx(9000)
    (tmp_path / "bad.csv").write_text("image,mask\n../outside/FLAIR.nii.gz,s1/lesion_mask.nii.gz\n")
    with pytest.raises(PathEscapeError, match="outside"):
        load_cases(tmp_path / "bad.csv")
    (tmp_path / "params.csv").write_text(
        'image,mask,labels,params\ns2/FLAIR.nii.gz,s2/lesion_mask.nii.gz,s2/pv_WM.nii.gz,"TE=130,TI=2400,TR=8000"\n')
    (p,) = load_cases(tmp_path / "params.csv")
    assert (p.params.TE_ms, p.params.TI_ms, p.params.TR_ms) == (130, 2400, 8000)


def test_the_grid_must_use_parameters_the_sequence_has(tmp_path):
    with pytest.raises(ParameterRangeError, match="FLAIR has no parameter FA"):
        run_stress_test([memory_case()], QuadraticF1Model(), "TE=60:140:3,FA=10|20", tmp_path,
                        simulator=PassThroughSimulator())
    with pytest.raises(InputError, match="unique"):
        run_stress_test([memory_case(), memory_case()], QuadraticF1Model(), "TE=60:140:3", tmp_path / "x",
                        simulator=PassThroughSimulator())


def test_noise_and_slice_axes_reach_the_simulator(tmp_path):
    seen = []

    class Recording(PassThroughSimulator):
        def render(self, fitted, case, target, shifts, *, seed):
            seen.append((target.TE_ms, dict(shifts), seed))
            return super().render(fitted, case, target, shifts, seed=seed)

    run = run_stress_test([memory_case()], QuadraticF1Model(), "TE=60|140,noise=0|5,slice_mm=1|3", tmp_path,
                          simulator=Recording())
    assert len(run.records) == 9
    assert {(te, s["noise"], s["slice_mm"]) for te, s, _ in seen if s} == \
        {(te, n, t) for te in (60.0, 140.0) for n in (0.0, 5.0) for t in (1.0, 3.0)}
    base = run.baseline_records()[0]
    assert base["grid"]["noise"] == 0.0 and base["grid"]["slice_mm"] == 1.0
    assert len({seed for _, _, seed in seen}) == 9  # one reproducible seed per point


# --------------------------------------------------------------------------- parallel
def test_local_worker_processes_give_the_serial_results(tmp_path):
    cases = [memory_case("a"), memory_case("b", te=80, ti=2300)]
    serial = run_stress_test(cases, QuadraticF1Model(), "TE=60:140:3,TI=2100:2900:3", tmp_path / "s",
                             simulator=PassThroughSimulator())
    parallel = run_stress_test(cases, QuadraticF1Model(), "TE=60:140:3,TI=2100:2900:3", tmp_path / "p",
                               simulator=PassThroughSimulator(), workers=2)
    assert by_key(parallel) == by_key(serial) and len(serial.records) == 20
    assert [r["key"] for r in parallel.records] == [r["key"] for r in serial.records]


def test_dask_local_cluster_gives_the_serial_results(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    cases = [memory_case("a"), memory_case("b", te=80, ti=2300)]
    serial = run_stress_test(cases, QuadraticF1Model(), "TE=60:140:3,TI=2100:2900:3", tmp_path / "s",
                             simulator=PassThroughSimulator())
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:  # in-process: no network at all
        dask_run = run_stress_test(cases, QuadraticF1Model(), "TE=60:140:3,TI=2100:2900:3", tmp_path / "d",
                                   simulator=PassThroughSimulator(), scheduler=cluster.scheduler_address)
    assert by_key(dask_run) == by_key(serial)


# --------------------------------------------------------------------------- surfaces
def test_surface_standard_errors_match_ols_in_original_units():
    rng = np.random.default_rng(1)
    te, ti = np.meshgrid(np.linspace(84, 150, 7), np.linspace(2200, 2900, 7), indexing="ij")
    te, ti = te.ravel(), ti.ravel()
    y = 0.2 + 0.006 * te + 1e-4 * ti - 2e-5 * te ** 2 - 2e-8 * ti ** 2 + 1e-7 * te * ti + rng.normal(0, 0.01, 49)
    fit = fit_surface({"TE": te, "TI": ti}, y)
    # Direct OLS in original units (badly conditioned but fine in float64 for this check).
    x = np.column_stack([np.ones(49), te, ti, te ** 2, ti ** 2, te * ti])
    b, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ b
    cov = resid @ resid / (49 - 6) * np.linalg.inv(x.T @ x)
    assert np.allclose(fit.coefficients, b, rtol=1e-6)
    assert np.allclose(fit.std_errors, np.sqrt(np.diag(cov)), rtol=1e-4)
    r2 = 1 - resid @ resid / np.sum((y - y.mean()) ** 2)
    assert fit.r2 == pytest.approx(r2) and fit.adj_r2 == pytest.approx(1 - (1 - r2) * 48 / 43)
    assert fit.predict({"TE": te, "TI": ti}) == pytest.approx(x @ b, abs=1e-9)


def test_surface_forms_generalise_to_more_parameters():
    rng = np.random.default_rng(2)
    pts = rng.uniform(-1, 1, size=(80, 3)) * [30, 300, 5] + [117, 2550, 10]
    y = 1 + 0.01 * pts[:, 0] ** 3 / 1000 + 0.002 * pts[:, 2]
    cubic = fit_surface(pts, y, form="cubic", names=["TE", "TI", "noise"])
    assert len(cubic.terms) == 20 and cubic.r2 == pytest.approx(1.0)
    linear = fit_surface(pts, y, form="linear", names=["TE", "TI", "noise"])
    assert linear.term_names == ["1", "TE", "TI", "noise"]
    inter = fit_surface(pts, y, form="interaction", names=["TE", "TI", "noise"])
    assert "TE^2" not in inter.term_names and "TE*TI" in inter.term_names
    auto = fit_surface(pts, y + 0.05 * np.sin(pts[:, 0] / 3), form="auto", names=["TE", "TI", "noise"])
    assert auto.form in ("quadratic", "cubic")
    with pytest.raises(InputError, match="levels"):
        fit_surface({"TE": [1, 2, 1, 2, 1, 2, 1], "TI": [1, 1, 2, 2, 3, 3, 4]}, np.arange(7.0))
