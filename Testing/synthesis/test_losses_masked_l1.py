"""synthDIR masked L1 reductions (neuroshift.synthesis.losses): literal values, limiting cases, gradients."""

from __future__ import annotations

import pytest
import torch

from neuroshift.synthesis import losses


def _pair():
    g = torch.Generator().manual_seed(5)
    y = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    pred = (y + 0.2 * torch.randn(2, 1, 16, 16, generator=g)).clamp(-1, 1)
    return y, pred


def test_all_ones_mask_per_lesion_mean_is_the_plain_l1():
    y, pred = _pair()
    ones = torch.ones_like(y)
    plain = float((y - pred).abs().mean())
    assert float(losses.masked_l1(y, pred, ones)) == pytest.approx(plain, rel=1e-6)
    assert float(losses.masked_l1(y, pred, ones, "all")) == pytest.approx(plain, rel=1e-6)
    assert float(losses.l1(y, pred)) == pytest.approx(plain, rel=1e-6)


def test_per_lesion_mean_literal_and_independent_of_lesion_size():
    y = torch.zeros(1, 1, 4, 4)
    pred = torch.zeros(1, 1, 4, 4)
    pred[0, 0, 0, :2] = torch.tensor([0.5, 1.5])  # two lesion voxels, |error| 0.5 and 1.5
    pred[0, 0, 3, 3] = 9.0  # outside the mask: ignored
    s = torch.zeros_like(y)
    s[0, 0, 0, :2] = 1
    assert float(losses.masked_l1(y, pred, s)) == pytest.approx(1.0)  # (0.5 + 1.5) / 2 lesion voxels
    assert float(losses.masked_l1(y, pred, s, "all")) == pytest.approx(2.0 / 16)  # / 16 voxels
    # the same per-voxel error over a 4x larger lesion keeps the per-lesion term, scales the "all" one
    big = torch.ones(1, 1, 4, 4)
    assert float(losses.masked_l1(y, torch.full_like(y, 1.0), big)) == pytest.approx(1.0)


def test_empty_mask_gives_zero_and_bad_reduction_is_refused():
    y, pred = _pair()
    zero = torch.zeros_like(y)
    assert float(losses.masked_l1(y, pred, zero)) == 0.0
    assert float(losses.masked_l1(y, pred, zero, "all")) == 0.0
    with pytest.raises(ValueError, match="reduction"):
        losses.masked_l1(y, pred, zero, "sum")


@pytest.mark.parametrize("reduction", losses.MASKED_L1_REDUCTIONS)
def test_gradient_zero_outside_the_lesion_and_literal_inside(reduction):
    y, pred = _pair()
    s = torch.zeros_like(y)
    s[:, :, 4:9, 6:10] = 1
    p = pred.clone().requires_grad_(True)
    losses.masked_l1(y, p, s, reduction).backward()
    assert torch.count_nonzero(p.grad[s == 0]) == 0
    inside = p.grad[(s == 1) & (p.detach() != y)].abs()
    denom = float(s.sum()) if reduction == "lesion" else y.numel()
    torch.testing.assert_close(inside, torch.full_like(inside, 1.0 / denom))  # d|p - y|/dp = sign / denom


def test_generator_loss_carries_the_reduction():
    y, pred = _pair()
    s = torch.zeros_like(y)
    s[:, :, 2:5, 2:5] = 1
    fake = torch.zeros(2, 1, 3, 3)  # LSGAN term (0 - 1)^2 = 1
    for red in losses.MASKED_L1_REDUCTIONS:
        want = 10 * (1 - float(losses.ssim(y, pred)) + float(losses.masked_l1(y, pred, s, red))) + 1.0
        got = float(losses.synthdir_generator_loss(y, pred, s, fake, reduction=red))
        assert got == pytest.approx(want, rel=1e-6)


def test_synthdir_step_takes_the_reduction_and_refuses_an_unknown_one():
    from neuroshift.synthesis.train_steps import SynthDIRStep
    x, y, s = torch.zeros(2, 2, 16, 16), torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    assert SynthDIRStep(x, y, s, base=4, depth=2, d_base=4, reduction="all").reduction == "all"
    assert SynthDIRStep(x, y, s, base=4, depth=2, d_base=4).reduction == "lesion"
    with pytest.raises(ValueError, match="reduction"):
        SynthDIRStep(x, y, s, base=4, depth=2, d_base=4, reduction="sum")
