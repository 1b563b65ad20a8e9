"""Slice datasets: subject discovery (lists, CSV, folders), inference preprocessing, views, slice selection."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from neuroshift.errors import InputError
from neuroshift.segment.dataset import (SliceDataset, Subject, discover_subjects, positive_mask, prepare_subject,
                                        select_slices, subjects_from_csv, subjects_from_folder)

from helpers.dataset import toy_volumes, write_subject

MANIFEST = {"task": "toy", "input_channels": ["FLAIR", "T1"],
            "preprocessing": {"orientation": "RAS", "spacing_mm": None, "crop_hw": [40, 36], "zscore": True,
                              "brain_mask": {"mode": "relative"}, "pad_value": 0.0}}


def test_subjects_from_lists_csv_and_folders(tmp_path):
    for n in range(3):
        write_subject(tmp_path / "data" / f"sub-{n}", seed=n, t1_name="T1w.nii.gz" if n == 1 else "T1.nii.gz")
    subs = subjects_from_folder(tmp_path / "data", ["FLAIR", "T1"])
    assert [s.id for s in subs] == ["sub-0", "sub-1", "sub-2"]
    assert subs[1].images["T1"].name == "T1w.nii.gz" and subs[0].label.name == "wmh.nii.gz"
    one = subjects_from_folder(tmp_path / "data" / "sub-2", ["FLAIR", "T1"])
    assert len(one) == 1 and one[0].id == "sub-2"

    rows = [{"subject": "a", "flair": "data/sub-0/FLAIR.nii.gz", "t1": "data/sub-0/T1.nii.gz",
             "label": "data/sub-0/wmh.nii.gz", "group": "p1"},
            {"subject": "b", "flair": "data/sub-2/FLAIR.nii.gz", "t1": "data/sub-2/T1.nii.gz",
             "label": "data/sub-2/wmh.nii.gz", "group": "p1"}]
    with open(tmp_path / "train.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    subs = discover_subjects([str(tmp_path / "train.csv")], None, ["FLAIR", "T1"])
    assert [s.id for s in subs] == ["a", "b"] and {s.group_id for s in subs} == {"p1"}
    assert subs[0].images["FLAIR"] == tmp_path / "data" / "sub-0" / "FLAIR.nii.gz"

    d = tmp_path / "data"
    subs = discover_subjects([f"{d}/sub-0/FLAIR.nii.gz,{d}/sub-0/T1.nii.gz", f"{d}/sub-2/FLAIR.nii.gz,{d}/sub-2/T1.nii.gz"],
                             [f"{d}/sub-0/wmh.nii.gz", f"{d}/sub-2/wmh.nii.gz"], ["FLAIR", "T1"])
    assert [s.id for s in subs] == ["sub-0", "sub-2"]
    with pytest.raises(InputError, match="channel"):
        discover_subjects([f"{d}/sub-0/FLAIR.nii.gz"], [f"{d}/sub-0/wmh.nii.gz"], ["FLAIR", "T1"])
    with pytest.raises(InputError, match="label"):
        discover_subjects([f"{d}/sub-0/FLAIR.nii.gz,{d}/sub-0/T1.nii.gz"], [], ["FLAIR", "T1"])


def test_prepare_subject_uses_the_inference_chain():
    flair, t1, label, _ = toy_volumes(1)
    label.data[5, 10, 10] = 2  # "other pathology"
    p = prepare_subject(Subject("s", {"FLAIR": flair, "T1": t1}, label), MANIFEST, positive_labels=[1],
                        ignore_labels=[2])
    assert p.channels.shape == (2,) + flair.data.shape  # LPS-identity input -> RAS flips, same sizes
    for c in range(2):
        vals = p.channels[c][p.mask]
        assert abs(vals.mean()) < 0.5 and abs(vals.std() - 1) < 0.5  # union mask; per-channel masks are exact
    assert set(np.unique(p.label)) <= {0, 1} and p.label.sum() == (label.data == 1).sum()
    assert p.ignore is not None and p.ignore.sum() == 1
    # RAS canonical order flips i and j of an LPS-identity grid
    assert np.array_equal(p.label, (label.data == 1)[:, ::-1, ::-1])
    assert p.histogram and set(p.histogram["channels"]) == {"FLAIR", "T1"}


def test_slice_dataset_views_crop_and_selection():
    subs = []
    for n in range(2):
        flair, t1, label, brain = toy_volumes(n)
        subs.append(prepare_subject(Subject(f"s{n}", {"FLAIR": flair, "T1": t1}, label, brain), MANIFEST))
    ds = SliceDataset(subs, "axial", (40, 36), slices="all")
    assert len(ds) == 2 * 12 and ds.images.shape[1:] == (2, 40, 36) and ds.labels.shape[1:] == (1, 40, 36)
    x, y = ds[3]
    assert tuple(x.shape) == (2, 40, 36) and tuple(y.shape) == (1, 40, 36)
    # every foreground voxel survives crop/pad
    assert int(ds.labels.sum()) == int(sum(s.label.sum() for s in subs))
    cor = SliceDataset(subs, "coronal", (16, 28), slices="all")
    assert len(cor) == 2 * 30 and cor.images.shape[-2:] == (16, 28)
    pos = SliceDataset(subs, "axial", (40, 36), slices="positive")
    assert len(pos) == pos.positive_slices and 0 < len(pos) < len(ds)
    brain = SliceDataset(subs, "axial", (40, 36), slices="brain")
    assert len(pos) <= len(brain) <= len(ds)
    assert list(ds.slice_subject[:12]) == [0] * 12 and list(ds.slice_index[:12]) == list(range(12))
    xb, yb = ds.batch([0, 5, 7])
    assert tuple(xb.shape) == (3, 2, 40, 36) and yb.dtype.is_floating_point


def test_select_slices_modes_and_seeded_negatives():
    lab = np.zeros((10, 4, 4), bool)
    lab[[2, 5], 1, 1] = True
    mask = np.zeros((10, 4, 4), bool)
    mask[1:9] = True
    assert list(select_slices(lab, mask, "positive")) == [2, 5]
    assert list(select_slices(lab, mask, "brain")) == list(range(1, 9))
    assert list(select_slices(lab, mask, "all")) == list(range(10))
    half = select_slices(lab, mask, "brain", 0.5, np.random.default_rng(0))
    assert {2, 5} <= set(half) and len(half) == 2 + 3
    again = select_slices(lab, mask, "brain", 0.5, np.random.default_rng(0))
    assert np.array_equal(half, again)
    with pytest.raises(InputError):
        select_slices(lab, mask, "some")


def test_positive_mask():
    lab = np.array([0, 1, 2, 3])
    assert positive_mask(lab, None).tolist() == [False, True, True, True]
    assert positive_mask(lab, [1]).tolist() == [False, True, False, False]
    assert positive_mask(np.array([0.2, 0.7]), None).tolist() == [False, True]


def test_patch_batches_are_seeded_and_centred_on_foreground():
    subs = []
    for n in range(2):
        flair, t1, label, brain = toy_volumes(n)
        subs.append(prepare_subject(Subject(f"s{n}", {"FLAIR": flair, "T1": t1}, label, brain), MANIFEST))
    ds = SliceDataset(subs, "axial", (40, 36), slices="positive")
    idx = list(range(len(ds)))
    x1, y1 = ds.patch_batch(idx, (16, 16), np.random.default_rng(3), foreground_prob=1.0)
    x2, y2 = ds.patch_batch(idx, (16, 16), np.random.default_rng(3), foreground_prob=1.0)
    assert tuple(x1.shape) == (len(ds), 2, 16, 16) and tuple(y1.shape) == (len(ds), 1, 16, 16)
    assert np.array_equal(x1.numpy(), x2.numpy()) and np.array_equal(y1.numpy(), y2.numpy())
    assert (y1.reshape(len(ds), -1).sum(1) > 0).all()  # every patch of a positive slice holds foreground
    # patches are cut from the slices: image and label stay aligned
    full_x, full_y = ds.batch(idx)
    for n in range(len(ds)):
        hits = [(a, b) for a in range(40 - 15) for b in range(36 - 15)
                if np.array_equal(full_x[n, :, a:a + 16, b:b + 16].numpy(), x1[n].numpy())]
        assert hits and np.array_equal(full_y[n, :, hits[0][0]:hits[0][0] + 16, hits[0][1]:hits[0][1] + 16].numpy(),
                                       y1[n].numpy())
    big, _ = ds.patch_batch([0], (64, 64), np.random.default_rng(0))
    assert tuple(big.shape[-2:]) == (40, 36)  # never larger than the slice
