"""The Qt-free helpers the module widgets call (moved out of the module files, issue 16), with literal values,
and ReaderStudy's core against real MRML (slicer-core). Before the fix these lived in the module files (or
did not exist: the header was re-read on every input change), out of pytest's reach."""

from __future__ import annotations

import types

import numpy as np
import pytest

from neuroshift.io.params import AcquisitionParams


def test_panel_values_to_acquisition_parameters_and_back():
    from ShiftSimulatorLib.logic import UNKNOWN, fields_from_params, params_from_fields

    p = params_from_fields(150.0, UNKNOWN, 9000.0, UNKNOWN, 3.0)
    assert (p.TE_ms, p.TI_ms, p.TR_ms, p.FA_deg, p.field_T) == (150.0, None, 9000.0, None, 3.0)
    assert params_from_fields(0.0, UNKNOWN, UNKNOWN, UNKNOWN).TE_ms == 0.0  # 0 is a value, only < 0 is unknown
    assert fields_from_params(p) == {"sourceTE": 150.0, "sourceTI": -1.0, "sourceTR": 9000.0, "sourceFA": -1.0,
                                     "sourceField": 3.0}
    assert fields_from_params(AcquisitionParams(TE_ms=80.0), prefix="target")["targetTE"] == 80.0


def test_sequence_choices_come_from_the_engine_table():
    from ShiftSimulatorLib.logic import SEQUENCES

    from neuroshift import sequences

    assert SEQUENCES is sequences.SEQUENCES


def test_header_is_read_only_for_a_newly_chosen_input():
    """Defect 9: before, the header was re-read whenever the wrapper set the input (scene load, module enter),
    overwriting TE/TI/TR the user typed or the scene saved."""
    from ShiftSimulatorLib.logic import header_needs_reading

    assert header_needs_reading("vtkMRMLScalarVolumeNode1", "")
    assert not header_needs_reading("vtkMRMLScalarVolumeNode1", "vtkMRMLScalarVolumeNode1")  # scene reload
    assert header_needs_reading("vtkMRMLScalarVolumeNode2", "vtkMRMLScalarVolumeNode1")
    assert not header_needs_reading(None, "vtkMRMLScalarVolumeNode1")


def test_simulation_request_from_the_parameter_node():
    from ShiftSimulatorLib.logic import simulation_request

    p = types.SimpleNamespace(tissueMode="label map", tissueLabelmap="LM", labelMapping="CSF=1,GM=2,WM=3",
                              tissueSegmentation=None, pvCSF=None, pvGM="G", pvWM=None, pvLesion="L",
                              sourceTE=112.0, sourceTI=2500.0, sourceTR=9000.0, sourceFA=-1.0, sourceField=-1.0,
                              targetTE=150.0, targetTI=-1.0, targetTR=-1.0, targetFA=-1.0)
    tissues, mapping, source, target, field_T = simulation_request(p)
    assert tissues == "LM" and dict(mapping) == {"CSF": [1], "GM": [2], "WM": [3]} and field_T is None
    assert (source.TE_ms, source.TI_ms, source.TR_ms, source.FA_deg) == (112.0, 2500.0, 9000.0, None)
    assert (target.TE_ms, target.TI_ms) == (150.0, None)
    p.tissueMode, p.sourceField = "partial-volume maps", 3.0
    tissues, mapping, _source, _target, field_T = simulation_request(p)
    assert tissues == {"GM": "G", "lesion": "L"} and mapping is None and field_T == 3.0


def test_case_id_is_file_name_safe():
    from ShiftSimulatorLib.logic import case_id

    assert case_id("FLAIR (sub-01) TE=150") == "FLAIR_sub-01_TE_150"
    assert case_id("..//") == "case"


def test_claustrumseg_panel_values():
    from ClaustrumSegLib import SegmentationTask, parameters_from_fields

    p = parameters_from_fields(task="wmh", model="/m", device="cpu", tta=True, probabilities=False, uncertainty=True,
                               uncertainty_kind="entropy", batch_size=0, threshold=0.0, use_age=False, age_weeks=40.0,
                               relative_mask=True)
    assert (p.batch_size, p.threshold, p.age_weeks, p.mask_mode) == (None, None, None, "relative")
    p = parameters_from_fields(task="claustrum", model=None, device="auto", tta=False, probabilities=True,
                               uncertainty=False, uncertainty_kind="variance", batch_size=8, threshold=0.4,
                               use_age=True, age_weeks=38.5, relative_mask=False)
    assert (p.batch_size, p.threshold, p.age_weeks, p.mask_mode) == (8, 0.4, 38.5, None)
    p.validate()
    # Slicer's QComboBoxToEnumConnector shows getattr(enum, "label")(member) (guiConnectors.py, 5.4+)
    assert [SegmentationTask.label(t) for t in SegmentationTask] == ["Claustrum", "White-matter hyperintensities (WMH)"]


