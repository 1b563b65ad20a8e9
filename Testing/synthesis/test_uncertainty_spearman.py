"""Uncertainty-vs-error rank correlation helpers (neuroshift.synthesis.metrics) on toy cases with known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroshift.errors import InputError
from neuroshift.synthesis import metrics


def test_spearman_literal_without_and_with_ties():
    # rank differences 1, 1, 1, 1, 0: rho = 1 - 6 * 4 / (5 * (25 - 1)) = 0.8
    assert metrics.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # tie in x: ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4): centred dot 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert metrics.spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(3 / math.sqrt(10))
    # monotone transforms do not change it; reversing flips the sign
    x = np.array([0.3, 0.1, 0.7, 0.2, 0.9])
    assert metrics.spearman(x, np.exp(5 * x)) == pytest.approx(1.0)
    assert metrics.spearman(x, -x ** 3) == pytest.approx(-1.0)


def test_spearman_refuses_undefined_cases():
    with pytest.raises(InputError, match="constant"):
        metrics.spearman([1, 1, 1], [1, 2, 3])
    with pytest.raises(InputError, match="2 values"):
        metrics.spearman([1], [1])
    with pytest.raises(InputError):
        metrics.spearman([1, 2, 3], [1, 2])


def test_local_mean_in_plane_over_mask_voxels():
    v = np.arange(2 * 4 * 4, dtype=float).reshape(2, 4, 4)
    m = np.ones_like(v, bool)
    m[0, 0, 0] = False  # excluded from every neighbourhood
    out = metrics.local_mean(v, m, 3, in_plane=True)
    # interior voxel (0, 1, 1): its 3x3 square in slice 0 minus the masked-out 0 -> (sum 0..10 of the square) / 8
    square = v[0, 0:3, 0:3]
    assert out[0, 1, 1] == pytest.approx((square.sum() - v[0, 0, 0]) / 8)
    # corner (1, 0, 0) of slice 1: 2x2 inside the image; slice 0 is not mixed in
    assert out[1, 0, 0] == pytest.approx(v[1, 0:2, 0:2].mean())
    # the 3x3x3 cube mixes the slices: voxel (0, 1, 1) averages 17 mask voxels of both slices
    cube = metrics.local_mean(v, m, 3)
    assert cube[0, 1, 1] == pytest.approx((v[:, 0:3, 0:3].sum() - v[0, 0, 0]) / 17)


def test_uncertainty_spearman_voxel_and_local():
    rng = np.random.default_rng(0)
    err = rng.random((3, 8, 8))
    region = np.ones_like(err, bool)
    assert metrics.uncertainty_spearman(2 * err + 1, err, region) == pytest.approx(1.0)
    # local=3: both maps replaced by their 3x3 in-plane local means, then ranked
    sd = np.broadcast_to(np.linspace(0, 1, 8)[None, None, :], err.shape).copy()  # a smooth ramp along i
    noisy = sd + 2.0 * rng.random(err.shape)  # the ramp buried in voxel noise
    with_local = metrics.uncertainty_spearman(sd, noisy, region, local=3, in_plane=True)
    want = metrics.spearman(metrics.local_mean(sd, region, 3, True), metrics.local_mean(noisy, region, 3, True))
    assert with_local == pytest.approx(want)
    per_voxel = metrics.uncertainty_spearman(sd, noisy, region)
    assert per_voxel < with_local  # averaging removes the voxel noise, not the ramp
    with pytest.raises(InputError, match="lesion"):
        metrics.uncertainty_spearman(sd, err, np.zeros_like(region), name="lesion")
