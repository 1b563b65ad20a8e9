"""Training, checkpoints/resume, fine-tuning, k-fold splits, CLI and the bundled demo model (tiny, CPU, CI-safe)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroshift.errors import InputError
from neuroshift.segment.dataset import Subject
from neuroshift.segment.package import load_package, load_state_dicts
from neuroshift.segment.train import TrainConfig, holdout_split, kfold_splits, resolve, train

from helpers.dataset import toy_volumes, write_subject

TINY = {"in_channels": 2, "encoder": [4, 8, 8], "decoder": [8, 4], "first_kernel": 3, "kernel": 3,
        "bottleneck_kernel": 4}
PRE = {"orientation": "RAS", "spacing_mm": None, "crop_hw": [32, 32], "zscore": True,
       "brain_mask": {"mode": "relative"}, "pad_value": 0.0}


def subjects(seeds):
    out = []
    for s in seeds:
        flair, t1, label, brain = toy_volumes(s)
        out.append(Subject(f"toy{s}", {"FLAIR": flair, "T1": t1}, label, brain))
    return out


def config(tmp_path, name="pkg", **kw):
    base = dict(task="wmh", images=subjects([0, 1, 2]), val_images=subjects([3]), channels=["FLAIR", "T1"],
                views=["axial"], models_per_view=1, epochs=2, batch_size=8, lr=1e-2, architecture=TINY,
                preprocessing=PRE, augmentation={"preset": "wmh"}, out=str(tmp_path / name), device="cpu", seed=3,
                verbose=False)
    base.update(kw)
    return TrainConfig(**base)


def weights(path):
    return load_state_dicts(path).state_dicts


def training_loss(package_dir, subs, view="axial"):
    """Batch Dice loss of a package's first network over all training slices (no augmentation)."""
    from neuroshift.segment.dataset import SliceDataset, prepare_subjects
    from neuroshift.segment.loss import batch_dice_loss

    pkg = load_package(package_dir, "cpu")
    prepared = prepare_subjects(subs, pkg.manifest, positive_labels=[1])
    ds = SliceDataset(prepared, view, pkg.manifest["preprocessing"]["crop_hw"], slices="brain")
    x, y = ds.batch(range(len(ds)))
    with torch.no_grad():
        return float(batch_dice_loss(pkg.models[view][0](x), y))


