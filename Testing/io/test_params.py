"""Acquisition parameters from sidecars (s), DICOM tags (ms) and explicit values (ms)."""

import json

import numpy as np
import pytest

from neuroshift.errors import MissingParameterError, ParameterRangeError, UnreadableFileError
from neuroshift.io import Volume, read_volume, write_volume
from neuroshift.io.params import AcquisitionParams


def test_parse_explicit_values_in_ms():
    p = AcquisitionParams.parse("TE=150, TI=2900,TR=9000,FA=90,field=3")
    assert (p.TE_ms, p.TI_ms, p.TR_ms, p.FA_deg, p.field_T) == (150, 2900, 9000, 90, 3)
    assert p.label() == "TE=150,TI=2900,TR=9000,FA=90,field=3"


def test_bids_sidecar_seconds_become_ms(tmp_path):
    (tmp_path / "flair.json").write_text(json.dumps(
        {"EchoTime": 0.112, "InversionTime": 2.5, "RepetitionTime": 9.0, "FlipAngle": 150,
         "MagneticFieldStrength": 3, "EchoTrainLength": 16}))
    p = AcquisitionParams.for_image(tmp_path / "flair.nii.gz")
    assert p.TE_ms == pytest.approx(112) and p.TI_ms == pytest.approx(2500) and p.TR_ms == pytest.approx(9000)
    assert p.FA_deg == 150 and p.field_T == 3 and p.N == 16


def test_dicom_tags_are_read_in_ms(tmp_path):
    vol = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    vol.meta.update({"dicom:EchoTime": "140", "dicom:InversionTime": "2800", "dicom:RepetitionTime": "11000",
                     "dicom:FlipAngle": "90", "dicom:MagneticFieldStrength": "1.5", "dicom:EchoTrainLength": "20"})
    write_volume(vol, tmp_path / "dicom")
    back = read_volume(tmp_path / "dicom")
    p = AcquisitionParams.from_dicom_meta(back.meta)
    assert (p.TE_ms, p.TI_ms, p.TR_ms, p.FA_deg, p.field_T, p.N) == (140, 2800, 11000, 90, 1.5, 20)


def test_sidecar_overrides_dicom_and_explicit_overrides_both(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"EchoTime": 0.1}))
    p = AcquisitionParams.for_image(tmp_path / "x.nii.gz", {"dicom:EchoTime": "90", "dicom:RepetitionTime": "8000"})
    assert p.TE_ms == pytest.approx(100) and p.TR_ms == 8000
    assert p.merged(AcquisitionParams(TE_ms=120)).TE_ms == 120


def test_missing_parameter_is_named_never_guessed():
    with pytest.raises(MissingParameterError, match="FLAIR needs TI"):
        AcquisitionParams(TE_ms=112, TR_ms=9000).require("flair")
    with pytest.raises(MissingParameterError, match="TE, TR"):
        AcquisitionParams(TI_ms=2500).require("flair", context="the baseline")
    assert AcquisitionParams(TE_ms=1, TI_ms=2, TR_ms=3).require("flair").TE_ms == 1


@pytest.mark.parametrize("text, message", [
    ("TE=15000", "outside the physical range"),
    ("TE=abc", "not a number"),
    ("TE=nan", "finite"),
    ("XY=3", "unknown acquisition parameter"),
    ("TE150", "KEY=VALUE"),
])
def test_bad_values_are_refused(text, message):
    with pytest.raises(ParameterRangeError, match=message):
        AcquisitionParams.parse(text)


def test_inconsistent_timing_is_refused():
    with pytest.raises(ParameterRangeError, match="TI1 > TI2"):
        AcquisitionParams(TE_ms=10, TI1_ms=300, TI2_ms=3000, TR_ms=9000).require("dir")
    with pytest.raises(ParameterRangeError, match="cannot exceed TR"):
        AcquisitionParams(TE_ms=10, TI_ms=3000, TR_ms=2000).require("flair")


def test_unreadable_sidecar(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UnreadableFileError, match="bad.json"):
        AcquisitionParams.from_sidecar(tmp_path / "bad.json")


def test_sidecar_and_dicom_writers_invert_the_readers(tmp_path):
    p = AcquisitionParams(TE_ms=150, TI_ms=2900, TR_ms=9000, FA_deg=150, field_T=3, N=16, TX_ms=7.1)
    doc = p.to_sidecar()
    assert doc["EchoTime"] == 0.15 and doc["InversionTime"] == 2.9 and doc["EchoTrainLength"] == 16
    (tmp_path / "x.json").write_text(json.dumps(doc), encoding="utf-8")
    assert AcquisitionParams.from_sidecar(tmp_path / "x.json") == p
    meta = p.to_dicom_meta()
    assert meta["dicom:EchoTime"] == "150"
    assert AcquisitionParams.from_dicom_meta(meta) == AcquisitionParams(TE_ms=150, TI_ms=2900, TR_ms=9000,
                                                                        FA_deg=150, field_T=3, N=16)
