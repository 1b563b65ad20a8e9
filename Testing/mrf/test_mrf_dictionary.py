"""MRF schedule, Bloch simulation, dictionary and matching (issue 12; acceptance checks of docs/mrf.md)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from neuroshift.errors import InputError, ParameterRangeError, UnreadableFileError
from neuroshift.mrf.dictionary import (build_dictionary, default_grid, load_dictionary, save_dictionary)
from neuroshift.mrf.match import brute_force_match, match_signals, match_volume
from neuroshift.mrf.schedule import (PAPER_RANGES, Schedule, representative_schedule, schedule_from_dict,
                                     validate_frames)
from neuroshift.mrf.simulate import simulate


@pytest.fixture(scope="module")
def dictionary():
    return build_dictionary(representative_schedule())


def test_grid_is_51_114_9_with_5_percent_steps():
    g = default_grid()
    assert (len(g["t1_ms"]), len(g["t2star_ms"]), len(g["b1"])) == (51, 114, 9)
    np.testing.assert_allclose(g["t1_ms"][1:] / g["t1_ms"][:-1], 1.05, rtol=1e-12)
    np.testing.assert_allclose(g["t2star_ms"][1:] / g["t2star_ms"][:-1], 1.05, rtol=1e-12)
    assert g["t1_ms"][0] == 300.0 and 3500.0 / 1.05 < g["t1_ms"][-1] <= 3500.0
    assert g["t2star_ms"][0] == 10.0 and 2500.0 / 1.05 < g["t2star_ms"][-1] <= 2500.0
    np.testing.assert_allclose(g["b1"], [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4])


def test_representative_schedule_is_35_frames_inside_published_ranges():
    s = representative_schedule()
    assert len(s) == 35 and s.representative and "REPRESENTATIVE" in s.description
    for key, (lo, hi) in PAPER_RANGES.items():
        v = s.column(key)
        assert lo <= min(v) and max(v) <= hi, key
    assert min(s.column("fa_deg")) == 34.0 and max(s.column("fa_deg")) == 86.0
    assert min(s.column("tr_ms")) == 3530.0 and max(s.column("tr_ms")) == 6370.0
    assert len(s.hash) == 64 and s.hash == representative_schedule().hash


def test_schedule_validation_names_the_frame():
    good = [{"fa_deg": 30, "te_ms": 20, "tr_ms": 4000}]
    assert validate_frames(good)[0].ti_ms is None
    with pytest.raises(ParameterRangeError, match="frame 2: fa_deg"):
        validate_frames(good + [{"fa_deg": 200, "te_ms": 20, "tr_ms": 4000}])
    with pytest.raises(ParameterRangeError, match="frame 1: TI \\+ TE"):
        validate_frames([{"fa_deg": 30, "te_ms": 20, "tr_ms": 100, "ti_ms": 90}])
    with pytest.raises(ParameterRangeError, match="unknown field"):
        validate_frames([{"fa_deg": 30, "te_ms": 20, "tr_ms": 4000, "tx": 1}])
    with pytest.raises(ParameterRangeError, match="missing te_ms"):
        validate_frames([{"fa_deg": 30, "tr_ms": 4000}])
    with pytest.raises(ParameterRangeError, match="format"):
        schedule_from_dict({"frames": good})


def test_schedule_hash_changes_with_any_frame_value():
    a = Schedule(validate_frames([{"fa_deg": 30, "te_ms": 20, "tr_ms": 4000}]))
    b = Schedule(validate_frames([{"fa_deg": 30, "te_ms": 20, "tr_ms": 4000.5}]))
    c = Schedule(validate_frames([{"fa_deg": 30, "te_ms": 20, "tr_ms": 4000, "ti_ms": 0}]))
    assert len({a.hash, b.hash, c.hash}) == 3


def test_simulation_matches_hand_recursion():
    s = Schedule(validate_frames([{"fa_deg": 30, "te_ms": 20, "tr_ms": 4000, "ti_ms": 100},
                                  {"fa_deg": 60, "te_ms": 50, "tr_ms": 5000}]))
    t1, t2s, b1 = 1000.0, 60.0, 0.9
    sig = simulate(s, t1, t2s, b1).numpy()
    a1, a2 = math.radians(30 * b1), math.radians(60 * b1)
    mz = math.cos(math.pi * b1)  # inversion by 162 deg
    mz = 1 - (1 - mz) * math.exp(-100 / t1)
    s1 = abs(mz) * math.sin(a1) * math.exp(-20 / t2s)
    mz = 1 - (1 - mz * math.cos(a1)) * math.exp(-3900 / t1)
    s2 = abs(mz) * math.sin(a2) * math.exp(-50 / t2s)
    np.testing.assert_allclose(sig, [s1, s2], rtol=1e-12)
    # literal: with B1 = 1 and no inversion, frame 1 of an equilibrium start is sin(30 deg) e^{-20/60}
    assert simulate(Schedule(validate_frames([{"fa_deg": 30, "te_ms": 20, "tr_ms": 4000}])), 1000, 60).item() == \
        pytest.approx(0.5 * math.exp(-1 / 3), rel=1e-12)
    assert simulate(s, 0.0, 60.0).abs().sum().item() == 0.0  # background


def test_noise_free_dictionary_signals_recovered_exactly(dictionary):
    rng = np.random.default_rng(1)
    atoms, params = dictionary.atoms(), dictionary.parameters()
    n = len(atoms)
    long_t2 = np.flatnonzero(params[:, 1] > 1500)  # neighbours differ by ~1e-7 in cosine here
    idx = np.concatenate([rng.choice(n, 1500, replace=False), rng.choice(long_t2, 300, replace=False)])
    pd = rng.uniform(0.2, 5.0, len(idx))
    res = match_signals(atoms[idx] * pd[:, None], dictionary, memory_mb=64)
    assert np.array_equal(res["index"], idx)
    np.testing.assert_array_equal(res["T1"], params[idx, 0].astype(np.float32))
    np.testing.assert_array_equal(res["T2star"], params[idx, 1].astype(np.float32))
    np.testing.assert_array_equal(res["B1"], params[idx, 2].astype(np.float32))
    np.testing.assert_allclose(res["PD"], pd, rtol=1e-6)
    np.testing.assert_allclose(res["quality"], 1.0, atol=1e-6)


def test_chunked_equals_brute_force_on_noisy_signals(dictionary):
    rng = np.random.default_rng(2)
    atoms = dictionary.atoms()
    idx = rng.choice(len(atoms), 400, replace=False)
    x = atoms[idx] * rng.uniform(0.5, 2, (400, 1))
    x = np.abs(x + rng.normal(0, 0.01, x.shape))
    ref = brute_force_match(x, dictionary)
    assert np.array_equal(match_signals(x, dictionary, chunk_voxels=37)["index"], ref)
    assert np.array_equal(match_signals(x, dictionary, chunk_voxels=400)["index"], ref)
    # SVD compression keeps (nearly) every match; the float64 re-scoring repairs the compressed ranking
    svd = match_signals(x, dictionary, chunk_voxels=50, svd_energy=0.99999)["index"]
    assert np.mean(svd == ref) >= 0.99


def test_match_volume_keeps_shape_and_zero_background(dictionary):
    atoms = dictionary.atoms()
    frames = np.zeros((3, 4, 2, 35))
    frames[1, 2, 1] = 2.5 * atoms[777]
    out = match_volume(frames, dictionary)
    assert out["T1"].shape == (3, 4, 2)
    assert out["index"][1, 2, 1] == 777 and out["PD"][1, 2, 1] == pytest.approx(2.5, rel=1e-6)
    assert np.count_nonzero(out["T1"]) == 1 and (out["index"] == -1).sum() == 23
    with pytest.raises(InputError, match="frames"):
        match_signals(np.ones((2, 34)), dictionary)


def test_dictionary_round_trip_and_schedule_mismatch(dictionary, tmp_path):
    p = save_dictionary(dictionary, tmp_path / "d.npz")
    back = load_dictionary(p, representative_schedule())
    assert back.grid_shape == (51, 114, 9) and np.array_equal(back.signals, dictionary.signals)
    other = Schedule(validate_frames([{"fa_deg": 30, "te_ms": 20, "tr_ms": 4000}] * 35))
    with pytest.raises(InputError, match="schedule"):
        load_dictionary(p, other)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UnreadableFileError):
        load_dictionary(bad)
    meta = json.loads(np.load(p)["meta"].tobytes())
    assert meta["schedule_hash"] == representative_schedule().hash and meta["grid_shape"] == [51, 114, 9]


def test_mppca_reduces_noise():
    pytest.importorskip("dipy")
    from neuroshift.mrf.denoise import mppca_denoise

    s = representative_schedule()
    rng = np.random.default_rng(3)
    t1 = rng.choice([800.0, 1300.0, 4000.0], size=(12, 12, 6))
    clean = simulate(s, t1, 60.0, 1.0).numpy().astype(np.float32)
    noisy = clean + rng.normal(0, 0.02, clean.shape).astype(np.float32)
    den = mppca_denoise(noisy)
    assert den.shape == noisy.shape
    assert np.sqrt(np.mean((den - clean) ** 2)) < 0.7 * np.sqrt(np.mean((noisy - clean) ** 2))
