"""Flip test-time augmentation (paper 004: 8 flips x 5 folds = 40 passes averaged)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch


def flip_variants(spatial_dims: int = 3) -> list[tuple[int, ...]]:
    """Every subset of the spatial axes to flip (2**spatial_dims; 8 in 3D), as dims of a ``(B, C, ...)`` tensor."""
    axes = range(2, 2 + int(spatial_dims))
    return [c for r in range(int(spatial_dims) + 1) for c in itertools.combinations(axes, r)]


@torch.no_grad()
def flip_tta(models: Callable[[torch.Tensor], torch.Tensor] | Sequence[Callable[[torch.Tensor], torch.Tensor]],
             x: torch.Tensor, spatial_dims: int | None = None) -> torch.Tensor:
    """Mean over every model and every flip variant: flip the input, run, flip the output back, average."""
    fns = list(models) if isinstance(models, Sequence) else [models]
    if not fns:
        raise ValueError("need at least one model")
    dims = x.ndim - 2 if spatial_dims is None else int(spatial_dims)
    total = None
    count = 0
    for fn in fns:
        for flips in flip_variants(dims):
            xi = torch.flip(x, flips) if flips else x
            yi = fn(xi)
            yi = torch.flip(yi, flips) if flips else yi
            total = yi.double() if total is None else total + yi.double()
            count += 1
    return (total / count).to(x.dtype)


@torch.no_grad()
def mc_flip_tta(model: torch.nn.Module, x: torch.Tensor, n_samples: int, *, seed: int = 0,
                spatial_dims: int | None = None, predictive: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """MC dropout combined with flip TTA: ``n_samples`` MC passes on every flip variant (flipped back), mean
    and standard deviation of the pooled predictive distribution (law of total variance: mean of the
    per-flip MC variances plus the variance of the per-flip means). Variant ``i`` is sampled with seed
    ``seed + i``. ``predictive`` (a network with the aleatoric head): each variant's variance is its
    predictive one, mean sigma^2 + var mu (:func:`.pix2pix.mc_predictive`), instead of the MC-dropout one."""
    from .pix2pix import mc_predictive, mc_sample

    def sample(xi: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        if predictive:
            m, _, sd_pred = mc_predictive(model, xi, n_samples, seed=s)
            return m, sd_pred
        return mc_sample(model, xi, n_samples, seed=s)

    dims = x.ndim - 2 if spatial_dims is None else int(spatial_dims)
    s1 = s2 = None
    variants = flip_variants(dims)
    for i, flips in enumerate(variants):
        m, sd = sample(torch.flip(x, flips) if flips else x, int(seed) + i)
        if flips:
            m, sd = torch.flip(m, flips), torch.flip(sd, flips)
        m, sd = m.double(), sd.double()
        s1 = m if s1 is None else s1 + m
        s2 = sd ** 2 + m ** 2 if s2 is None else s2 + sd ** 2 + m ** 2
    mean = s1 / len(variants)
    var = (s2 / len(variants) - mean ** 2).clamp_min(0)
    return mean.to(x.dtype), var.sqrt().to(x.dtype)


__all__ = ["flip_tta", "flip_variants", "mc_flip_tta"]
