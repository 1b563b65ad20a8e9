"""``neuroshift mrf`` CLI (issue 12): dictionary, match, predict, evaluate; bad input exit 2; geometry kept."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from neuroshift.cli.main import main
from neuroshift.io.files import read_volume
from neuroshift.io.volume import Volume
from neuroshift.mrf.frames_io import read_frames, write_frames_nifti
from neuroshift.mrf.schedule import data_dir, representative_schedule


@pytest.fixture(scope="module")
def dict_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("mrfdict") / "dict.npz"
    assert main(["mrf", "dictionary", "--out", str(p), "--device", "cpu"]) == 0
    return p


def _ref(shape_kji=(3, 4, 5)):
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rotated, anisotropic grid
    return Volume(np.zeros(shape_kji, np.float32), spacing=[1.0, 1.5, 2.0], origin=[10.0, -5.0, 3.0],
                  direction=direction)


def _frames_from_atoms(dict_path, ref):
    from neuroshift.mrf.dictionary import load_dictionary

    d = load_dictionary(dict_path)
    rng = np.random.default_rng(0)
    n = int(np.prod(ref.data.shape))
    idx = rng.choice(len(d.atoms()), n, replace=False)
    frames = (d.atoms()[idx] * 100.0).reshape(ref.data.shape + (35,))
    frames[0, 0, 0] = 0.0  # background voxel
    return frames.astype(np.float32), d.parameters()[idx].reshape(ref.data.shape + (3,))


def test_match_cli_recovers_parameters_keeps_geometry(dict_path, tmp_path):
    ref = _ref()
    frames, params = _frames_from_atoms(dict_path, ref)
    f = write_frames_nifti(frames, ref, tmp_path / "frames.nii.gz")
    shutil.copy(data_dir() / "schedule_representative.json", tmp_path / "frames.schedule.json")
    back, ref_back = read_frames(f)
    np.testing.assert_array_equal(back, frames)
    assert main(["mrf", "match", str(f), "--dictionary", str(dict_path), "--out", str(tmp_path / "maps"),
                 "--device", "cpu"]) == 0
    t1 = read_volume(tmp_path / "maps" / "T1.nii.gz")
    assert t1.same_grid(ref)
    np.testing.assert_allclose(t1.data.ravel()[1:], params[..., 0].ravel()[1:], rtol=1e-6)
    assert t1.data[0, 0, 0] == 0.0
    t2 = read_volume(tmp_path / "maps" / "T2star.nii.gz").data
    np.testing.assert_allclose(t2.ravel()[1:], params[..., 1].ravel()[1:], rtol=1e-6)
    pd = read_volume(tmp_path / "maps" / "PD.nii.gz").data
    np.testing.assert_allclose(pd.ravel()[1:], 100.0, rtol=1e-5)
    info = json.loads((tmp_path / "maps" / "mrf_match.json").read_text())
    assert info["schedule_hash"] == representative_schedule().hash


def test_folder_of_3d_frames_with_schedule_inside(dict_path, tmp_path):
    from neuroshift.io.files import write_volume

    ref = _ref((2, 3, 2))
    frames, params = _frames_from_atoms(dict_path, ref)
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in range(35):
        write_volume(ref.with_data(frames[..., n]), folder / f"frame{n + 1}.nii.gz")  # frame10 after frame9
    shutil.copy(data_dir() / "schedule_representative.json", folder / "schedule.json")
    assert main(["mrf", "match", str(folder), "--dictionary", str(dict_path), "--out", str(tmp_path / "m"),
                 "--device", "cpu", "--svd-energy", "0.99999"]) == 0
    b1 = read_volume(tmp_path / "m" / "B1.nii.gz").data
    np.testing.assert_allclose(b1.ravel()[1:], params[..., 2].ravel()[1:], rtol=1e-6)


def test_bad_inputs_exit_2_and_write_nothing(dict_path, tmp_path, capsys):
    ref = _ref()
    frames, _ = _frames_from_atoms(dict_path, ref)
    f = write_frames_nifti(frames, ref, tmp_path / "frames.nii.gz")
    out = tmp_path / "maps"
    # no schedule beside the frames
    assert main(["mrf", "match", str(f), "--dictionary", str(dict_path), "--out", str(out)]) == 2
    assert "no schedule beside the frames" in capsys.readouterr().err
    # another schedule: the dictionary is refused
    other = json.loads((data_dir() / "schedule_representative.json").read_text())
    other["frames"][0]["fa_deg"] = 35.0
    (tmp_path / "frames.schedule.json").write_text(json.dumps(other))
    assert main(["mrf", "match", str(f), "--dictionary", str(dict_path), "--out", str(out)]) == 2
    assert "schedule" in capsys.readouterr().err
    # 3D image instead of 4D frames
    from neuroshift.io.files import write_volume

    write_volume(ref.with_data(frames[..., 0]), tmp_path / "three.nii.gz")
    shutil.copy(data_dir() / "schedule_representative.json", tmp_path / "three.schedule.json")
    assert main(["mrf", "match", str(tmp_path / "three.nii.gz"), "--dictionary", str(dict_path), "--out",
                 str(out)]) == 2
    assert "4D" in capsys.readouterr().err
    assert not out.exists()
    assert main(["mrf", "dictionary", "--schedule", str(tmp_path / "nope.json"), "--out", str(tmp_path / "d.npz")]) == 2
    assert not (tmp_path / "d.npz").exists()


def test_predict_and_evaluate_cli(tmp_path):
    import torch

    from neuroshift.mrf.model import build_model, save_package

    torch.manual_seed(0)
    save_package(build_model({"encoder": [4, 4, 4, 4], "decoder": [4, 4, 4]}), tmp_path / "model",
                 representative_schedule(), {"notes": "test"})
    ref = _ref((2, 16, 16))
    frames = np.random.default_rng(0).uniform(0.1, 1, (2, 16, 16, 35)).astype(np.float32)
    f = write_frames_nifti(frames, ref, tmp_path / "frames.nii.gz")
    shutil.copy(data_dir() / "schedule_representative.json", tmp_path / "schedule.json")
    assert main(["mrf", "predict", str(f), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "p"),
                 "--device", "cpu"]) == 0
    les = read_volume(tmp_path / "p" / "lesion.nii.gz")
    assert les.same_grid(ref) and les.data.min() >= 0 and les.data.max() <= 100
    # evaluate: the prediction against itself -> zero deviation; GT lesion mask fed back -> Dice = LDR = 1
    from neuroshift.io.files import write_volume

    gt = np.zeros((2, 16, 16), np.float32)
    gt[0, 2:5, 2:5] = 100.0
    gt[1, 10:12, 10:12] = 100.0
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    for name in ("T1", "T2star"):
        write_volume(ref.with_data(np.full((2, 16, 16), 900.0, np.float32)), tmp_path / "ref" / f"{name}.nii.gz")
        write_volume(ref.with_data(np.full((2, 16, 16), 990.0, np.float32)), tmp_path / "pred" / f"{name}.nii.gz")
    write_volume(ref.with_data(gt), tmp_path / "ref" / "lesion.nii.gz")
    write_volume(ref.with_data(gt), tmp_path / "pred" / "lesion.nii.gz")
    assert main(["mrf", "evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--out",
                 str(tmp_path / "e")]) == 0
    s = json.loads((tmp_path / "e" / "mrf_evaluate.json").read_text())
    assert s["T1_rel_dev"] == pytest.approx(0.1) and s["lesion_dice_33pct"] == 1.0 and s["lesion_ldr_33pct"] == 1.0
    csv = (tmp_path / "e" / "lesion_curves.csv").read_text().splitlines()
    assert len(csv) == 101 and csv[33].startswith("33.0,1.0,1.0,2,2,")
    assert (tmp_path / "e" / "lesion_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_train_flags_come_from_the_config_and_bad_settings_exit_2(tmp_path, capsys):
    from neuroshift.mrf.train import MRFTrainConfig
    from neuroshift.training.config import option_names

    opts = option_names(MRFTrainConfig)
    assert {"--epochs", "--lr", "--lr-halve-epochs", "--loss", "--train-seeds", "--lesion-oversampling"} <= set(opts)
    assert main(["mrf", "train", "--out", str(tmp_path / "m"), "--work", str(tmp_path / "w"), "--train-seeds", "1,2",
                 "--val-seeds", "2", "--device", "cpu"]) == 2
    assert "seeds overlap" in capsys.readouterr().err
    assert main(["mrf", "train", "--out", str(tmp_path / "m"), "--work", str(tmp_path / "w"), "--epochs", "0",
                 "--device", "cpu"]) == 2
    assert not (tmp_path / "m").exists()


def test_match_cli_b1_map_and_scores_method(dict_path, tmp_path, capsys):
    from neuroshift.io.files import write_volume

    ref = _ref((2, 3, 4))
    frames, params = _frames_from_atoms(dict_path, ref)
    f = write_frames_nifti(frames, ref, tmp_path / "frames.nii.gz")
    shutil.copy(data_dir() / "schedule_representative.json", tmp_path / "frames.schedule.json")
    b1 = write_volume(ref.with_data((params[..., 2] + 0.03).astype(np.float32)), tmp_path / "b1.nii.gz")
    assert main(["mrf", "match", str(f), "--dictionary", str(dict_path), "--out", str(tmp_path / "m"),
                 "--device", "cpu", "--b1-map", str(b1), "--method", "scores", "--threads", "1"]) == 0
    t2 = read_volume(tmp_path / "m" / "T2star.nii.gz").data
    np.testing.assert_allclose(t2.ravel()[1:], params[..., 1].ravel()[1:], rtol=1e-6)
    info = json.loads((tmp_path / "m" / "mrf_match.json").read_text())
    assert info["method"] == "scores" and info["b1_map"] == str(b1)
    # a B1 map on another grid: exit 2, nothing written
    write_volume(_ref((2, 3, 5)).with_data(np.ones((2, 3, 5), np.float32)), tmp_path / "b1bad.nii.gz")
    assert main(["mrf", "match", str(f), "--dictionary", str(dict_path), "--out", str(tmp_path / "m2"),
                 "--b1-map", str(tmp_path / "b1bad.nii.gz")]) == 2
    assert "B1 map and frames" in capsys.readouterr().err and not (tmp_path / "m2").exists()
