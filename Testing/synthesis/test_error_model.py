"""The residual-trained error model of synthDIR packages (neuroshift.synthesis.error_model, inference,
``neuroshift synthesize --uncertainty``): the NLL's minimiser, units, package integrity, what synthesize and the
CLI return, that training through the shared loop learns a known SD, and the bundled model's figure."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from neuroshift.cli.main import main
from neuroshift.errors import InputError
from neuroshift.io.files import read_volume
from neuroshift.synthesis import error_model as em
from neuroshift.synthesis.losses import masked_gaussian_nll
from neuroshift.synthesis.inference import (MC_DROPOUT, RESIDUAL, load_package, normalised_sources, save_package,
                                            synthesize, uncertainty_kind)
from neuroshift.synthesis.metrics import normalise
from neuroshift.synthesis.pix2pix import UNetGenerator
from neuroshift.training.loop import LoopSettings, run_loop

ARCH = {"in_channels": 2, "out_channels": 1, "base": 4, "depth": 2, "dropout": 0.3}
SMALL = {"network": "UNet", "channels": [4, 8], "strides": [2], "num_res_units": 0}


def test_nll_is_minimised_where_the_variance_equals_the_squared_residual_and_ignores_masked_voxels():
    res = torch.tensor([[[[0.1, -0.3], [0.02, 5.0]]]])
    mask = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    lv = torch.log(res ** 2).requires_grad_(True)
    loss = masked_gaussian_nll(lv, res, mask)
    loss.backward()
    assert torch.allclose(lv.grad, torch.zeros_like(lv), atol=1e-6)  # d/dlv 0.5(lv + r^2 e^-lv) = 0 at e^lv = r^2
    want = 0.5 * (np.log(np.array([0.1, 0.3, 0.02]) ** 2) + 1).mean()
    assert loss.item() == pytest.approx(want, rel=1e-6)
    other = lv.detach().clone()
    other[..., 1, 1] = -5.0  # the masked voxel does not count
    assert masked_gaussian_nll(other, res, mask).item() == pytest.approx(want, rel=1e-6)


def test_residual_and_input_are_in_target_range_units():
    rng = np.random.default_rng(0)
    brain = np.zeros((3, 8, 8), bool)
    brain[:, 1:7, 1:7] = True
    ref = rng.uniform(100, 900, brain.shape).astype(np.float32)
    assert np.abs(em.residual(ref, 3.0 * ref + 50, brain)).max() < 1e-6  # an affine copy: no error in these units
    syn = ref + rng.normal(0, 30, brain.shape).astype(np.float32)
    r = em.residual(ref, syn, brain)
    np.testing.assert_allclose(r, normalise(ref, brain) - normalise(syn, brain), atol=1e-6)
    x = em.network_input(np.zeros((2,) + brain.shape, np.float32), syn, brain)
    assert x.shape == (3,) + brain.shape and x.dtype == np.float32
    assert x[2][brain].min() == -1.0 and x[2][brain].max() == 1.0


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    d = tmp_path_factory.mktemp("errm")
    (d / "ph").mkdir()  # a SYNTHETIC textured ellipsoid, 12 x 24 x 20, oblique affine
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in (12, 24, 20)), indexing="ij")
    brain = (k ** 2 + j ** 2 + i ** 2) < 0.8
    rng = np.random.default_rng(0)
    affine = np.diag([0.9, 1.1, 3.0, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 2.0)
    for name, arr in (("FLAIR", 300 + 200 * j + rng.normal(0, 20, brain.shape)),
                      ("T1w", 500 - 150 * i ** 2 + rng.normal(0, 20, brain.shape)), ("brain_mask", brain)):
        data = (np.asarray(arr, np.float32) * brain).transpose(2, 1, 0)
        nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(d / "ph" / f"{name}.nii.gz"))
    torch.manual_seed(0)
    save_package(d / "plain", "synthdir", "dir", ("flair", "t1"), ARCH, UNetGenerator(**ARCH),
                 {"trained_on": "untrained test package"})
    shutil.copytree(d / "plain", d / "with_error")
    torch.manual_seed(1)
    em.attach(d / "with_error", em.build_error_net(2, SMALL), SMALL, {"trained_on": "untrained test error model"})
    return d


def _inputs(d):
    vols = {n: read_volume(d / "ph" / f"{f}.nii.gz").data for n, f in (("flair", "FLAIR"), ("t1", "T1w"))}
    return vols, read_volume(d / "ph" / "brain_mask.nii.gz").data > 0


def test_package_round_trip_kinds_and_a_changed_file_is_refused(packages, tmp_path):
    plain, withe = load_package(packages / "plain"), load_package(packages / "with_error")
    assert plain.error_net is None and withe.error_net is not None
    assert uncertainty_kind(withe) == RESIDUAL and uncertainty_kind(withe, "mc_dropout") == MC_DROPOUT
    assert uncertainty_kind(plain) == MC_DROPOUT
    with pytest.raises(InputError, match="error model"):
        uncertainty_kind(plain, "residual")
    torch.manual_seed(1)
    want = em.build_error_net(2, SMALL).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in withe.error_net.state_dict().items())
    manifest = json.loads((packages / "with_error" / "manifest.json").read_text())
    assert manifest["error_model"]["trained_on"] == "untrained test error model"
    bad = tmp_path / "bad"
    shutil.copytree(packages / "with_error", bad)
    blob = bytearray((bad / em.WEIGHTS).read_bytes())
    blob[-1] ^= 1
    (bad / em.WEIGHTS).write_bytes(bytes(blob))
    with pytest.raises(InputError, match="SHA-256"):
        load_package(bad)


def test_residual_sd_is_the_error_net_s_sd_in_the_output_s_units(packages):
    model = load_package(packages / "with_error")
    inputs, brain = _inputs(packages)
    img0, none = synthesize(model, inputs, brain)
    img, sd = synthesize(model, inputs, brain, uncertainty="residual")  # no MC passes needed
    assert none is None and np.array_equal(img, img0)
    x = em.network_input(normalised_sources(model, inputs, brain), img, brain)
    lo, hi = np.percentile(img[brain], [0.5, 99.5])
    want = em.predict_sd(model.error_net, x, brain, SMALL) * (hi - lo)
    np.testing.assert_allclose(sd, want, rtol=1e-5, atol=1e-6)
    assert sd[brain].min() > 0 and not sd[~brain].any() and sd.dtype == np.float32
    # with MC passes (auto = residual): the MC mean, and the error net's SD of that mean
    mc_img, mc_sd = synthesize(model, inputs, brain, mc_samples=3)
    _, direct = synthesize(model, inputs, brain, mc_samples=3, uncertainty="residual")
    assert np.array_equal(mc_sd, direct) and not np.array_equal(mc_img, img)
    _, mc_only = synthesize(model, inputs, brain, mc_samples=3, uncertainty="mc_dropout")
    assert not np.allclose(mc_only, mc_sd)


def test_cli_writes_the_residual_sd_from_one_pass_and_refuses_mc_with_one_sample(packages, tmp_path):
    ph = packages / "ph"
    common = ["--target", "dir", "--model", str(packages / "with_error"), "--flair", str(ph / "FLAIR.nii.gz"),
              "--t1", str(ph / "T1w.nii.gz"), "--brain-mask", str(ph / "brain_mask.nii.gz"), "--device", "cpu"]
    out, unc = tmp_path / "dir.nii.gz", tmp_path / "sd.nii.gz"
    assert main(["synthesize", str(out), *common, "--uncertainty", str(unc), "--mc-samples", "1"]) == 0
    side = json.loads((tmp_path / "dir.json").read_text())
    assert side["UncertaintyKind"] == RESIDUAL and side["MCSamples"] == 1
    assert b"residual_sd" in bytes(nib.load(str(unc)).header["descrip"])
    inputs, brain = _inputs(packages)
    _, want = synthesize(load_package(packages / "with_error"), inputs, brain, uncertainty="residual")
    np.testing.assert_allclose(read_volume(unc).data, want, rtol=1e-5, atol=1e-5)
    out2, unc2 = tmp_path / "d2.nii.gz", tmp_path / "sd2.nii.gz"
    assert main(["synthesize", str(out2), *common, "--uncertainty", str(unc2), "--mc-samples", "1",
                 "--uncertainty-kind", "mc_dropout"]) == 2
    assert not out2.exists() and not unc2.exists() and not (tmp_path / "d2.json").exists()
    assert main(["synthesize", str(out2), "--target", "dir", "--model", str(packages / "plain"),
                 *common[4:], "--uncertainty", str(unc2), "--uncertainty-kind", "residual"]) == 2
    assert not out2.exists()


def test_training_through_the_shared_loop_learns_a_known_sd(tmp_path):
    """Residuals drawn with SD 0.02 where the first input is < 0 and 0.2 where it is > 0: the trained net ranks
    fresh residuals almost as well as the true SD does, and its SD per region is near the truth."""
    g = torch.Generator().manual_seed(0)

    def data(n):
        x = torch.rand(n, 3, 16, 16, generator=g) * 2 - 1
        true_sd = torch.where(x[:, :1] > 0, 0.2, 0.02)
        return x, true_sd * torch.randn(n, 1, 16, 16, generator=g), torch.ones(n, 1, 16, 16), true_sd

    x, r, b, _ = data(64)
    vx, vr, vb, vsd = data(16)
    step = em.ErrorModelStep(x, r, b, val=(vx, vr, vb), architecture=SMALL, lr=1e-2, batch_size=8)
    res = run_loop(step, LoopSettings(epochs=20, directory=tmp_path, verbose=False, keep_best="val_spearman"))
    from neuroshift.synthesis.metrics import spearman
    ceiling = spearman(vsd.numpy(), vr.abs().numpy())
    assert res.best["val_spearman"] > 0.8 * ceiling and ceiling > 0.5
    net = step.models["error_net"].eval()
    net.load_state_dict(res.states["error_net"])
    with torch.no_grad():
        sd = torch.exp(0.5 * em.log_variance(net, vx))
    hi, lo = sd[vsd > 0.1].median().item(), sd[vsd < 0.1].median().item()
    assert 0.1 < hi < 0.4 and 0.005 < lo < 0.06



def test_basic_unet_variant_and_an_unknown_network():
    arch = {"network": "BasicUNet", "features": [4, 4, 8, 8, 8, 4]}
    assert em.size_multiple(arch) == 16
    net = em.build_error_net(2, arch).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    with pytest.raises(InputError, match="UNet or BasicUNet"):
        em.build_error_net(2, {"network": "SegResNet"})
