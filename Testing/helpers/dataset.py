"""Test helpers moved out of test_dataset.py, which other tests imported them from (issue 16).

Names: toy_volumes, write_subject.
"""

from __future__ import annotations

import numpy as np

from neuroshift.io.files import write_volume
from neuroshift.io.volume import Volume


def toy_volumes(seed=0, shape=(12, 30, 26)):
    """FLAIR/T1-like volumes (k, j, i) of an ellipsoid 'brain' with bright blob 'lesions' (label 1) and label 2."""
    rng = np.random.default_rng(seed)
    k, j, i = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]].astype(float)
    c = [(s - 1) / 2 for s in shape]
    brain = ((k - c[0]) / (shape[0] * 0.45)) ** 2 + ((j - c[1]) / (shape[1] * 0.42)) ** 2 + \
        ((i - c[2]) / (shape[2] * 0.42)) ** 2 <= 1
    label = np.zeros(shape, np.uint8)
    for _ in range(3):
        ck, cj, ci = rng.uniform(3, shape[0] - 3), rng.uniform(8, shape[1] - 8), rng.uniform(8, shape[2] - 8)
        label[((k - ck) ** 2 + (j - cj) ** 2 + (i - ci) ** 2 <= 4.0) & brain] = 1
    label[0:2][brain[0:2]] = 0
    flair = np.where(brain, 300.0, 0.0) + 400.0 * label + rng.normal(0, 5, shape)
    t1 = np.where(brain, 600.0, 0.0) - 200.0 * label + rng.normal(0, 5, shape)
    geo = dict(spacing=(1.0, 1.2, 2.0), origin=(10.0, -5.0, 3.0))
    return (Volume(flair.astype(np.float32), **geo), Volume(np.abs(t1).astype(np.float32), **geo),
            Volume(label, **geo), Volume(brain.astype(np.uint8), **geo))


def write_subject(folder, seed=0, label_name="wmh.nii.gz", t1_name="T1.nii.gz"):
    folder.mkdir(parents=True, exist_ok=True)
    flair, t1, label, _ = toy_volumes(seed)
    write_volume(flair, folder / "FLAIR.nii.gz")
    write_volume(t1, folder / t1_name)
    write_volume(label, folder / label_name)
    return folder