def test_training_a_few_steps_reduces_the_loss_and_writes_a_valid_package(tmp_path):
    subs = subjects([0, 1, 2])
    before = config(tmp_path, "before", images=subs, epochs=0)
    train(before)
    cfg = config(tmp_path, "after", images=subs, epochs=6, augmentation={"preset": "none"})
    result = train(cfg)
    assert result.packages == [tmp_path / "after"]
    assert training_loss(tmp_path / "after", subs) < training_loss(tmp_path / "before", subs) - 0.01
    pkg = load_package(tmp_path / "after", "cpu")
    m = pkg.manifest
    assert m["task"] == "wmh" and m["input_channels"] == ["FLAIR", "T1"] and m["views"] == ["axial"]
    assert m["architecture"]["params"]["encoder"] == [4, 8, 8] and m["preprocessing"]["crop_hw"] == [32, 32]
    t = m["training"]
    assert t["optimizer"] == {"name": "Adam", "lr": 0.01} and t["epochs"] == 6
    assert t["data"]["train_subjects"] == ["toy0", "toy1", "toy2"] and t["data"]["validation_subjects"] == ["toy3"]
    assert t["members"][0]["steps"] > 0 and "val_dsc" in t["members"][0]["final"]
    assert "torch" in t["software"] and m["qc"]["intensity_histogram"]["channels"].keys() == {"FLAIR", "T1"}
    # per-epoch validation log
    with open(tmp_path / "after.work" / "axial_0" / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    for r in rows:
        assert 0.0 <= float(r["val_dsc"]) <= 1.0 and 0.0 <= float(r["val_f1"]) <= 1.0 and float(r["train_loss"]) > 0
    # the package segments through the inference chain
    from neuroshift.segment.inference import segment_volume

    flair, t1, _, _ = toy_volumes(5)
    res = segment_volume({"FLAIR": flair, "T1": t1}, pkg, device="cpu")
    assert res.label.data.shape == flair.data.shape


def test_resume_continues_from_the_checkpoint_like_an_uninterrupted_run(tmp_path):
    full = train(config(tmp_path, "full", epochs=3, steps_per_epoch=2))
    # "interrupted" after one epoch, then resumed to three
    train(config(tmp_path, "part", epochs=1, steps_per_epoch=2))
    state = json.loads((tmp_path / "part.work" / "axial_0" / "state.json").read_text())
    assert state["epoch"] == 1 and state["step"] == 2 and state["complete"]
    with pytest.raises(InputError, match="--resume"):
        train(config(tmp_path, "part", epochs=3, steps_per_epoch=2))
    resumed = train(config(tmp_path, "part", epochs=3, steps_per_epoch=2, resume=True))
    state = json.loads((tmp_path / "part.work" / "axial_0" / "state.json").read_text())
    assert state["epoch"] == 3 and state["step"] == 6
    assert resumed.members[0]["train_loss"] == pytest.approx(full.members[0]["train_loss"], abs=1e-6)
    a, b = weights(tmp_path / "full")["axial"][0], weights(tmp_path / "part")["axial"][0]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    with open(tmp_path / "part.work" / "axial_0" / "log.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3]
    # resuming a finished member trains nothing more and gives the same package
    train(config(tmp_path, "part", epochs=3, steps_per_epoch=2, resume=True))
    c = weights(tmp_path / "part")["axial"][0]
    assert all(torch.equal(b[k], c[k]) for k in b)
    # other settings than the checkpoint's are refused
    with pytest.raises(InputError, match="other settings"):
        train(config(tmp_path, "part", epochs=4, steps_per_epoch=2, lr=5e-3, resume=True))


def test_fine_tuning_loads_all_weights_and_updates_every_layer(tmp_path):
    train(config(tmp_path, "adult", epochs=1, steps_per_epoch=2, models_per_view=2, views=["axial", "coronal"]))
    adult = weights(tmp_path / "adult")
    r = resolve(config(tmp_path, "neo", init=str(tmp_path / "adult"), recipe="neonatal", architecture=None,
                       epochs=None, batch_size=None, lr=None, views=None, models_per_view=None, preprocessing=None,
                       augmentation=None))
    assert (r.epochs, r.batch_size, r.lr) == (30, 60, 2e-4) and r.views == ["axial", "coronal"]
    assert r.models_per_view == 2 and r.preprocessing["crop_hw"] == [200, 200] and r.slab_fraction == 0.25
    assert r.preprocessing["spacing_mm"] == 0.5
    assert r.augmentation.translate == 0.1 and r.augmentation.shear_deg == 4.0
    assert r.architecture == load_package(tmp_path / "adult").manifest["architecture"]["params"]
    # one step of fine-tuning
    cfg = config(tmp_path, "neo", init=str(tmp_path / "adult"), recipe="neonatal", architecture=None, epochs=1,
                 steps_per_epoch=1, batch_size=8, lr=1e-3, images=subjects([4, 5]), views=None, models_per_view=None)
    train(cfg)
    neo = weights(tmp_path / "neo")
    man = load_package(tmp_path / "neo").manifest
    assert man["training"]["init"]["fine_tuned"] == "all layers" and man["training"]["population"] == "neonatal"
    assert man["training"]["init"]["files"] == load_package(tmp_path / "adult").manifest["files"]
    assert man["views"] == ["axial", "coronal"] and man["models_per_view"] == 2
    for view in ("axial", "coronal"):
        for m in range(2):
            a, n = adult[view][m], neo[view][m]
            for k in a:
                diff = float((a[k] - n[k]).abs().max())
                assert 0 < diff < 0.01, (view, m, k, diff)  # every tensor moved, a little: it started from the adult
    # starting from the package: zero epochs reproduce its weights exactly
    train(config(tmp_path, "same", init=str(tmp_path / "adult"), architecture=None, epochs=0, views=None,
                 models_per_view=None))
    same = weights(tmp_path / "same")
    assert all(torch.equal(adult[v][m][k], same[v][m][k]) for v in adult for m in range(2) for k in adult[v][m])
    with pytest.raises(InputError, match="architecture"):
        resolve(config(tmp_path, "x", init=str(tmp_path / "adult")))


def test_patch_training_with_dice_bce_and_clipping_learns_and_is_recorded(tmp_path):
    subs = subjects([0, 1, 2])
    train(config(tmp_path, "before", images=subs, epochs=0))
    cfg = config(tmp_path, "patch", images=subs, epochs=6, loss="dice+bce", patch_hw=[16, 16], foreground_prob=0.7,
                 grad_clip=1.0, augmentation={"preset": "none"})
    train(cfg)
    assert training_loss(tmp_path / "patch", subs) < training_loss(tmp_path / "before", subs)
    t = load_package(tmp_path / "patch").manifest["training"]
    assert "cross-entropy" in t["loss"] and t["patches"] == {"hw": [16, 16], "foreground_prob": 0.7}
    assert t["grad_clip"] == 1.0
    with pytest.raises(InputError, match="loss"):
        train(config(tmp_path, "bad", images=subs, epochs=1, loss="focal"))


def test_kfold_splits_are_disjoint_by_subject():
    groups = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "g"]
    splits = kfold_splits(groups, 3, seed=1)
    assert len(splits) == 3
    seen = []
    for train_idx, val_idx in splits:
        assert set(train_idx).isdisjoint(val_idx) and sorted(train_idx + val_idx) == list(range(len(groups)))
        assert {groups[i] for i in train_idx}.isdisjoint({groups[i] for i in val_idx})
        seen += val_idx
    assert sorted(seen) == list(range(len(groups)))  # every scan validated exactly once
    sizes = sorted(len({groups[i] for i in v}) for _, v in splits)
    assert sizes[-1] - sizes[0] <= 1
    assert kfold_splits(groups, 3, seed=1) == splits and kfold_splits(groups, 3, seed=2) != splits
    with pytest.raises(InputError):
        kfold_splits(groups, 8)
    tr, va = holdout_split(groups, 0.3, seed=0)
    assert {groups[i] for i in tr}.isdisjoint({groups[i] for i in va}) and len(va) > 0


def test_cross_validation_run_writes_one_package_per_fold(tmp_path):
    result = train(config(tmp_path, "cv", images=subjects([0, 1, 2, 3]), val_images=None, folds=2, epochs=1,
                          steps_per_epoch=1))
    assert result.packages == [tmp_path / "cv" / "fold-1", tmp_path / "cv" / "fold-2"]
    vals = []
    for p in result.packages:
        man = load_package(p).manifest
        tr, va = man["training"]["data"]["train_subjects"], man["training"]["data"]["validation_subjects"]
        assert set(tr).isdisjoint(va) and len(tr) == len(va) == 2
        vals += va
    assert sorted(vals) == ["toy0", "toy1", "toy2", "toy3"]
    cv = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())
    assert len(cv["folds"]) == 2 and "val_dsc" in cv["mean"]