def test_answer_items_round_trip():
    from ReaderStudyLib.reading import answer_index, answer_items, answer_value

    likert = types.SimpleNamespace(type="likert", min=1, max=5, anchors={1: "poor", 5: "excellent"})
    assert answer_items(likert) == [("", None), ("1 - poor", 1), ("2", 2), ("3", 3), ("4", 4), ("5 - excellent", 5)]
    stars = types.SimpleNamespace(type="stars", min=1, max=3, anchors={})
    assert [t for t, _v in answer_items(stars)] == ["", "\u2605", "\u2605\u2605", "\u2605\u2605\u2605"]
    ros = types.SimpleNamespace(type="real_or_synthetic")
    for task, value, index in ((likert, 4, 4), (stars, 2, 2), (ros, "synthetic", 2)):
        assert answer_index(task, value) == index and answer_value(task, index) == value
    assert answer_index(likert, None) == 0 and answer_value(likert, 0) is None and answer_value(likert, 99) is None
    with pytest.raises(ValueError):
        answer_items(types.SimpleNamespace(type="free_text"))


@pytest.fixture
def study_db(tmp_path):
    yaml = pytest.importorskip("yaml")
    from neuroshift.io import Volume, write_volume
    from neuroshift.readerstudy.definition import load_study
    from neuroshift.readerstudy.store import StudyStore

    for name in ("a.nii.gz", "t1.nii.gz"):
        write_volume(Volume(np.zeros((4, 8, 8), np.float32), [1.0, 1.0, 2.0]), tmp_path / name)
    (tmp_path / "STUDY.yaml").write_text(yaml.safe_dump({
        "name": "core", "seed": 1, "blinding": True,
        "image_sets": {"syn": {"label": "synthetic", "synthetic": True},
                       "t1": {"label": "T1", "kind": "context", "display_name": "Pre-contrast T1"}},
        "shows": ["t1"], "cases": [{"id": "C1", "images": {"syn": "a.nii.gz", "t1": "t1.nii.gz"}}],
        "readers": ["R1", "R2"], "design": {"type": "full", "image_sets": ["syn"]},
        "tasks": [{"id": "quality", "type": "likert"},
                  {"id": "lesions", "type": "lesion_axes", "orthogonality_tolerance_deg": 5}]}), encoding="utf-8")
    StudyStore.create(tmp_path / "s.sqlite", load_study(tmp_path / "STUDY.yaml")).close()
    return tmp_path / "s.sqlite"


def test_reader_study_core_draft_submit_in_mrml(mrml_scene, study_db):
    """What ReaderStudy's widget used to do in the module file (submit, draft, lesions), now in ReaderStudyLib."""
    import slicer

    from neuroshift.readerstudy.store import StudyStore
    from ReaderStudyLib import scene as rs_scene
    from ReaderStudyLib.reading import ReaderStudyCore

    selection = slicer.vtkMRMLSelectionNode()
    selection.SetSingletonTag("Singleton")
    mrml_scene.AddNode(selection)
    core = ReaderStudyCore()
    assert core.readers(study_db) == ["R1", "R2"]
    core.open(study_db, "R1")
    assert core.next_read(mrml_scene) is not None and core.reading
    assert core.tolerance_deg() == 5
    long_node, short_node = core.new_lesion(mrml_scene)
    assert long_node.GetAttribute(rs_scene.LESION_ID) == "L1" and short_node.GetAttribute(rs_scene.AXIS) == "short"
    mrml_scene.RemoveNode(long_node)
    mrml_scene.RemoveNode(short_node)
    rs_scene.add_lesion_lines(mrml_scene, "L1", [[0, 0, 0], [10, 0, 0]], [[5, -3, 0], [5, 3, 0]])
    core.save_draft(mrml_scene, {"quality": 3})
    core.close()
    core.open(study_db, "R1")  # resume: the draft's lesion comes back as lines
    current = core.next_read(mrml_scene)
    assert current.answers == {"quality": 3} and core.lesion_count(mrml_scene) == 1
    notes = core.submit(mrml_scene, {"quality": 4})
    assert notes == []
    with StudyStore(study_db) as store:
        reads = store.reads()
    assert len(reads) == 1 and reads[0].answers["quality"] == 4
    assert reads[0].lesions[0].long_mm == pytest.approx(10.0) and reads[0].lesions[0].short_mm == pytest.approx(6.0)
    assert "R1  phase 1" in core.progress_text(study_db)
    core.close()
