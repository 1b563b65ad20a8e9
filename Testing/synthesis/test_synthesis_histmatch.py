"""Histogram matching to a stored reference of the training targets (dissertation 003): matched quantiles
equal the reference's, order kept, identity on its own reference, SD carried through the slope, refusals,
and the synthesize path (package with a reference, ``histogram_match=False``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroshift.errors import InputError
from neuroshift.synthesis.histmatch import MANIFEST_KEY, match_values, match_volume, reference_from_values
from neuroshift.synthesis.inference import load_package, save_package, synthesize
from neuroshift.synthesis.pix2pix import UNetGenerator


def test_matched_quantiles_equal_the_reference():
    rng = np.random.default_rng(0)
    u = rng.random(200_000)
    ref = reference_from_values(u ** 2)  # quantile at probability p is p**2
    assert ref["quantiles"][50] == pytest.approx(0.25, abs=3e-3)
    x = rng.normal(0.4, 0.1, 50_000)
    out = match_values(x, ref)
    for p in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert np.quantile(out, p) == pytest.approx(p ** 2, abs=4e-3)
    # monotone: ranks are kept
    order = np.argsort(x)
    assert np.all(np.diff(out[order]) >= 0)


def test_own_reference_is_nearly_identity_and_sd_follows_the_slope():
    rng = np.random.default_rng(1)
    x = rng.random(40_000) * 0.5
    assert np.abs(match_values(x, reference_from_values(x)) - x).max() < 0.01
    img = x.reshape(200, 200).astype(np.float32)
    brain = np.ones_like(img, bool)
    sd = np.full_like(img, 0.01)
    out, sd_out = match_volume(img, brain, reference_from_values(2 * x), sd)  # a linear stretch by 2
    assert np.allclose(out, 2 * img, atol=0.02)
    inner = (img > 0.05) & (img < 0.45)
    assert np.median(sd_out[inner]) == pytest.approx(0.02, rel=0.05)


def test_outside_brain_unchanged_and_bad_reference_refused():
    img = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    brain = np.zeros_like(img, bool)
    brain[2:8, 2:8] = True
    out, _ = match_volume(img, brain, reference_from_values(np.linspace(0.2, 0.3, 50)))
    assert np.array_equal(out[~brain], img[~brain])
    assert out[brain].min() == pytest.approx(0.2, abs=0.01) and out[brain].max() == pytest.approx(0.3, abs=0.01)
    with pytest.raises(InputError, match="histogram_reference"):
        match_values(img.ravel(), {"probabilities": [0, 0.5], "quantiles": [0, 1]})
    with pytest.raises(InputError, match="histogram_reference"):
        match_values(img.ravel(), {"quantiles": [0, 1]})
    with pytest.raises(InputError, match="empty"):
        match_volume(img, np.zeros_like(brain), reference_from_values(img))


def test_synthesize_matches_to_the_package_reference(tmp_path):
    arch = {"in_channels": 2, "out_channels": 1, "base": 4, "depth": 2, "dropout": 0.3}
    torch.manual_seed(0)
    net = UNetGenerator(**arch)
    rng = np.random.default_rng(2)
    ref = reference_from_values(rng.beta(5, 2, 20_000))  # median ~0.74
    save_package(tmp_path / "m", "synthdir", "dir", ("flair", "t1"), arch, net,
                 {"trained_on": "untrained test package", MANIFEST_KEY: ref})
    model = load_package(tmp_path / "m")
    shape = (6, 20, 24)
    brain = np.zeros(shape, bool)
    brain[1:5, 3:17, 4:20] = True
    inputs = {"flair": rng.random(shape) * brain, "t1": rng.random(shape) * brain}
    matched, sd = synthesize(model, inputs, brain, mc_samples=4)
    raw, sd_raw = synthesize(model, inputs, brain, mc_samples=4, histogram_match=False)
    q = np.asarray(ref["quantiles"])
    for k in (10, 50, 90):
        assert np.quantile(matched[brain] / 1000.0, k / 100) == pytest.approx(q[k], abs=0.02)
    assert abs(np.quantile(raw[brain] / 1000.0, 0.5) - q[50]) > 0.05  # the untrained net is far from it
    assert sd is not None and sd_raw is not None and sd[brain].mean() > 0
    assert not matched[~brain].any()
