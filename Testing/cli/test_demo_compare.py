"""``neuroshift demo``: the second (qSynth) model on the same grid and the comparison page."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from neuroshift.cli import demo
from neuroshift.cli.main import build_parser, main
from neuroshift.segment.registry import ModelNotFoundError


def _args(*argv):
    return build_parser().parse_args(["demo", *argv])


def test_compare_model_choice(monkeypatch, capsys):
    assert _args().compare == demo.DEFAULT_COMPARE == "wmh-qsynth-demo"
    assert demo._compare_model(_args("--compare", "none")) is None
    assert demo._compare_model(_args("--compare", "wmh-demo")) is None  # the model under test itself
    monkeypatch.setattr("neuroshift.segment.registry.find_model", lambda name: (_ for _ in ()).throw(
        ModelNotFoundError(f"model '{name}' not found")))
    # the default comparison model missing: said, and the demo goes on without it
    assert demo._compare_model(_args()) is None
    assert "no comparison" in capsys.readouterr().out
    # a model the user named that does not exist is an error
    with pytest.raises(ModelNotFoundError):
        demo._compare_model(_args("--compare", "no-such-model"))


def test_unknown_compare_model_exits_2_before_writing(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "d"), "--quick", "--compare", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def _grid_mean(path, metric="lesion_f1"):
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    return float(np.mean([float(r["value"]) for r in rows if r["metric"] == metric
                          and r["point"] not in ("baseline", "original")]))


@pytest.mark.slow
def test_quick_demo_compares_both_models_on_the_same_grid(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--quick", "--threads", "1", "--grid", "TE=84:150:3,TI=2200:2900:3"]) == 0
    text = capsys.readouterr().out
    assert "4/4 comparing 'wmh-demo' with 'wmh-qsynth-demo'" in text
    a, b = json.loads((out / "surface.json").read_text()), json.loads((out / "wmh-qsynth-demo" / "surface.json").read_text())
    assert a["grid"] == b["grid"] == {"TE": [84.0, 117.0, 150.0], "TI": [2200.0, 2550.0, 2900.0]}
    doc = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert doc["models"] == {"a": "wmh-demo", "b": "wmh-qsynth-demo"} and doc["grid"] == a["grid"]
    s = doc["metrics"]["lesion_f1"]["summary"]
    # one case: the comparison's means are the plain means of each run's 9 grid rows
    assert s["n_points"] == 9 and doc["metrics"]["lesion_f1"]["cases"] == ["sub-01"]
    assert s["mean_a"] == pytest.approx(_grid_mean(out / "results.csv"), abs=1e-12)
    assert s["mean_b"] == pytest.approx(_grid_mean(out / "wmh-qsynth-demo" / "results.csv"), abs=1e-12)
    assert s["mean_diff"] == pytest.approx(s["mean_b"] - s["mean_a"], abs=1e-12)
    html = (out / "compare.html").read_text(encoding="utf-8")
    assert "wmh-qsynth-demo/report.html" in html and (out / "wmh-qsynth-demo" / "report.html").is_file()
