"""The 64-byte-aligned output of the block-layout derivative (issue 9): ``block_kernels.derive_aligned`` writes
exactly what ``derive`` writes into a plain array, starts on a cache line whatever the buffer's alignment, and
touches nothing outside its view; the model keeps its image on a cache line and θ_0 still gives the input."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.physics.scalar_signal import SEQUENCE_CODES, pack
from neuroshift.simulate import block_layout as BL
from neuroshift.simulate.tissuewise import fit_tissue_model
from test_derivative_labels import SRC, TARGET, _check, _fractions, _image

pytestmark = pytest.mark.skipif(not BL.available(), reason="numba not installed")


def _model(shape=(9, 11, 13), seed=5):
    fr = _fractions(shape, seed=seed)
    img = _image(fr)
    return fit_tissue_model(img, fr, "flair", SRC, estimator="priors"), img, fr


def test_derive_aligned_equals_derive_at_every_misalignment():
    model, img, _ = _model()  # 1287 voxels: a partial last block
    lay, k = model._blocks, BL.BlockLayout.kernels()
    params = model.resolve_target(TARGET)
    args = (lay.starts, lay.counts, lay.offsets, lay.records, SEQUENCE_CODES["flair"], *pack("flair", params),
            model._table(params), model._s0_pad, model.scale_c)
    ref = np.full(img.shape, np.nan, np.float32)
    k.derive(model._image, ref, *args)
    n = img.size
    backing = np.full(n + 64, np.nan, np.float32)
    for shift in range(16):  # every float32 position relative to a 64-byte boundary
        raw = backing[shift:shift + n + 15]
        raw[:] = np.nan
        off = k.derive_aligned(model._image, raw, *args)
        assert 0 <= off < 16 and raw[off:].ctypes.data % 64 == 0
        assert raw[off:off + n].tobytes() == ref.tobytes()
        assert np.isnan(raw[:off]).all() and np.isnan(raw[off + n:]).all()  # nothing written outside the view


def test_simulate_output_and_image_are_aligned_and_exact():
    model, img, fr = _model()
    assert model._image.ctypes.data % 64 == 0 and model._image.tobytes() == img.tobytes()
    out = model.simulate(TARGET)
    assert out.shape == img.shape and out.dtype == np.float32 and out.flags.c_contiguous
    assert out.ctypes.data % 64 == 0
    _check(model, img, fr, out)  # crisp exact, empty exact, the rest within Σ|Δ|·2⁻¹⁶ of the dense sum
    buf = np.full_like(img, np.nan)  # a caller's buffer (any alignment) is filled in place, same numbers
    assert model.simulate(TARGET, out=buf) is buf and buf.tobytes() == out.tobytes()
    assert model.simulate(SRC).tobytes() == img.tobytes()  # θ_0: the input bit for bit


def test_aligned_helpers():
    a = BL.aligned_empty((3, 5, 7))
    assert a.shape == (3, 5, 7) and a.dtype == np.float32 and a.flags.c_contiguous and a.ctypes.data % 64 == 0
    src = np.arange(105, dtype=np.float32).reshape(3, 5, 7)
    c = BL.aligned_copy(src)
    assert c.ctypes.data % 64 == 0 and np.array_equal(c, src)
    assert BL.aligned_copy(c) is c  # already aligned: no copy


def test_threaded_parts_output_is_aligned(monkeypatch):
    model, img, fr = _model((10, 12, 14), seed=3)
    one = model.simulate(TARGET)
    monkeypatch.setattr(BL, "PARALLEL_MIN", 64)
    monkeypatch.setenv("NEUROSHIFT_THREADS", "2")
    two = model.simulate(TARGET)
    assert two.ctypes.data % 64 == 0 and two.tobytes() == one.tobytes()
