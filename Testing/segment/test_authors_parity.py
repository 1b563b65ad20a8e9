"""Authors' models give the authors' results: ``neuroshift segment`` with an imported package vs the
authors' released inference steps run with real TensorFlow-Keras (fixture from
``dev/make_authors_parity_fixture.py``: SYNTHETIC LPS-stored scans, tiny random-weight networks of the
released layout, WMH ``test_tf2.py`` and claustrum ``test_two_views.py`` steps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroshift.cli.main import main
from neuroshift.io.files import read_volume

FIXTURE = Path(__file__).parents[1] / "fixtures" / "authors_parity"
FILES = {"wmh": ["wmh_0", "wmh_1", "wmh_2"],
         "claustrum": [f"{v}_{i}" for v in ("axial", "coronal") for i in range(3)]}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NEUROSHIFT_MODELS", raising=False)
    monkeypatch.setenv("NEUROSHIFT_PROGRESS", "0")
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _import(task: str, out: Path, *extra: str) -> Path:
    h5 = [str(FIXTURE / f"{name}.weights.h5") for name in FILES[task]]
    assert main(["models", "import-keras", *h5, "--task", task, "--out", str(out), *extra]) == 0
    return out


def _segment(task: str, model: Path, tmp_path: Path, precision: str = "fp32"):
    label, prob, info = tmp_path / f"{task}.nii.gz", tmp_path / f"{task}_p.nii.gz", tmp_path / f"{task}.json"
    if task == "wmh":
        args = ["segment", "wmh", "--flair", str(FIXTURE / "wmh_FLAIR.nii.gz"), "--t1", str(FIXTURE / "wmh_T1.nii.gz")]
    else:
        args = ["segment", "claustrum", str(FIXTURE / "claustrum_T1.nii.gz")]
    rc = main([*args, str(label), "--model", str(model), "--probabilities", str(prob), "--json", str(info),
               "--precision", precision, "--threads", "1"])
    assert rc == 0
    return read_volume(label), read_volume(prob), json.loads(info.read_text())


@pytest.mark.parametrize("task", ["wmh", "claustrum"])
def test_imported_package_reproduces_the_authors_released_inference(task, tmp_path):
    expected = np.load(FIXTURE / f"{task}_expected.npz")
    model = _import(task, tmp_path / f"{task}-keras")
    manifest = json.loads((model / "manifest.json").read_text())
    assert "test_tf2.py" in manifest["settings_source"]["release"] if task == "wmh" else \
        "test_two_views.py" in manifest["settings_source"]["release"]
    label, prob, info = _segment(task, model, tmp_path)
    assert info["input_orientation"] == "LPS"  # the scans are stored LPS, not RAS
    assert label.data.shape == expected["label"].shape  # stored array order, as the release writes it
    assert _dice(label.data, expected["label"]) >= 0.99
    assert float(np.abs(prob.data - expected["probability"]).max()) <= 1e-4
    # the fixture is not trivial: the masks are neither empty nor full
    assert 0.1 < float(expected["label"].mean()) < 0.9


def test_wmh_with_canonical_ras_differs_from_the_release(tmp_path):
    """The setting matters: reorienting the LPS-stored scan to RAS (rotating every slice by 180 degrees)
    no longer reproduces the release, so the parity above tests the orientation the package records."""
    expected = np.load(FIXTURE / "wmh_expected.npz")
    model = _import("wmh", tmp_path / "wmh-ras", "--orientation", "RAS")
    assert json.loads((model / "manifest.json").read_text())["preprocessing"]["orientation"] == "RAS"
    label, prob, _ = _segment("wmh", model, tmp_path)
    assert _dice(label.data, expected["label"]) < 0.95
    assert float(np.abs(prob.data - expected["probability"]).max()) > 1e-2


def test_claustrum_view_min_fill_matters(tmp_path):
    """With our own slab rule (clear every view's slabs) the release's probabilities are not reproduced:
    the release fills unpredicted voxels with the view's minimum and clears nothing after fusion."""
    expected = np.load(FIXTURE / "claustrum_expected.npz")
    model = _import("claustrum", tmp_path / "claustrum-zero")
    manifest_path = model / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["slab_fill"] == "view-min"
    manifest["slab_fill"] = "zero"
    manifest_path.write_text(json.dumps(manifest))
    _, prob, _ = _segment("claustrum", model, tmp_path)
    assert float(np.abs(prob.data - expected["probability"]).max()) > 0.1


def test_bf16_agreement_is_measured_and_recorded(tmp_path):
    """Reduced precision: the run info gives its measured agreement with float32 on the same run."""
    model = _import("claustrum", tmp_path / "claustrum-bf16")
    _, prob, info = _segment("claustrum", model, tmp_path, precision="bf16")
    check = info["precision_check"]
    assert info["precision"] == "bfloat16" and check["reference"] == "float32"
    assert check["slices"] >= 1 and 0.0 < check["max_abs_probability_difference"] < 0.05
    expected = np.load(FIXTURE / "claustrum_expected.npz")
    assert float(np.abs(prob.data - expected["probability"]).max()) < 0.05
    assert info["threads"]["torch_threads"] == 1
