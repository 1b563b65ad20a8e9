"""MRF regression U-Net (issue 12): shapes and ranges, package and schedule check, training through the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroshift.errors import InputError
from neuroshift.mrf.dataset import SliceSet, oversampled_indices, random_patches
from neuroshift.mrf.model import build_model, load_package, predict_slices, save_package, to_maps
from neuroshift.mrf.schedule import Schedule, representative_schedule, validate_frames
from neuroshift.mrf.train import MRFStep, MRFTrainConfig, lesion_weights, loss_fn


def test_35_frames_in_5_maps_out_probabilities_in_percent_range():
    torch.manual_seed(0)
    model = build_model()
    assert model.config()["in_channels"] == 35 and model.config()["out_channels"] == 5
    assert len(model.config()["encoder"]) - 1 == 3  # encoder depth 3
    x = np.random.default_rng(0).normal(0, 3, (2, 35, 40, 36)).astype(np.float32)
    with torch.no_grad():
        raw = model.forward_logits(torch.from_numpy(x))
    assert tuple(raw.shape) == (2, 5, 40, 36)
    raw = raw.numpy() * 50.0  # push outputs far outside the ranges
    maps = to_maps(raw)
    assert set(maps) == {"T1", "T2star", "NAWM", "GM", "lesion"}
    for k in ("NAWM", "GM", "lesion"):
        assert maps[k].min() >= 0.0 and maps[k].max() <= 100.0 and maps[k].shape == (2, 40, 36)
    assert maps["T1"].min() >= 0.0
    np.testing.assert_allclose(to_maps(np.full((1, 5, 1, 1), 0.5, np.float32))["T1"], 500.0)  # T1 scale 1000 ms
    np.testing.assert_allclose(to_maps(np.full((1, 5, 1, 1), 0.5, np.float32))["lesion"], 50.0)
    out = predict_slices(model, np.concatenate([x[:1], np.zeros_like(x[:1])]))
    assert np.all(out["lesion"][1] == 0) and np.all(out["T1"][1] == 0)  # empty slice stays empty


def test_package_round_trip_and_schedule_refusal(tmp_path):
    torch.manual_seed(1)
    model = build_model({"encoder": [4, 8, 8, 8], "decoder": [8, 8, 4]})
    s = representative_schedule()
    save_package(model, tmp_path / "m", s, {"notes": "test"})
    manifest, back = load_package(tmp_path / "m", s)
    assert manifest["schedule_hash"] == s.hash and manifest["outputs"] == ["T1", "T2star", "NAWM", "GM", "lesion"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    other = Schedule(validate_frames([{"fa_deg": 40, "te_ms": 20, "tr_ms": 4000}] * 35))
    with pytest.raises(InputError, match="schedule"):
        load_package(tmp_path / "m", other)


def test_lesion_slices_oversampled_five_times_and_patches():
    idx = oversampled_indices(np.array([False, True, False]), 5)
    assert np.bincount(idx).tolist() == [1, 5, 1]
    ds = SliceSet(np.arange(2 * 35 * 70 * 66, dtype=np.float32).reshape(2, 35, 70, 66),
                  np.ones((2, 5, 70, 66), np.float32), np.array([False, True]))
    x, y = random_patches(ds, np.array([1, 0]), 64, np.random.default_rng(0))
    assert x.shape == (2, 35, 64, 64) and y.shape == (2, 5, 64, 64)
    r0c0 = np.argwhere(ds.x[1, 0] == x[0, 0, 0, 0])[0]
    np.testing.assert_array_equal(x[0], ds.x[1, :, r0c0[0]:r0c0[0] + 64, r0c0[1]:r0c0[1] + 64])


def test_losses_literal():
    p, t = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])
    assert loss_fn("mse", p, t).item() == pytest.approx(5.0)
    assert loss_fn("mae", p, t).item() == pytest.approx(2.0)
    assert loss_fn("huber", p, t, 2.0).item() == pytest.approx((0.5 + (2 * 3 - 2)) / 2)
    assert loss_fn("logcosh", p, t).item() == pytest.approx((np.log(np.cosh(1)) + np.log(np.cosh(3))) / 2, rel=1e-6)


def test_lesion_weighted_loss_literal():
    p, t = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])
    w = torch.tensor([1.0, 3.0])
    assert loss_fn("mse", p, t, weight=w).item() == pytest.approx((1 * 1 + 3 * 9) / 4)
    assert loss_fn("mae", p, t, weight=w).item() == pytest.approx((1 * 1 + 3 * 3) / 4)
    assert loss_fn("mse", p, t, weight=torch.ones(2)).item() == pytest.approx(5.0)  # all ones: the plain mean
    y = torch.zeros(1, 5, 2, 2)
    y[0, 4, 0, 1] = 0.3  # one voxel with some lesion
    assert lesion_weights(y, 1.0) is None
    wt = lesion_weights(y, 20.0)
    assert wt.shape == (1, 1, 2, 2) and wt.flatten().tolist() == [1.0, 20.0, 1.0, 1.0]
    with pytest.raises(Exception, match="lesion_weight"):
        MRFTrainConfig(lesion_weight=0.5).check()


def test_training_runs_through_the_shared_loop_lr_halves_and_loss_falls(tmp_path):
    from neuroshift.training.loop import LoopSettings, run_loop

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 35, 64, 64)).astype(np.float32)
    y = np.repeat(x[:, :5].mean(axis=1, keepdims=True), 5, axis=1)  # a learnable target
    ds = SliceSet(x, y, np.array([True, False, False]))
    cfg = MRFTrainConfig(batch_size=4, patches_per_slice=2, lr=3e-3, lr_halve_epochs=2, epochs=4,
                         arch={"encoder": [8, 8, 8, 8], "decoder": [8, 8, 8]})
    step = MRFStep(cfg, ds, [], torch.device("cpu"))
    assert len(step.items) == 7  # 5 + 1 + 1
    res = run_loop(step, LoopSettings(epochs=4, directory=tmp_path / "w", seed=0, verbose=False),
                   device="cpu")
    assert [r["lr"] for r in res.history] == pytest.approx([3e-3, 3e-3, 1.5e-3, 1.5e-3])
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.history[0]["step"] == 4  # 7 slices x 2 patches / batch 4


def test_phantom_frames_physics_and_targets():
    """SYNTHETIC training subject: pure-tissue voxels carry PD x the Bloch signal at their B1; lesions above NAWM."""
    from neuroshift.mrf.dataset import simulate_subject, slices_of
    from neuroshift.mrf.simulate import simulate
    from neuroshift.physics.relaxation import relaxation_table

    s = representative_schedule()
    sub = simulate_subject(s, 5, noise_fraction=0.0)
    tab = relaxation_table(3.0)
    assert 0.6 <= sub.b1[sub.brain].min() and sub.b1[sub.brain].max() <= 1.4 and sub.b1[sub.brain].std() > 0.01
    wm = np.argwhere(sub.maps["NAWM"] >= 99.999)[:50]
    for k, j, i in wm[:5]:
        expect = tab["WM"].pd * simulate(s, tab["WM"].t1_ms, tab["WM"].t2star_ms, float(sub.b1[k, j, i])).numpy()
        np.testing.assert_allclose(sub.frames[k, j, i], expect, atol=2e-4)
    les = sub.maps["lesion"] >= 99.999
    assert les.any()
    assert np.all(sub.maps["T1"][les] == pytest.approx(tab["lesion"].t1_ms))
    assert tab["lesion"].t1_ms > tab["WM"].t1_ms and tab["lesion"].t2star_ms > tab["WM"].t2star_ms
    assert np.all(sub.frames[~sub.brain] == 0)
    ds = slices_of([sub])
    assert ds.x.shape[1] == 35 and ds.y.shape[1] == 5 and ds.has_lesion.any()
    assert ds.y[:, 2:].max() <= 1.0 and ds.y[:, 2:].min() >= 0.0


def test_shipped_demo_model_is_honest_and_fits_the_representative_schedule():
    from neuroshift.mrf.schedule import data_dir

    manifest, model = load_package(data_dir() / "demo_model", representative_schedule())
    assert "SYNTHETIC" in manifest["notes"] and "NOT for clinical use" in manifest["notes"]
    assert "REPRESENTATIVE" in manifest["notes"]
    held = manifest["held_out"]["mean"]
    assert set(held) >= {"T1_rel_dev", "T2star_rel_dev", "lesion_dice_33pct", "lesion_ldr_33pct"}
    assert manifest["held_out"]["seeds"] and not set(manifest["held_out"]["seeds"]) & set(
        manifest["training"]["config"]["train_seeds"])
    x = np.zeros((1, 35, 32, 32), np.float32)
    x[0, :, 8:24, 8:24] = 0.5
    out = predict_slices(model, x)
    assert out["lesion"].min() >= 0 and out["lesion"].max() <= 100 and out["T1"][0, 0, 0] == 0


@pytest.mark.slow
def test_shipped_demo_model_reproduces_its_held_out_figures():
    """The manifest's held-out figures for SYNTHETIC phantom 201 are what the shipped weights give, and the
    retrained demo finds lesions at the paper's 33 % point (the earlier one never did)."""
    from neuroshift.mrf.dataset import simulate_subject
    from neuroshift.mrf.schedule import data_dir
    from neuroshift.mrf.train import evaluate_subject

    manifest, model = load_package(data_dir() / "demo_model", representative_schedule())
    row = next(r for r in manifest["held_out"]["per_subject"] if r["seed"] == 201)
    got = evaluate_subject(model, simulate_subject(representative_schedule(), 201))["summary"]
    for key in ("T1_rel_dev", "T2star_rel_dev", "NAWM_dice_80pct", "lesion_dice_33pct", "lesion_ldr_33pct"):
        assert got[key] == pytest.approx(row[key], abs=2e-3), key
    assert got["T1_rel_dev"] < 0.06 and got["T2star_rel_dev"] < 0.06
    assert got["lesion_ldr_33pct"] >= 0.5 and got["lesion_dice_33pct"] >= 0.3
