"""ReaderStudy module logic against real MRML (slicer-core): allowed volumes only, neutral names,
lesion axes from line markups in RAS mm, active reading time, submit, resume."""


import pytest

from helpers.readerstudy_helpers import small_study_folder

from neuroshift.readerstudy.definition import load_study
from neuroshift.readerstudy.errors import InvalidAnswerError, UnknownReaderError
from neuroshift.readerstudy.store import StudyStore


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def db(tmp_path):
    y = small_study_folder(tmp_path)
    path = tmp_path / "s.sqlite"
    StudyStore.create(path, load_study(y)).close()
    return path


@pytest.fixture
def scene(mrml_scene):
    """The real scene plus the selection node Slicer always has (markups measurements look up units there)."""
    import slicer
    sel = slicer.vtkMRMLSelectionNode()
    sel.SetSingletonTag("Singleton")
    mrml_scene.AddNode(sel)
    return mrml_scene


def volume_nodes(scene):
    col = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    return [col.GetItemAsObject(i) for i in range(col.GetNumberOfItems())]


def test_timer_pauses():
    from ReaderStudyLib.timer import ActiveTimer
    clock = FakeClock()
    t = ActiveTimer(clock)
    t.start()
    clock.t += 100
    t.pause()
    clock.t += 500  # paused: not counted
    t.resume()
    clock.t += 45
    assert t.elapsed() == pytest.approx(145)


def test_read_in_mrml_scene(scene, db):
    mrml_scene = scene
    from ReaderStudyLib import scene as rs_scene
    from ReaderStudyLib.session import ReadingSession

    with pytest.raises(UnknownReaderError):
        ReadingSession(db, "R9")
    clock = FakeClock()
    session = ReadingSession(db, "R2", clock=clock)
    current = session.next_read()
    s = current.scheduled
    assert s.reader == "R2" and s.phase == 1 and s.position == 1
    assert current.case_label.startswith("Case ")  # blinded
    images = session.image_paths()
    assert set(images) == {s.image_set, "t1"}  # only what the read allows
    nodes = rs_scene.load_read_volumes(mrml_scene, images, current.names)
    vols = volume_nodes(mrml_scene)
    assert sorted(n.GetName() for n in vols) == ["Image A", "Pre-contrast T1"]
    for n in vols:
        assert n.GetStorageNode() is None  # no file name reaches the reader
        assert n.GetSpacing() == pytest.approx((1.0, 1.0, 2.0))
        assert "series" not in " ".join(n.GetAttributeNames() or [])
    assert nodes[s.image_set].GetName() == "Image A"

    # lesion 1: orthogonal axes, centre (12, -4, 30) RAS mm; lesion 2: tilted axes (flagged)
    rs_scene.add_lesion_lines(mrml_scene, "L1", [[7, -4, 30], [17, -4, 30]], [[12, -7, 30], [12, -1, 30]])
    rs_scene.add_lesion_lines(mrml_scene, "L2", [[0, 0, 0], [10, 0, 0]], [[4, -3, 0], [6, 3, 0]])
    incomplete = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "stray")
    incomplete.SetAttribute(rs_scene.ROLE, "lesion")
    incomplete.SetAttribute(rs_scene.LESION_ID, "L3")
    incomplete.SetAttribute(rs_scene.AXIS, "long")
    lesions, problems = rs_scene.lesions_from_scene(mrml_scene)
    assert [x.lesion_id for x in lesions] == ["L1", "L2"]
    assert lesions[0].center_ras_mm == pytest.approx((12, -4, 30))
    assert lesions[0].long_mm == pytest.approx(10) and lesions[0].short_mm == pytest.approx(6)
    assert not lesions[0].orthogonality_flag and lesions[1].orthogonality_flag
    assert problems == ["lesion L3: needs a long and a short axis"]

    with pytest.raises(InvalidAnswerError, match="integer 1-5"):
        session.set_answer("quality", 6)
    session.set_answer("quality", 4)
    session.set_lesions(lesions)
    clock.t += 100
    session.pause()
    clock.t += 1000
    session.resume()
    clock.t += 45
    session.submit()
    rs_scene.clear_read(mrml_scene)
    assert volume_nodes(mrml_scene) == []
    with StudyStore(db) as store:
        (read,) = store.reads()
    assert (read.reader, read.case, read.image_set, read.phase) == (s.reader, s.case, s.image_set, 1)
    assert read.active_seconds == pytest.approx(145)
    assert read.answers == {"quality": 4}
    assert read.lesions[0].center_ras_mm == pytest.approx((12, -4, 30))
    assert read.lesions[1].orthogonality_flag and read.lesions[1].axes_angle_deg == pytest.approx(71.565, abs=1e-3)
    assert session.progress() == (1, 8)  # 4 cases x 2 phases
    session.close()


def test_stop_and_resume_a_read(mrml_scene, db):
    from ReaderStudyLib.session import ReadingSession
    from neuroshift.readerstudy.answers import Lesion

    clock = FakeClock()
    a = ReadingSession(db, "R1", clock=clock)
    cur = a.next_read()
    a.set_answer("quality", 2)
    a.set_lesions([Lesion("L1", (1.0, 2.0, 3.0), 9.0, 5.0)])
    clock.t += 80
    a.save_draft()
    a.close()  # the reader stops (or Slicer crashes after the draft was saved)
    b = ReadingSession(db, "R1", clock=clock)
    again = b.next_read()
    assert again.scheduled == cur.scheduled
    assert again.answers == {"quality": 2} and again.lesions[0].center_ras_mm == (1.0, 2.0, 3.0)
    assert b.timer.elapsed() == pytest.approx(80)
    clock.t += 20
    b.submit()
    with StudyStore(db) as store:
        assert store.reads()[0].active_seconds == pytest.approx(100)
    b.close()
