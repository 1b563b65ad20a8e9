"""synthDIR's optional heteroscedastic (aleatoric) head and the predictive uncertainty
(neuroshift.synthesis.pix2pix / losses / tta / inference, ``neuroshift synthesize``): head off = today's network,
NLL = its closed form, predictive SD = sqrt(mean sigma^2 + var mu) by hand, the uncertainty file tagged with its kind."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch

from neuroshift.cli.main import main
from neuroshift.errors import InputError
from neuroshift.io.files import read_volume
from neuroshift.synthesis import losses
from neuroshift.synthesis.inference import (MC_DROPOUT, PREDICTIVE, load_package, save_package, synthesize,
                                            uncertainty_kind)
from neuroshift.synthesis.pix2pix import UNetGenerator, mc_predictive, mc_sample, set_mc_dropout
from neuroshift.synthesis.tta import flip_variants, mc_flip_tta

PROV = {"trained_on": "untrained test package"}
ARCH = {"in_channels": 2, "out_channels": 1, "base": 4, "depth": 2, "dropout": 0.3}


def _nets(**kw):
    torch.manual_seed(3)
    plain = UNetGenerator(depth=3, base=8, **kw)
    torch.manual_seed(3)
    head = UNetGenerator(depth=3, base=8, aleatoric=True, **kw)
    return plain, head


def test_head_off_keeps_names_shapes_and_outputs_and_on_only_adds_the_log_var_conv():
    plain, head = _nets(decoder_dropout=0.3)
    sp, sh = plain.state_dict(), head.state_dict()
    assert not plain.aleatoric and not hasattr(plain, "log_var_head")
    assert set(sh) - set(sp) == {"log_var_head.weight", "log_var_head.bias"} and set(sp) <= set(sh)
    for k, v in sp.items():  # created last: the same seed gives the same shared parameters, bit for bit
        assert torch.equal(v, sh[k]), k
    x = torch.randn(2, 2, 32, 32)
    assert torch.equal(plain.eval()(x), head.eval()(x))  # forward is the mean channel only
    mu, log_var = head.forward_dist(x)
    assert torch.equal(mu, plain(x)) and log_var.shape == mu.shape
    # the MC-dropout SD of the mean is unchanged by the head (same masks, the log-var conv draws nothing)
    for a, b in zip(mc_sample(plain, x, 4, seed=7), mc_sample(head, x, 4, seed=7)):
        assert torch.equal(a, b)


def test_shipped_package_weight_names_are_the_plain_network_s():
    from safetensors.torch import load_file

    from neuroshift.segment.registry import find_model
    folder = find_model("synthdir-demo")
    manifest = json.loads((folder / "manifest.json").read_text())
    arch = {k: v for k, v in manifest["architecture"].items() if k != "aleatoric"}
    keys = set(load_file(str(folder / "weights.safetensors")))
    assert keys | {"log_var_head.weight", "log_var_head.bias"} == set(UNetGenerator(**arch, aleatoric=True).state_dict())
    assert set(UNetGenerator(**arch).state_dict()) == keys - {"log_var_head.weight", "log_var_head.bias"}


def test_log_var_head_needs_the_option_and_is_clamped():
    plain, head = _nets()
    with pytest.raises(ValueError, match="aleatoric"):
        plain.forward_dist(torch.zeros(1, 2, 32, 32))
    with torch.no_grad():
        head.log_var_head.bias.fill_(100.0)
        assert float(head.eval().forward_dist(torch.zeros(1, 2, 32, 32))[1].max()) == 4.0


def test_gaussian_nll_equals_the_closed_form_and_detaches_the_mean():
    y = torch.tensor([[0.5, -0.25], [1.0, 0.0]])
    mu = torch.tensor([[0.25, 0.0], [0.5, 0.0]], requires_grad=True)
    log_var = torch.tensor([[math.log(0.25), 0.0], [math.log(4.0), math.log(0.5)]], requires_grad=True)
    # 0.5 * (log v + (y - mu)^2 / v) per element, by hand: v = 0.25, 1, 4, 0.5
    hand = 0.5 * np.mean([math.log(0.25) + 0.0625 / 0.25, 0.0 + 0.0625 / 1.0, math.log(4.0) + 0.25 / 4.0,
                          math.log(0.5) + 0.0])
    nll = losses.aleatoric_nll(y, mu, log_var)
    assert nll.item() == pytest.approx(hand, rel=1e-6)
    nll.backward()
    assert mu.grad is None  # detached mean: the paper's loss alone trains the image
    # d/dlogv of 0.5 * (s + r^2 e^-s) / 4 = (1 - r^2 / v) / 8
    r2 = (y - mu.detach()) ** 2
    torch.testing.assert_close(log_var.grad, (1 - r2 / log_var.detach().exp()) / 8)


def test_beta_nll_weights_each_voxel_by_its_variance_and_trains_the_mean():
    y, mu = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.5], requires_grad=True)
    log_var = torch.log(torch.tensor([4.0, 0.25]))
    beta = 0.5
    per = [0.5 * (math.log(4.0) + 1.0 / 4.0), 0.5 * (math.log(0.25) + 0.25 / 0.25)]
    hand = (per[0] * 4.0 ** beta + per[1] * 0.25 ** beta) / 2
    out = losses.aleatoric_nll(y, mu, log_var, beta=beta)
    assert out.item() == pytest.approx(hand, rel=1e-6)
    out.backward()
    # d/dmu = -(y - mu) / v * v^beta / 2
    torch.testing.assert_close(mu.grad, torch.tensor([-1.0 / 4.0 * 2.0 / 2, 0.5 / 0.25 * 0.5 / 2]))
    with pytest.raises(ValueError, match="beta"):
        losses.aleatoric_nll(y, mu, log_var, beta=0.0)


@pytest.mark.parametrize("decoder_dropout", [0.0, 0.3])
def test_predictive_sd_equals_mean_variance_plus_variance_of_means_by_hand(decoder_dropout):
    _, head = _nets(decoder_dropout=decoder_dropout)
    x = torch.randn(2, 2, 32, 32)
    mean, sd_epi, sd_pred = mc_predictive(head, x, 5, seed=11)
    torch.manual_seed(11)  # the same passes, by hand: full passes draw the same masks as backbone-once
    set_mc_dropout(head, True)
    with torch.no_grad():
        feats = head.backbone(x) if decoder_dropout == 0 else None  # full passes: nothing drawn before
        draws = [head.dist_from(feats) if decoder_dropout == 0 else head.forward_dist(x) for _ in range(5)]
    head.eval()
    mus = np.stack([d[0].double().numpy() for d in draws])
    variances = np.stack([np.exp(d[1].double().numpy()) for d in draws])
    assert mus.std(0).max() > 1e-4  # the passes differ
    np.testing.assert_allclose(mean.numpy(), mus.mean(0), atol=1e-6)
    np.testing.assert_allclose(sd_epi.numpy(), mus.std(0), atol=1e-6)
    np.testing.assert_allclose(sd_pred.numpy(), np.sqrt(variances.mean(0) + mus.var(0)), rtol=1e-5, atol=1e-7)
    assert bool((sd_pred >= sd_epi).all())
    m2, s2 = mc_sample(head, x, 5, seed=11)  # (a) the MC-dropout SD alone = mc_sample's
    assert torch.equal(m2, mean) and torch.equal(s2, sd_epi)
    assert not any(m.training for m in head.modules())


def test_without_dropout_the_predictive_sd_is_the_aleatoric_sigma():
    torch.manual_seed(0)
    head = UNetGenerator(depth=3, base=8, dropout=0.0, aleatoric=True).eval()
    x = torch.randn(1, 2, 32, 32)
    _, sd_epi, sd_pred = mc_predictive(head, x, 3, seed=0)
    assert torch.count_nonzero(sd_epi) == 0
    torch.testing.assert_close(sd_pred, (0.5 * head.forward_dist(x)[1]).exp(), rtol=1e-5, atol=1e-7)


def test_mc_flip_tta_predictive_pools_each_flip_s_predictive_variance():
    _, head = _nets()
    x = torch.randn(1, 2, 32, 32)
    mean, sd = mc_flip_tta(head, x, 3, seed=2, spatial_dims=2, predictive=True)
    ms, vs = [], []
    for i, f in enumerate(flip_variants(2)):
        m, _, s = mc_predictive(head, torch.flip(x, f) if f else x, 3, seed=2 + i)
        ms.append((torch.flip(m, f) if f else m).double())
        vs.append((torch.flip(s, f) if f else s).double() ** 2)
    ms_t = torch.stack(ms)
    want = (torch.stack(vs).mean(0) + ms_t.var(0, unbiased=False)).sqrt()
    torch.testing.assert_close(mean.double(), ms_t.mean(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sd.double(), want, atol=1e-6, rtol=1e-5)


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    d = tmp_path_factory.mktemp("ale")
    (d / "ph").mkdir()  # a small SYNTHETIC head: a textured ellipsoid on a 12 x 24 x 20 grid, oblique affine
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in (12, 24, 20)), indexing="ij")
    brain = (k ** 2 + j ** 2 + i ** 2) < 0.8
    rng = np.random.default_rng(0)
    c, sn = np.cos(0.2), np.sin(0.2)  # rotated 0.2 rad about z, spacing 0.9 x 1.1 x 3 mm
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1]]) @ np.diag([0.9, 1.1, 3.0])
    affine[:3, 3] = (-10.0, 5.0, 2.0)
    for name, arr in (("FLAIR", 300 + 200 * j + rng.normal(0, 20, brain.shape)),
                      ("T1w", 500 - 150 * i ** 2 + rng.normal(0, 20, brain.shape)), ("brain_mask", brain)):
        data = (np.asarray(arr, np.float32) * brain).transpose(2, 1, 0)  # (k, j, i) -> NIfTI (i, j, k)
        nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(d / "ph" / f"{name}.nii.gz"))
    torch.manual_seed(0)
    save_package(d / "plain", "synthdir", "dir", ("flair", "t1"), ARCH, UNetGenerator(**ARCH), PROV)
    torch.manual_seed(0)
    arch = {**ARCH, "aleatoric": True}
    save_package(d / "head", "synthdir", "dir", ("flair", "t1"), arch, UNetGenerator(**arch), PROV)
    return d


def _inputs(d):
    ph = d / "ph"
    vols = {n: read_volume(ph / f"{f}.nii.gz") for n, f in (("flair", "FLAIR"), ("t1", "T1w"))}
    return {n: v.data for n, v in vols.items()}, read_volume(ph / "brain_mask.nii.gz").data > 0


def test_package_without_the_head_keeps_its_mc_dropout_sd(packages):
    plain, head = load_package(packages / "plain"), load_package(packages / "head")
    assert uncertainty_kind(plain) == MC_DROPOUT and uncertainty_kind(head) == PREDICTIVE
    assert uncertainty_kind(head, "mc_dropout") == MC_DROPOUT
    with pytest.raises(InputError, match="aleatoric head"):
        uncertainty_kind(plain, "predictive")
    inputs, brain = _inputs(packages)
    p_auto, sd_auto = synthesize(plain, inputs, brain, mc_samples=3)
    p_mc, sd_mc = synthesize(plain, inputs, brain, mc_samples=3, uncertainty="mc_dropout")
    assert np.array_equal(p_auto, p_mc) and np.array_equal(sd_auto, sd_mc)
    # the same shared weights with the head: the same image and the same MC-dropout SD when asked for it
    h_img, h_mc = synthesize(head, inputs, brain, mc_samples=3, uncertainty="mc_dropout")
    h_img2, h_pred = synthesize(head, inputs, brain, mc_samples=3)
    assert np.array_equal(h_img, p_mc) and np.array_equal(h_mc, sd_mc) and np.array_equal(h_img2, h_img)
    assert h_pred.min() >= 0 and not h_pred[~brain].any() and h_pred.shape == brain.shape
    assert (h_pred[brain] >= h_mc[brain] - 1e-3).all() and h_pred[brain].mean() > h_mc[brain].mean()


def test_cli_writes_the_predictive_sd_tagged_with_its_kind(packages, tmp_path):
    ph = packages / "ph"
    out, unc = tmp_path / "dir.nii.gz", tmp_path / "sd.nii.gz"
    assert main(["synthesize", str(out), "--target", "dir", "--model", str(packages / "head"), "--flair",
                 str(ph / "FLAIR.nii.gz"), "--t1", str(ph / "T1w.nii.gz"), "--brain-mask",
                 str(ph / "brain_mask.nii.gz"), "--device", "cpu", "--uncertainty", str(unc),
                 "--mc-samples", "3"]) == 0
    src, sd = read_volume(ph / "FLAIR.nii.gz"), read_volume(unc)
    brain = read_volume(ph / "brain_mask.nii.gz").data > 0
    assert sd.same_grid(src) and np.allclose(sd.ijk_to_ras(), src.ijk_to_ras(), atol=1e-5)
    assert sd.data.min() >= 0 and sd.data[brain].mean() > 0 and not sd.data[~brain].any()
    descrip = bytes(nib.load(str(unc)).header["descrip"])
    assert b"SYNTHETIC" in descrip and b"mc_predictive" in descrip
    side = json.loads((tmp_path / "dir.json").read_text())
    assert side["UncertaintyKind"] == PREDICTIVE and side["Uncertainty"] == str(unc)
    inputs, b = _inputs(packages)
    _, want = synthesize(load_package(packages / "head"), inputs, b, mc_samples=3)
    np.testing.assert_allclose(sd.data, want, rtol=1e-6, atol=1e-6)


def test_training_step_adds_the_nll_without_touching_the_mean_output_s_gradient(tmp_path):
    from neuroshift.synthesis.train_steps import SynthDIRStep
    torch.manual_seed(0)
    x, y = torch.rand(2, 2, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    les = (torch.rand(2, 1, 32, 32) > 0.9).float()
    step = SynthDIRStep(x, y, les, base=8, depth=3, d_base=8, aleatoric=True, nll_weight=2.0)
    g, d = step.models["generator"], step.models["discriminator"]
    assert g.aleatoric and "log_var_head.weight" in g.state_dict()

    def head_grads(with_nll: bool):
        g.zero_grad()
        torch.manual_seed(5)  # the same dropout masks both times
        fake, log_var = g.forward_dist(x)
        loss = losses.synthdir_generator_loss(y, fake, les, d(x, fake), lambda1=1.0)
        if with_nll:
            loss = loss + 2.0 * losses.aleatoric_nll(y, fake, log_var)
        loss.backward()
        return [p.grad.clone() for p in g.head.parameters()], g.log_var_head.weight.grad

    plain, none = head_grads(False)
    with_nll, lv = head_grads(True)
    assert none is None and float(lv.abs().sum()) > 0  # only the NLL trains the log-variance conv
    for a, b in zip(plain, with_nll):  # the mean's own layer sees the paper's loss alone
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    from neuroshift.training.loop import LoopSettings, run_loop
    res = run_loop(step, LoopSettings(epochs=1, directory=tmp_path, verbose=False))
    assert math.isfinite(res.history[-1]["loss_nll"])


def test_with_detached_features_the_image_network_trains_exactly_as_without_the_head(tmp_path):
    from neuroshift.synthesis.train_steps import SynthDIRStep
    from neuroshift.training.loop import LoopSettings, run_loop
    torch.manual_seed(1)
    x, y = torch.rand(4, 2, 32, 32) * 2 - 1, torch.rand(4, 1, 32, 32) * 2 - 1
    les = (torch.rand(4, 1, 32, 32) > 0.9).float()
    kw = dict(base=8, depth=3, d_base=8, batch_size=2, decoder_dropout=0.3, lambda1=0.1)
    steps = {}
    for name, extra in (("plain", {}), ("head", {"aleatoric": True, "nll_detach_features": True})):
        steps[name] = SynthDIRStep(x, y, les, **kw, **extra)  # seeds torch; dropout draws from it while training
        run_loop(steps[name], LoopSettings(epochs=2, directory=tmp_path / name, verbose=False))
    for part in ("generator", "discriminator"):
        plain = steps["plain"].models[part].state_dict()
        head = steps["head"].models[part].state_dict()
        for k, v in plain.items():
            assert torch.equal(v, head[k]), (part, k)
    before = UNetGenerator(depth=3, base=8, aleatoric=True).log_var_head.weight
    assert not torch.equal(steps["head"].models["generator"].log_var_head.weight, before)  # the head learned


def test_deterministic_features_variance_is_one_eval_pass_and_training_keeps_the_image_network(tmp_path):
    from neuroshift.synthesis.train_steps import SynthDIRStep
    from neuroshift.training.loop import LoopSettings, run_loop
    with pytest.raises(ValueError, match="aleatoric_features"):
        UNetGenerator(depth=3, base=8, aleatoric=True, aleatoric_features="other")
    torch.manual_seed(3)
    g = UNetGenerator(depth=3, base=8, decoder_dropout=0.3, aleatoric=True, aleatoric_features="deterministic")
    x = torch.randn(1, 2, 32, 32)
    mean, sd_epi, sd_pred = mc_predictive(g, x, 4, seed=2)
    m_ref, s_ref = mc_sample(g, x, 4, seed=2)  # the eval pass draws nothing: same masks, same mean and SD
    assert torch.equal(mean, m_ref) and torch.equal(sd_epi, s_ref)
    with torch.no_grad():
        var0 = g.eval().log_var_head(g.backbone(x)).clamp(-12, 4).double().exp()
    torch.testing.assert_close(sd_pred.double(), (var0 + sd_epi.double() ** 2).sqrt(), rtol=1e-5, atol=1e-7)
    torch.manual_seed(1)
    xs, y = torch.rand(4, 2, 32, 32) * 2 - 1, torch.rand(4, 1, 32, 32) * 2 - 1
    les = (torch.rand(4, 1, 32, 32) > 0.9).float()
    kw = dict(base=8, depth=3, d_base=8, batch_size=2, decoder_dropout=0.3, lambda1=0.1)
    steps = {}
    for name, extra in (("plain", {}), ("head", {"aleatoric": True, "aleatoric_features": "deterministic"})):
        steps[name] = SynthDIRStep(xs, y, les, **kw, **extra)
        run_loop(steps[name], LoopSettings(epochs=1, directory=tmp_path / name, verbose=False))
    plain, head = (steps[n].models["generator"].state_dict() for n in ("plain", "head"))
    assert all(torch.equal(v, head[k]) for k, v in plain.items())
