"""Uncertainty from ensemble disagreement.

Two maps are available (``segment_volume(..., uncertainty="variance"|"entropy")``, CLI
``--uncertainty-kind``):

* ``variance`` (the default, what ``--uncertainty FILE`` writes unless told otherwise): the
  voxel-wise population variance of the probability maps of **all** members (every network of
  every view, and every flipped copy when test-time augmentation is on), in ``[0, 0.25]``. It is
  zero where all members agree, whatever they agree on, so it measures disagreement only; for a
  package with a single network it is zero everywhere.
* ``entropy``: the binary entropy (bits, ``[0, 1]``) of the fused probability,
  ``H(p) = -p log2 p - (1-p) log2 (1-p)``: high wherever the fused probability is near 0.5, from
  disagreement or from members that are each unsure. Defined for a single network too.

:class:`RunningMoments` accumulates the variance in one pass so members never need to be held in
memory together.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError

KINDS = ("variance", "entropy")


def member_variance(members: Sequence[np.ndarray]) -> np.ndarray:
    """Population variance across member probability maps (float32)."""
    members = list(members)
    if not members:
        raise InputError("no ensemble members")
    acc = RunningMoments(np.shape(members[0]))
    for m in members:
        acc.add(m)
    return acc.variance()


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Binary entropy in bits of a probability map (0 at p = 0 or 1, 1 at p = 0.5)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0.0))
    return (np.maximum(h, 0.0) + 0.0).astype(np.float32)


class RunningMoments:
    """Streaming mean and variance of arrays of one shape (float64 sums)."""

    def __init__(self, shape):
        self.n = 0
        self.sum = np.zeros(tuple(shape), dtype=np.float64)
        self.sumsq = np.zeros(tuple(shape), dtype=np.float64)

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != self.sum.shape:
            raise InputError(f"member of shape {x.shape} differs from {self.sum.shape}")
        self.n += 1
        self.sum += x
        self.sumsq += x * x

    def mean(self) -> np.ndarray:
        return (self.sum / max(self.n, 1)).astype(np.float32)

    def variance(self) -> np.ndarray:
        if self.n == 0:
            return np.zeros(self.sum.shape, dtype=np.float32)
        mean = self.sum / self.n
        return np.clip(self.sumsq / self.n - mean * mean, 0.0, None).astype(np.float32)


def uncertainty_map(kind: str, *, moments: RunningMoments | None = None,
                    probability: np.ndarray | None = None) -> np.ndarray:
    """The map of ``kind`` from the accumulated member moments or the fused probability."""
    kind = str(kind).lower()
    if kind == "variance":
        if moments is None:
            raise InputError("variance needs the member moments")
        return moments.variance()
    if kind == "entropy":
        if probability is None:
            raise InputError("entropy needs the fused probability")
        return binary_entropy(probability)
    raise InputError(f"unknown uncertainty kind '{kind}'; use {' or '.join(KINDS)}")


__all__ = ["KINDS", "RunningMoments", "binary_entropy", "member_variance", "uncertainty_map"]
