"""``neuroshift qmri fit|synth``: round trip through files, exit code 2 on bad input, no partial output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuroshift.cli.main import main
from neuroshift.io.files import read_volume, write_volume
from neuroshift.io.volume import Volume
from neuroshift.qmri import QMRIMaps, read_maps, write_maps

SHAPE = (6, 7, 8)


@pytest.fixture
def mapdir(tmp_path):
    g = np.random.default_rng(1)
    ref = Volume(np.zeros(SHAPE, np.float32), spacing=(1.0, 1.2, 2.5), origin=(3.0, -4.0, 5.0))
    pd = g.uniform(0.6, 1.0, SHAPE)
    t1 = g.uniform(700, 4000, SHAPE)
    t2 = g.uniform(50, 400, SHAPE)
    for a in (pd, t1, t2):
        a[0] = 0.0
    maps = QMRIMaps.from_arrays(ref, PD=pd, T1=t1, T2=t2, T2star=t2 / 2)
    write_maps(maps, tmp_path / "maps")
    return tmp_path / "maps"


def _leftovers(folder, name):
    return [p.name for p in folder.iterdir() if p.name.startswith(f".{name}")]


def test_synth_then_fit_round_trip(tmp_path, mapdir, capsys):
    for i, te in enumerate((15, 90)):
        assert main(["qmri", "synth", str(mapdir), str(tmp_path / f"e{i}.nii.gz"), "--sequence", "se",
                     "--target", f"TE={te},TR=3000"]) == 0
    side = json.loads((tmp_path / "e1.json").read_text())
    assert side["EchoTime"] == pytest.approx(0.09) and side["RepetitionTime"] == pytest.approx(3.0)
    out = tmp_path / "fitted"
    rc = main(["qmri", "fit", str(tmp_path / "e0.nii.gz"), str(tmp_path / "e1.nii.gz"), "--sequence", "se",
               "--params", "TE=15,TR=3000;TE=90,TR=3000", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["PD.nii.gz", "T2.nii.gz", "qmri.json"]
    report = json.loads((out / "qmri.json").read_text())
    assert report["identified"] == ["PD (apparent)", "T2"] and report["not_identified"] == ["T1"]
    truth = read_maps(mapdir)
    t2 = read_volume(out / "T2.nii.gz")
    assert t2.same_grid(truth["T2"])
    m = truth.array("T2") > 0
    np.testing.assert_allclose(t2.data[m], truth.array("T2")[m], rtol=1e-4)
    assert "identified: PD (apparent), T2" in capsys.readouterr().out
    # parameters from the sidecars written by synth (no --params)
    out2 = tmp_path / "fitted2"
    assert main(["qmri", "fit", str(tmp_path / "e0.nii.gz"), str(tmp_path / "e1.nii.gz"), "--sequence", "se",
                 str(out2)]) == 0
    np.testing.assert_array_equal(read_volume(out2 / "T2.nii.gz").data, t2.data)


def test_full_maps_round_trip_via_cli(tmp_path, mapdir):
    targets = ["TE=10,TR=500", "TE=100,TR=500", "TE=10,TR=4000"]
    paths = []
    for i, tgt in enumerate(targets):
        p = tmp_path / f"a{i}.nii.gz"
        assert main(["qmri", "synth", str(mapdir), str(p), "--sequence", "se", "--target", tgt]) == 0
        paths.append(str(p))
    assert main(["qmri", "fit", *paths, "--sequence", "se", "--params", ";".join(targets),
                 str(tmp_path / "fit")]) == 0
    assert sorted(p.name for p in (tmp_path / "fit").iterdir()) == ["PD.nii.gz", "T1.nii.gz", "T2.nii.gz",
                                                                  "qmri.json"]
    # synthesise a FLAIR from the fitted maps and from the truth
    assert main(["qmri", "synth", str(tmp_path / "fit"), str(tmp_path / "f_fit.nii.gz"), "--sequence", "flair",
                 "--target", "TE=112,TI=2500,TR=9000"]) == 0
    assert main(["qmri", "synth", str(mapdir), str(tmp_path / "f_true.nii.gz"), "--sequence", "flair",
                 "--target", "TE=112,TI=2500,TR=9000", "--noise", "0.01", "--seed", "4"]) == 0
    a = read_volume(tmp_path / "f_fit.nii.gz").data
    assert main(["qmri", "synth", str(mapdir), str(tmp_path / "f_true0.nii.gz"), "--sequence", "flair",
                 "--target", "TE=112,TI=2500,TR=9000"]) == 0
    b = read_volume(tmp_path / "f_true0.nii.gz").data
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    noisy = read_volume(tmp_path / "f_true.nii.gz").data
    assert not np.allclose(noisy, b)
    assert json.loads((tmp_path / "f_true.json").read_text())["NeuroShiftSeed"] == 4


def test_fit_missing_params_exit2(tmp_path, mapdir, capsys):
    img = tmp_path / "x.nii.gz"
    assert main(["qmri", "synth", str(mapdir), str(img), "--sequence", "se", "--target", "TE=15,TR=3000"]) == 0
    (tmp_path / "x.json").unlink()
    img2 = tmp_path / "y.nii.gz"
    write_volume(read_volume(img), img2)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["qmri", "fit", str(img), str(img2), "--sequence", "se", str(out)]) == 2
    err = capsys.readouterr().err
    assert "x.nii.gz" in err and "TE" in err and "TR" in err
    assert not out.exists() and not _leftovers(tmp_path, "out")
    assert main(["qmri", "fit", str(img), str(img2), "--sequence", "se", "--params", "TE=15,TR=3000;TE=90", str(out)]) == 2
    err = capsys.readouterr().err
    assert "y.nii.gz" in err and "TR" in err
    assert main(["qmri", "fit", str(img), str(img2), "--sequence", "se", "--params", "TE=15,TR=3000", str(out)]) == 2
    assert "1 parameter set(s) for 2 image(s)" in capsys.readouterr().err
    assert not out.exists() and not _leftovers(tmp_path, "out")


def test_fit_geometry_mismatch_exit2(tmp_path, mapdir, capsys):
    a = tmp_path / "a.nii.gz"
    assert main(["qmri", "synth", str(mapdir), str(a), "--sequence", "se", "--target", "TE=15,TR=3000"]) == 0
    vol = read_volume(a)
    write_volume(Volume(vol.data, vol.spacing * 1.5, vol.origin, vol.direction), tmp_path / "b.nii.gz")
    out = tmp_path / "out"
    rc = main(["qmri", "fit", str(a), str(tmp_path / "b.nii.gz"), "--sequence", "se",
               "--params", "TE=15,TR=3000;TE=90,TR=3000", str(out)])
    assert rc == 2
    assert "spacings differ" in capsys.readouterr().err
    assert not out.exists() and not _leftovers(tmp_path, "out")


def test_fit_nan_exit2(tmp_path, mapdir, capsys):
    a = tmp_path / "a.nii.gz"
    assert main(["qmri", "synth", str(mapdir), str(a), "--sequence", "se", "--target", "TE=15,TR=3000"]) == 0
    vol = read_volume(a)
    data = vol.data.copy()
    data[2, 2, 2] = np.nan
    # NRRD keeps NaN; SimpleITK's NIfTI reader turns NaN into 0 (reported to the io owner)
    write_volume(vol.with_data(data), tmp_path / "b.nrrd")
    out = tmp_path / "out"
    rc = main(["qmri", "fit", str(a), str(tmp_path / "b.nrrd"), "--sequence", "se",
               "--params", "TE=15,TR=3000;TE=90,TR=3000", str(out)])
    assert rc == 2
    assert "NaN" in capsys.readouterr().err
    assert not out.exists() and not _leftovers(tmp_path, "out")


def test_fit_unidentifiable_and_too_few_exit2(tmp_path, mapdir, capsys):
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    assert main(["qmri", "synth", str(mapdir), str(a), "--sequence", "se", "--target", "TE=15,TR=500"]) == 0
    assert main(["qmri", "synth", str(mapdir), str(b), "--sequence", "se", "--target", "TE=90,TR=3000"]) == 0
    out = tmp_path / "out"
    assert main(["qmri", "fit", str(a), str(b), "--sequence", "se", str(out)]) == 2
    assert "identify no relaxation time" in capsys.readouterr().err
    assert main(["qmri", "fit", str(a), "--sequence", "se", str(out)]) == 2
    assert main(["qmri", "fit", str(a), str(b), "--sequence", "se,flair,gre", str(out)]) == 2
    assert main(["qmri", "fit", str(a), str(b), "--sequence", "xyz", str(out)]) == 2
    assert not out.exists() and not _leftovers(tmp_path, "out")


def test_synth_bad_input_exit2(tmp_path, mapdir, capsys):
    out = tmp_path / "s.nii.gz"
    # FLAIR without TI
    assert main(["qmri", "synth", str(mapdir), str(out), "--sequence", "flair", "--target", "TE=100,TR=9000"]) == 2
    assert "TI" in capsys.readouterr().err
    # missing map
    (mapdir / "T2star.nii.gz").unlink()
    assert main(["qmri", "synth", str(mapdir), str(out), "--sequence", "gre", "--target", "TE=5,TR=20,FA=15"]) == 2
    assert "T2star.nii.gz" in capsys.readouterr().err
    # map folder with mismatched grids
    t1 = read_volume(mapdir / "T1.nii.gz")
    write_volume(Volume(t1.data, t1.spacing, t1.origin + 2.0, t1.direction), mapdir / "T1.nii.gz")
    assert main(["qmri", "synth", str(mapdir), str(out), "--sequence", "se", "--target", "TE=5,TR=500"]) == 2
    assert "origins differ" in capsys.readouterr().err
    assert main(["qmri", "synth", str(tmp_path / "nope"), str(out), "--sequence", "se", "--target", "TE=5,TR=500"]) == 2
    assert main(["qmri", "synth", str(mapdir), str(out), "--sequence", "se", "--target", "TE=5,TR=500",
                 "--noise", "-1"]) == 2
    assert not out.exists() and not (tmp_path / "s.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.")]
