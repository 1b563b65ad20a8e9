"""The packaged lesion bank: real MS lesion masks (Lesjak 2018, CC BY) as qSynth lesion labels."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.errors import InputError, IntegrityError
from neuroshift.io.volume import Volume
from neuroshift.qsynth.anatomy import template_labels
from neuroshift.qsynth.lesion_bank import (BANK_FILE, NOTICE_FILE, bank_label_maps, data_dir, load_lesion_bank,
                                           paste_bank_lesions)

VALIDATION_CASES = {"patient07", "patient19", "patient26"}  # real FLAIRs scored by dev/train_demo_qsynth.py


@pytest.fixture(scope="module")
def bank():
    return load_lesion_bank()


@pytest.fixture(scope="module")
def base():
    return template_labels()


def test_bank_holds_27_cases_without_the_validation_patients(bank, base):
    assert len(bank) == 27 and not VALIDATION_CASES & set(bank.names)
    assert bank.masks.shape == (27, *base.data.shape) and bank.masks.dtype == bool
    ml = bank.lesion_ml()
    # the provenance records each mask's volume at 1 mm and on the 2 mm grid; the packed bits agree with it
    cases = {c["case"]: c for c in bank.provenance["cases"]}
    assert ml == pytest.approx([cases[n]["ml_2mm"] for n in bank.names], abs=1e-6)
    for n in bank.names:  # 2 mm resampling keeps the lesion load of every large mask within 10 %
        if cases[n]["source_ml"] >= 5.0:
            assert cases[n]["ml_2mm"] == pytest.approx(cases[n]["source_ml"], rel=0.1)
        assert len(cases[n]["sha256"]) == 64
    assert 0.2 < ml.min() < 0.3 and 50 < ml.max() < 56  # patient29 0.24 ml ... patient12 54.8 ml
    assert "CC BY" in bank.provenance["source"] and "10.1007/s12021-017-9348-7" in bank.provenance["source"]


def test_notice_travels_with_the_bank():
    text = (data_dir() / NOTICE_FILE).read_text(encoding="utf-8")
    assert "CC-BY" in text and "10.1007/s12021-017-9348-7" in text and "no image" in text


def test_paste_replaces_only_grey_and_white_matter(bank, base):
    k = bank.names.index("patient12")
    lab, rec = paste_bank_lesions(base, np.random.default_rng(0), bank, index=k, flip_prob=0.0)
    before, after = np.asarray(base.data), np.asarray(lab.data)
    changed = before != after
    assert np.all(after[changed] == 4) and set(np.unique(before[changed])) <= {2, 3}
    assert np.array_equal(after == 1, before == 1) and np.array_equal(after == 0, before == 0)  # CSF, outside kept
    assert changed.sum() == np.sum(bank.masks[k] & np.isin(before, (2, 3)))
    assert rec["case"] == "patient12" and not rec["flipped"]
    assert 0.8 * rec["mask_ml"] < rec["placed_ml"] <= rec["mask_ml"]  # ~1 % of its voxels lie in template CSF
    assert lab.same_grid(base)


def test_flip_mirrors_the_mask_left_right(bank, base):
    k = bank.names.index("patient01")
    lab, rec = paste_bank_lesions(base, np.random.default_rng(0), bank, index=k, flip_prob=1.0)
    assert rec["flipped"]
    want = bank.masks[k][:, :, ::-1] & np.isin(np.asarray(base.data), (2, 3))
    assert np.array_equal(np.asarray(lab.data) == 4, want)


def test_paste_refuses_other_grids_and_bad_indices(bank, base):
    with pytest.raises(InputError, match="template grid"):
        paste_bank_lesions(Volume(np.asarray(base.data)[:-1], spacing=base.spacing), np.random.default_rng(0), bank)
    moved = Volume(np.asarray(base.data), spacing=base.spacing, origin=base.origin + 2.0, direction=base.direction)
    with pytest.raises(InputError, match="template grid"):  # same shape, another place: not the masks' grid
        paste_bank_lesions(moved, np.random.default_rng(0), bank)
    with pytest.raises(InputError, match="outside 0..26"):
        paste_bank_lesions(base, np.random.default_rng(0), bank, index=27)


def test_bank_label_maps_are_seeded_and_keep_the_lesion_load(bank, base):
    a = bank_label_maps(2, seed=5, bank=bank, indices=[bank.names.index("patient06")])
    b = bank_label_maps(2, seed=5, bank=bank, indices=[bank.names.index("patient06")])
    assert all(np.array_equal(x.data, y.data) for x, y in zip(a, b))
    assert not np.array_equal(a[0].data, a[1].data)  # different deformations (and flips) per map
    assert all(m.same_grid(base) and m.meta["lesion_case"] == "patient06" for m in a)
    mask_ml = bank.lesion_ml()[bank.names.index("patient06")]
    for m in a:  # the deformation moves the lesions with the anatomy, their load stays
        assert 0.75 * mask_ml < m.meta["lesion_ml"] < 1.1 * mask_ml
        assert m.meta["lesion_ml"] == pytest.approx(np.sum(np.asarray(m.data) == 4) * 0.008)


def test_damaged_bank_is_refused(tmp_path):
    raw = (data_dir() / BANK_FILE).read_bytes()
    bad = tmp_path / "bank.npz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IntegrityError, match="missing or damaged"):
        load_lesion_bank(bad)


def test_sample_data_writes_label_maps_with_their_notices(tmp_path, bank):
    import json

    from neuroshift.cli.main import main
    from neuroshift.io.files import read_volume

    out = tmp_path / "labels"
    assert main(["sample-data", str(out), "--label-maps", "2", "--lesions", "lesjak2018", "--seed", "4"]) == 0
    summary = json.loads((out / "label_maps.json").read_text(encoding="utf-8"))
    assert [m["file"] for m in summary["maps"]] == ["label_map_000.nii.gz", "label_map_001.nii.gz"]
    assert set(summary["notices"]) == {"NOTICE-ICBM152.txt", NOTICE_FILE}
    assert all((out / n).is_file() for n in summary["notices"])
    again = bank_label_maps(2, seed=4, bank=bank)
    for rec, want in zip(summary["maps"], again):  # the files are the seeded maps, geometry included
        vol = read_volume(out / rec["file"])
        assert np.array_equal(np.asarray(vol.data).astype(np.int16), want.data) and vol.same_grid(want)
        assert rec["lesion_case"] == want.meta["lesion_case"] and rec["lesion_case"] in bank.names
    gen = tmp_path / "gen"
    assert main(["sample-data", str(gen), "--label-maps", "1"]) == 0
    assert not (gen / NOTICE_FILE).exists() and json.loads((gen / "label_maps.json").read_text())["maps"][0]["lesions"] > 0
    assert main(["sample-data", str(tmp_path / "bad"), "--label-maps", "0"]) == 2
    assert not (tmp_path / "bad").exists()
