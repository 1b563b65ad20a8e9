"""``neuroshift train --synth qsynth``: training from label maps alone with on-the-fly SYNTHETIC images
(paper 002): seeded per-epoch data independent of the worker count, AdamW + poly LR, CLI flags (tiny, CPU)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from neuroshift.io.volume import Volume
from neuroshift.qsynth import QSynthConfig
from neuroshift.segment.synth_data import SynthSource, label_only_subjects
from neuroshift.segment.train import TrainConfig, resolve, train
from neuroshift.segment.train_config import model_manifest

TINY = {"in_channels": 1, "encoder": [4, 8, 8], "decoder": [8, 4], "first_kernel": 3, "kernel": 3,
        "bottleneck_kernel": 4}
PRE = {"orientation": "RAS", "spacing_mm": None, "crop_hw": [32, 32], "zscore": True,
       "brain_mask": {"mode": "relative"}, "pad_value": 0.0}


def head(seed: int, shape=(20, 32, 32)) -> Volume:
    """SYNTHETIC tissue labels (qSynth convention): CSF shell, GM, WM core, two lesion blobs; 2 mm voxels."""
    g = np.random.default_rng(seed)
    k, j, i = np.indices(shape, dtype=float)
    c = [(n - 1) / 2 for n in shape]
    r = np.sqrt(((k - c[0]) / (shape[0] * 0.45)) ** 2 + ((j - c[1]) / (shape[1] * 0.45)) ** 2
                + ((i - c[2]) / (shape[2] * 0.45)) ** 2)
    lab = np.zeros(shape, np.int16)
    lab[r < 1.0] = 1
    lab[r < 0.85] = 2
    lab[r < 0.65] = 3
    for _ in range(2):
        p = np.array(c) + g.uniform(-3, 3, 3)
        lab[((k - p[0]) ** 2 + (j - p[1]) ** 2 + (i - p[2]) ** 2) < g.uniform(2.0, 3.5) ** 2] = 4
    return Volume(lab, spacing=(2.0, 2.0, 2.0))


def config(tmp_path, **kw):
    base = dict(task="lesion", labels=[head(s) for s in range(3)], channels=["FLAIR"], views=["axial"],
                models_per_view=1, epochs=2, batch_size=8, lr=1e-2, architecture=TINY, preprocessing=PRE,
                augmentation={"preset": "none"}, out=str(tmp_path / "pkg"), device="cpu", seed=1, verbose=False,
                synth="qsynth", val_fraction=0.34, optimizer="adamw", lr_schedule="poly", loss="dice+bce")
    base.update(kw)
    return TrainConfig(**base)


def test_resolve_sets_the_qsynth_target_and_paper_002_optimiser(tmp_path):
    r = resolve(config(tmp_path))
    assert r.positive_labels == [4] and r.ignore_labels is None
    assert r.optimizer == "adamw" and r.weight_decay == 0.01 and r.lr_schedule == "poly"
    assert resolve(config(tmp_path, positive_labels=[3])).positive_labels == [3]
    assert resolve(config(tmp_path, optimizer="adam", weight_decay=None)).weight_decay == 0.0


def test_poly_schedule_value():
    from neuroshift.segment.train_step import SegmentationStep

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    fake = types.SimpleNamespace(r=types.SimpleNamespace(lr_schedule="poly", epochs=2, lr=0.1),
                                 optimizers={"optimizer": opt})
    SegmentationStep._schedule(fake, types.SimpleNamespace(epoch=1), 2, 4)  # 3/4 of all steps done
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.25 ** 0.9)
    SegmentationStep._schedule(fake, types.SimpleNamespace(epoch=0), 0, 4)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_epoch_data_are_seeded_fresh_each_epoch_and_independent_of_workers(tmp_path):
    r = resolve(config(tmp_path))
    man = model_manifest(r)
    labels = [(f"h{s}", head(s)) for s in range(2)]
    qcfg = QSynthConfig()
    src0 = SynthSource(labels, [], man, qcfg, positive_labels=[4], ignore_labels=None, workers=0)
    src2 = SynthSource(labels, [], man, qcfg, positive_labels=[4], ignore_labels=None, workers=2)
    a, b = src0.subjects(seed=5, epoch=1), src2.subjects(seed=5, epoch=1)
    assert [s.id for s in a] == [s.id for s in b] == ["h0-qsynth-e1-0", "h1-qsynth-e1-1"]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.channels, y.channels)
        np.testing.assert_array_equal(x.label, y.label)
    c = src0.subjects(seed=5, epoch=2)
    assert not np.array_equal(a[0].channels, c[0].channels)
    # the target is the (deformed) lesion label: about the lesion volume of the input map
    lesion_vox = int((head(0).data == 4).sum())
    assert 0.6 * lesion_vox <= int(a[0].label.sum()) <= 1.4 * lesion_vox
    # z-scored inside the brain (the inference chain's preprocessing)
    brain = a[0].mask.astype(bool)
    assert float(a[0].channels[0][brain].mean()) == pytest.approx(0.0, abs=1e-3)
    # the brain mask is the labelled head, even with the absolute (scanner-scaled) thresholds of the wmh task
    absolute = dict(man, preprocessing={**man["preprocessing"], "brain_mask": True})
    src = SynthSource(labels[:1], [], absolute, qcfg, positive_labels=[4], ignore_labels=None)
    s0 = src.subjects(seed=5, epoch=1)[0]
    assert abs(int(s0.mask.sum()) - int((head(0).data > 0).sum())) <= 0.1 * int((head(0).data > 0).sum())


def test_training_from_labels_alone_writes_a_package_with_synthesis_provenance(tmp_path):
    subs = label_only_subjects([head(0)], ["FLAIR"], QSynthConfig(), seed=0)
    assert subs[0].images["FLAIR"].meta["synthetic"].startswith("SYNTHETIC")
    from neuroshift.qsynth import generate

    again = generate(head(0), QSynthConfig(), seed=0)  # label = the deformed label the image was rendered from
    np.testing.assert_array_equal(subs[0].label.data, again["labels"].data)
    np.testing.assert_array_equal(subs[0].images["FLAIR"].data, again["image"].data)
    with pytest.raises(Exception, match="single-channel"):
        label_only_subjects([head(0)], ["FLAIR", "T1"], QSynthConfig(), seed=0)
    res = train(config(tmp_path))
    from neuroshift.segment.package import load_package

    m = load_package(res.packages[0], "cpu").manifest
    t = m["training"]
    assert t["synthesis"]["method"] == "qsynth"
    assert t["optimizer"] == {"name": "AdamW", "lr": 0.01, "weight_decay": 0.01,
                              "schedule": "poly lr (1 - n/N)^0.9"}
    assert len(t["data"]["train_subjects"]) == 2 and len(t["data"]["validation_subjects"]) == 1
    assert t["members"][0]["steps"] > 0 and 0.0 <= t["members"][0]["final"]["val_dsc"] <= 1.0


def test_cli_has_the_synth_flags():
    import argparse

    from neuroshift.cli.train import build_config
    from neuroshift.segment.train_config import TrainConfig as TC
    from neuroshift.training.config import add_arguments

    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_arguments(p, TC)
    args = p.parse_args(["--synth", "qsynth", "--labels", "a.nii.gz", "--synth-workers", "2", "--optimizer",
                         "adamw", "--lr-schedule", "poly", "--synth-per-epoch", "3"])
    cfg = build_config(args)
    assert (cfg.synth, cfg.synth_workers, cfg.optimizer, cfg.lr_schedule, cfg.synth_per_epoch) == \
        ("qsynth", 2, "adamw", "poly", 3)
    with pytest.raises(SystemExit):
        p.parse_args(["--synth", "bogus"])
