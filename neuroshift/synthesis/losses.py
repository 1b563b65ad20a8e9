"""Losses of the three synthesis tasks. Every reduction is stated.

* :func:`cycle_loss` — DiamondGAN ``L_rec = ||X - G2(G1(X,c),c)||_1 + ||T - G1(G2(T,c),c)||_1``, each term the
  mean absolute difference over all elements (Keras ``mae``, as [R]); the weight lambda_rec is applied by the
  caller (default 10 as in the paper; [R]'s code uses 8).
* :func:`lsgan_loss` — least-squares adversarial loss ``mean((D - target)^2)`` (LSGAN, Mao et al. 2017).
* :func:`lesion_recon_loss` — synthDIR ``L_recons = 1 - SSIM(Y, G(X)) + lambda1 * ||(Y - G(X)) * S||_1``.
  SSIM is MONAI's (``monai.losses.SSIMLoss``: Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03, mean over the
  valid SSIM map and the batch) with ``data_range`` 2 for images in [-1, 1]. The masked L1 has an explicit
  ``reduction`` (:data:`MASKED_L1_REDUCTIONS`):

  - ``"lesion"`` (**default**): the norm per lesion voxel, ``sum(|Y - G(X)| * S) / max(sum(S), 1)`` over the
    whole batch: the mean absolute error of the lesion voxels, so the term is on the scale of an L1 (~0.1-0.3
    for images in [-1, 1]) whatever the lesion load; a batch without lesion voxels gives 0. With S = all ones
    it equals the plain L1. This is what makes the term "lesion-focused": with lambda1 = 1 it weighs about as
    much as ``1 - SSIM``.
  - ``"all"``: the sum over the lesion voxels divided by the number of ALL voxels (``mean(|Y - G(X)| * S)``,
    Keras ``mae`` of masked images), the earlier default: lesions fill ~0.1 % of a phantom slice, so the term
    weighs ~0.1 % of the lesion MAE and barely acts (the ablation showed no gain with it).

  ``L_total = lambda2 * L_recons + L_adv`` with lambda1 = 1, lambda2 = 10 (:func:`synthdir_generator_loss`).
* :func:`aleatoric_nll` — optional heteroscedastic term of synthDIR (Kendall & Gal 2017): the Gaussian negative
  log-likelihood ``0.5 * (log sigma^2 + (y - mu)^2 / sigma^2)`` (constant dropped), mean over all voxels, by
  ``torch.nn.functional.gaussian_nll_loss`` (torch's kept implementation: its variance clamp eps 1e-6). By
  default the mean ``mu`` is detached, so the term trains only the log-variance output (and, through it, the
  shared features) and the mean keeps the paper's loss; ``beta`` > 0 gives beta-NLL (Seitzer et al., ICLR 2022:
  each voxel's NLL weighted by ``stop_grad(sigma^2)**beta``, the mean not detached).
* :func:`l2_loss` — virtual T1c: mean squared error over all voxels.
"""

from __future__ import annotations

import torch


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over all elements."""
    return (a - b).abs().mean()


def cycle_loss(x: torch.Tensor, x_cycled: torch.Tensor, t: torch.Tensor, t_cycled: torch.Tensor) -> torch.Tensor:
    """``mean|x - x_cycled| + mean|t - t_cycled|`` (unweighted; multiply by lambda_rec)."""
    return l1(x, x_cycled) + l1(t, t_cycled)


def lsgan_loss(scores: torch.Tensor, target: float) -> torch.Tensor:
    """``mean((scores - target)^2)``: target 1 (or [R]'s 0.95) for real, 0 for fake."""
    return ((scores - float(target)) ** 2).mean()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """MONAI SSIM (Gaussian window 11, sigma 1.5) averaged over the valid map and the batch."""
    from monai.losses import SSIMLoss
    dims = a.ndim - 2
    return 1.0 - SSIMLoss(spatial_dims=dims, data_range=float(data_range))(a, b)


#: Reductions of :func:`masked_l1`: per lesion voxel (default) or over all voxels.
MASKED_L1_REDUCTIONS = ("lesion", "all")


def masked_l1(y: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, reduction: str = "lesion") -> torch.Tensor:
    """``sum(|y - pred| * mask)`` divided by ``max(sum(mask), 1)`` (``reduction="lesion"``, the mean absolute error
    per lesion voxel) or by the number of all voxels (``"all"``); see the module docstring."""
    if reduction not in MASKED_L1_REDUCTIONS:
        raise ValueError(f"masked L1 reduction must be one of {MASKED_L1_REDUCTIONS}, got {reduction!r}")
    m = mask.to(y.dtype)
    total = ((y - pred).abs() * m).sum()
    if reduction == "all":
        return total / y.numel()
    return total / m.sum().clamp_min(1.0)


def lesion_recon_loss(y: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, *, lambda1: float = 1.0,
                      data_range: float = 2.0, reduction: str = "lesion") -> torch.Tensor:
    """``1 - SSIM(y, pred) + lambda1 * masked_l1(y, pred, mask, reduction)``."""
    return 1.0 - ssim(y, pred, data_range) + float(lambda1) * masked_l1(y, pred, mask, reduction)


def synthdir_generator_loss(y: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, fake_scores: torch.Tensor,
                            *, lambda1: float = 1.0, lambda2: float = 10.0, reduction: str = "lesion") -> torch.Tensor:
    """``lambda2 * L_recons + L_adv`` with the least-squares adversarial term on the fake scores."""
    return (float(lambda2) * lesion_recon_loss(y, pred, mask, lambda1=lambda1, reduction=reduction)
            + lsgan_loss(fake_scores, 1.0))


def aleatoric_nll(y: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, *,
                  beta: float | None = None) -> torch.Tensor:
    """Gaussian NLL of ``y`` under ``N(mean, exp(log_var))``, mean over all voxels, constant dropped. ``beta``
    None (default): ``mean`` detached (only the variance learns); ``beta`` in (0, 1]: beta-NLL, see module doc."""
    import torch.nn.functional as F
    var = log_var.exp()
    if beta is None:
        return F.gaussian_nll_loss(mean.detach(), y, var, full=False, eps=1e-6, reduction="mean")
    if not 0.0 < float(beta) <= 1.0:
        raise ValueError(f"beta-NLL needs beta in (0, 1], got {beta}")
    per_voxel = F.gaussian_nll_loss(mean, y, var, full=False, eps=1e-6, reduction="none")
    return (per_voxel * var.detach() ** float(beta)).mean()


def masked_gaussian_nll(log_var: torch.Tensor, res: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gaussian NLL of a residual ``res`` under N(0, exp(log_var)) (constant dropped; torch's ``gaussian_nll_loss``),
    averaged over the ``mask`` voxels: the error model's loss (:mod:`.error_model`). Minimised per voxel at
    exp(log_var) = res^2."""
    import torch.nn.functional as F
    per_voxel = F.gaussian_nll_loss(torch.zeros_like(res), res, log_var.exp(), full=False, eps=1e-12,
                                    reduction="none")
    return (per_voxel * mask).sum() / mask.sum().clamp_min(1.0)


def l2_loss(y: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all voxels."""
    return ((y - pred) ** 2).mean()


__all__ = ["MASKED_L1_REDUCTIONS", "aleatoric_nll", "cycle_loss", "l1", "l2_loss", "lesion_recon_loss", "lsgan_loss",
           "masked_gaussian_nll", "masked_l1", "ssim", "synthdir_generator_loss"]
