"""Geometry survives every round trip: NIfTI, NRRD, MINC, DICOM series, and MRML nodes."""

import json

import numpy as np
import pytest

from neuroshift.errors import DimensionError, GeometryError, NonFiniteError, UnreadableFileError
from neuroshift.io import Volume, read_volume, write_volume


def oblique_volume(dtype=np.float32) -> Volume:
    rng = np.random.default_rng(0)
    th = 0.3
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    data = (rng.random((5, 6, 7)) * 100).astype(dtype)
    return Volume(data, [0.5, 0.75, 1.25], [1.5, -2.25, 3.0], rot)


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.nrrd", "v.mnc", "v.mha"])
def test_file_round_trip_keeps_voxels_and_geometry(tmp_path, name):
    vol = oblique_volume()
    write_volume(vol, tmp_path / name)
    back = read_volume(tmp_path / name)
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-6)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-5)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)


def test_chained_round_trip_across_formats(tmp_path):
    vol = oblique_volume()
    path = tmp_path / "a.nii.gz"
    write_volume(vol, path)
    for name in ("b.nrrd", "c.mnc", "d.nii.gz"):
        current = read_volume(path)
        path = tmp_path / name
        write_volume(current, path)
    back = read_volume(path)
    np.testing.assert_array_equal(back.data, vol.data)
    assert back.same_grid(vol, atol_mm=1e-5)


def test_dicom_series_round_trip(tmp_path):
    vol = oblique_volume()
    vol.meta["dicom:EchoTime"] = "112"
    write_volume(vol, tmp_path / "series")
    back = read_volume(tmp_path / "series")
    step = float(np.abs(vol.data).max()) / 32000.0
    assert np.abs(back.data - vol.data).max() <= step
    assert back.same_grid(vol, atol_mm=1e-6)
    assert back.meta["dicom:EchoTime"] == "112"


def test_integer_label_dicom_is_lossless(tmp_path):
    vol = oblique_volume()
    labels = vol.with_data((vol.data // 25).astype(np.int16))
    write_volume(labels, tmp_path / "labels")
    np.testing.assert_array_equal(read_volume(tmp_path / "labels").data, labels.data)


def test_ras_matrix_flips_lps_axes():
    vol = Volume(np.zeros((2, 2, 2)), [2, 3, 4], [10, 20, 30])
    m = vol.ijk_to_ras()
    np.testing.assert_allclose(m[:3, 3], [-10, -20, 30])
    np.testing.assert_allclose(np.diag(m[:3, :3]), [-2, -3, 4])
    again = Volume.from_ijk_to_ras(vol.data, m)
    assert again.same_grid(vol, atol_mm=1e-12)


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(UnreadableFileError, match="no such file"):
        read_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(UnreadableFileError, match="cannot read"):
        read_volume(tmp_path / "junk.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UnreadableFileError, match="unsupported"):
        read_volume(tmp_path / "notes.txt")
    with pytest.raises(DimensionError, match="3D"):
        Volume(np.zeros((4, 4)))
    nan = oblique_volume()
    nan.data[0, 0, 0] = np.nan
    for name in ("nan.nrrd", "nan.nii.gz"):  # ITK's NIfTI reader alone would turn NaN into 0
        nib_nan = name.endswith(".nii.gz")
        if nib_nan:
            import nibabel as nib

            nib.save(nib.Nifti1Image(np.transpose(nan.data), np.eye(4)), str(tmp_path / name))
        else:
            write_volume(nan, tmp_path / name)
        with pytest.raises(NonFiniteError, match="NaN"):
            read_volume(tmp_path / name)
    other = oblique_volume()
    other.origin = other.origin + 5
    with pytest.raises(GeometryError, match="origins differ"):
        oblique_volume().require_same_grid(other, "image and mask")


def test_failed_write_leaves_no_partial_file(tmp_path):
    vol = oblique_volume()
    with pytest.raises(UnreadableFileError):
        write_volume(vol, tmp_path / "out.xyz")
    assert list(tmp_path.iterdir()) == []


def test_mrml_node_round_trip(mrml_scene):
    from neuroshift_slicer.volume_nodes import add_volume_node, volume_from_node

    vol = oblique_volume()
    node = add_volume_node(mrml_scene, vol, "oblique")
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.data, vol.data)
    assert back.same_grid(vol, atol_mm=1e-9)
    import slicer

    assert slicer.util.arrayFromVolume(node).shape == vol.data.shape


def test_outputs_get_normal_permissions(tmp_path):
    import os
    import stat

    from neuroshift.io.atomic import atomic_dir, write_text_atomic

    mask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("y")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_dicom_io_keeps_the_process_locale(tmp_path):
    """GDCM sets the C locale; Python's default text encoding must not silently become ASCII."""
    import locale

    before = locale.getpreferredencoding(False)
    write_volume(oblique_volume(), tmp_path / "series")
    read_volume(tmp_path / "series")
    assert locale.getpreferredencoding(False) == before


def test_json_safe_turns_numpy_and_non_finite_values_into_json():
    import json
    from pathlib import Path

    from neuroshift.io.jsonsafe import json_safe

    doc = json_safe({"a": np.float32(0.5), "b": [np.nan, float("inf"), np.int64(3)], 1: np.arange(2),
                     "p": Path("x/y"), "t": (1.5, None)})
    assert json.loads(json.dumps(doc, allow_nan=False)) == {"a": 0.5, "b": [None, None, 3], "1": [0, 1],
                                                           "p": "x/y", "t": [1.5, None]}
