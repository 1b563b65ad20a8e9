"""Guards from the mutation audit (issue 13): grid comparison, sidecar units, file hashing, atomic writes.

Literal values only: a sidecar in seconds is written by hand, a digest is compared with hashlib on
the whole file, a failed atomic write must leave the folder exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from neuroshift.io.atomic import atomic_dir, atomic_path, write_text_atomic
from neuroshift.io.params import AcquisitionParams
from neuroshift.io.volume import Volume
from neuroshift.segment.package import sha256_file


# --------------------------------------------------------------------------- same_grid (item 3)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_same_grid_sees_an_origin_shift_on_every_axis(axis):
    a = Volume(np.zeros((3, 4, 5), np.float32), spacing=(1.0, 1.0, 2.0), origin=(10.0, -5.0, 3.0))
    shift = np.zeros(3)
    shift[axis] = 2.0  # one voxel along k for axis 2, two along i/j
    b = Volume(a.data, spacing=a.spacing, origin=np.asarray(a.origin) + shift)
    assert not a.same_grid(b) and not b.same_grid(a)
    near = Volume(a.data, spacing=a.spacing, origin=np.asarray(a.origin) + shift * 1e-4)  # 0.2 µm
    assert a.same_grid(near)


def test_same_grid_sees_spacing_direction_and_shape():
    a = Volume(np.zeros((3, 4, 5), np.float32), spacing=(1.0, 1.0, 2.0))
    assert not a.same_grid(Volume(a.data, spacing=(1.0, 1.0, 2.5)))
    assert not a.same_grid(Volume(np.zeros((3, 4, 6), np.float32), spacing=(1.0, 1.0, 2.0)))
    flipped = Volume(a.data, spacing=a.spacing, direction=np.diag([-1.0, 1.0, 1.0]))
    assert not a.same_grid(flipped)
    assert a.same_grid(Volume(a.data.copy(), spacing=(1.0, 1.0, 2.0)))


# --------------------------------------------------------------------------- sidecar units (item 8)
def test_sidecar_seconds_become_milliseconds_literally(tmp_path):
    p = tmp_path / "t1w.json"
    p.write_text(json.dumps({"EchoTime": 0.00298, "InversionTime": 0.9, "RepetitionTime": 2.3, "FlipAngle": 9,
                             "RepetitionTimeExcitation": 0.0071, "EchoTrainLength": 176,
                             "MagneticFieldStrength": 3}))
    acq = AcquisitionParams.from_sidecar(p)
    assert acq.TE_ms == 2.98 and acq.TI_ms == 900.0 and acq.TR_ms == 2300.0
    assert acq.TX_ms == 7.1  # RepetitionTimeExcitation is in seconds too
    assert acq.FA_deg == 9.0 and acq.N == 176 and acq.field_T == 3.0


def test_multi_echo_sidecar_takes_the_first_echo(tmp_path):
    p = tmp_path / "me.json"
    p.write_text(json.dumps({"EchoTime": [0.012, 0.024, 0.036], "RepetitionTime": 0.03, "FlipAngle": 20}))
    acq = AcquisitionParams.from_sidecar(p)
    assert acq.TE_ms == 12.0 and acq.TR_ms == 30.0 and acq.FA_deg == 20.0


def test_sidecar_writer_gives_seconds_literally():
    doc = AcquisitionParams(TE_ms=2.98, TI_ms=900, TR_ms=2300, FA_deg=9, TX_ms=7.1, N=176, field_T=3).to_sidecar()
    assert doc == {"EchoTime": 0.00298, "InversionTime": 0.9, "RepetitionTime": 2.3, "FlipAngle": 9.0,
                   "MagneticFieldStrength": 3.0, "EchoTrainLength": 176, "RepetitionTimeExcitation": 0.0071}


# --------------------------------------------------------------------------- hashing (item 4)
def test_sha256_covers_the_whole_file_beyond_the_first_mebibyte(tmp_path):
    data = bytearray(np.random.default_rng(0).integers(0, 256, 3 * (1 << 20) + 123, dtype=np.uint8).tobytes())
    p = tmp_path / "weights.bin"
    p.write_bytes(bytes(data))
    assert sha256_file(p) == hashlib.sha256(bytes(data)).hexdigest()
    before = sha256_file(p)
    data[-1] ^= 0x01  # tamper with the last byte, 3 MiB in
    p.write_bytes(bytes(data))
    assert sha256_file(p) != before
    assert sha256_file(p) == hashlib.sha256(bytes(data)).hexdigest()


# --------------------------------------------------------------------------- atomic writes (item 6)
def _entries(folder):
    return sorted(os.listdir(folder))


def test_atomic_path_error_removes_the_temporary_and_keeps_the_target(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            assert tmp.exists() and tmp.parent == tmp_path
            raise RuntimeError("boom")
    assert _entries(tmp_path) == ["out.txt"]
    assert target.read_text() == "old"
    write_text_atomic(target, "new")
    assert _entries(tmp_path) == ["out.txt"] and target.read_text() == "new"


def test_atomic_path_error_without_a_previous_target_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "image.nii.gz") as tmp:
            tmp.write_bytes(b"\x1f\x8b partial")
            raise ValueError("conversion failed")
    assert _entries(tmp_path) == []


def test_atomic_dir_error_after_writing_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights.pt").write_text("old weights")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights.pt").write_text("new weights")
            (tmp / "manifest.json").write_text("{}")
            raise RuntimeError("interrupted")
    assert _entries(tmp_path) == ["model"]
    assert _entries(target) == ["weights.pt"] and (target / "weights.pt").read_text() == "old weights"
    with atomic_dir(target) as tmp:
        (tmp / "weights.pt").write_text("new weights")
    assert _entries(tmp_path) == ["model"]
    assert _entries(target) == ["weights.pt"] and (target / "weights.pt").read_text() == "new weights"


# --------------------------------------------------------------------------- audit round 2
ROT_Z90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # i axis -> +y (LPS), j axis -> -x


def test_affine_scales_each_axis_by_its_own_spacing():
    v = Volume(np.zeros((4, 3, 2), np.float32), spacing=(1.0, 2.0, 3.0), origin=(10.0, 20.0, 30.0), direction=ROT_Z90)
    m = v.ijk_to_lps()
    # column j = direction[:, j] * spacing[j]: i -> (0, 1, 0) mm, j -> (-2, 0, 0) mm, k -> (0, 0, 3) mm
    np.testing.assert_array_equal(m[:3, :3], [[0.0, -2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(m @ [1, 1, 1, 1], [8.0, 21.0, 33.0, 1.0])
    # RAS flips x and y: (-8, -21, 33)
    np.testing.assert_array_equal(v.ijk_to_ras() @ [1, 1, 1, 1], [-8.0, -21.0, 33.0, 1.0])


def test_affine_round_trip_recovers_anisotropic_spacing_of_a_rotated_grid():
    # RAS = diag(-1, -1, 1) x the LPS matrix of the test above: i -> (0, -1, 0), j -> (2, 0, 0), k -> (0, 0, 3)
    ras = np.array([[0.0, 2.0, 0.0, -10.0], [-1.0, 0.0, 0.0, -20.0], [0.0, 0.0, 3.0, 30.0], [0, 0, 0, 1]])
    v = Volume.from_ijk_to_ras(np.zeros((4, 3, 2), np.float32), ras)
    np.testing.assert_allclose(v.spacing, [1.0, 2.0, 3.0], atol=1e-12)  # column norms, in i, j, k order
    np.testing.assert_allclose(v.direction, ROT_Z90, atol=1e-12)
    np.testing.assert_allclose(v.origin, [10.0, 20.0, 30.0], atol=1e-12)
    np.testing.assert_allclose(v.ijk_to_ras(), ras, atol=1e-12)


@pytest.mark.parametrize("spacing", [(0.0, 1.0, 1.0), (1.0, -1.0, 1.0), (1.0, 1.0, float("nan"))])
def test_zero_negative_or_nan_spacing_is_refused(spacing):
    from neuroshift.errors import GeometryError

    with pytest.raises(GeometryError, match="spacing"):
        Volume(np.zeros((2, 2, 2), np.float32), spacing=spacing)


def test_dir_needs_ti1_strictly_greater_than_ti2():
    from neuroshift.errors import ParameterRangeError

    base = dict(TE_ms=100.0, TR_ms=11000.0)
    with pytest.raises(ParameterRangeError, match="TI1 > TI2"):
        AcquisitionParams(TI1_ms=450.0, TI2_ms=450.0, **base).require("dir")
    AcquisitionParams(TI1_ms=451.0, TI2_ms=450.0, **base).require("dir")


def test_multi_valued_dicom_tag_takes_the_first_value():
    acq = AcquisitionParams.from_dicom_meta({"dicom:EchoTime": "12\\24\\36", "dicom:RepetitionTime": "30",
                                             "dicom:FlipAngle": "20"})
    assert acq.TE_ms == 12.0 and acq.TR_ms == 30.0 and acq.FA_deg == 20.0


def test_atomic_dir_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    """The rename of the new folder onto the target fails after the old one was moved aside: the old
    folder must be back under its name (found by the audit: it was left as a hidden ``.old`` backup)."""
    import neuroshift.io.atomic as atomic
    from neuroshift.errors import WriteFailedError

    target = tmp_path / "model"
    target.mkdir()
    (target / "weights.pt").write_text("old weights")
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src).endswith(".part") and os.fspath(dst) == os.fspath(target):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(WriteFailedError, match="No space left"):
        with atomic_dir(target) as tmp:
            (tmp / "weights.pt").write_text("new weights")
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert _entries(tmp_path) == ["model"]
    assert (target / "weights.pt").read_text() == "old weights"
