"""``neuroshift synthesize`` / ``evaluate-synthesis`` on the written phantom with tiny untrained packages:
geometry preserved, SYNTHETIC in the NIfTI header and sidecar, MC uncertainty, refusals exit 2."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from neuroshift.cli.main import main
from neuroshift.io.files import read_volume
from neuroshift.phantom import make_phantom
from neuroshift.synthesis.inference import load_package, save_package
from neuroshift.synthesis.pix2pix import UNetGenerator

PROV = {"trained_on": "untrained test package"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("syn")
    make_phantom(d / "ph", seed=0, quantitative=False)
    arch = {"in_channels": 2, "out_channels": 1, "base": 4, "depth": 2, "dropout": 0.3}
    torch.manual_seed(0)
    save_package(d / "m", "synthdir", "dir", ("flair", "t1"), arch, UNetGenerator(**arch), PROV)
    arch0 = {**arch, "dropout": 0.0}
    save_package(d / "m0", "synthdir", "dir", ("flair", "t1"), arch0, UNetGenerator(**arch0), PROV)
    return d


def test_package_round_trip(setup):
    m = load_package(setup / "m")
    assert m.task == "synthdir" and m.inputs == ("flair", "t1") and m.net.dropout.p == 0.3


def test_synthesize_geometry_tag_and_uncertainty(setup, tmp_path):
    ph = setup / "ph"
    out, unc = tmp_path / "dir.nii.gz", tmp_path / "sd.nii.gz"
    args = ["synthesize", str(out), "--target", "dir", "--model", str(setup / "m"), "--flair",
            str(ph / "FLAIR.nii.gz"), "--t1", str(ph / "T1w.nii.gz"), "--brain-mask", str(ph / "brain_mask.nii.gz"),
            "--device", "cpu"]
    assert main(args + ["--uncertainty", str(unc), "--mc-samples", "3"]) == 0
    src = read_volume(ph / "FLAIR.nii.gz")
    brain = read_volume(ph / "brain_mask.nii.gz").data > 0
    syn, sd = read_volume(out), read_volume(unc)
    assert syn.same_grid(src) and sd.same_grid(src)
    assert np.allclose(syn.ijk_to_ras(), src.ijk_to_ras(), atol=1e-5)
    assert syn.data.min() >= 0 and syn.data.max() <= 1000 and not syn.data[~brain].any()
    assert sd.data.min() >= 0 and sd.data[brain].mean() > 0
    assert b"SYNTHETIC" in bytes(nib.load(str(out)).header["descrip"])
    side = json.loads((tmp_path / "dir.json").read_text())
    assert side["Synthetic"] is True and "SYNTHETIC" in side["Description"] and side["MCSamples"] == 3
    # dropout off -> zero variance
    unc0 = tmp_path / "sd0.nii.gz"
    args0 = [a if a != str(setup / "m") else str(setup / "m0") for a in args]
    assert main([args0[0], str(tmp_path / "d0.nii.gz"), *args0[2:], "--uncertainty", str(unc0),
                 "--mc-samples", "2"]) == 0
    assert not read_volume(unc0).data.any()
    # evaluate the synthetic image against itself and the real DIR-free FLAIR
    rep = tmp_path / "eval.json"
    assert main(["evaluate-synthesis", str(out), str(out), "--brain-mask", str(ph / "brain_mask.nii.gz"),
                 "--output", str(rep)]) == 0
    res = json.loads(rep.read_text())
    assert res["regions"]["brain"]["ssim"] == pytest.approx(1.0) and res["regions"]["brain"]["mae"] == 0


def test_synthesize_refusals_exit_2(setup, tmp_path, capsys):
    ph = setup / "ph"
    out = tmp_path / "x.nii.gz"
    base = ["synthesize", str(out), "--model", str(setup / "m"), "--device", "cpu"]
    assert main(base + ["--target", "dir", "--flair", str(ph / "FLAIR.nii.gz")]) == 2
    assert "missing: t1" in capsys.readouterr().err
    assert main(base + ["--target", "t1c", "--flair", str(ph / "FLAIR.nii.gz")]) == 2
    assert "synthesises dir" in capsys.readouterr().err
    assert main(base + ["--target", "dir"]) == 2
    assert main(["synthesize", str(ph / "FLAIR.nii.gz"), "--target", "dir", "--model", str(setup / "m"),
                 "--flair", str(ph / "FLAIR.nii.gz"), "--t1", str(ph / "T1w.nii.gz")]) == 2
    assert not out.exists()


def test_synthesize_diamondgan_subset_and_vt1c_tta(tmp_path):
    from neuroshift.synthesis.diamondgan import DiamondGenerator
    from neuroshift.synthesis.inference import synthesize
    from neuroshift.synthesis.vt1c import VirtualT1cNet
    rng = np.random.default_rng(0)
    vols = {n: rng.random((6, 20, 18)).astype(np.float32) for n in ("flair", "t1", "t2", "adc", "low_dose")}
    brain = np.zeros((6, 20, 18), bool)
    brain[1:5, 2:18, 2:16] = True
    arch = {"in_channels": 3, "out_channels": 1, "n_blocks": 1, "code_width": 3}
    torch.manual_seed(0)
    save_package(tmp_path / "dg", "diamondgan", "dir", ("flair", "t1", "t2"), arch, DiamondGenerator(**arch), PROV)
    m = load_package(tmp_path / "dg")
    only_flair, _ = synthesize(m, {"flair": vols["flair"]}, brain)
    # the missing T1/T2 cannot matter: the same output whatever their (absent) content
    assert only_flair.shape == brain.shape and not only_flair[~brain].any() and only_flair.max() <= 1000
    all_three, _ = synthesize(m, {k: vols[k] for k in ("flair", "t1", "t2")}, brain)
    assert not np.array_equal(only_flair, all_three)
    varch = {"features": [2, 2, 4, 4, 4, 2], "in_channels": 4}
    save_package(tmp_path / "v", "vt1c", "t1c", ("adc", "flair", "t1", "low_dose"), varch,
                 VirtualT1cNet(features=(2, 2, 4, 4, 4, 2)), PROV)
    v = load_package(tmp_path / "v")
    inputs = {k: vols[k] for k in ("adc", "flair", "t1", "low_dose")}
    plain, _ = synthesize(v, inputs, brain)
    tta, _ = synthesize(v, inputs, brain, tta=True)
    assert plain.shape == brain.shape and 0 <= tta.min() and tta.max() <= 1000 and not np.array_equal(plain, tta)
    with pytest.raises(Exception, match="needs every input"):
        synthesize(v, {"adc": vols["adc"]}, brain)


def test_synthesize_histogram_matching_flag(setup, tmp_path):
    from neuroshift.synthesis.histmatch import MANIFEST_KEY, reference_from_values
    arch = {"in_channels": 2, "out_channels": 1, "base": 4, "depth": 2, "dropout": 0.3}
    torch.manual_seed(0)
    ref = reference_from_values(np.linspace(0.6, 0.9, 1000))
    save_package(tmp_path / "mh", "synthdir", "dir", ("flair", "t1"), arch, UNetGenerator(**arch),
                 {**PROV, MANIFEST_KEY: ref})
    ph = setup / "ph"
    brain = read_volume(ph / "brain_mask.nii.gz").data > 0
    common = ["--target", "dir", "--model", str(tmp_path / "mh"), "--flair", str(ph / "FLAIR.nii.gz"),
              "--t1", str(ph / "T1w.nii.gz"), "--brain-mask", str(ph / "brain_mask.nii.gz"), "--device", "cpu"]
    assert main(["synthesize", str(tmp_path / "a.nii.gz"), *common]) == 0
    assert main(["synthesize", str(tmp_path / "b.nii.gz"), *common, "--no-histogram-match"]) == 0
    a, b = read_volume(tmp_path / "a.nii.gz").data[brain], read_volume(tmp_path / "b.nii.gz").data[brain]
    assert np.quantile(a, 0.05) == pytest.approx(615, abs=5) and np.quantile(a, 0.95) == pytest.approx(885, abs=5)
    assert not np.allclose(a, b)
    assert json.loads((tmp_path / "a.json").read_text())["HistogramMatched"] is True
    assert json.loads((tmp_path / "b.json").read_text())["HistogramMatched"] is False
