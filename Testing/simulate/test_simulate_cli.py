"""``neuroshift simulate``: outputs, sidecars, exit codes for bad input, never a partial output."""

import json

import numpy as np
import pytest

from neuroshift.cli.main import main
from neuroshift.io.files import read_volume, write_volume
from neuroshift.io.params import AcquisitionParams
from neuroshift.io.volume import Volume
from neuroshift.simulate.synthetic import synthetic_fractions

from helpers import hand_signals as hand  # Testing/ helper: literal relaxation values, written-out equations
from helpers.hand_signals import LIT_3T

ORDER = ("CSF", "GM", "WM", "lesion")
SRC = AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000, field_T=3.0)
GEOM = dict(spacing=(0.9, 1.0, 1.2), origin=(-10.0, 5.0, 20.0))


def signal(fr, params, c=1000.0):
    """c·Σ f_t·S_t with the written-out FLAIR equation and literal 3 T values (not the engine's helpers)."""
    return sum(c * hand.by_sequence("flair", params, *LIT_3T[t]) * fr[t] for t in ORDER).astype(np.float32)


@pytest.fixture()
def case(tmp_path):
    fr = synthetic_fractions((24, 30, 28), brain_semi_axes_mm=(9, 12, 11), n_lesions=3, seed=2)
    # pure labels (argmax where the brain is) and the PV maps
    stack = np.stack([fr[t] for t in ORDER])
    labels = np.where(stack.sum(0) > 0.5, stack.argmax(0) + 1, 0).astype(np.uint8)
    pure = {t: (labels == i + 1).astype(np.float32) for i, t in enumerate(ORDER)}
    img = signal(pure, SRC) + np.random.default_rng(0).normal(0, 1.0, labels.shape).astype(np.float32)
    img = np.abs(img)
    write_volume(Volume(img, **GEOM), tmp_path / "flair.nii.gz")
    (tmp_path / "flair.json").write_text(json.dumps({"EchoTime": 0.112, "InversionTime": 2.5,
                                                     "RepetitionTime": 9.0, "MagneticFieldStrength": 3,
                                                     "Manufacturer": "Phantom"}))
    write_volume(Volume(labels, **GEOM), tmp_path / "labels.nii.gz")
    pv_arg = []
    for t in ORDER:
        write_volume(Volume(fr[t], **GEOM), tmp_path / f"pv_{t}.nii.gz")
        pv_arg.append(f"{t}={tmp_path / f'pv_{t}.nii.gz'}")
    return {"dir": tmp_path, "img": img, "pure": pure, "pv": ",".join(pv_arg)}


def run(case, *extra, out="out.nii.gz", inp="flair.nii.gz"):
    d = case["dir"]
    return main(["simulate", str(d / inp), str(d / out), "--sequence", "flair", *extra])


def test_labels_with_sidecar_source(case, capsys):
    d = case["dir"]
    assert run(case, "--target", "TE=150,TI=2900", "--tissues", str(d / "labels.nii.gz")) == 0
    out = read_volume(d / "out.nii.gz")
    assert out.same_grid(read_volume(d / "flair.nii.gz"), atol_mm=1e-6)
    truth = signal(case["pure"], SRC.merged(AcquisitionParams(TE_ms=150, TI_ms=2900))) + (case["img"] - signal(case["pure"], SRC))
    for t in ORDER:
        m = case["pure"][t] > 0
        assert out.data[m].mean() == pytest.approx(truth[m].mean(), rel=0.01), t
    side = json.loads((d / "out.json").read_text())
    assert side["EchoTime"] == pytest.approx(0.150) and side["InversionTime"] == pytest.approx(2.9)
    assert side["RepetitionTime"] == pytest.approx(9.0) and side["MagneticFieldStrength"] == 3
    assert side["Manufacturer"] == "Phantom"
    assert side["NeuroShift"]["target_ms"]["TE_ms"] == 150 and side["NeuroShift"]["scale_c"] > 0
    assert "wrote" in capsys.readouterr().out


