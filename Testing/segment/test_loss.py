"""Batch-global Dice loss (segmentation.md acceptance check 6)."""

import pytest
import torch

from neuroshift.segment.loss import BatchDiceLoss, batch_dice_coefficient, batch_dice_loss


def test_check_values():
    ones, zeros = torch.ones(10), torch.zeros(10)
    assert float(batch_dice_coefficient(ones, ones)) == pytest.approx(1.0)
    assert float(batch_dice_coefficient(zeros, zeros)) == pytest.approx(1.0)
    assert float(batch_dice_coefficient(zeros, ones)) == pytest.approx(1 / 11)
    assert float(batch_dice_loss(zeros, ones)) == pytest.approx(10 / 11)
    assert float(batch_dice_loss(ones, ones)) == pytest.approx(0.0)


def test_computed_over_the_whole_batch_not_per_image():
    p = torch.zeros(2, 1, 2, 5)
    g = torch.zeros(2, 1, 2, 5)
    p[0] = 1
    g[0] = 1  # image 0 perfect; image 1 empty in both
    # batch-global: (2*10+1)/(10+10+1) = 1; a per-image mean would also be 1 here, so make image 1 wrong:
    g[1, 0, 0, 0] = 1
    expected = (2 * 10 + 1) / (10 + 11 + 1)
    assert float(batch_dice_coefficient(p, g)) == pytest.approx(expected)
    per_image = sum(float(batch_dice_coefficient(p[i], g[i])) for i in range(2)) / 2
    assert per_image != pytest.approx(expected)


def test_gradient_and_module():
    p = torch.full((3, 1, 4, 4), 0.5, requires_grad=True)
    g = (torch.rand(3, 1, 4, 4) > 0.5).float()
    loss = BatchDiceLoss()(p, g)
    loss.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
    with pytest.raises(ValueError):
        batch_dice_loss(torch.zeros(3), torch.zeros(4))