def test_cli_train_with_config_file_and_flags(tmp_path):
    from neuroshift.cli.main import main

    for n in range(2):
        write_subject(tmp_path / "data" / f"sub-{n}", seed=n)
    (tmp_path / "train.yaml").write_text(
        "task: wmh\nimages: data\nchannels: [FLAIR, T1]\nmodels_per_view: 1\nepochs: 1\nbatch_size: 4\n"
        "steps_per_epoch: 1\narchitecture: {in_channels: 2, encoder: [4, 8, 8], decoder: [8, 4]}\n"
        "preprocessing: {crop_hw: [32, 32], brain_mask: {mode: relative}}\n")
    out = tmp_path / "model"
    rc = main(["train", "--config", str(tmp_path / "train.yaml"), "--out", str(out), "--device", "cpu", "--seed", "4",
               "--quiet", "--json", str(tmp_path / "summary.json")])
    assert rc == 0
    man = load_package(out).manifest
    assert man["training"]["data"]["train_subjects"] == ["sub-0", "sub-1"] and man["training"]["seed"] == 4
    assert json.loads((tmp_path / "summary.json").read_text())["packages"] == [str(out)]
    # bad input: exit code 2 with a message, no package
    rc = main(["train", "--task", "wmh", "--images", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "bad"),
               "--device", "cpu", "--quiet"])
    assert rc == 2 and not (tmp_path / "bad").exists()
    rc = main(["train", "--config", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "bad"), "--lr", "-1",
               "--quiet"])
    assert rc == 2 and not (tmp_path / "bad").exists()


def test_bundled_demo_model_is_small_and_says_it_is_a_phantom_demo():
    from neuroshift.segment.registry import find_model

    path = find_model("wmh-demo")
    pkg = load_package(path, "cpu")
    m = pkg.manifest
    assert m["demo"] is True and m["task"] == "wmh"
    assert "NOT FOR CLINICAL USE" in m["description"] and "phantom" in m["description"].lower()
    assert m["training"]["clinical_use"].startswith("none")
    assert m["training"]["evaluation"]["scores"]
    total = sum(f.stat().st_size for f in Path(path).iterdir() if f.suffix == ".safetensors")
    assert total < 3_000_000
    assert m["views"] == ["axial"] and m["models_per_view"] >= 2 and m["input_channels"] == ["FLAIR"]


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    """``torchrun --nproc_per_node 2`` (Gloo on CPU): DistributedSampler + DDP, rank 0 writes the package."""
    import subprocess
    import sys

    for n in range(3):
        write_subject(tmp_path / "data" / f"sub-{n}", seed=n)
    (tmp_path / "train.yaml").write_text(
        "task: wmh\nimages: data\nchannels: [FLAIR, T1]\nmodels_per_view: 1\nepochs: 2\nbatch_size: 8\n"
        "architecture: {in_channels: 2, encoder: [4, 8, 8], decoder: [8, 4]}\n"
        "preprocessing: {crop_hw: [32, 32], brain_mask: {mode: relative}}\nval_fraction: 0.34\n")
    out = tmp_path / "model"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "neuroshift", "train", "--config", str(tmp_path / "train.yaml"), "--out", str(out),
                           "--device", "cpu", "--quiet"], capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines() == [str(out)]  # printed once, by rank 0
    man = load_package(out).manifest
    assert man["training"]["world_size"] == 2 and man["training"]["members"][0]["steps"] == 6  # 20 slices, 4 per rank
