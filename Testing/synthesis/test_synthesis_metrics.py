"""LesionSynth losses and metrics against literal, hand-derived values (docs/synthesis.md section 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuroshift.errors import InputError
from neuroshift.synthesis import losses, metrics


def test_cycle_loss_is_the_two_l1_terms():
    x = torch.tensor([[0.0, 1.0]])
    x_cyc = torch.tensor([[1.0, 1.0]])          # mean |diff| = 0.5
    t = torch.tensor([[2.0, -2.0]])
    t_cyc = torch.tensor([[0.0, 0.0]])          # mean |diff| = 2.0
    assert float(losses.cycle_loss(x, x_cyc, t, t_cyc)) == pytest.approx(2.5)
    assert float(losses.cycle_loss(x, x, t, t)) == 0.0


def test_lsgan_literal():
    s = torch.tensor([0.0, 1.0, 0.5])
    assert float(losses.lsgan_loss(s, 1.0)) == pytest.approx((1 + 0 + 0.25) / 3)
    assert float(losses.lsgan_loss(s, 0.0)) == pytest.approx((0 + 1 + 0.25) / 3)


@pytest.fixture()
def images():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    pred = (y + 0.3 * torch.randn(2, 1, 32, 32, generator=g)).clamp(-1, 1)
    mask = torch.zeros_like(y)
    mask[:, :, 10:20, 12:18] = 1
    return y, pred, mask


def test_lesion_recon_zero_when_perfect(images):
    y, _, mask = images
    assert float(losses.lesion_recon_loss(y, y.clone(), mask)) == pytest.approx(0.0, abs=1e-5)


def test_lesion_recon_without_mask_is_one_minus_ssim(images):
    y, pred, _ = images
    val = float(losses.lesion_recon_loss(y, pred, torch.zeros_like(y)))
    one_minus_ssim = 1 - float(losses.ssim(y, pred))
    assert val == pytest.approx(one_minus_ssim, abs=1e-7)
    assert 0.05 < val < 2


def test_masked_l1_reduction_literal(images):
    y, pred, mask = images
    masked_sum = float(((y - pred).abs() * mask).sum())
    per_lesion = masked_sum / float(mask.sum())  # default: the norm per lesion voxel
    per_all = masked_sum / y.numel()  # reduction="all": over every voxel
    assert float(losses.masked_l1(y, pred, mask)) == pytest.approx(per_lesion, rel=1e-6)
    assert float(losses.masked_l1(y, pred, mask, "all")) == pytest.approx(per_all, rel=1e-6)
    assert per_lesion / per_all == pytest.approx(y.numel() / float(mask.sum()), rel=1e-6)
    full = losses.lesion_recon_loss(y, pred, mask, lambda1=2.0)
    assert float(full) == pytest.approx(1 - float(losses.ssim(y, pred)) + 2 * per_lesion, rel=1e-6)
    full_all = losses.lesion_recon_loss(y, pred, mask, lambda1=2.0, reduction="all")
    assert float(full_all) == pytest.approx(1 - float(losses.ssim(y, pred)) + 2 * per_all, rel=1e-6)


def test_masked_term_gradient_zero_outside_mask(images):
    y, pred, mask = images
    p = pred.clone().requires_grad_(True)
    losses.masked_l1(y, p, mask).backward()
    assert torch.count_nonzero(p.grad[mask == 0]) == 0
    assert torch.count_nonzero(p.grad[mask == 1]) > 0


def test_generator_loss_weights(images):
    y, pred, mask = images
    fake = torch.full((2, 1, 3, 3), 0.5)
    total = float(losses.synthdir_generator_loss(y, pred, mask, fake))
    assert total == pytest.approx(10 * float(losses.lesion_recon_loss(y, pred, mask)) + 0.25, rel=1e-6)


def test_l2_literal():
    assert float(losses.l2_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]))) == pytest.approx(2.5)


def test_lbr_two_and_empty_masks():
    img = np.full((10, 10), 100.0)
    lesion = np.zeros((10, 10), bool)
    lesion[2:4, 2:4] = True
    img[lesion] = 200.0
    nawm = np.zeros((10, 10), bool)
    nawm[6:9, 6:9] = True
    assert metrics.lbr(img, lesion, nawm) == 2.0
    with pytest.raises(InputError, match="lesion mask is empty"):
        metrics.lbr(img, np.zeros_like(lesion), nawm)
    with pytest.raises(InputError, match="NAWM mask is empty"):
        metrics.cnr(img, lesion, np.zeros_like(nawm))


def test_cnr_hand_computation():
    img = np.array([5.0, 7.0, 1.0, 2.0, 3.0, 0.0])
    lesion = np.array([1, 1, 0, 0, 0, 0], bool)
    nawm = np.array([0, 0, 1, 1, 1, 0], bool)
    # (6 - 2) / sd([1, 2, 3], ddof=1) = 4 / 1
    assert metrics.cnr(img, lesion, nawm) == pytest.approx(4.0)


def test_psnr_mae_literal_and_ssim_identity():
    ref = np.zeros((20, 20))
    pred = np.full((20, 20), 0.1)
    m = np.ones((20, 20), bool)
    assert metrics.psnr(ref, pred, m) == pytest.approx(20.0)
    assert metrics.mae(ref, pred, m) == pytest.approx(0.1)
    r = np.random.default_rng(0).random((20, 20))
    assert metrics.ssim(r, r, m) == pytest.approx(1.0, abs=1e-9)
    assert metrics.psnr(r, r, m) == math.inf
    assert metrics.ssim(r, 1 - r, m) < 0


def test_masked_ssim_uses_only_region_voxels():
    r = np.random.default_rng(1).random((30, 30))
    p = r.copy()
    p[:, 18:] = np.random.default_rng(2).random((30, 12))  # corrupt the right part only
    left = np.zeros((30, 30), bool)
    left[:, :10] = True
    assert metrics.ssim(r, p, left) == pytest.approx(1.0, abs=1e-9)
    assert metrics.ssim(r, p, np.ones((30, 30), bool)) < 0.9


def test_normalise_clips_percentiles():
    img = np.arange(1000, dtype=float)
    img[0] = -1e6
    img[-1] = 1e6
    brain = np.ones(1000, bool)
    n = metrics.normalise(img, brain)
    lo, hi = np.percentile(img, [0.5, 99.5])
    assert n.min() == 0.0 and n.max() == 1.0
    assert n[500] == pytest.approx((500 - lo) / (hi - lo))


def test_region_metrics_regions():
    rng = np.random.default_rng(3)
    ref = rng.random((24, 24))
    brain = np.ones((24, 24), bool)
    lesion = np.zeros((24, 24), bool)
    lesion[8:14, 8:14] = True
    out = metrics.region_metrics(ref, ref, {"brain": brain, "lesion": lesion})
    assert out["lesion"]["mae"] == 0 and out["brain"]["psnr_db"] == math.inf
    with pytest.raises(InputError, match="brain"):
        metrics.region_metrics(ref, ref, {"lesion": lesion})


def test_auc_literal_and_otsu():
    assert metrics.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert metrics.auc([1, 1, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    v = np.r_[rng.normal(0, 1, 1000), rng.normal(10, 1, 1000)]
    t = metrics.otsu_threshold(v)
    assert ((v > t) == (np.arange(2000) >= 1000)).all()
    # unequal spread: the threshold sits between the classes (exhaustive search of the same criterion)
    v2 = np.r_[rng.normal(0, 1, 3000), rng.normal(6, 0.5, 300)]
    t2 = metrics.otsu_threshold(v2)
    assert 2.0 < t2 < 5.0


def test_enhancement_auc():
    pre = np.full((10, 10), 1.0)
    post = pre.copy()
    post[2:5, 2:5] = 3.0            # enhancing block
    brain = np.ones((10, 10), bool)
    assert metrics.enhancement_auc(pre, post, post, brain) == pytest.approx(1.0)
    anti = pre.copy()
    anti[~(post > 1)] = 2.0          # enhancement everywhere but the lesion
    assert metrics.enhancement_auc(pre, post, anti, brain) == pytest.approx(0.0)
    assert metrics.enhancement_auc(pre, post, pre, brain) == pytest.approx(0.5)
