"""qSynth anatomical variety: template labels, elastic deformations, generative MS-like lesions (SYNTHETIC)."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.io.volume import Volume
from neuroshift.qsynth.anatomy import LesionModel, add_lesions, deform_labels, random_label_maps, template_labels


@pytest.fixture(scope="module")
def base():
    return template_labels()


def small_head(shape=(24, 40, 40)) -> Volume:
    k, j, i = np.indices(shape, dtype=float)
    c = [(n - 1) / 2 for n in shape]
    r = np.sqrt(sum(((a - m) / (n * 0.45)) ** 2 for a, m, n in zip((k, j, i), c, shape)))
    lab = np.zeros(shape, np.int16)
    lab[r < 1.0], lab[r < 0.85], lab[r < 0.7], lab[r < 0.15] = 2, 3, 3, 1  # GM rim, WM, central "ventricle"
    return Volume(lab, spacing=(2.0, 2.0, 2.0))


def test_template_labels_are_the_template_tissues(base):
    assert base.data.shape == (86, 99, 81) and set(np.unique(base.data)) == {0, 1, 2, 3}
    counts = np.bincount(base.data.ravel())
    assert counts[2] > counts[3] > counts[1] > 0  # GM > WM > CSF voxels in the 2 mm ICBM152 brain


def test_deformation_keeps_labels_grid_and_tissue_volumes(base):
    g = np.random.default_rng(0)
    d = deform_labels(base, g, amplitude_mm=6.0)
    assert d.same_grid(base) and set(np.unique(d.data)) == {0, 1, 2, 3}
    changed = float(np.mean(d.data != base.data))
    assert 0.01 < changed < 0.2
    for v in (1, 2, 3):
        assert np.sum(d.data == v) == pytest.approx(np.sum(base.data == v), rel=0.15)
    same = deform_labels(base, np.random.default_rng(0), amplitude_mm=0.0)
    np.testing.assert_array_equal(same.data, base.data)


def test_lesions_replace_white_matter_only_and_are_seeded():
    head = small_head()
    a, rec = add_lesions(head, np.random.default_rng(4))
    b, _ = add_lesions(head, np.random.default_rng(4))
    np.testing.assert_array_equal(a.data, b.data)
    les = a.data == 4
    assert les.any() and np.all(head.data[les] == 3)
    assert np.all(a.data[~les] == head.data[~les])
    placed = sum(r["placed_ml"] for r in rec)
    assert placed == pytest.approx(les.sum() * 8e-3, rel=0.25)  # overlaps counted once in the mask


def test_lesion_count_and_volume_follow_the_model():
    head = small_head()
    m = LesionModel(mean_count=5.0, median_ml=0.1, log_sd=0.8, volume_ml=(0.001, 100.0))
    counts, vols = [], []
    for s in range(60):
        _, rec = add_lesions(head, np.random.default_rng(s), m)
        counts.append(len(rec))
        vols += [r["target_ml"] for r in rec]
    assert np.mean(counts) == pytest.approx(6.0, abs=0.6)  # 1 + Poisson(5)
    assert np.median(vols) == pytest.approx(0.1, rel=0.2)
    assert np.std(np.log(vols)) == pytest.approx(0.8, rel=0.15)


def test_random_label_maps_differ_and_carry_lesions():
    maps = random_label_maps(2, seed=3)
    assert not np.array_equal(maps[0].data, maps[1].data)
    for m in maps:
        assert set(np.unique(m.data)) <= {0, 1, 2, 3, 4} and m.meta["lesions"] >= 1 and (m.data == 4).any()
    again = random_label_maps(1, seed=3)
    np.testing.assert_array_equal(again[0].data, maps[0].data)
