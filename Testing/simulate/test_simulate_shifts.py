"""Resolution / slice-thickness changes, bias field and noise keep the grid and do the physics."""

import numpy as np
import pytest

from neuroshift.errors import ParameterRangeError
from neuroshift.io.volume import Volume
from neuroshift.simulate.shifts import (add_noise, apply_bias_field, change_resolution, change_slice_thickness,
                                        reacquire_axis)


def test_constant_image_unchanged_and_geometry_kept():
    vol = Volume(np.full((30, 20, 10), 7.0, np.float32), spacing=(0.5, 0.7, 1.0), origin=(1, 2, 3))
    out = change_slice_thickness(vol, 5.0)
    assert out.same_grid(vol, atol_mm=0)
    np.testing.assert_allclose(out.data, 7.0, rtol=1e-6)
    res = change_resolution(vol, (2.0, 2.0, 4.0))
    assert res.same_grid(vol, atol_mm=0)
    np.testing.assert_allclose(res.data, 7.0, rtol=1e-6)


def test_thin_sheet_is_spread_over_the_thick_slice_and_energy_kept():
    data = np.zeros((60, 4, 4), np.float32)
    data[30] = 1.0
    out = reacquire_axis(data, 0, 1.0, 5.0)
    profile = out[:, 0, 0]
    assert profile.max() < 0.3                        # a 1-mm sheet in a 5-mm slice loses 4/5 of its contrast
    assert profile.sum() == pytest.approx(1.0, abs=0.05)  # averaging and linear resampling keep the integral
    assert np.count_nonzero(profile > 1e-6) >= 5


def test_linear_ramp_is_preserved_by_averaging_and_linear_resampling():
    ramp = np.broadcast_to(np.arange(50, dtype=np.float32)[:, None, None], (50, 3, 3)).copy()
    out = reacquire_axis(ramp, 0, 1.0, 3.0)
    np.testing.assert_allclose(out[5:-5], ramp[5:-5], atol=1e-4)


def test_thickness_not_above_spacing_is_identity():
    data = np.random.default_rng(0).random((10, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(reacquire_axis(data, 0, 2.0, 2.0), data)
    with pytest.raises(ParameterRangeError):
        reacquire_axis(data, 0, 1.0, 0.0)


def test_slice_axis_defaults_to_coarsest():
    data = np.zeros((8, 8, 40), np.float32)
    data[:, :, 20] = 1
    vol = Volume(data, spacing=(3.0, 1.0, 1.0))  # i (last array axis) is the coarse one
    out = change_slice_thickness(vol, 9.0)
    assert out.data[4, 4, :].max() < 0.5 and out.data[4, 4, 19] > 0


def test_bias_field_multiplies_and_is_seeded():
    img = np.ones((16, 16, 16), np.float32)
    a = apply_bias_field(img, 0.3, rng=np.random.default_rng(1))
    b = apply_bias_field(img, 0.3, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.mean() == pytest.approx(1.0, rel=1e-3) and a.std() > 0.01 and a.min() > 0
    np.testing.assert_array_equal(apply_bias_field(img * 2, 0.0, rng=np.random.default_rng(1)), img * 2)


def test_rician_noise_mean_at_zero_signal():
    out = add_noise(np.zeros((64, 64, 64), np.float32), 2.0, rng=np.random.default_rng(0))
    assert out.mean() == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.01)
    vol = Volume(np.ones((4, 4, 4), np.float32))
    assert np.array_equal(add_noise(vol, 0.0).data, vol.data)
    with pytest.raises(ParameterRangeError):
        add_noise(vol, -1.0)
