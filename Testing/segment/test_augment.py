"""The papers' 2D augmentation: seeded, reproducible, label-consistent (nearest neighbour for labels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuroshift.segment.augment import (AugmentConfig, RandomAffine2D, apply_params, augment_slice,
                                        forward_matrices, sample_params)


def blobs(n=4, h=48, w=40, seed=0):
    """Smooth images with blob labels (image = 100 * label + smooth background)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    labels = np.zeros((n, 1, h, w), np.uint8)
    for b in range(n):
        for _ in range(3):
            cy, cx, r = rng.uniform(10, h - 10), rng.uniform(10, w - 10), rng.uniform(3, 6)
            labels[b, 0][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    images = (100.0 * labels + 0.5 * xx[None, None] + 0.2 * yy[None, None]).astype(np.float32)
    return images, labels


def test_same_seed_same_result_and_different_seed_differs():
    img, lab = blobs()
    aug = RandomAffine2D(AugmentConfig.preset("claustrum"))
    a_img, a_lab = aug(img, lab, 7)
    b_img, b_lab = aug(img, lab, 7)
    c_img, _ = aug(img, lab, 8)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.allclose(a_img, c_img)
    # a torch.Generator in the same state gives the same maps as the int seed
    g = torch.Generator().manual_seed(7)
    t_img, t_lab = aug(torch.from_numpy(img), torch.from_numpy(lab), g)
    assert np.array_equal(t_img.numpy(), a_img) and np.array_equal(t_lab.numpy(), a_lab)


def test_labels_stay_binary_and_follow_the_image():
    img, lab = blobs(n=6)
    aug = RandomAffine2D(AugmentConfig.preset("wmh"))
    out_img, out_lab = aug(img, lab, 3)
    assert out_lab.dtype == lab.dtype and set(np.unique(out_lab)) <= {0, 1}
    assert out_img.shape == img.shape and out_lab.shape == lab.shape
    # warp the label as an image (bilinear) and as a label (nearest): they agree almost everywhere
    as_img, as_lab = aug(lab.astype(np.float32), lab, 3)
    agree = ((as_img > 0.5) == (as_lab > 0)).mean()
    assert agree > 0.99
    # the foreground area is preserved up to the scale range (0.9-1.1 per axis) and edge effects
    ratio = out_lab.sum() / lab.sum()
    assert 0.7 < ratio < 1.4


def test_no_augmentation_is_identity_and_flip_is_exact():
    img, lab = blobs()
    same_img, same_lab = RandomAffine2D(AugmentConfig.preset("none"))(img, lab, 1)
    assert np.array_equal(same_img, img) and np.array_equal(same_lab, lab)
    flip = AugmentConfig(rotation_deg=0, shear_deg=0, scale=(1, 1), translate=0, flip_prob=1.0)
    f_img, f_lab = RandomAffine2D(flip)(img, lab, 1)
    assert np.array_equal(f_img, img[..., ::-1]) and np.array_equal(f_lab, lab[..., ::-1])
    flip_rows = AugmentConfig(rotation_deg=0, shear_deg=0, scale=(1, 1), translate=0, flip_prob=1.0, flip_axis=-2)
    r_img, _ = RandomAffine2D(flip_rows)(img, lab, 1)
    assert np.array_equal(r_img, img[..., ::-1, :])


def test_quarter_turn_matches_rot90_with_nearest_labels():
    lab = np.zeros((1, 1, 21, 21), np.uint8)
    lab[0, 0, 3:8, 5:15] = 1
    params = dict(rotation=torch.tensor([math.pi / 2], dtype=torch.float64), shear=torch.zeros(1, dtype=torch.float64),
                  scale_x=torch.ones(1, dtype=torch.float64), scale_y=torch.ones(1, dtype=torch.float64),
                  translate_x=torch.zeros(1, dtype=torch.float64), translate_y=torch.zeros(1, dtype=torch.float64),
                  flip=torch.zeros(1, dtype=torch.bool))
    _, out = apply_params(torch.zeros(1, 1, 21, 21), torch.from_numpy(lab), params)
    out = out.numpy()[0, 0]
    # forward map R(+90°) = [[0, -1], [1, 0]] on (x = column, y = row down): (x, y) -> (-y, x), so a
    # point right of the centre moves below it: clockwise on screen, np.rot90(k=-1) (one direction only)
    assert np.array_equal(out, np.rot90(lab[0, 0], -1))
    assert not np.array_equal(out, np.rot90(lab[0, 0], 1))
    dot = np.zeros((1, 1, 21, 21), np.uint8)
    dot[0, 0, 10, 15] = 1  # row 10 (centre), column 15: 5 pixels right of the centre
    _, moved = apply_params(torch.zeros(1, 1, 21, 21), torch.from_numpy(dot), params)
    assert np.argwhere(moved.numpy()[0, 0]).tolist() == [[15, 10]]  # 5 pixels below the centre


def test_parameter_ranges_are_respected():
    cfg = AugmentConfig(rotation_deg=15, shear_deg=4, scale=(0.9, 1.1), translate=0.1, flip_prob=0.5)
    p = sample_params(2000, cfg, torch.Generator().manual_seed(0))
    assert p["rotation"].abs().max() <= math.radians(15) + 1e-12
    assert p["shear"].abs().max() <= math.radians(4) + 1e-12
    for k in ("scale_x", "scale_y"):
        assert 0.9 <= float(p[k].min()) and float(p[k].max()) <= 1.1
    for k in ("translate_x", "translate_y"):
        assert float(p[k].abs().max()) <= 0.1
    assert 0.4 < float(p["flip"].double().mean()) < 0.6
    m = forward_matrices(p, (100, 80))
    assert m.shape == (2000, 3, 3) and float(m[:, 0, 2].abs().max()) <= 8.0 + 1e-9  # 10 % of the width


def test_numpy_single_slice_helper_is_seeded():
    img, lab = blobs(n=1)
    a = augment_slice(img[0, 0], lab[0, 0], 5)
    b = augment_slice(img[0, 0], lab[0, 0], np.random.default_rng(1))
    c = augment_slice(img[0, 0], lab[0, 0], 5)
    assert np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1])
    assert a[0].shape == img[0, 0].shape and a[1].dtype == np.uint8
    assert not np.array_equal(a[0], b[0])


def test_config_from_dict_and_presets():
    cfg = AugmentConfig.from_dict({"preset": "neonatal", "rotation_deg": 10})
    assert cfg.rotation_deg == 10 and cfg.shear_deg == 4.0 and cfg.translate == 0.1
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        AugmentConfig.from_dict({"rotate": 3})
    with pytest.raises(ValueError):
        AugmentConfig.preset("nope")
