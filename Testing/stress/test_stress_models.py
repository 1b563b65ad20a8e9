"""Models under test: the command-template adapter for external tools, and a full run on the phantom."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from neuroshift.errors import InputError
from neuroshift.io import Volume
from neuroshift.stress.models import CommandModel, ModelRunError, resolve_model

from helpers.stress_models import TOOL


@pytest.fixture
def tool(tmp_path):
    folder = tmp_path / "my tools"  # a space in the path must stay inside one argument
    folder.mkdir()
    script = folder / "segment.py"
    script.write_text(TOOL)
    return script


def image():
    data = np.zeros((6, 8, 10), np.float32)
    data[2:4, 3:5, 4:7] = 100.0
    data[data == 0] = 10.0
    return Volume(data, spacing=(1.0, 1.2, 2.0), origin=(5.0, -3.0, 7.0))


def test_command_template_with_input_and_output_files(tool):
    model = resolve_model(f'cmd:"{sys.executable}" "{tool}" --flair {{input}} --output {{output}} --threshold 50')
    assert isinstance(model, CommandModel) and model.image_channel == "FLAIR"
    img = image()
    pred = model.predict({"FLAIR": img}, case_id="c1")
    assert img.same_grid(pred)
    assert pred.data.dtype == np.uint8 and int(pred.data.sum()) == 12
    assert np.array_equal(pred.data > 0, img.data > 50)


def test_command_template_with_nnunet_style_folders(tool):
    model = resolve_model(f"cmd:{sys.executable} '{tool}' --input-dir {{input_dir}} --output-dir {{output_dir}} "
                          "--threshold 50")
    pred = model.predict({"FLAIR": image()})
    assert int(pred.data.sum()) == 12


def test_a_failing_tool_gives_its_stderr_tail(tool):
    model = CommandModel(f"{sys.executable} '{tool}' --flair {{input}} --output {{output}} --fail")
    with pytest.raises(ModelRunError, match="exited with code 3") as err:
        model.predict({"FLAIR": image()}, case_id="sub-7")
    assert "CUDA error: out of memory (tool message)" in str(err.value) and "sub-7" in str(err.value)


def test_timeout_and_missing_program_are_clear_errors(tool):
    slow = CommandModel(f"{sys.executable} '{tool}' --flair {{input}} --output {{output}} --sleep 5", timeout_s=0.5)
    with pytest.raises(ModelRunError, match="timeout"):
        slow.predict({"FLAIR": image()})
    missing = CommandModel("no-such-segmenter-xyz --in {input} --out {output}")
    with pytest.raises(ModelRunError, match="not found"):
        missing.predict({"FLAIR": image()})


def test_templates_are_never_run_through_a_shell(tool, tmp_path):
    marker = tmp_path / "pwned"
    model = CommandModel(f"{sys.executable} '{tool}' --flair {{input}} --output {{output}} --threshold 50 "
                         f"--extra ; touch {marker} $(touch {marker})")
    model.predict({"FLAIR": image()})
    assert not marker.exists()
    assert model.command({"input": "a b.nii.gz", "output": "o.nii.gz"})[3] == "a b.nii.gz"


def test_bad_templates_are_refused():
    with pytest.raises(InputError, match="output"):
        CommandModel("tool --in {input}")
    with pytest.raises(InputError, match="input"):
        CommandModel("tool --out {output}")
    with pytest.raises(InputError):
        CommandModel('tool "unclosed {input} {output}')
    extra = CommandModel("tool --flair {input} --t1 {T1w} --out {output}")
    assert extra.extra_inputs == ("T1w",)


def test_stress_test_of_an_external_tool_on_the_phantom(tool, tmp_path):
    pytest.importorskip("neuroshift.simulate.tissuewise")
    from neuroshift.phantom.make import make_phantom
    from neuroshift.stress.report import write_report
    from neuroshift.stress.runner import run_stress_test

    make_phantom(tmp_path / "cases" / "sub-01", seed=1)
    model = f'cmd:"{sys.executable}" "{tool}" --flair {{input}} --output {{output}}'
    run = run_stress_test(tmp_path / "cases", model, "TE=84|150,TI=2200|2900", tmp_path / "out")
    assert not run.failures and len(run.records) == 5
    (base,) = run.baseline_records()
    assert base["baseline_check"]["max_abs_diff"] == 0.0  # the simulation reproduces the image at θ0
    assert base["metrics"] == base["baseline_check"]["real_metrics"]
    assert base["params"]["TE_ms"] == pytest.approx(112) and base["params"]["TI_ms"] == pytest.approx(2500)
    f1 = {r["point"]: r["metrics"]["lesion_f1"] for r in run.grid_records()}
    assert set(f1) == {"TE=84,TI=2200", "TE=84,TI=2900", "TE=150,TI=2200", "TE=150,TI=2900"}
    assert all(0.0 <= v <= 1.0 for v in f1.values())
    out = write_report(run, form="linear")
    assert out["paths"]["html"].is_file()


class ThresholdModel:
    """In-process stand-in: FLAIR above its 99th percentile is lesion (records the images it saw)."""

    name = "threshold"
    image_channel = "FLAIR"
    extra_inputs = ()

    def __init__(self):
        self.seen = {}

    def predict(self, inputs, *, case_id=""):
        img = inputs["FLAIR"]
        self.seen[str(img.meta.get("grid_point"))] = np.array(img.data)
        return img.with_data((img.data > np.percentile(img.data, 99)).astype(np.uint8))


def test_field_noise_and_slice_thickness_axes_with_the_physics_simulator(tmp_path):
    pytest.importorskip("neuroshift.simulate.shifts")
    from neuroshift.phantom.make import make_phantom
    from neuroshift.stress.runner import run_stress_test

    make_phantom(tmp_path / "cases" / "sub-01", seed=3)
    model = ThresholdModel()
    run = run_stress_test(tmp_path / "cases", model, "field=1.5|3,noise=0|20,slice_mm=2|6", tmp_path / "out")
    assert not run.failures and len(run.records) == 9
    (base,) = run.baseline_records()
    assert base["grid"] == {"field": 3.0, "noise": 0.0, "slice_mm": 2.0}
    assert base["baseline_check"]["max_abs_diff"] == 0.0
    images = {k: v for k, v in model.seen.items()}
    ref = images[str({"field": 3.0, "noise": 0.0, "slice_mm": 2.0})]
    for point, data in images.items():
        same = np.array_equal(data, ref)
        assert same == (point == str({"field": 3.0, "noise": 0.0, "slice_mm": 2.0})), point
