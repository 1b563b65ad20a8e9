"""``neuroshift models list / verify`` with the bundled synthesis packages (LesionSynth) beside the segmentation ones.

They share the model folders; the listing showed the synthesis packages as "BROKEN" (read with the segmentation
manifest schema) and the segmentation pickers must not offer them.
"""

from __future__ import annotations

import json
import shutil

import pytest

SYNTHESIS = {"dir-demo": ("diamondgan", "dir", ["flair", "t1", "t2"]),
             "synthdir-demo": ("synthdir", "dir", ["flair", "t1"]),
             "vt1c-demo": ("vt1c", "t1c", ["adc", "flair", "t1", "low_dose"])}


@pytest.fixture()
def bundled_only(monkeypatch, tmp_path):
    monkeypatch.delenv("NEUROSHIFT_MODELS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_synthesis_task_names_agree():
    from LesionSynthLib.synthesis import SYNTHESIS_TASKS as module_tasks
    from neuroshift.segment.registry import SYNTHESIS_TASKS
    from neuroshift.synthesis.inference import TASKS

    assert SYNTHESIS_TASKS == TASKS == module_tasks == ("diamondgan", "synthdir", "vt1c")


def test_list_models_names_the_kind_of_every_bundled_package(bundled_only):
    from neuroshift.segment.registry import list_models

    listed = {m["name"]: m for m in list_models()}
    assert not [n for n, m in listed.items() if "error" in m]
    for name, (task, target, inputs) in SYNTHESIS.items():
        m = listed[name]
        assert (m["kind"], m["task"], m["target"], m["inputs"], m["demo"]) == ("synthesis", task, target, inputs, True)
    for name in ("wmh-demo", "wmh-qsynth-demo", "lesion-qsynth-demo"):
        assert listed[name]["kind"] == "segmentation" and listed[name]["views"] == ["axial"]


def test_models_list_and_verify_on_the_command_line(bundled_only, capsys):
    from neuroshift.cli.main import main

    assert main(["models", "list"]) == 0
    text = capsys.readouterr().out
    assert "BROKEN" not in text and "flair,t1 -> dir" in text and "adc,flair,t1,low_dose -> t1c" in text
    assert main(["models", "verify", "synthdir-demo"]) == 0
    assert "synthesis task synthdir; weights load; 99,329 parameters; inputs flair, t1 -> dir; DEMO" in capsys.readouterr().out
    assert main(["models", "verify", "dir-demo"]) == 0
    assert "36,269 parameters" in capsys.readouterr().out


def test_verify_refuses_a_synthesis_package_whose_weights_do_not_fit(bundled_only, tmp_path, capsys):
    from neuroshift.cli.main import main
    from neuroshift.segment.registry import find_model

    pkg = tmp_path / "bad"
    shutil.copytree(find_model("synthdir-demo"), pkg)
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["architecture"]["base"] = 8  # the weights were saved for base 16
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    assert main(["models", "verify", str(pkg)]) == 2
    assert "weights do not load into the manifest's network" in capsys.readouterr().err


def test_segmentation_pickers_leave_synthesis_packages_out(bundled_only):
    from ClaustrumSegLib import ClaustrumSegCore
    from ShiftSimulatorLib.stress_logic import model_names

    names = [m["name"] for m in ClaustrumSegCore.available_models()]
    assert "wmh-demo" in names and not set(SYNTHESIS) & set(names)
    assert "wmh-demo" in model_names() and not set(SYNTHESIS) & set(model_names())
