"""Preprocessing of the multi-view U-Net pipelines: reorientation, resampling, brain mask, z-score, crop/pad.

Acceptance checks 2 (crop/pad round trip) and 3 (z-score in the mask) of docs/segmentation.md.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neuroshift.errors import InputError
from neuroshift.io.volume import Volume
from neuroshift.segment import preprocess as pp
from neuroshift.segment.views import VIEWS, assemble, from_view, to_view, view_slices

from helpers.seg_helpers import phantom_ras, stored_as


def _voxels_physical(vol: Volume):
    k, j, i = np.indices(vol.data.shape)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    pts = (vol.ijk_to_lps() @ ijk)[:3].T
    order = np.lexsort(np.round(pts, 5).T)
    return pts[order], vol.data.ravel()[order]


@pytest.mark.parametrize("code", ["RAS", "LPS", "LAS", "SAL", "IPR"])
def test_reorient_keeps_every_voxel_at_its_physical_position(code):
    rng = np.random.default_rng(1)
    vol = Volume(rng.random((5, 6, 7)), [0.5, 0.7, 1.1], [3.0, -2.0, 5.0], np.eye(3))
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product([1, -1], repeat=3):
            d = np.zeros((3, 3))
            for c in range(3):
                d[perm[c], c] = signs[c]
            th = 0.15  # slightly oblique
            rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
            v = Volume(vol.data, vol.spacing, vol.origin, rot @ d)
            canon, ro = pp.reorient(v, code)
            assert pp.orientation_code(canon.direction) == code
            p1, d1 = _voxels_physical(v)
            p2, d2 = _voxels_physical(canon)
            np.testing.assert_allclose(p1, p2, atol=1e-9)
            np.testing.assert_array_equal(d1, d2)
            np.testing.assert_array_equal(ro.invert(canon.data), v.data)


def test_same_scan_stored_differently_gives_the_same_canonical_array():
    vol = phantom_ras(spacing=(1.0, 1.2, 1.5))
    ref, _ = pp.reorient(vol)
    for code in ("LPS", "SAL", "PIR", "LAS"):
        other, _ = pp.reorient(stored_as(vol, code))
        np.testing.assert_array_equal(other.data, ref.data)
        np.testing.assert_allclose(other.origin, ref.origin, atol=1e-6)
        np.testing.assert_allclose(other.direction, ref.direction, atol=1e-9)


def test_orientation_code_rejects_nonsense():
    with pytest.raises(InputError):
        pp.reorient(phantom_ras(), "RRS")


# ------------------------------------------------------------------ check 2: crop/pad round trip
@pytest.mark.parametrize("hw", [(181, 217), (200, 200), (180, 180), (150, 230), (7, 9)])
@pytest.mark.parametrize("target", [(200, 200), (180, 180), (181, 217), (64, 300)])
def test_crop_pad_round_trip_restores_the_shape(hw, target):
    rng = np.random.default_rng(0)
    x = rng.random((3, 2) + hw).astype(np.float32) + 1.0
    y, info = pp.crop_or_pad(x, target, pad_value=-7.0)
    assert y.shape == (3, 2) + tuple(target)
    z = pp.uncrop(y, info)
    assert z.shape == x.shape
    kept = z != 0
    np.testing.assert_array_equal(z[kept], x[kept])
    if all(t >= h for t, h in zip(target, hw)):  # pure padding loses nothing
        np.testing.assert_array_equal(z, x)
        assert (y == -7.0).sum() == y.size - x.size


def test_crop_pad_centres_like_the_release():
    x = np.arange(5 * 4, dtype=float).reshape(1, 5, 4) + 1
    y, info = pp.crop_or_pad(x, (8, 3))  # rows: pad 3 -> 1 before, 2 after; cols: crop 1 -> from the right
    assert info.offsets() == (1, 0)
    np.testing.assert_array_equal(y[0, 1:6], x[0, :, 0:3])
    assert (y[0, 0] == 0).all() and (y[0, 6:] == 0).all()


@pytest.mark.parametrize("view", VIEWS)
def test_view_slices_and_assemble_round_trip(view):
    rng = np.random.default_rng(2)
    ch = rng.random((2, 9, 13, 11)).astype(np.float32) + 1
    np.testing.assert_array_equal(from_view(to_view(ch, view), view), ch)
    slices, info = view_slices(ch, view, (16, 16))
    assert slices.shape[1:] == (2, 16, 16)
    back = assemble(slices[:, 1], view, info, ch.shape[1:])
    np.testing.assert_array_equal(back, ch[1])


# ------------------------------------------------------------------ check 3: z-score in the mask
def test_zscore_inside_mask_has_zero_mean_unit_std():
    rng = np.random.default_rng(3)
    x = (rng.normal(412.0, 57.0, (20, 30, 30)) + 1000 * rng.random((20, 30, 30)) ** 4).astype(np.float32)
    mask = np.zeros(x.shape, bool)
    mask[3:17, 5:25, 4:26] = True
    z = pp.zscore_in_mask(x, mask)
    assert z.dtype == np.float32
    assert abs(float(z[mask].astype(np.float64).mean())) < 1e-4
    assert abs(float(z[mask].astype(np.float64).std()) - 1.0) < 1e-4


def test_prepare_inputs_zscores_each_channel_in_its_own_mask():
    flair = phantom_ras()
    t1 = flair.with_data(flair.data * 0.5 + 3)
    manifest = {"task": "wmh", "input_channels": ["FLAIR", "T1"],
                "preprocessing": {"spacing_mm": None, "brain_mask": {"mode": "absolute",
                                                                     "thresholds": {"FLAIR": 70, "T1": 30}}}}
    prep = pp.prepare_inputs({"T1": t1, "flair": flair}, manifest)  # order and case do not matter
    assert prep.channel_names == ["FLAIR", "T1"]
    for c, name in enumerate(prep.channel_names):
        m = prep.channel_masks[name]
        vals = prep.channels[c][m].astype(np.float64)
        assert abs(vals.mean()) < 1e-4 and abs(vals.std() - 1) < 1e-4
    assert not prep.resampled


def test_empty_brain_mask_is_a_clear_error():
    vol = phantom_ras().with_data(phantom_ras().data / 1000.0)  # not raw intensities: 70 finds nothing
    manifest = {"task": "wmh", "input_channels": ["FLAIR"], "preprocessing": {}}
    with pytest.raises(InputError, match="relative"):
        pp.prepare_inputs({"FLAIR": vol}, manifest)
    # relative thresholds work on any scale
    prep = pp.prepare_inputs({"FLAIR": vol}, {**manifest, "preprocessing": {"brain_mask": {"mode": "relative"}}})
    assert 0.1 < prep.mask.mean() < 0.9


def test_brain_mask_largest_component_and_holes_per_slice():
    a = np.zeros((2, 20, 20), np.float32)
    a[:, 2:15, 2:15] = 100
    a[:, 6:9, 6:9] = 0  # a hole (e.g. a ventricle)
    a[:, 17:19, 17:19] = 100  # a separate speck (e.g. an eye)
    m = pp.brain_mask(a, 70)
    assert m[:, 6:9, 6:9].all()  # filled
    assert not m[:, 17:19, 17:19].any()  # smaller component dropped
    raw = pp.brain_mask(a, 70, largest_component=False, fill_holes=False)
    assert raw[:, 17:19, 17:19].all() and not raw[:, 6:9, 6:9].any()


def test_brain_mask_spec_defaults_and_relative_mode():
    spec = pp.BrainMaskSpec.from_manifest(None, "wmh")
    assert spec.mode == "absolute" and spec.thresholds["FLAIR"] == 70 and spec.thresholds["T1"] == 30
    x = np.linspace(0, 1000, 1001, dtype=np.float32)
    assert spec.threshold_for("t1w", x) == 30  # alias
    rel = pp.BrainMaskSpec.from_manifest({"mode": "relative", "thresholds": {"FLAIR": 0.2}}, "wmh")
    assert rel.threshold_for("FLAIR", x) == pytest.approx(0.2 * 990, rel=1e-6)
    with pytest.raises(InputError):
        pp.BrainMaskSpec.from_manifest({"mode": "magic"}, "wmh")


# ------------------------------------------------------------------ resampling
def test_model_grid_covers_the_field_of_view_and_resamples_back():
    vol = phantom_ras(spacing=(0.8, 0.8, 0.8))
    canon, _ = pp.reorient(vol)
    grid = pp.model_grid(canon, [1.0, 1.0, 1.0])
    assert np.allclose(grid.spacing, 1.0)
    fov_in = np.array(canon.shape_ijk) * canon.spacing
    fov_out = np.array(grid.shape_ijk) * grid.spacing
    assert np.all(np.abs(fov_in - fov_out) <= 1.0)
    centre = lambda v: (v.ijk_to_lps() @ np.append((np.array(v.shape_ijk) - 1) / 2.0, 1))[:3]  # noqa: E731
    np.testing.assert_allclose(centre(grid), centre(canon), atol=1e-6)
    assert pp.model_grid(canon, [0.8, 0.8, 0.805]) is None  # within 1 %: no resampling


def test_parse_spacing_keeps_native_axes_given_as_null():
    np.testing.assert_allclose(pp.parse_spacing([1.0, 1.0, None], [0.9, 0.9, 3.0]), [1.0, 1.0, 3.0])
    np.testing.assert_allclose(pp.parse_spacing(None, [0.9, 0.9, 3.0]), [0.9, 0.9, 3.0])
    np.testing.assert_allclose(pp.parse_spacing(0.5, [0.9, 0.9, 3.0]), [0.5] * 3)
    with pytest.raises(InputError):
        pp.parse_spacing([1, 1], [1, 1, 1])


@pytest.mark.parametrize("spacing", [0.8, 1.2])
def test_labels_go_back_to_the_input_grid_by_nearest_neighbour(spacing):
    vol = stored_as(phantom_ras(spacing=(spacing,) * 3), "LPS")
    manifest = {"task": "claustrum", "input_channels": ["T1"],
                "preprocessing": {"spacing_mm": 1.0, "brain_mask": {"mode": "relative"}}}
    prep = pp.prepare_inputs({"T1": vol}, manifest)
    assert prep.resampled and np.allclose(prep.grid.spacing, 1.0)
    # a multi-label map on the model grid keeps exactly its label values on the way back
    labels = (np.indices(prep.grid.data.shape).sum(axis=0) % 5).astype(np.uint8)
    back = prep.to_input_grid(labels, interpolation="nearest", dtype=np.uint8)
    assert back.same_grid(vol) and back.data.shape == vol.data.shape
    assert set(np.unique(back.data)) <= set(range(5))
    # and a label made on the input grid survives input -> model grid -> input
    truth = (vol.data > 150).astype(np.uint8)
    there = prep.label_to_model_grid(vol.with_data(truth))
    again = prep.to_input_grid(there, interpolation="nearest", dtype=np.uint8)
    inter = (again.data & truth).sum()
    assert 2 * inter / (again.data.sum() + truth.sum()) > 0.85
