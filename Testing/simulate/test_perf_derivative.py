"""Derivative application paths (blocked single-thread vs BLAS sgemv) agree; memory beyond the output is small."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from neuroshift.io.params import AcquisitionParams
from neuroshift.simulate import tissuewise as tw
from neuroshift.simulate.synthetic import synthetic_fractions
from neuroshift.simulate.tissuewise import fit_tissue_model

ORDER = ("CSF", "GM", "WM", "lesion")
SRC = AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000, field_T=3.0)
TARGET = AcquisitionParams(TE_ms=150, TI_ms=2200)


def _dense(shape, seed=0):
    raw = np.random.default_rng(seed).random((4, *shape)).astype(np.float32) + np.float32(0.05)
    raw /= raw.sum(0)
    return {t: np.ascontiguousarray(raw[i]) for i, t in enumerate(ORDER)}


def _image(fr, seed=1):
    w = np.array([0.2, 0.6, 0.5, 0.9], np.float32) * 1000
    img = sum(w[i] * fr[t] for i, t in enumerate(ORDER))
    return (img + np.random.default_rng(seed).normal(0, 3, img.shape)).astype(np.float32)


def test_blocked_and_blas_slab_paths_agree_with_the_formula(monkeypatch):
    monkeypatch.setattr(tw, "BLOCK_LAYOUT", False)  # the dense layouts (the block layout: test_derivative_labels)
    fr = _dense((19, 23, 29))  # 12,673 voxels: several blocks of 4096 plus a partial one
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SRC)
    assert model._joint is not None  # slab layout
    delta = model.deltas(TARGET).astype(np.float64)
    expected = img.astype(np.float64) + sum(delta[i] * fr[t].astype(np.float64) for i, t in enumerate(model._order))
    monkeypatch.setattr(tw, "AXPY_BLOCK", 4096)
    monkeypatch.setattr(tw, "BLAS_MIN_VOXELS", 1 << 40)
    blocked = model.simulate(TARGET)
    monkeypatch.setattr(tw, "BLAS_MIN_VOXELS", 0)
    blas = model.simulate(TARGET)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(blocked, expected, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(blas, expected, rtol=0, atol=1e-6 * scale)
    assert np.max(np.abs(blocked - blas)) <= 1e-6 * scale
    # the source parameters give the input bit for bit on both paths
    assert np.array_equal(model.simulate(SRC), img)


@pytest.mark.parametrize("layout", ["slab", "box"])
def test_derivative_allocates_at_most_1_3_images(layout, monkeypatch):
    monkeypatch.setattr(tw, "BLOCK_LAYOUT", False)
    if layout == "slab":
        fr = _dense((24, 32, 40))
    else:
        fr = synthetic_fractions((40, 64, 64), brain_semi_axes_mm=(12, 20, 16), n_lesions=2, seed=3)
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SRC)
    assert (model._joint is not None) == (layout == "slab")
    for blas_min in (0, 1 << 40):  # both slab paths
        monkeypatch.setattr(tw, "BLAS_MIN_VOXELS", blas_min)
        model.simulate(TARGET)  # warm-up (lazy imports, caches)
        tracemalloc.start()
        try:
            out = model.simulate(TARGET)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert out.nbytes == img.nbytes
        assert peak <= 1.3 * img.nbytes, (layout, blas_min, peak / img.nbytes)


def test_box_layout_plane_groups_equal_the_formula(monkeypatch):
    """Box layout (dense fractions inside a brain box): grouped planes give the reference sum at any group size."""
    monkeypatch.setattr(tw, "BLOCK_LAYOUT", False)
    fr = synthetic_fractions((40, 64, 64), brain_semi_axes_mm=(12, 20, 16), n_lesions=2, seed=5)
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SRC)
    assert model._joint is None and model._blocks is None  # box layout
    delta = model.deltas(TARGET).astype(np.float64)
    expected = img.astype(np.float64) + sum(delta[i] * fr[t].astype(np.float64) for i, t in enumerate(model._order))
    scale = float(np.abs(expected).max())
    for block in (64, 1 << 16):  # one plane per group / several planes per group
        monkeypatch.setattr(tw, "AXPY_BLOCK", block)
        np.testing.assert_allclose(model.simulate(TARGET), expected, rtol=0, atol=1e-6 * scale)
    assert np.array_equal(model.simulate(SRC), img)
