"""The stress-test, validate-simulation and demo commands (exit codes, outputs, resume)."""

from __future__ import annotations

import json
import sys

import pytest

from neuroshift.cli.main import main

from helpers.stress_models import TOOL


@pytest.fixture
def phantom_cases(tmp_path):
    pytest.importorskip("neuroshift.simulate.tissuewise")
    from neuroshift.phantom.make import make_phantom

    for i in range(2):
        make_phantom(tmp_path / "cases" / f"sub-{i + 1:02d}", seed=i)
    tool = tmp_path / "tool.py"
    tool.write_text(TOOL)
    return tmp_path / "cases", f'cmd:"{sys.executable}" "{tool}" --flair {{input}} --output {{output}}'


def test_stress_test_command_writes_every_output_and_resumes(phantom_cases, tmp_path, capsys):
    cases, model = phantom_cases
    out = tmp_path / "out"
    args = ["stress-test", str(out), "--cases", str(cases), "--model", model, "--grid", "TE=84:150:3,TI=2200:2900:3"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "2 case(s), 20 point(s) finished (20 computed now, 0 from an earlier run)" in text
    assert "quadratic surface of lesion F1: R² =" in text and "TE*TI" in text
    for name in ("results.csv", "surface.json", "report.html", "heatmap_lesion_f1.png", "surface_lesion_f1.png",
                 "lines_lesion_f1.png", "points.jsonl", "run.json"):
        assert (out / name).is_file(), name
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0] == "case,point,baseline,simulated,TE,TI,metric,value"
    assert len(rows) - 1 == 2 * (9 + 1 + 1) * 8  # cases × (grid + baseline + original) × metrics
    doc = json.loads((out / "surface.json").read_text())
    lesion = doc["surfaces"]["lesion_f1"]
    assert [t["term"] for t in lesion["terms"]] == ["1", "TE", "TI", "TE^2", "TI^2", "TE*TI"]
    assert set(lesion["influence"]) == {"TE", "TI"} and lesion["r2"] is not None
    assert all(b["max_abs_diff"] == 0.0 for b in doc["baseline_check"])
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html and "http://" not in html
    assert main(args) == 0
    assert "(0 computed now, 20 from an earlier run)" in capsys.readouterr().out


def test_stress_test_bad_input_exits_with_code_2(phantom_cases, tmp_path, capsys):
    cases, model = phantom_cases
    assert main(["stress-test", str(tmp_path / "o"), "--cases", str(tmp_path / "missing"), "--model", model]) == 2
    assert "no such case folder" in capsys.readouterr().err
    assert main(["stress-test", str(tmp_path / "o"), "--cases", str(cases), "--model", model,
                 "--grid", "TE=84:150:3,FA=10|20"]) == 2
    assert "FLAIR has no parameter FA" in capsys.readouterr().err
    assert main(["stress-test", str(tmp_path / "o"), "--cases", str(cases), "--model", "cmd:tool {input}"]) == 2
    assert "no {output}" in capsys.readouterr().err
    assert main(["stress-test", str(tmp_path / "o"), "--cases", str(cases), "--model", "no-such-model"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["stress-test", str(tmp_path / "o"), "--cases", str(cases), "--model", model, "--metric", "f2"]) == 2
    assert "unknown metric 'f2'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # bad input leaves no output behind


def test_a_run_where_every_case_fails_exits_1_and_names_the_problems(tmp_path, capsys):
    folder = tmp_path / "cases" / "sub-01"
    folder.mkdir(parents=True)
    import numpy as np

    from neuroshift.io import Volume, write_volume

    write_volume(Volume(np.ones((2, 3, 4), np.float32)), folder / "FLAIR.nii.gz")
    code = main(["stress-test", str(tmp_path / "o"), "--cases", str(tmp_path / "cases"),
                 "--model", f"cmd:{sys.executable} -c pass {{input}} {{output}}", "--grid", "TE=84|150"])
    assert code == 1
    assert "sub-01" in capsys.readouterr().err


def test_help_of_the_commands():
    for cmd in ("stress-test", "validate-simulation", "demo"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0


@pytest.mark.slow
def test_demo_runs_end_to_end_on_a_small_grid(tmp_path, capsys):
    pytest.importorskip("neuroshift.segment.inference")
    from neuroshift.segment.registry import ModelNotFoundError, find_model

    try:
        find_model("wmh-demo")
    except ModelNotFoundError:
        pytest.skip("the bundled demo model is not installed")
    code = main(["demo", str(tmp_path / "demo"), "--subjects", "1", "--grid", "TE=84:150:3,TI=2200:2900:3",
                 "--device", "cpu"])
    assert code == 0
    text = capsys.readouterr().out
    assert "lesion F1 = quadratic in TE, TI (ms): R² =" in text and "report.html" in text
    assert "baseline check: max |simulated - original| = 0" in text
    assert (tmp_path / "demo" / "report.html").is_file()


def test_stress_test_command_on_a_dask_scheduler(phantom_cases, tmp_path, capsys):
    distributed = pytest.importorskip("dask.distributed")
    cases, model = phantom_cases
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:  # in-process: no network at all
        code = main(["stress-test", str(tmp_path / "dask"), "--cases", str(cases), "--model", model,
                     "--grid", "TE=84|150,TI=2500", "--scheduler", cluster.scheduler_address,
                     "--metric", "dice", "--surface", "linear"])
    assert code == 0
    text = capsys.readouterr().out
    assert "2 case(s), 6 point(s) finished" in text and "linear surface of DSC" in text
