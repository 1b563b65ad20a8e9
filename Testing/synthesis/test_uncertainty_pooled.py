"""Pooled (several held-out subjects) uncertainty Spearman and the neighbour-RMS oracle of
neuroshift.synthesis.metrics, on toy arrays with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroshift.errors import InputError
from neuroshift.synthesis import metrics


def test_pooled_spearman_ranks_across_subjects():
    a = (np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), np.ones(3, bool))
    b = (np.array([4.0, 5.0, 6.0]), np.array([0.1, 0.2, 0.3]), np.ones(3, bool))
    # each subject alone ranks perfectly; pooled, SD ranks 1..6 meet error ranks 4,5,6,1,2,3:
    # sum d^2 = 6 * 9 = 54, rho = 1 - 6 * 54 / (6 * 35) = -19/35
    assert metrics.pooled_uncertainty_spearman([a]) == pytest.approx(1.0)
    assert metrics.pooled_uncertainty_spearman([a, b]) == pytest.approx(-19 / 35)


def test_pooled_spearman_uses_region_voxels_only_and_equals_single_subject():
    rng = np.random.default_rng(0)
    sd, err = rng.random((4, 5, 5)), rng.random((4, 5, 5))
    region = rng.random((4, 5, 5)) > 0.4
    single = metrics.uncertainty_spearman(sd, err, region)
    assert metrics.pooled_uncertainty_spearman([(sd, err, region)]) == pytest.approx(single)
    # voxels outside the region do not count: scrambling them changes nothing
    sd2 = np.where(region, sd, -sd)
    assert metrics.pooled_uncertainty_spearman([(sd2, err, region)]) == pytest.approx(single)
    with pytest.raises(InputError, match="subject 1"):
        metrics.pooled_uncertainty_spearman([(sd, err, region), (sd, err, np.zeros_like(region))])
    with pytest.raises(InputError, match="at least one"):
        metrics.pooled_uncertainty_spearman([])


def test_neighbour_rms_excludes_the_voxel_itself():
    err = np.ones((1, 3, 3))
    err[0, 1, 1] = 10.0
    mask = np.ones((1, 3, 3), bool)
    rms = metrics.neighbour_rms(err, mask, (1, 3, 3))
    assert rms[0, 1, 1] == pytest.approx(1.0)                     # 8 neighbours of error 1
    assert rms[0, 0, 0] == pytest.approx(math.sqrt((1 + 1 + 100) / 3))  # 3 neighbours, one the centre
    assert rms[0, 0, 1] == pytest.approx(math.sqrt((4 + 100) / 5))      # 5 neighbours
    # a voxel outside the mask is nobody's neighbour; a voxel with no mask neighbour gets 0
    mask2 = np.zeros((1, 3, 3), bool)
    mask2[0, 0, 0] = mask2[0, 1, 1] = mask2[0, 2, 2] = True
    rms2 = metrics.neighbour_rms(err, mask2, (1, 3, 3))
    assert rms2[0, 0, 0] == pytest.approx(10.0)
    assert rms2[0, 1, 1] == pytest.approx(1.0)
    lone = np.zeros((1, 3, 3), bool)
    lone[0, 1, 1] = True
    assert metrics.neighbour_rms(err, lone, (1, 3, 3))[0, 1, 1] == 0.0
