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


__all__ = ["flip_tta", "flip_variants"]
