"""neuroshift.training: config, fingerprints, CLI flags from metadata, checkpoints, image pool, the loop."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest
import torch

from neuroshift.errors import InputError, IntegrityError
from neuroshift.training.checkpoint import load_checkpoint, save_checkpoint
from neuroshift.training.config import (Flag, add_arguments, deep_update, fingerprint, from_dict, internal,
                                        load_yaml, option_names, setting, values_from_args)
from neuroshift.training.history import BestTracker, append_epoch, read_log
from neuroshift.training.loop import LoopSettings, StepOutput, TrainStep, run_loop
from neuroshift.training.pool import ImagePool
from neuroshift.training.splits import check_splits, kfold_splits, load_splits, save_splits


# ------------------------------------------------------------------ config
@dataclass
class Toy:
    lr: float = setting(0.1, Flag(type=float))
    size: list | None = setting(None, Flag("--crop", type=int, nargs=2, path=("pre", "hw")))
    pre: dict | None = setting(None, Flag("--mode", choices=("a", "b"), path=("mask", "mode")))
    verbose: bool = setting(True, Flag("--quiet", flag_value=False))
    secret: int = internal(3)


def test_from_dict_refuses_unknown_keys_and_accepts_dashes():
    assert from_dict(Toy, {"lr": 0.5, "secret": 1}).lr == 0.5
    assert from_dict(Toy, {"secret": 7}).secret == 7
    with pytest.raises(InputError, match=r"unknown toy setting\(s\) \['learning_rate'\]; allowed: lr, pre"):
        from_dict(Toy, {"learning-rate": 1}, what="toy setting")


def test_deep_update_merges_nested_and_replaces_named_keys():
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": [1, 2], "m": {"mode": "abs", "t": 70}}
    out = deep_update(base, {"a": {"y": {"q": 5}}, "b": [3], "m": {"mode": "rel"}}, replace=("m",))
    assert out == {"a": {"x": 1, "y": {"p": 1, "q": 5}}, "b": [3], "m": {"mode": "rel"}}
    assert base["a"]["y"]["q"] == 2  # the input is not modified


def test_fingerprint_ignores_excluded_settings_only():
    a = {"lr": 0.1, "epochs": 3, "arch": {"w": [4, 8]}, "out": "x"}
    fp = fingerprint(a, exclude=("epochs", "out"))
    assert fingerprint({**a, "epochs": 50, "out": "y"}, exclude=("epochs", "out")) == fp
    assert fingerprint({**a, "lr": 0.2}, exclude=("epochs", "out")) != fp
    assert fingerprint({**a, "arch": {"w": [4, 9]}}, exclude=("epochs", "out")) != fp
    assert fingerprint(a, exclude=("epochs", "out"), extra={"seed": 1}) != fp
    assert len(fp) == 16 and int(fp, 16) >= 0
    with pytest.raises(ValueError, match="epoch"):
        fingerprint(a, exclude=("epoch",))  # a typo would silently widen the fingerprint


def test_segmentation_fingerprint_exclusions_are_settings():
    from neuroshift.segment.train_config import FINGERPRINT_EXCLUDE, Resolved

    names = {f for f in Resolved.__dataclass_fields__}
    assert set(FINGERPRINT_EXCLUDE) <= names and "lr" not in FINGERPRINT_EXCLUDE and "epochs" in FINGERPRINT_EXCLUDE


def test_yaml_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "pkg").mkdir()
    f = tmp_path / "cfg" / "t.yaml"
    f.write_text("images: [\"a/x.nii.gz,b/y.nii.gz\", /abs/z.nii.gz]\nlabels: l.csv\ninit: pkg\nother: pkg\n"
                 "batch-size: 4\n")
    d = load_yaml(f, path_keys=("images", "labels"), optional_path_keys=("init",))
    base = str(tmp_path / "cfg")
    assert d["images"] == [f"{base}/a/x.nii.gz,{base}/b/y.nii.gz", "/abs/z.nii.gz"]
    assert d["labels"] == f"{base}/l.csv" and d["init"] == f"{base}/pkg" and d["other"] == "pkg"
    assert d["batch_size"] == 4
    f.write_text("- a\n- b\n")
    with pytest.raises(InputError, match="mapping"):
        load_yaml(f)
    with pytest.raises(InputError, match="no such config"):
        load_yaml(tmp_path / "missing.yaml")


def test_cli_flags_come_from_field_metadata():
    p = argparse.ArgumentParser()
    add_arguments(p, Toy)
    assert option_names(Toy) == ["--lr", "--crop", "--mode", "--quiet"]
    args = p.parse_args(["--crop", "3", "4", "--mode", "b", "--quiet"])
    data = values_from_args(args, Toy, {"lr": 0.3, "size": {"pre": {"keep": 1}}, "pre": {"mask": True}})
    assert data == {"lr": 0.3, "size": {"pre": {"keep": 1, "hw": [3, 4]}}, "pre": {"mask": {"mode": "b"}},
                    "verbose": False}
    assert values_from_args(p.parse_args([]), Toy) == {}


def test_train_cli_keeps_every_option_of_before():
    from neuroshift.segment.train_config import TrainConfig

    before = {"--task", "--images", "--labels", "--val-images", "--val-labels", "--val-fraction", "--channels",
              "--views", "--models-per-view", "--epochs", "--batch-size", "--lr", "--init", "--recipe", "--folds",
              "--out", "--work-dir", "--resume", "--device", "--seed", "--arch", "--crop", "--spacing",
              "--mask-mode", "--threshold", "--slab-fraction", "--positive-labels", "--ignore-labels", "--slices",
              "--negative-fraction", "--steps-per-epoch", "--loss", "--patch", "--foreground-prob", "--grad-clip",
              "--amp", "--keep-best", "--description", "--quiet"}
    # qSynth training (issue 10) added exactly these; every option of before is kept, none declared twice
    added = {"--synth", "--synth-config", "--synth-per-epoch", "--synth-workers", "--optimizer", "--weight-decay",
             "--lr-schedule"}
    names = option_names(TrainConfig)
    assert set(names) == before | added and len(names) == len(before) + len(added)
    from neuroshift.cli.main import build_parser

    args = build_parser().parse_args(["train", "--crop", "64x48", "--spacing", "native", "--mask-mode", "relative",
                                      "--arch", "demo", "--patch", "16", "--resume", "--epochs", "3"])
    from neuroshift.cli.train import build_config

    cfg = build_config(args)
    assert cfg.preprocessing == {"crop_hw": [64, 48], "spacing_mm": None, "brain_mask": {"mode": "relative"}}
    assert cfg.architecture == {"preset": "demo"} and cfg.patch_hw == [16, 16] and cfg.resume is True
    assert cfg.epochs == 3 and cfg.verbose is True and cfg.lr is None


# ------------------------------------------------------------------ checkpoints
def two_models(seed=0):
    torch.manual_seed(seed)
    g, d = torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)
    return {"generator": g, "discriminator": d}, {"generator": torch.optim.Adam(g.parameters(), lr=1e-2),
                                                  "discriminator": torch.optim.SGD(d.parameters(), lr=0.1,
                                                                                   momentum=0.9)}


def test_checkpoint_round_trip_with_two_models_and_two_optimisers(tmp_path):
    models, opts = two_models(0)
    for _ in range(2):  # give both optimisers state (Adam moments, SGD momentum)
        loss = models["discriminator"](models["generator"](torch.ones(4, 3))).sum()
        for o in opts.values():
            o.zero_grad()
        loss.backward()
        for o in opts.values():
            o.step()
    save_checkpoint(tmp_path / "c", models, opts, {"epoch": 2, "note": "x"})
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == ["model-discriminator.safetensors", "model-generator.safetensors",
                     "optimizer-discriminator.pt", "optimizer-generator.pt", "state.json"]
    m2, o2 = two_models(1)
    state = load_checkpoint(tmp_path / "c", m2, o2)
    assert state["epoch"] == 2 and state["models"] == ["discriminator", "generator"] and state["format"] == 2
    for k in models:
        for a, b in zip(models[k].state_dict().values(), m2[k].state_dict().values()):
            assert torch.equal(a, b)
    assert torch.equal(opts["generator"].state_dict()["state"][0]["exp_avg"],
                       o2["generator"].state_dict()["state"][0]["exp_avg"])
    assert torch.equal(opts["discriminator"].state_dict()["state"][0]["momentum_buffer"],
                       o2["discriminator"].state_dict()["state"][0]["momentum_buffer"])
    with pytest.raises(InputError, match="this run has"):
        load_checkpoint(tmp_path / "c", {"generator": m2["generator"]}, {"generator": o2["generator"]})
    (tmp_path / "c" / "model-generator.safetensors").write_bytes(b"broken")
    with pytest.raises(IntegrityError):
        load_checkpoint(tmp_path / "c", m2, o2)
    assert load_checkpoint(tmp_path / "none", m2, o2) is None


# ------------------------------------------------------------------ image pool
def test_image_pool_with_25_entries():
    pool = ImagePool(25, seed=0)
    first = torch.arange(20, dtype=torch.float32).reshape(20, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 20  # filling: returned as given
    second = 100 + torch.arange(10, dtype=torch.float32).reshape(10, 1)
    assert torch.equal(pool.query(second[:5]), second[:5]) and len(pool) == 25  # five more fill it to 25
    stored_before = set(torch.cat(pool.images).flatten().tolist())
    assert stored_before == set(range(20)) | {100., 101., 102., 103., 104.}
    # full: each image either comes back itself or is swapped for a stored one, which it replaces
    out = pool.query(second[5:])
    stored_after = set(torch.cat(pool.images).flatten().tolist())
    for img, got in zip(second[5:], out):
        if float(got) == float(img):
            assert float(img) not in stored_after
        else:
            assert float(got) in stored_before and float(got) not in stored_after and float(img) in stored_after
    assert len(pool) == 25
    third = 1000 + torch.arange(400, dtype=torch.float32).reshape(400, 1)
    out3 = pool.query(third)
    assert len(pool) == 25 and out3.shape == third.shape
    swapped = sum(float(a) != float(b) for a, b in zip(out3, third))
    assert 160 <= swapped <= 240  # probability 0.5 (binomial, 400 draws: mean 200, sd 10)
    # pass-through pools and swap probability 1
    assert torch.equal(ImagePool(0).query(third), third)
    always = ImagePool(25, swap_prob=1.0, seed=1)
    always.query(torch.arange(25, dtype=torch.float32).reshape(25, 1))
    back = float(always.query(torch.full((1, 1), -1.0)))
    stored = torch.cat(always.images).flatten().tolist()
    assert back in range(25) and back not in stored and stored.count(-1.0) == 1 and len(stored) == 25
    # seeded and resumable
    a, b = ImagePool(25, seed=3), ImagePool(25, seed=3)
    xs = [torch.randn(7, 1, 2, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    for x in xs[:5]:
        assert torch.equal(a.query(x), b.query(x))
    c = ImagePool(25, seed=99)
    c.load_state_dict(a.state_dict())
    for x in xs[5:]:
        assert torch.equal(a.query(x), c.query(x))
    with pytest.raises(ValueError):
        ImagePool(10).load_state_dict(a.state_dict())


# ------------------------------------------------------------------ history and splits
def test_epoch_log_rewinds_and_best_tracker(tmp_path):
    fields = ("epoch", "loss")
    for e, loss in ((1, 0.5), (2, 0.4), (3, 0.3)):
        append_epoch(tmp_path / "log.csv", {"epoch": e, "loss": loss, "other": 1}, fields)
    append_epoch(tmp_path / "log.csv", {"epoch": 2, "loss": 0.45}, fields)  # resumed after epoch 1
    assert [(r["epoch"], r["loss"]) for r in read_log(tmp_path / "log.csv")] == [("1", "0.5"), ("2", "0.45")]
    t = BestTracker("val", "min")
    assert t.update(1, {"val": 0.5}) and not t.update(2, {"val": 0.6}) and not t.update(3, {"val": float("nan")})
    assert t.update(4, {"val": 0.1}) and t.to_dict() == {"epoch": 4, "val": 0.1}
    assert BestTracker("val", "min").load(t.to_dict()).value == 0.1


def test_splits_are_saved_and_checked(tmp_path):
    ids = ["a", "b", "c", "d"]
    splits = kfold_splits(ids, 2, seed=0)
    save_splits(tmp_path, ids, splits)
    saved = load_splits(tmp_path)
    assert [sorted(s["train"] + s["validation"]) for s in saved] == [ids, ids]
    assert sorted(saved[0]["validation"] + saved[1]["validation"]) == ids
    check_splits(tmp_path, ids, splits)
    with pytest.raises(InputError, match="splits differ"):
        check_splits(tmp_path, ids, kfold_splits(ids, 2, seed=5) if kfold_splits(ids, 2, seed=5) != splits
                     else kfold_splits(ids, 4, seed=0))


# ------------------------------------------------------------------ the loop with a two-optimiser step
class ToyGanStep:
    """A toy adversarial step: G maps noise to 2D points, D scores them; an image pool feeds D."""

    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        self.g, self.d = torch.nn.Linear(3, 2), torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(),
                                                                   torch.nn.Linear(4, 1))
        self.models = {"generator": self.g, "discriminator": self.d}
        self.optimizers = {"generator": torch.optim.Adam(self.g.parameters(), lr=1e-2),
                           "discriminator": torch.optim.Adam(self.d.parameters(), lr=1e-2)}
        self.pool = ImagePool(25, seed=seed)
        self.real = torch.randn(64, 2, generator=torch.Generator().manual_seed(42)) * 0.5 + 2.0

    def batches(self, ctx):
        order = ctx.order(len(self.real))
        for i in range(0, len(order), 16):
            yield self.real[order[i:i + 16]], torch.randn(16, 3, generator=ctx.generator)

    def step(self, batch, ctx):
        real, z = batch
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        fake = self.g(z)
        loss_g = bce(self.d(fake), torch.ones(len(z), 1))
        self.optimizers["generator"].zero_grad()
        loss_g.backward()
        self.optimizers["generator"].step()
        pooled = self.pool.query(fake.detach())
        loss_d = bce(self.d(real), torch.ones(len(real), 1)) + bce(self.d(pooled), torch.zeros(len(pooled), 1))
        self.optimizers["discriminator"].zero_grad()
        loss_d.backward()
        self.optimizers["discriminator"].step()
        return StepOutput({"loss_g": float(loss_g.detach()), "loss_d": float(loss_d.detach())}, len(real))

    def validate(self, ctx):
        with torch.no_grad():
            return {"val_dist": float((self.g(torch.zeros(1, 3)) - 2.0).norm())}

    def extra_state(self):
        return {"pool": self.pool.state_dict()}

    def load_extra_state(self, state):
        self.pool.load_state_dict(state["pool"])


def test_two_optimiser_step_resumes_like_an_uninterrupted_run(tmp_path):
    assert isinstance(ToyGanStep(), TrainStep)

    def settings(name, epochs, **kw):
        return LoopSettings(epochs=epochs, directory=tmp_path / name, seed=7, fingerprint="fp1",
                            keep_best="val_dist", best_mode="min", verbose=False, **kw)

    full = run_loop(ToyGanStep(), settings("full", 4))
    run_loop(ToyGanStep(), settings("part", 2))
    with pytest.raises(InputError, match="--resume"):
        run_loop(ToyGanStep(), settings("part", 4))
    with pytest.raises(InputError, match="other settings"):
        run_loop(ToyGanStep(), LoopSettings(epochs=4, directory=tmp_path / "part", seed=7, fingerprint="fp2",
                                            resume=True, verbose=False))
    step = ToyGanStep(seed=0)
    resumed = run_loop(step, settings("part", 4, resume=True))
    assert resumed.resumed_from_epoch == 2 and resumed.steps == full.steps == 16
    assert [h["loss_g"] for h in resumed.history] == [h["loss_g"] for h in full.history]
    assert resumed.best == full.best and full.best["epoch"] in (1, 2, 3, 4)
    for name in ("generator", "discriminator"):
        for k in full.states[name]:
            assert torch.equal(full.states[name][k], resumed.states[name][k]), (name, k)
    state = json.loads((tmp_path / "part" / "state.json").read_text())
    assert state["epoch"] == 4 and state["complete"] and state["optimizers"] == ["discriminator", "generator"]
    assert [int(r["epoch"]) for r in read_log(tmp_path / "part" / "log.csv")] == [1, 2, 3, 4]
    assert set(read_log(tmp_path / "part" / "log.csv")[0]) >= {"loss_g", "loss_d", "val_dist", "items_per_s"}
    # keep-best returns the best epoch's weights, not the last
    best_epoch = full.best["epoch"]
    rerun = run_loop(ToyGanStep(), LoopSettings(epochs=best_epoch, directory=tmp_path / "upto", seed=7,
                                                fingerprint="fp1", verbose=False))
    for k in rerun.states["generator"]:
        assert torch.equal(rerun.states["generator"][k], full.states["generator"][k])
