"""Study definition: validation, paths inside the study folder (PathEscapeError), answers (reference value J)."""

import os

import pytest
import yaml

from neuroshift.errors import PathEscapeError
from neuroshift.readerstudy.answers import Lesion, Read, lesion_from_axes, validate_answer, validate_read
from neuroshift.readerstudy.definition import load_study, parse_study
from neuroshift.readerstudy.errors import (InvalidAnswerError, NotScheduledError, StudyDefinitionError,
                                           UnknownReaderError)
from neuroshift.readerstudy.schedule import build_schedule

from helpers.readerstudy_helpers import small_study_folder


@pytest.fixture
def study(tmp_path):
    return load_study(small_study_folder(tmp_path, images=False))


def _doc(tmp_path):
    path = small_study_folder(tmp_path, images=False)
    return yaml.safe_load(path.read_text()), path.parent


def test_definition_fields(study):
    assert study.seed == 7 and study.blinding is True
    assert [r.id for r in study.readers] == ["R1", "R2"] and study.readers[0].reference
    assert [p.washout_days for p in study.all_phases] == [0, 14, 0]
    assert study.task("quality").anchors == {1: "poor", 5: "excellent"}
    assert study.cases[0].images["low"] == (study.folder / "C1" / "low.nii.gz").resolve()
    assert study.shows_for("virtual") == ("virtual", "t1")


@pytest.mark.parametrize("bad", ["../outside.nii.gz", "/etc/passwd", "C1/../../x.nii.gz"])
def test_case_path_escaping_the_study_folder_is_refused(tmp_path, bad):
    doc, folder = _doc(tmp_path)
    doc["cases"][0]["images"]["low"] = bad
    with pytest.raises(PathEscapeError, match="outside the study folder"):
        parse_study(doc, folder)


def test_symlink_escaping_the_study_folder_is_refused(tmp_path):
    doc, folder = _doc(tmp_path)
    outside = tmp_path / "elsewhere.nii.gz"
    outside.write_bytes(b"")
    os.symlink(outside, folder / "link.nii.gz")
    doc["cases"][0]["images"]["low"] = "link.nii.gz"
    with pytest.raises(PathEscapeError):
        parse_study(doc, folder)


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.pop("seed"), "seed"),
    (lambda d: d["readers"].append({"id": "R1"}), "duplicate reader"),
    (lambda d: d["tasks"].append({"id": "q2", "type": "slider"}), "not one of"),
    (lambda d: d["tasks"].append({"id": "q3", "type": "likert", "min": 5, "max": 1}), "min < max"),
    (lambda d: d["phases"].pop(), "needs 2 phases"),
    (lambda d: d["design"].update(image_sets=["low", "nope"]), "not a declared target"),
    (lambda d: d["cases"][0]["images"].update(mri="x.nii.gz"), "unknown image set"),
    (lambda d: d["cases"][1]["images"].pop("t1"), "no image for t1"),
    (lambda d: d["reference_reads"].update(readers=["R9"]), "not a reader"),
])
def test_invalid_definitions_name_the_problem(tmp_path, mutate, message):
    doc, folder = _doc(tmp_path)
    mutate(doc)
    with pytest.raises(StudyDefinitionError, match=message):
        parse_study(doc, folder)


def test_J_likert_accepts_integers_1_to_5_only(study):
    for g in (1, 2, 3, 4, 5):
        assert validate_answer(study, "quality", g) == g
    for bad in (0, 6, 3.5, 3.0, "3", True, None):
        with pytest.raises(InvalidAnswerError, match="integer 1-5"):
            validate_answer(study, "quality", bad)


def test_J_axes_far_from_orthogonal_are_flagged():
    ok = lesion_from_axes("L1", [[0, 0, 0], [10, 0, 0]], [[5, -3, 0], [5, 3, 0]])
    assert ok.long_mm == pytest.approx(10) and ok.short_mm == pytest.approx(6)
    assert ok.center_ras_mm == (5.0, 0.0, 0.0) and not ok.orthogonality_flag
    assert ok.axes_angle_deg == pytest.approx(90)
    tilted = lesion_from_axes("L2", [[0, 0, 0], [10, 0, 0]], [[4, -3, 0], [6, 3, 0]])  # ~71.6 degrees
    assert tilted.orthogonality_flag
    slight = lesion_from_axes("L3", [[0, 0, 0], [10, 0, 0]], [[4.7, -3, 0], [5.3, 3, 0]])  # ~84.3 degrees
    assert not slight.orthogonality_flag
    swapped = lesion_from_axes("L4", [[5, -3, 0], [5, 3, 0]], [[0, 0, 0], [10, 0, 0]])
    assert swapped.long_mm == pytest.approx(10)


def _read(**kw):
    base = dict(reader="R1", case="C1", image_set="low", phase=1, answers={"quality": 3}, lesions=())
    base.update(kw)
    return Read(**base)


def test_reads_are_validated_against_the_study(study):
    keys = {r.key for r in build_schedule(study)}
    r1_low = next(k for k in keys if k[0] == "R1" and k[2] == "low")
    ok = validate_read(study, _read(case=r1_low[1], phase=r1_low[3]), keys)
    assert ok.answers == {"quality": 3}
    with pytest.raises(UnknownReaderError, match="'R7' is not part of study"):
        validate_read(study, _read(reader="R7"), keys)
    with pytest.raises(InvalidAnswerError, match="integer 1-5, got 6"):
        validate_read(study, _read(answers={"quality": 6}))
    with pytest.raises(InvalidAnswerError, match="not answered"):
        validate_read(study, _read(answers={}))
    with pytest.raises(InvalidAnswerError, match="not a question"):
        validate_read(study, _read(answers={"quality": 3, "colour": "red"}))
    with pytest.raises(NotScheduledError):
        validate_read(study, _read(image_set="reference", phase=1), keys)
    with pytest.raises(InvalidAnswerError, match="longer than the long axis"):
        validate_read(study, _read(lesions=(Lesion("a", (0, 0, 0), 4.0, 6.0),)))
    with pytest.raises(InvalidAnswerError, match="duplicate lesion ids"):
        validate_read(study, _read(lesions=(Lesion("a", (0, 0, 0), 6, 4), Lesion("a", (9, 0, 0), 6, 4))))
    with pytest.raises(InvalidAnswerError, match="finite"):
        validate_read(study, _read(lesions=(Lesion("a", (float("nan"), 0, 0), 6, 4),)))


def test_what_each_read_shows_can_be_set_per_image_set(tmp_path):
    doc, folder = _doc(tmp_path)
    doc["image_sets"]["reference"]["shows"] = []  # the reference read: the reference image alone
    study = parse_study(doc, folder)
    assert study.shows_for("reference") == ("reference",)
    assert study.shows_for("low") == ("low", "t1")
    sched = build_schedule(study)
    assert {r.shows for r in sched if r.kind == "reference"} == {("reference",)}
    doc["image_sets"]["low"]["shows"] = ["pet"]
    with pytest.raises(StudyDefinitionError, match="unknown image set 'pet'"):
        parse_study(doc, folder)
