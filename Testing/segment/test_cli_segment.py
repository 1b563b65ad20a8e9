"""``neuroshift segment claustrum|wmh``: files in, files out, geometry kept, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroshift.cli.main import main
from neuroshift.io.files import read_volume, write_volume
from neuroshift.io.volume import Volume

from helpers.seg_helpers import phantom_ras, stored_as, tiny_unet_package


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No user or environment packages; one torch thread."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NEUROSHIFT_MODELS", raising=False)
    monkeypatch.delenv("NEUROSHIFT_PROGRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _oblique_lps_scan(path, spacing=(1.1, 0.9, 1.3)):
    vol = stored_as(phantom_ras(spacing=spacing), "LPS")
    th = np.deg2rad(7.0)
    rot = np.array([[np.cos(th), 0, np.sin(th)], [0, 1, 0], [-np.sin(th), 0, np.cos(th)]])
    vol = Volume(vol.data, vol.spacing, vol.origin + np.array([3.25, -11.5, 20.0]), rot @ vol.direction)
    write_volume(vol, path)
    return read_volume(path)


def test_claustrum_writes_label_probabilities_uncertainty_and_json_on_the_input_grid(tmp_path, capsys):
    pkg = tiny_unet_package(tmp_path / "claustrum-test")
    scan = _oblique_lps_scan(tmp_path / "t1.nii.gz")
    rc = main(["segment", "claustrum", "t1.nii.gz", "out/claustrum.nii.gz", "--model", str(pkg), "--device", "cpu",
               "--probabilities", "out/prob.nii.gz", "--uncertainty", "out/unc.nii.gz", "--json", "out/run.json",
               "--tta", "--batch-size", "7", "--threshold", "0.3", "--age-weeks", "40"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "claustrum:" in out and "mm^3" in out
    label = read_volume(tmp_path / "out/claustrum.nii.gz")
    prob = read_volume(tmp_path / "out/prob.nii.gz")
    unc = read_volume(tmp_path / "out/unc.nii.gz")
    for v in (label, prob, unc):  # check 2: the input's spacing, origin and direction
        assert v.data.shape == scan.data.shape
        np.testing.assert_allclose(v.spacing, scan.spacing, atol=1e-6)
        np.testing.assert_allclose(v.origin, scan.origin, atol=1e-4)
        np.testing.assert_allclose(v.direction, scan.direction, atol=1e-6)
    assert label.data.dtype == np.uint8 and set(np.unique(label.data)) <= {0, 1}
    assert prob.data.dtype == np.float32 and 0 <= prob.data.min() and prob.data.max() <= 1
    # the label is the probability thresholded at --threshold 0.3 on the model grid, then resampled (nearest)
    # while the probability is resampled linearly: they agree except on a thin rim
    agree = float(np.mean(label.data == (prob.data > 0.3)))
    assert agree > 0.99 and 0 < label.data.sum() < label.data.size, (agree, int(label.data.sum()))
    assert unc.data.dtype == np.float32 and unc.data.min() >= 0
    summary = json.loads((tmp_path / "out/run.json").read_text())
    assert summary["segment"] == "claustrum" and summary["tta"] is True and summary["threshold"] == 0.3
    assert summary["batch_size"] == 7 and summary["uncertainty"] == "variance"
    voxel = float(np.prod(scan.spacing))
    assert summary["volumes_mm3"]["claustrum"] == pytest.approx(label.data.sum() * voxel, rel=1e-4)
    assert not list((tmp_path / "out").glob(".*part*"))  # atomic writes leave no temporaries


def test_claustrum_without_an_installed_model_exits_2_and_says_how_to_get_one(tmp_path, capsys):
    _oblique_lps_scan(tmp_path / "t1.nii.gz")
    rc = main(["segment", "claustrum", "t1.nii.gz", "claustrum.nii.gz"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no claustrum model" in err and "import-keras" in err and "neuroshift train" in err
    assert not (tmp_path / "claustrum.nii.gz").exists()


def test_installed_claustrum_model_is_found_by_task(tmp_path, capsys, monkeypatch):
    tiny_unet_package(tmp_path / "home/.neuroshift/models/claustrum-adult")
    _oblique_lps_scan(tmp_path / "t1.nii.gz")
    assert main(["segment", "claustrum", "t1.nii.gz", "c.nii.gz", "--device", "cpu", "--probabilities", "p.nii.gz"]) == 0
    explicit = ["--model", str(tmp_path / "home/.neuroshift/models/claustrum-adult"), "--device", "cpu"]
    assert main(["segment", "claustrum", "t1.nii.gz", "e.nii.gz", *explicit, "--probabilities", "pe.nii.gz"]) == 0
    # the model found by task is that package: the same probabilities and labels as naming it
    np.testing.assert_array_equal(read_volume(tmp_path / "p.nii.gz").data, read_volume(tmp_path / "pe.nii.gz").data)
    np.testing.assert_array_equal(read_volume(tmp_path / "c.nii.gz").data, read_volume(tmp_path / "e.nii.gz").data)
    assert read_volume(tmp_path / "p.nii.gz").data.max() > 0


def test_wmh_two_channel_model_needs_t1_and_flair_only_model_ignores_it(tmp_path, capsys):
    two = tiny_unet_package(tmp_path / "wmh2", task="wmh", channels=("FLAIR", "T1"), views=("axial",))
    one = tiny_unet_package(tmp_path / "wmh1", task="wmh", channels=("FLAIR",), views=("axial",))
    flair = _oblique_lps_scan(tmp_path / "flair.nii.gz")
    write_volume(flair.with_data(flair.data * 0.3), tmp_path / "t1.nii.gz")
    rc = main(["segment", "wmh", "--flair", "flair.nii.gz", "w.nii.gz", "--model", str(two), "--device", "cpu"])
    assert rc == 2 and "--t1" in capsys.readouterr().err
    rc = main(["segment", "wmh", "--flair", "flair.nii.gz", "--t1", "t1.nii.gz", "w.nii.gz", "--model", str(two),
               "--device", "cpu", "--mask-mode", "relative", "--mask-thresholds", "FLAIR=0.2,T1=0.2"])
    assert rc == 0
    out = read_volume(tmp_path / "w.nii.gz")
    assert out.same_grid(flair)
    rc = main(["segment", "wmh", "--flair", "flair.nii.gz", "--t1", "t1.nii.gz", "w1.nii.gz", "--model", str(one),
               "--device", "cpu"])
    assert rc == 0 and "ignored" in capsys.readouterr().err


def test_wrong_task_bad_options_and_unreadable_input_exit_2(tmp_path, capsys):
    pkg = tiny_unet_package(tmp_path / "c", task="claustrum")
    _oblique_lps_scan(tmp_path / "t1.nii.gz")
    assert main(["segment", "wmh", "--flair", "t1.nii.gz", "w.nii.gz", "--model", str(pkg)]) == 2
    assert "not a wmh model" in capsys.readouterr().err
    assert main(["segment", "claustrum", "t1.nii.gz", "c.nii.gz", "--model", str(pkg), "--batch-size", "0"]) == 2
    assert main(["segment", "claustrum", "t1.nii.gz", "c.nii.gz", "--model", str(pkg), "--threshold", "2"]) == 2
    assert main(["segment", "claustrum", "t1.nii.gz", "c.nii.gz", "--model", str(pkg),
                 "--probabilities", "c.nii.gz"]) == 2
    assert main(["segment", "claustrum", "missing.nii.gz", "c.nii.gz", "--model", str(pkg)]) == 2
    assert main(["segment", "claustrum", "t1.nii.gz", "c.nii.gz", "--model", str(tmp_path / "nope")]) == 2
    assert not (tmp_path / "c.nii.gz").exists()


def test_raw_thresholds_on_rescaled_data_fail_clearly(tmp_path, capsys):
    pkg = tiny_unet_package(tmp_path / "wmh1", task="wmh", channels=("FLAIR",), views=("axial",),
                            brain_mask={"mode": "absolute", "thresholds": {"FLAIR": 70}})
    flair = phantom_ras()
    write_volume(flair.with_data(flair.data / 1000.0), tmp_path / "flair.nii.gz")
    rc = main(["segment", "wmh", "--flair", "flair.nii.gz", "w.nii.gz", "--model", str(pkg), "--device", "cpu"])
    assert rc == 2 and "relative" in capsys.readouterr().err
    rc = main(["segment", "wmh", "--flair", "flair.nii.gz", "w.nii.gz", "--model", str(pkg), "--device", "cpu",
               "--mask-mode", "relative"])
    assert rc == 0


def test_progress_as_json_lines(tmp_path, capsys, monkeypatch):
    pkg = tiny_unet_package(tmp_path / "c")
    _oblique_lps_scan(tmp_path / "t1.nii.gz")
    monkeypatch.setenv("NEUROSHIFT_PROGRESS", "json")
    assert main(["segment", "claustrum", "t1.nii.gz", "c.nii.gz", "--model", str(pkg), "--device", "cpu"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert lines and lines[-1]["progress"] == 1.0
