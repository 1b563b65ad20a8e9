"""A huge stress-test grid is estimated up front (points x cases x one measured inference) and refused above
--max-hours unless confirmed (issue 8). The model is a stand-in that sleeps a known time per inference."""

from __future__ import annotations

import time

import numpy as np
import pytest

from neuroshift.cli.main import main
from neuroshift.errors import InputError
from neuroshift.stress import models as stress_models
from neuroshift.stress.runner import run_stress_test


class SleepyModel:
    """Predicts an empty mask after ``seconds`` (a stand-in with a known cost per inference)."""

    name = "sleepy"
    image_channel = "FLAIR"
    extra_inputs: tuple[str, ...] = ()

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.calls = 0

    def predict(self, inputs, *, case_id=""):
        self.calls += 1
        time.sleep(self.seconds)
        img = inputs[self.image_channel]
        return img.with_data(np.zeros(img.data.shape, np.uint8))


@pytest.fixture()
def sleepy(monkeypatch):
    model = SleepyModel(0.2)
    monkeypatch.setattr(stress_models, "resolve_model", lambda spec, **kw: model)
    return model


def test_confirm_gets_pending_count_before_anything_is_written(phantom, tmp_path):
    seen = []

    def refuse(n, model, case):
        seen.append((n, case.case_id))
        raise InputError("too long")

    model = SleepyModel(0.0)
    with pytest.raises(InputError, match="too long"):
        run_stress_test(phantom, model, "TE=84:150:30,TI=2200:2900:40", tmp_path / "out", confirm=refuse)
    assert seen == [(1 * (30 * 40 + 1), phantom.name)]  # one case, 1200 points + its baseline
    assert not (tmp_path / "out").exists() and model.calls == 0


def test_huge_grid_refused_with_estimate(phantom, tmp_path, capsys, sleepy):
    out = tmp_path / "out"
    rc = main(["stress-test", str(out), "--cases", str(phantom), "--model", "sleepy",
               "--grid", "TE=84:150:1000,TI=2200:2900:1000"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "estimated time: 1000001 inferences x 0.2" in err
    per_s = float(err.split("inferences x ")[1].split(" s")[0])
    assert 0.2 <= per_s < 1.0  # measured, not assumed
    days = float(err.split("would run about ")[1].split(" days")[0])
    assert days == pytest.approx(1000001 * per_s / 86400, abs=0.06)  # per_s printed to 3 digits, days to 0.1
    assert "more than --max-hours 2;" in err and "--yes" in err
    assert sleepy.calls == 1  # only the timed inference ran
    assert not out.exists()


def test_max_hours_limit_is_applied_to_the_estimate(phantom, tmp_path, capsys, sleepy):
    """60 x 0.2 s = 12 s is more than --max-hours 0.001 (3.6 s): refused; a non-positive limit is bad input."""
    out = tmp_path / "out"
    rc = main(["stress-test", str(out), "--cases", str(phantom), "--model", "sleepy",
               "--grid", "TE=84:150:59", "--max-hours", "0.001"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "estimated time: 60 inferences" in err and "more than --max-hours 0.001" in err
    assert not out.exists()
    assert main(["stress-test", str(out), "--cases", str(phantom), "--model", "sleepy",
                 "--grid", "TE=84:150:3", "--max-hours", "-1"]) == 2
    assert "--max-hours must be positive" in capsys.readouterr().err


def test_small_grid_runs_with_count_and_yes_overrides(phantom, tmp_path, capsys, sleepy):
    out = tmp_path / "small"
    sleepy.seconds = 0.0
    assert main(["stress-test", str(out), "--cases", str(phantom), "--model", "sleepy",
                 "--grid", "TE=84:150:2", "--surface", "linear"]) in (0, 1)
    err = capsys.readouterr().err
    assert "3 inference(s) to run" in err and "estimated time" not in err
    assert len((out / "points.jsonl").read_text().splitlines()) == 3  # baseline + 2 points, no timing run
    out2 = tmp_path / "confirmed"
    assert main(["stress-test", str(out2), "--cases", str(phantom), "--model", "sleepy",
                 "--grid", "TE=84:150:11", "--max-hours", "0.0000001", "--yes"]) in (0, 1)
    err = capsys.readouterr().err
    assert "estimated time: 12 inferences" in err and "more than" not in err
    assert (out2 / "points.jsonl").is_file()
