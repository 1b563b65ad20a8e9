"""MRF matching searches (issue 12): the exact k-d tree, the chunked scores, SVD compression, a B1 map."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.errors import InputError, ParameterRangeError
from neuroshift.mrf.dictionary import build_dictionary
from neuroshift.mrf.match import brute_force_match, match_signals, match_volume, prepare
from neuroshift.mrf.schedule import representative_schedule


@pytest.fixture(scope="module")
def dictionary():
    return build_dictionary(representative_schedule())


@pytest.fixture(scope="module")
def prepared(dictionary):
    return prepare(dictionary)


def _noisy(dictionary, n, noise, seed):
    rng = np.random.default_rng(seed)
    atoms = dictionary.atoms()
    idx = rng.choice(len(atoms), n, replace=False)
    x = atoms[idx] * rng.uniform(0.5, 2.0, (n, 1))
    return np.abs(x + rng.normal(0, noise * atoms.mean(), x.shape)), idx


@pytest.mark.parametrize("method", ["tree", "scores"])
def test_both_searches_recover_noise_free_atoms_exactly(dictionary, prepared, method):
    rng = np.random.default_rng(4)
    params = dictionary.parameters()
    long_t2 = np.flatnonzero(params[:, 1] > 1500)  # neighbours differ by ~1e-7 in cosine
    idx = np.concatenate([rng.choice(len(params), 300, replace=False), rng.choice(long_t2, 100, replace=False)])
    pd = rng.uniform(0.2, 5.0, len(idx))
    res = match_signals(dictionary.atoms()[idx] * pd[:, None], prepared, method=method, chunk_voxels=97)
    assert np.array_equal(res["index"], idx)
    np.testing.assert_allclose(res["PD"], pd, rtol=1e-6)
    np.testing.assert_allclose(res["quality"], 1.0, atol=1e-6)


def test_tree_is_the_float64_brute_force_argmax_on_noisy_signals(dictionary, prepared):
    x, _ = _noisy(dictionary, 500, 0.03, 5)
    ref = brute_force_match(x, dictionary, dtype="float64")
    tree = match_signals(x, prepared, method="tree", chunk_voxels=64, threads=2)
    assert np.array_equal(tree["index"], ref)
    # quality is the exact cosine of the chosen atom
    unit = dictionary.atoms()[ref] / np.linalg.norm(dictionary.atoms()[ref], axis=1, keepdims=True)
    cos = np.sum(unit * x, axis=1) / np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(tree["quality"], cos, rtol=1e-6)
    assert np.array_equal(match_signals(x, prepared, method="scores")["index"], ref)


def test_svd_compressed_tree_keeps_nearly_every_match(dictionary):
    x, _ = _noisy(dictionary, 500, 0.01, 6)
    ref = brute_force_match(x, dictionary, dtype="float64")
    p = prepare(dictionary, svd_rank=12)
    assert p.rank == 12 and p.rotation.shape == (35, 12) and 0.99999 < p.energy < 1.0
    got = match_signals(x, p, method="tree", refine=8)["index"]
    assert np.mean(got == ref) >= 0.99
    # one candidate without compression would be exact; with rank 1 and 1 candidate most matches are lost
    assert np.mean(match_signals(x, prepare(dictionary, svd_rank=1), method="tree", refine=1)["index"] == ref) < 0.5


def test_b1_map_restricts_the_b1_axis(dictionary, prepared):
    x, idx = _noisy(dictionary, 300, 0.01, 7)
    params = dictionary.parameters()
    b1_map = np.full(len(x), 1.17)  # nearest grid B1: 1.2
    res = match_signals(x, prepared, b1=b1_map)
    assert np.all(res["B1"] == np.float32(1.2))
    sub = np.flatnonzero(np.isclose(params[:, 2], 1.2))
    unit = dictionary.atoms()[sub] / np.linalg.norm(dictionary.atoms()[sub], axis=1, keepdims=True)
    expect = sub[np.argmax((x / np.linalg.norm(x, axis=1, keepdims=True)) @ unit.T, axis=1)]
    assert np.array_equal(res["index"], expect)
    # the true B1 as the map: noise-free atoms come back exactly, as without the map
    clean = dictionary.atoms()[idx]
    assert np.array_equal(match_signals(clean, prepared, b1=params[idx, 2] + 0.02)["index"], idx)
    assert np.array_equal(match_signals(clean, prepared, b1=params[idx, 2], method="scores")["index"], idx)


def test_match_volume_b1_map_and_bad_inputs(dictionary, prepared):
    atoms = dictionary.atoms()
    frames = np.zeros((2, 3, 35))
    frames[1, 2] = 3.0 * atoms[4000]
    b1_true = dictionary.parameters()[4000, 2]
    out = match_volume(frames, prepared, b1_map=np.full((2, 3), b1_true))
    assert out["index"][1, 2] == 4000 and (out["index"] == -1).sum() == 5
    with pytest.raises(InputError, match="B1 map of shape"):
        match_volume(frames, prepared, b1_map=np.ones((3, 2)))
    with pytest.raises(InputError, match="B1 map holds NaN"):
        match_signals(frames[1], prepared, b1=np.array([1.0, 1.0, np.nan]))
    with pytest.raises(ParameterRangeError, match="method"):
        match_signals(frames[1], prepared, method="fast")
