"""Tissue fractions from label maps and PV maps: values, grids and every class of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.errors import GeometryError, NonFiniteError
from neuroshift.io.files import write_volume
from neuroshift.io.volume import Volume
from neuroshift.tissues.maps import (
    DEFAULT_LABELS,
    FractionError,
    fractions_from_labels,
    fractions_from_pv,
    labels_from_fractions,
    parse_label_mapping,
    validate_fractions,
)


def _grid(data, **kw):
    return Volume(data, spacing=kw.get("spacing", (1.0, 1.2, 2.5)), origin=kw.get("origin", (10.0, -20.0, 5.0)),
                  direction=np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], float))


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    return _grid(rng.integers(0, 6, size=(6, 7, 8)).astype(np.int16))


def test_default_labels_match_contract():
    assert DEFAULT_LABELS == {"CSF": 1, "GM": 2, "WM": 3, "lesion": 4}


def test_fractions_from_labels_values_and_grid(labels):
    fr = fractions_from_labels(labels, {"CSF": 1, "GM": [2, 5], "WM": 3, "lesion": 4})
    assert set(fr) == {"CSF", "GM", "WM", "lesion"}
    for t, v in fr.items():
        assert v.data.dtype == np.float32
        assert v.same_grid(labels)
    np.testing.assert_array_equal(fr["GM"].data, np.isin(labels.data, [2, 5]).astype(np.float32))
    np.testing.assert_array_equal(fr["CSF"].data, (labels.data == 1).astype(np.float32))
    total = sum(v.data for v in fr.values())
    np.testing.assert_array_equal(total, (labels.data > 0).astype(np.float32))
    validate_fractions(fr)


def test_default_mapping_and_case_insensitive_names(labels):
    labels = labels.with_data(np.where(labels.data > 4, 0, labels.data))  # label 5 is unknown to the default map
    a = fractions_from_labels(labels)
    b = fractions_from_labels(labels, {"csf": 1, "gm": 2, "wm": 3, "Lesion": 4})
    for t in a:
        np.testing.assert_array_equal(a[t].data, b[t].data)


def test_labels_round_trip(labels):
    lab = labels.with_data(np.where(labels.data > 4, 0, labels.data))
    back = labels_from_fractions(fractions_from_labels(lab))
    np.testing.assert_array_equal(back.data, lab.data)


@pytest.mark.parametrize("mapping, message", [
    ({"CSF": 1, "GM": 1}, "mapped to both"),
    ({"bone": 7}, "unknown tissue"),
    ({"GM": 0}, "background"),
    ({"GM": 2.5}, "not an integer"),
    ({"GM": []}, "no label values"),
    ({}, "empty"),
])
def test_bad_mappings(labels, mapping, message):
    with pytest.raises(FractionError, match=message):
        fractions_from_labels(labels, mapping)


def test_mapped_labels_absent(labels):
    with pytest.raises(FractionError, match="none of the mapped labels"):
        fractions_from_labels(labels, {"GM": 40, "WM": 41})


def test_probability_map_given_as_label_map(labels):
    with pytest.raises(FractionError, match="non-integer"):
        fractions_from_labels(labels.with_data(labels.data * 0.3), {"GM": 1})


def test_nan_label_map(labels):
    data = labels.data.astype(np.float32)
    data[0, 0, 0] = np.nan
    with pytest.raises(NonFiniteError):
        fractions_from_labels(labels.with_data(data))


def test_parse_label_mapping():
    assert parse_label_mapping("CSF=1,GM=2|42,WM=3,lesion=4") == {"CSF": [1], "GM": [2, 42], "WM": [3], "lesion": [4]}
    for bad, msg in (("GM", "TISSUE=LABEL"), ("GM=a", "not an integer"), ("GM=1,gm=2", "twice"), ("", "empty")):
        with pytest.raises(FractionError, match=msg):
            parse_label_mapping(bad)


# ------------------------------------------------------------------ PV maps
@pytest.fixture
def pv_files(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.uniform(size=(3, 5, 6, 7))
    raw /= raw.sum(axis=0) * rng.uniform(1.0, 1.3)  # sums <= 1
    paths = {}
    for t, arr in zip(("CSF", "GM", "WM"), raw):
        p = tmp_path / f"pv_{t}.nii.gz"
        write_volume(_grid(arr.astype(np.float32)), p)
        paths[t] = p
    return paths, raw


def test_fractions_from_pv_reads_values(pv_files):
    paths, raw = pv_files
    fr = fractions_from_pv({k: str(v) for k, v in paths.items()})
    for t, arr in zip(("CSF", "GM", "WM"), raw):
        np.testing.assert_allclose(fr[t].data, arr, atol=1e-6)
        assert fr[t].data.dtype == np.float32
    assert fr["CSF"].same_grid(fr["WM"])


def test_fractions_from_pv_accepts_volumes(pv_files):
    paths, raw = pv_files
    vols = {t: _grid(arr.astype(np.float32)) for t, arr in zip(("CSF", "GM", "WM"), raw)}
    fr = fractions_from_pv(vols)
    np.testing.assert_allclose(fr["GM"].data, raw[1], atol=1e-6)


def test_pv_grid_mismatch(pv_files, tmp_path):
    paths, raw = pv_files
    shifted = tmp_path / "shifted.nii.gz"
    write_volume(_grid(raw[2].astype(np.float32), origin=(12.0, -20.0, 5.0)), shifted)
    with pytest.raises(GeometryError, match="origins differ"):
        fractions_from_pv({"CSF": paths["CSF"], "GM": paths["GM"], "WM": shifted})
    small = tmp_path / "small.nii.gz"
    write_volume(_grid(raw[2][:, :, :5].astype(np.float32)), small)
    with pytest.raises(GeometryError, match="grid sizes differ"):
        fractions_from_pv({"CSF": paths["CSF"], "WM": small})
    other = _grid(np.zeros((5, 6, 8), np.float32))
    with pytest.raises(GeometryError):
        fractions_from_pv(paths, reference=other)


def test_pv_range_errors_with_hints(tmp_path):
    for scale, hint in ((100.0, "percent"), (255.0, "8-bit"), (-1.0, "")):
        p = tmp_path / f"bad{abs(int(scale))}.nii.gz"
        write_volume(_grid(np.full((3, 3, 3), 1.0 * scale, np.float32)), p)  # pure voxels: 100 % or 255
        with pytest.raises(FractionError, match=hint or "must lie in"):
            fractions_from_pv({"GM": p})


def test_pv_small_overshoot_is_clipped():
    v = _grid(np.full((3, 3, 3), 1.0005, np.float32))
    fr = fractions_from_pv({"WM": v})
    assert fr["WM"].data.max() == 1.0


def test_pv_sum_above_one(pv_files):
    vols = {t: _grid(np.full((3, 3, 3), 0.6, np.float32)) for t in ("GM", "WM")}
    with pytest.raises(FractionError, match="sum to more than 1"):
        fractions_from_pv(vols)
    fractions_from_pv(vols, sum_tolerance=0.25)  # accepted with a looser tolerance


def test_pv_nan(tmp_path):
    data = np.full((3, 3, 3), 0.5, np.float32)
    data[1, 1, 1] = np.nan
    # NRRD: ITK's NIfTI reader turns NaN into 0 on read, so the NaN check is exercised with NRRD
    p = tmp_path / "nan.nrrd"
    write_volume(_grid(data), p)
    with pytest.raises(NonFiniteError, match="GM map"):
        fractions_from_pv({"GM": p})
    with pytest.raises(NonFiniteError):
        fractions_from_pv({"GM": _grid(data)})


def test_pv_missing_file_and_unknown_tissue(tmp_path, pv_files):
    from neuroshift.errors import UnreadableFileError

    with pytest.raises(UnreadableFileError):
        fractions_from_pv({"GM": tmp_path / "nope.nii.gz"})
    with pytest.raises(FractionError, match="unknown tissue"):
        fractions_from_pv({"fat": pv_files[0]["GM"]})
    with pytest.raises(FractionError, match="no partial-volume maps"):
        fractions_from_pv({})