def test_identity_through_files(case):
    d = case["dir"]
    assert run(case, "--target", "TE=112", "--pv", case["pv"]) == 0
    np.testing.assert_array_equal(read_volume(d / "out.nii.gz").data, case["img"])


def test_explicit_source_pv_noise_and_seed(case):
    d = case["dir"]
    (d / "flair.json").unlink()
    args = ["--target", "TE=84,TI=2200", "--source", "TE=112,TI=2500,TR=9000", "--pv", case["pv"],
            "--noise", "5", "--seed", "3", "--field", "3"]
    assert run(case, *args, out="a.nii.gz") == 0
    assert run(case, *args, out="b.nii.gz") == 0
    a, b = read_volume(d / "a.nii.gz").data, read_volume(d / "b.nii.gz").data
    np.testing.assert_array_equal(a, b)
    assert run(case, "--target", "TE=84,TI=2200", "--source", "TE=112,TI=2500,TR=9000", "--pv", case["pv"],
               out="c.nii.gz") == 0
    c = read_volume(d / "c.nii.gz").data
    bright = c > 100.0  # signal >= 20 sigma: Rician noise is Gaussian there with sigma = 5
    assert bright.sum() > 1000
    assert np.std(a[bright] - c[bright]) == pytest.approx(5.0, rel=0.05)  # not 5·sqrt(2), not 5/sqrt(2)
    assert np.mean(a[bright] - c[bright]) == pytest.approx(0.0, abs=0.5)


def test_custom_labels_and_slice_thickness(case):
    d = case["dir"]
    assert run(case, "--target", "TI=2200", "--tissues", str(d / "labels.nii.gz"),
               "--labels", "CSF=1,GM=2,WM=3|4", "--slice-mm", "3") == 0
    side = json.loads((d / "out.json").read_text())
    assert set(side["NeuroShift"]["apparent_tissue_parameters"]) == {"CSF", "GM", "WM"}
    assert side["NeuroShift"]["slice_mm"] == 3


def _assert_no_output(d, name="out"):
    assert not (d / f"{name}.nii.gz").exists() and not (d / f"{name}.json").exists()
    assert not [p for p in d.iterdir() if ".part" in p.name]


def test_missing_source_parameter_exit_2(case, capsys):
    d = case["dir"]
    (d / "flair.json").write_text(json.dumps({"EchoTime": 0.112, "RepetitionTime": 9.0}))
    assert run(case, "--target", "TE=150", "--tissues", str(d / "labels.nii.gz")) == 2
    assert "TI" in capsys.readouterr().err
    _assert_no_output(d)


def test_nan_input_exit_2(case, capsys):
    d = case["dir"]
    img = case["img"].copy()
    img[1, 2, 3] = np.nan
    # NRRD keeps NaN (ITK's NIfTI reader turns NaN into 0 on reading)
    write_volume(Volume(img, **GEOM), d / "nan.nrrd")
    assert run(case, "--target", "TE=150", "--source", "TE=112,TI=2500,TR=9000",
               "--tissues", str(d / "labels.nii.gz"), inp="nan.nrrd") == 2
    assert "NaN" in capsys.readouterr().err
    _assert_no_output(d)


def test_mismatched_geometry_exit_2(case, capsys):
    d = case["dir"]
    lab = read_volume(d / "labels.nii.gz")
    write_volume(Volume(lab.data, spacing=(1, 1, 1), origin=GEOM["origin"]), d / "lab2.nii.gz")
    assert run(case, "--target", "TE=150", "--tissues", str(d / "lab2.nii.gz")) == 2
    assert "spacing" in capsys.readouterr().err
    pv = case["pv"].replace(str(d / "pv_GM.nii.gz"), str(d / "lab2.nii.gz"))
    assert run(case, "--target", "TE=150", "--pv", pv) == 2
    _assert_no_output(d)


