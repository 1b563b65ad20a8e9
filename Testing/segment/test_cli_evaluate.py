"""``neuroshift evaluate``: table, JSON (atomic, NaN as null), geometry check with exit code 2."""

import json

import numpy as np

from neuroshift.cli.main import main
from neuroshift.io import Volume, write_volume


def _write(tmp_path, name, data, spacing=(0.5, 0.5, 0.5)):
    return str(write_volume(Volume(data, spacing=spacing), tmp_path / name))


def _sphere(shift=0):
    z, y, x = np.indices((40, 40, 40))
    return (((z - 20 - shift) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) <= 81).astype(np.uint8)


def test_evaluate_prints_table_and_writes_json(tmp_path, capsys):
    gt = _sphere()
    gt[2:4, 2:4, 2:4] = 2  # other pathology, ignored
    pred = _sphere(shift=2)
    pred[2:4, 2:4, 2:4] = 1
    out = tmp_path / "scores.json"
    rc = main(["evaluate", _write(tmp_path, "pred.nii.gz", pred), _write(tmp_path, "gt.nii.gz", gt),
               "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Dice (DSC)" in text and "HD95" in text and "ignored" in text
    doc = json.loads(out.read_text())
    m = doc["metrics"]
    assert m["hd95_mm"] == 1.0  # 2 voxels of 0.5 mm, exactly (every directed 95th percentile)
    a, b = _sphere() == 1, _sphere(shift=2) == 1  # the ignored block (label 2) counts neither way
    n = int(a.sum())
    assert int(b.sum()) == n
    assert m["dsc"] == 2 * int((a & b).sum()) / (2 * n) and m["vs"] == 1.0 and m["avd_percent"] == 0.0
    assert m["volume_gt_mm3"] == n * 0.125 and m["volume_pred_mm3"] == n * 0.125
    assert m["n_pred"] == 1 and m["precision"] == 1.0 and m["ignored_voxels"] == 8
    assert doc["conventions"]["connectivity"] == 26
    assert not list(tmp_path.glob(".scores*"))


def test_empty_prediction_gives_null_hd95(tmp_path):
    out = tmp_path / "s.json"
    rc = main(["evaluate", _write(tmp_path, "p.nii.gz", np.zeros((40, 40, 40), np.uint8)),
               _write(tmp_path, "g.nii.gz", _sphere()), "--json", str(out)])
    assert rc == 0
    m = json.loads(out.read_text())["metrics"]
    assert m["hd95_mm"] is None and m["dsc"] == 0.0 and m["recall"] == 0.0


def test_probability_map_threshold(tmp_path, capsys):
    prob = _sphere().astype(np.float32) * 0.6
    rc = main(["evaluate", _write(tmp_path, "p.nii.gz", prob), _write(tmp_path, "g.nii.gz", _sphere()),
               "--json", str(tmp_path / "a.json"), "--threshold", "0.7"])
    assert rc == 0 and json.loads((tmp_path / "a.json").read_text())["metrics"]["dsc"] == 0.0
    rc = main(["evaluate", _write(tmp_path, "p.nii.gz", prob), _write(tmp_path, "g.nii.gz", _sphere()),
               "--json", str(tmp_path / "b.json")])
    assert json.loads((tmp_path / "b.json").read_text())["metrics"]["dsc"] == 1.0


def test_geometry_mismatch_exits_2(tmp_path, capsys):
    out = tmp_path / "x.json"
    rc = main(["evaluate", _write(tmp_path, "p.nii.gz", _sphere(), spacing=(1, 1, 1)),
               _write(tmp_path, "g.nii.gz", _sphere()), "--json", str(out)])
    assert rc == 2 and "spacings differ" in capsys.readouterr().err and not out.exists()
    rc = main(["evaluate", _write(tmp_path, "p2.nii.gz", np.zeros((40, 40, 39), np.uint8)),
               _write(tmp_path, "g.nii.gz", _sphere())])
    assert rc == 2
    rc = main(["evaluate", str(tmp_path / "missing.nii.gz"), _write(tmp_path, "g.nii.gz", _sphere())])
    assert rc == 2
