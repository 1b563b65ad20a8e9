"""Ensemble and view fusion, thresholds, slab removal and uncertainty.

Acceptance checks 4 (slab removal) and 5 (fusion = mean, order-independent; equal-weight view fusion).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neuroshift.errors import InputError
from neuroshift.segment import fusion
from neuroshift.segment.uncertainty import RunningMoments, binary_entropy, member_variance, uncertainty_map


# ------------------------------------------------------------------ check 5
def test_ensemble_mean_is_the_mean_and_independent_of_member_order():
    rng = np.random.default_rng(0)
    members = [rng.random((6, 7, 8)).astype(np.float32) for _ in range(4)]
    expected = np.mean(np.stack(members).astype(np.float64), axis=0)
    for perm in itertools.permutations(range(4)):
        got = fusion.ensemble_mean([members[p] for p in perm])
        np.testing.assert_allclose(got, expected, atol=1e-7)
    a = fusion.ensemble_mean(members)
    b = fusion.ensemble_mean(members[::-1])
    np.testing.assert_array_equal(a, b)


def test_view_fusion_is_the_equal_weight_average_of_view_means():
    rng = np.random.default_rng(1)
    axial = [rng.random((5, 5, 5)) for _ in range(3)]
    coronal = [rng.random((5, 5, 5)) for _ in range(3)]
    fused = fusion.fuse({"axial": axial, "coronal": coronal})
    expected = (np.mean(axial, axis=0) + np.mean(coronal, axis=0)) / 2
    np.testing.assert_allclose(fused, expected, atol=1e-6)
    # equal weights even when views have different member counts (not the mean of all members)
    uneven = fusion.fuse({"axial": axial, "coronal": coronal[:1]})
    np.testing.assert_allclose(uneven, (np.mean(axial, axis=0) + coronal[0]) / 2, atol=1e-6)
    np.testing.assert_allclose(fusion.fuse_views({"coronal": np.mean(coronal, axis=0), "axial": np.mean(axial, axis=0)}),
                               expected, atol=1e-6)


def test_threshold_is_strictly_greater():
    p = np.array([0.39, 0.40, 0.41, 0.5, 0.51])
    np.testing.assert_array_equal(fusion.threshold(p, 0.40), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(fusion.threshold(p, 0.5), [0, 0, 0, 0, 1])
    assert fusion.threshold(p, 0.5).dtype == np.uint8
    with pytest.raises(InputError):
        fusion.threshold(p, 1.5)


# ------------------------------------------------------------------ check 4
@pytest.mark.parametrize("n", [48, 50, 57, 176])
def test_wmh_slab_removal_clears_first_and_last_10_percent_of_axial_slices(n):
    vol = np.ones((n, 20, 22), np.float32)
    out = fusion.remove_slabs(vol, ["axial"], 0.10)
    cut = int(n * 0.10)
    assert cut >= 1
    assert not out[:cut].any() and not out[n - cut:].any()
    assert out[cut:n - cut].all()  # nothing else touched
    assert out[:, :, :].any()


@pytest.mark.parametrize("shape", [(40, 50, 45), (176, 256, 256)])
@pytest.mark.parametrize("fraction", [0.20, 0.25])
def test_claustrum_slab_removal_clears_20_or_25_percent_along_each_slicing_axis(shape, fraction):
    keep = fusion.slab_keep_mask(shape, ["axial", "coronal"], fraction)
    k_cut, j_cut = int(shape[0] * fraction), int(shape[1] * fraction)
    assert not keep[:k_cut].any() and not keep[shape[0] - k_cut:].any()  # axial slicing axis (K)
    assert not keep[:, :j_cut].any() and not keep[:, shape[1] - j_cut:].any()  # coronal slicing axis (J)
    assert keep[k_cut:shape[0] - k_cut, j_cut:shape[1] - j_cut, :].all()  # sagittal axis untouched
    np.testing.assert_array_equal(fusion.kept_slices(shape[0], fraction), np.arange(k_cut, shape[0] - k_cut))


def test_slab_fractions_per_view_and_validation():
    assert fusion.slab_fractions(["axial", "coronal"], {"axial": 0.1}) == {"axial": 0.1, "coronal": 0.0}
    assert fusion.slab_fractions(["axial"], None) == {"axial": 0.0}
    assert fusion.slab_count(9, 0.1) == 0  # int(0.9) = 0: nothing cut, never the whole axis
    keep = fusion.slab_keep_mask((9, 4, 4), ["axial"], 0.1)
    assert keep.all()
    with pytest.raises(InputError):
        fusion.slab_count(10, 0.5)


# ------------------------------------------------------------------ uncertainty
def test_variance_and_entropy():
    rng = np.random.default_rng(2)
    members = [rng.random((4, 4, 4)) for _ in range(6)]
    np.testing.assert_allclose(member_variance(members), np.var(np.stack(members), axis=0), atol=1e-6)
    same = [np.full((3, 3, 3), 0.3)] * 4
    np.testing.assert_allclose(member_variance(same), 0, atol=1e-7)
    h = binary_entropy(np.array([0.0, 0.5, 1.0, 0.25]))
    np.testing.assert_allclose(h, [0, 1, 0, 0.811278], atol=1e-5)
    acc = RunningMoments((4, 4, 4))
    for m in members:
        acc.add(m)
    np.testing.assert_allclose(uncertainty_map("variance", moments=acc), np.var(np.stack(members), axis=0), atol=1e-6)
    np.testing.assert_allclose(acc.mean(), np.mean(members, axis=0), atol=1e-6)
    with pytest.raises(InputError):
        uncertainty_map("magic", moments=acc)