def test_2d_input_exit_2(case, capsys):
    d = case["dir"]
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(case["img"][5]), str(d / "flat.nii.gz"))
    assert run(case, "--target", "TE=150", "--source", "TE=112,TI=2500,TR=9000",
               "--tissues", str(d / "labels.nii.gz"), inp="flat.nii.gz") == 2
    assert "3D" in capsys.readouterr().err
    _assert_no_output(d)


def test_unreadable_file_exit_2(case, capsys):
    d = case["dir"]
    (d / "junk.nii.gz").write_bytes(b"not an image")
    assert run(case, "--target", "TE=150", "--source", "TE=112,TI=2500,TR=9000",
               "--tissues", str(d / "labels.nii.gz"), inp="junk.nii.gz") == 2
    assert "junk.nii.gz" in capsys.readouterr().err
    assert run(case, "--target", "TE=150", "--tissues", str(d / "missing.nii.gz")) == 2
    _assert_no_output(d)


@pytest.mark.parametrize("target", ["TE=15000", "TE=-5", "TI=12000", "FA=400", "XX=3"])
def test_out_of_range_target_exit_2(case, capsys, target):
    d = case["dir"]
    try:
        code = run(case, "--target", target, "--tissues", str(d / "labels.nii.gz"))
    except SystemExit as exc:  # argparse rejects the value while parsing
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert target.split("=")[0] in err
    _assert_no_output(d)


def test_ti_beyond_tr_exit_2(case, capsys):
    d = case["dir"]
    assert run(case, "--target", "TI=9500", "--tissues", str(d / "labels.nii.gz")) == 2
    assert "TR" in capsys.readouterr().err
    _assert_no_output(d)


def test_other_bad_options_exit_2(case):
    d = case["dir"]
    lab = str(d / "labels.nii.gz")
    assert run(case, "--target", "TE=150", "--tissues", lab, "--noise", "-1") == 2
    assert run(case, "--target", "TE=150", "--tissues", lab, "--labels", "CSF=1,bone=7") == 2
    assert run(case, "--target", "TE=150", "--pv", case["pv"], "--labels", "CSF=1") == 2
    assert run(case, "--target", "TE=150", "--tissues", lab, out="flair.nii.gz") == 2
    with pytest.raises(SystemExit) as exc:
        run(case, "--target", "TE=150")  # neither --tissues nor --pv
    assert exc.value.code == 2
    _assert_no_output(d)


def test_dicom_series_source_from_header_and_dicom_output(case):
    d = case["dir"]
    meta = {"dicom:EchoTime": "112", "dicom:InversionTime": "2500", "dicom:RepetitionTime": "9000",
            "dicom:MagneticFieldStrength": "3"}
    write_volume(Volume(np.round(case["img"] * 10), **GEOM, meta=meta), d / "dicom_in")
    (d / "flair.json").unlink()
    assert main(["simulate", str(d / "dicom_in"), str(d / "dicom_out"), "--sequence", "flair",
                 "--target", "TE=150,TI=2900", "--tissues", str(d / "labels.nii.gz")]) == 0
    out = read_volume(d / "dicom_out")
    assert float(out.meta["dicom:EchoTime"]) == 150 and float(out.meta["dicom:InversionTime"]) == 2900
    assert float(out.meta["dicom:RepetitionTime"]) == 9000
    assert json.loads((d / "dicom_out.json").read_text())["EchoTime"] == pytest.approx(0.15)
    # without header parameters the same input is refused
    write_volume(Volume(np.round(case["img"] * 10), **GEOM), d / "dicom_bare")
    assert main(["simulate", str(d / "dicom_bare"), str(d / "bare_out"), "--sequence", "flair",
                 "--target", "TE=150", "--tissues", str(d / "labels.nii.gz")]) == 2
    assert not (d / "bare_out").exists() and not (d / "bare_out.json").exists()
