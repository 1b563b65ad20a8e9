"""Label layout of the tissue-wise derivative (simulate.label_layout): same sums as the dense layouts, one pass."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from neuroshift.io.params import AcquisitionParams
from neuroshift.simulate import label_layout as LL
from neuroshift.simulate import tissuewise as tw
from neuroshift.simulate.tissuewise import fit_tissue_model

SRC = AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000, field_T=3.0)
TARGET = AcquisitionParams(TE_ms=150, TI_ms=2200)


def _fractions(shape, tissues=("CSF", "GM", "WM", "lesion"), seed=0, pv_share=0.2):
    """Crisp voxels (one tissue, fraction 1), partial-volume voxels (random mixtures, a lone 0.6) and empty voxels."""
    g = np.random.default_rng(seed)
    n = int(np.prod(shape))
    label = g.integers(0, len(tissues) + 1, n)             # 0: no tissue
    pv = g.random(n) < pv_share
    mix = g.random((len(tissues), n)).astype(np.float32)
    if len(tissues) > 1:
        mix /= mix.sum(0)  # one tissue: random fractions < 1 (partial volume with background)
    fr = np.zeros((len(tissues), n), np.float32)
    for t in range(len(tissues)):
        fr[t] = np.where(pv, mix[t], (label == t + 1).astype(np.float32))
    fr[:, 5] = 0.0
    fr[-1, 5] = 0.6                                        # one tissue, not crisp
    fr[:, 6] = 0.0                                         # empty
    fr[:, 7] = 0.0
    fr[0, 7] = 1.0                                         # crisp
    return {t: fr[i].reshape(shape) for i, t in enumerate(tissues)}


def _image(fr, seed=1):
    w = np.linspace(200.0, 900.0, len(fr)).astype(np.float32)
    img = sum(w[i] * f for i, f in enumerate(fr.values()))
    return (img + np.random.default_rng(seed).normal(0, 3, img.shape)).astype(np.float32)


@pytest.mark.parametrize("tissues", [("CSF", "GM", "WM", "lesion"), ("CSF", "GM", "WM"), ("WM",)])
def test_label_derivative_equals_the_reference_sum(tissues, monkeypatch):
    fr = _fractions((9, 11, 13), tissues)
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SRC, estimator="priors")
    assert model._labels is not None
    monkeypatch.setattr(tw, "LABEL_LAYOUT", False)
    dense_model = fit_tissue_model(img, fr, "flair", SRC, estimator="priors")
    assert dense_model._labels is None
    delta = model.deltas(TARGET)
    out = model.simulate(TARGET)
    stack = np.stack([fr[t] for t in model._order]).reshape(len(model._order), -1)
    flat = out.reshape(-1)
    crisp = ((stack > 0).sum(0) == 1) & (stack.max(0) == 1)
    # crisp voxels: exactly S + Δ_t (one float32 addition), as the dense sum S + 1·Δ_t + 0·...
    t_of = np.argmax(stack, 0)
    assert np.array_equal(flat[crisp], (img.reshape(-1) + delta[t_of])[crisp])
    # empty voxels: the input bit for bit
    empty = (stack > 0).sum(0) == 0
    assert empty.sum() > 5 and np.array_equal(flat[empty], img.reshape(-1)[empty])
    # partial volume (incl. the lone 0.6): float32 rounding of the float64 sum
    expected = img.reshape(-1).astype(np.float64) + delta.astype(np.float64) @ stack.astype(np.float64)
    pv = ~crisp & ~empty
    assert pv.sum() > 50 and pv[5]
    scale = float(np.abs(expected).max())
    assert np.max(np.abs(flat[pv] - expected[pv])) <= 2e-7 * scale
    # the dense layouts give the same derivative within float32 rounding, and θ_0 gives the input bit for bit
    assert np.max(np.abs(out - dense_model.simulate(TARGET))) <= 2e-7 * scale
    assert np.array_equal(model.simulate(SRC), img)


def test_labels_built_as_specified():
    fr = {"CSF": np.array([[[1.0, 0.0, 0.5, 0.0, 0.0, 0.0]]], np.float32),
          "GM": np.array([[[0.0, 1.0, 0.5, 0.0, 0.0, 0.0]]], np.float32),
          "WM": np.array([[[0.0, 0.0, 0.0, 0.6, 1.0, 0.0]]], np.float32)}
    stack = np.stack([f.reshape(-1) for f in fr.values()])
    lay = LL.build((1, 1, 6), stack, (slice(0, 1), slice(0, 1), slice(0, 6)))
    assert lay.labels.tolist() == [[[1, 2, LL.PARTIAL, LL.PARTIAL, 3, 0]]]
    assert lay.partial_index.tolist() == [2, 3]
    np.testing.assert_array_equal(lay.partial_fractions, np.array([[0.5, 0.5, 0, 0], [0, 0, 0.6, 0]], np.float32))
    assert lay.partial_share == pytest.approx(2 / 5)
    # mostly partial volume: the dense layouts are kept
    assert LL.build((1, 1, 6), np.full((3, 6), 1 / 3, np.float32), (slice(0, 1), slice(0, 1), slice(0, 6))) is None


def test_threaded_parts_and_out_buffer_give_the_same_derivative(monkeypatch):
    fr = _fractions((10, 12, 14), seed=3)
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SRC, estimator="priors")
    one = model.simulate(TARGET)
    monkeypatch.setattr(LL, "PARALLEL_MIN", 64)
    monkeypatch.setenv("NEUROSHIFT_THREADS", "3")
    buf = np.full_like(img, np.nan)
    three = model.simulate(TARGET, out=buf)
    assert three is buf
    np.testing.assert_array_equal(one, three)


def test_label_derivative_allocates_at_most_1_3_images():
    fr = _fractions((24, 32, 40), seed=4)
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SRC, estimator="priors")
    assert model._labels is not None
    model.simulate(TARGET)  # warm-up (compilation, caches)
    tracemalloc.start()
    try:
        out = model.simulate(TARGET)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.nbytes == img.nbytes
    assert peak <= 1.3 * img.nbytes, peak / img.nbytes
