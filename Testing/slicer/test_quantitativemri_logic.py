"""QuantitativeMRI's Qt-free logic on a real vtkMRMLScene (slicer-core): 4D nodes -> frames-last NIfTI with the
geometry kept, the CLI command lines of the three panels, bad-input messages, and background runs of the real
``neuroshift mrf|qmri`` commands whose outputs come back as nodes with units in their names."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

#: An oblique grid (rotation about z by 30 degrees, spacing 1.5 x 2 x 3 mm, origin -10, 20, 5 mm).
_C, _S = np.cos(np.pi / 6), np.sin(np.pi / 6)
IJK_TO_RAS = np.array([[1.5 * _C, -2.0 * _S, 0.0, -10.0], [1.5 * _S, 2.0 * _C, 0.0, 20.0], [0.0, 0.0, 3.0, 5.0],
                       [0.0, 0.0, 0.0, 1.0]])


def _matrix(node) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _ref(shape=(2, 3, 4)):
    from neuroshift.io.volume import Volume

    return Volume.from_ijk_to_ras(np.zeros(shape, np.float32), IJK_TO_RAS)


def _volume_node(scene, data, name="vol"):
    from neuroshift_slicer.volume_nodes import add_volume_node

    return add_volume_node(scene, _ref(data.shape).with_data(np.asarray(data, np.float32)), name)


def _wait(job, timeout_s=240):
    return job.run.wait(timeout_s)


# ---------------------------------------------------------------------------------------------- frames
def test_sequence_node_to_frames_last_nifti_keeps_values_and_geometry(mrml_scene, tmp_path):
    from neuroshift.mrf.frames_io import read_frames, write_frames_nifti
    from QuantitativeMRILib.frames import frames_from_node, frames_to_sequence

    frames = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5) * 0.5
    seq = frames_to_sequence(mrml_scene, frames, _ref(), "MRF")
    assert seq.GetNumberOfDataNodes() == 5 and seq.GetNthIndexValue(4) == "5"
    got, ref = frames_from_node(seq)
    assert got.shape == (2, 3, 4, 5) and np.array_equal(got, frames)
    assert got[1, 2, 3, 4] == 59.5  # (((1*3+2)*4+3)*5+4) * 0.5
    np.testing.assert_allclose(ref.ijk_to_ras(), IJK_TO_RAS, atol=1e-12)
    write_frames_nifti(got, ref, tmp_path / "f.nii.gz")
    back, back_ref = read_frames(tmp_path / "f.nii.gz")
    assert np.array_equal(back, frames)
    np.testing.assert_allclose(back_ref.ijk_to_ras(), IJK_TO_RAS, atol=1e-5)  # NIfTI sform is float32


def test_multicomponent_volume_frames(mrml_scene):
    """MultiVolumeImporter's vtkMRMLMultiVolumeNode is a scalar volume with one component per frame."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    from QuantitativeMRILib.frames import frames_from_node

    frames = np.random.default_rng(0).random((2, 3, 4, 6)).astype(np.float32)
    image = vtk.vtkImageData()
    image.SetDimensions(4, 3, 2)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(frames.reshape(-1, 6), deep=True))
    node = mrml_scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "multi")
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(IJK_TO_RAS))
    node.SetAndObserveImageData(image)
    got, ref = frames_from_node(node)
    assert np.array_equal(got, frames)
    np.testing.assert_allclose(ref.ijk_to_ras(), IJK_TO_RAS, atol=1e-12)


def test_bad_4d_inputs_are_named(mrml_scene):
    from neuroshift.errors import DimensionError, GeometryError, InputError
    from neuroshift.io.volume import Volume
    from neuroshift_slicer.volume_nodes import update_node_from_volume
    from QuantitativeMRILib.frames import frames_from_node, frames_to_sequence

    with pytest.raises(InputError, match="choose the MRF frames"):
        frames_from_node(None)
    plain = _volume_node(mrml_scene, np.ones((2, 3, 4)), "T1w")
    with pytest.raises(DimensionError, match="'T1w' is a 3D volume with one frame.*first frame of a 4D NIfTI"):
        frames_from_node(plain)
    with pytest.raises(DimensionError, match="holds 1 item"):
        frames_from_node(frames_to_sequence(mrml_scene, np.ones((2, 3, 4, 1), np.float32), _ref(), "one"))
    seq = frames_to_sequence(mrml_scene, np.ones((2, 3, 4, 2), np.float32), _ref(), "moved")
    update_node_from_volume(seq.GetNthDataNode(1), Volume(np.ones((2, 3, 4), np.float32), [1.0, 1.0, 1.0]))
    with pytest.raises(GeometryError):
        frames_from_node(seq)
    bad = frames_to_sequence(mrml_scene, np.full((2, 3, 4, 2), np.nan, np.float32), _ref(), "nan")
    with pytest.raises(InputError, match="NaN"):
        frames_from_node(bad)


# ---------------------------------------------------------------------------------------------- commands
def test_mrf_command_lines(tmp_path):
    from QuantitativeMRILib.requests import MRFRequest

    cmds, out = MRFRequest("unet", device="cpu").commands("f.nii.gz", "s.json", tmp_path)
    assert cmds == [["mrf", "predict", "f.nii.gz", "--schedule", "s.json", "--out", str(tmp_path / "unet"),
                     "--device", "cpu"]] and out == {"unet": tmp_path / "unet"}
    cmds, out = MRFRequest("both", denoise=True, svd_energy=0.99999, model=str(tmp_path)).commands(
        "f.nii.gz", "s.json", tmp_path)
    assert [c[:2] for c in cmds] == [["mrf", "dictionary"], ["mrf", "match"], ["mrf", "predict"]]
    assert cmds[0] == ["mrf", "dictionary", "--schedule", "s.json", "--out", str(tmp_path / "dictionary.npz"),
                       "--device", "auto"]
    assert cmds[1] == ["mrf", "match", "f.nii.gz", "--dictionary", str(tmp_path / "dictionary.npz"), "--schedule",
                       "s.json", "--out", str(tmp_path / "match"), "--device", "auto", "--denoise", "--svd-energy",
                       "0.99999"]
    assert cmds[2][-2:] == ["--model", str(tmp_path)] and set(out) == {"match", "unet"}
    d = tmp_path / "d.npz"
    d.write_bytes(b"x")
    cmds, _ = MRFRequest("match", dictionary=str(d)).commands("f.nii.gz", "s.json", tmp_path)
    assert len(cmds) == 1 and cmds[0][4] == str(d)
    cache = tmp_path / "cache"
    cached = MRFRequest("match", dictionary_cache=str(cache))
    cmds, _ = cached.commands("f.nii.gz", "s.json", tmp_path, "0123456789abcdef0123")
    assert cmds[0][5] == str(cache / "0123456789abcdef.npz") and cmds[1][4] == cmds[0][5]  # built into the cache
    cache.mkdir()
    (cache / "0123456789abcdef.npz").write_bytes(b"x")
    cmds, _ = cached.commands("f.nii.gz", "s.json", tmp_path, "0123456789abcdef0123")
    assert [c[1] for c in cmds] == ["match"] and cmds[0][4] == str(cache / "0123456789abcdef.npz")  # reused


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "fit"}, "unknown MRF method"), ({"device": "tpu"}, "unknown device"),
    ({"svd_energy": 1.5}, r"SVD energy must be in \(0, 1\]"), ({"lesion_threshold_percent": 120.0}, r"\[0, 100\] %"),
    ({"model": "/no/such/model"}, "package folder '/no/such/model' does not exist"),
    ({"method": "match", "dictionary": "/no/d.npz"}, "dictionary '/no/d.npz' does not exist")])
def test_mrf_request_errors(kwargs, message):
    from neuroshift.errors import InputError
    from QuantitativeMRILib.requests import MRFRequest

    with pytest.raises(InputError, match=message):
        MRFRequest(**kwargs).validate()


def test_fit_and_synth_command_lines():
    from QuantitativeMRILib.requests import FitRequest, SynthRequest

    fit = FitRequest(["se", "se"], ["TE=15,TR=3000", " TE=90,TR=3000 "], method="closed")
    assert fit.command(["a.nii.gz", "b.nii.gz"], "maps", mask="m.nii.gz") == [
        "qmri", "fit", "a.nii.gz", "b.nii.gz", "--sequence", "se,se", "--params", "TE=15,TR=3000;TE=90,TR=3000",
        "--method", "closed", "--mask", "m.nii.gz", "maps"]
    syn = SynthRequest("gre", "TE=5,TR=20,FA=15", field_T=3.0, noise_sigma=0.01, seed=7, t2star_for_t2=True)
    assert syn.command("maps", "out.nii.gz") == ["qmri", "synth", "maps", "out.nii.gz", "--sequence", "gre",
                                                 "--target", "TE=5,TR=20,FA=15", "--field", "3.0", "--noise",
                                                 "0.01", "--seed", "7", "--t2star-for-t2"]
    assert SynthRequest("se", "TE=80,TR=3000").command("m", "o") == ["qmri", "synth", "m", "o", "--sequence", "se",
                                                                     "--target", "TE=80,TR=3000"]


@pytest.mark.parametrize("request_, message", [
    (("fit", ["se"], ["TE=15,TR=3000"]), "two or more images, got 1"),
    (("fit", ["se", "se"], ["TE=15,TR=3000", "TE=90"]), "e2: .*SE needs TR"),
    (("fit", ["se", "xx"], ["TE=15,TR=3000", "TE=90,TR=3000"]), "e2: unknown sequence 'xx'"),
    (("fit", ["se", "se"], ["TE=15,TR=3000", ""]), "e2: give its acquisition parameters"),
    (("synth", "flair", "TE=112,TR=9000"), "FLAIR needs TI"),
    (("synth", "se", "TE=80,TR=3000", -1.0), "field strength must be > 0 T")])
def test_fit_and_synth_errors_name_the_image_and_parameter(request_, message):
    from neuroshift.errors import InputError
    from QuantitativeMRILib.requests import FitRequest, SynthRequest

    kind, *args = request_
    req = FitRequest(*args, names=["e1", "e2"]) if kind == "fit" else SynthRequest(*args)
    with pytest.raises(InputError, match=message):
        req.validate()


def test_sequential_run_progress_failure_and_cancel():
    from neuroshift_slicer.background import RunState
    from QuantitativeMRILib.sequential import CANCELLED, SequentialRun

    class Fake:
        def __init__(self, args):
            self.args, self.state, self.cancelled = args, RunState(0.5, "half"), False

        def poll(self):
            return self.state

        def cancel(self):  # as BackgroundRun.cancel: kills only a running process
            self.cancelled = True
            if self.state.returncode is None:
                self.state.returncode = -9

    started = []
    run = SequentialRun([["a"], ["b"], ["c"]], lambda a: started.append(Fake(a)) or started[-1])
    assert run.poll().progress == pytest.approx(0.5 / 3)
    started[0].state = RunState(1.0, "", 0, ["done a"])
    state = run.poll()
    assert state.returncode is None and state.progress == pytest.approx(1 / 3) and started[1].args == ["b"]
    started[1].state = RunState(0.2, "", 3, ["error: bad b"])
    state = run.poll()
    assert state.returncode == 3 and len(started) == 2 and state.progress == pytest.approx(1.2 / 3)
    assert state.log == ["[step 1/3 (a)] done a", "[step 2/3 (b)] error: bad b"]
    run2 = SequentialRun([["a"], ["b"]], lambda a: started.append(Fake(a)) or started[-1])
    run2.cancel()
    assert started[-1].cancelled and run2.poll().returncode == -9 and started[-1].args == ["a"]
    run3 = SequentialRun([["a"], ["b"]], lambda a: started.append(Fake(a)) or started[-1])
    started[-1].state = RunState(1.0, "", 0, [])  # step 1 ended with 0, not yet polled
    run3.cancel()
    state = run3.poll()
    assert state.returncode == CANCELLED and "cancelled" in state.message and started[-1].args == ["a"]


# ---------------------------------------------------------------------------------------------- background runs
@pytest.fixture
def small_dictionary(tmp_path):
    from neuroshift.mrf.dictionary import build_dictionary, save_dictionary
    from neuroshift.mrf.schedule import representative_schedule

    grid = {"t1_ms": np.array([600.0, 900.0, 1400.0]), "t2star_ms": np.array([40.0, 70.0]), "b1": np.array([1.0])}
    d = build_dictionary(representative_schedule(), grid)
    save_dictionary(d, tmp_path / "small.npz")
    return d, tmp_path / "small.npz"


@pytest.mark.slow
def test_mrf_match_in_the_background_recovers_the_dictionary_entries(mrml_scene, small_dictionary, tmp_path):
    from neuroshift.mrf.schedule import data_dir
    from QuantitativeMRILib import MRFRequest, QuantitativeMRICore
    from QuantitativeMRILib.frames import frames_to_sequence

    d, path = small_dictionary
    atoms, params = d.atoms(), d.parameters()  # 6 entries
    order = np.array([5, 0, 3, 1, 4, 2])
    frames = (atoms[order] * np.array([1, 2, 3, 4, 5, 6])[:, None]).reshape(1, 2, 3, -1).astype(np.float32)
    seq = frames_to_sequence(mrml_scene, frames, _ref((1, 2, 3)), "MRF")
    core = QuantitativeMRICore(mrml_scene)
    request = MRFRequest("match", schedule=str(data_dir() / "schedule_representative.json"), dictionary=str(path),
                         device="cpu")
    job = core.start_mrf(seq, request, python=sys.executable)
    assert _wait(job).returncode == 0, job.run.poll().log
    out = core.finish(job)
    assert list(out.volumes) == ["MRF_T1_ms", "MRF_T2star_ms", "MRF_B1_scale", "MRF_PD_au", "MRF_quality_cosine"]
    from neuroshift_slicer.volume_nodes import volume_from_node

    t1 = volume_from_node(out.volumes["MRF_T1_ms"]).data.reshape(-1)
    t2 = volume_from_node(out.volumes["MRF_T2star_ms"]).data.reshape(-1)
    np.testing.assert_allclose(t1, params[order, 0], rtol=1e-6)  # 1400, 600, 900, 600, 1400, 900 ms
    np.testing.assert_allclose(t2, params[order, 1], rtol=1e-6)
    np.testing.assert_allclose(volume_from_node(out.volumes["MRF_quality_cosine"]).data, 1.0, atol=1e-5)
    np.testing.assert_allclose(_matrix(out.volumes["MRF_T1_ms"]), IJK_TO_RAS, rtol=0, atol=1e-12)  # exact
    assert out.volumes["MRF_T1_ms"].GetAttribute("NeuroShift.Units") == "ms"
    assert not job.workdir.exists()


def test_mrf_schedule_problems_are_refused_before_starting(mrml_scene, tmp_path):
    from neuroshift.errors import DimensionError, InputError
    from neuroshift.mrf.schedule import data_dir
    from QuantitativeMRILib import MRFRequest, QuantitativeMRICore
    from QuantitativeMRILib.frames import frames_to_sequence

    seq = frames_to_sequence(mrml_scene, np.ones((1, 2, 3, 4), np.float32), _ref((1, 2, 3)), "MRF4")
    core = QuantitativeMRICore(mrml_scene)
    with pytest.raises(InputError, match="choose the schedule file"):
        core.start_mrf(seq, MRFRequest("unet"))
    schedule = str(data_dir() / "schedule_representative.json")
    with pytest.raises(DimensionError, match="'MRF4' has 4 frames, the schedule has 35"):
        core.start_mrf(seq, MRFRequest("unet", schedule=schedule))
    with pytest.raises(InputError, match="does not exist"):
        core.start_mrf(str(tmp_path / "missing.nii.gz"), MRFRequest("unet", schedule=schedule))


def test_lesion_probability_threshold_segmentation(mrml_scene):
    import slicer
    import vtk

    from neuroshift_slicer.volume_nodes import volume_from_node
    from QuantitativeMRILib import QuantitativeMRICore

    prob = np.array([0.0, 10.0, 32.9, 33.0, 50.0, 100.0], np.float32).reshape(1, 2, 3)
    node = _volume_node(mrml_scene, prob, "lesion_percent")
    seg = QuantitativeMRICore(mrml_scene).threshold_segmentation(node, 33.0, "lesion33")
    assert seg.GetSegmentation().GetNumberOfSegments() == 1 and seg.GetAttribute("NeuroShift.ThresholdPercent") == "33"
    label = mrml_scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(seg.GetSegmentation().GetSegmentIdBySegmentName("lesion"))
    slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(seg, ids, label, node)
    assert volume_from_node(label).data.reshape(-1).tolist() == [0, 0, 0, 1, 1, 1]
    empty = QuantitativeMRICore(mrml_scene).threshold_segmentation(node, 100.5, "none")
    assert empty.GetSegmentation().GetNthSegment(0).GetName() == "lesion"


@pytest.mark.slow
def test_both_methods_in_the_background_give_tagged_maps_and_a_lesion_segmentation(mrml_scene, small_dictionary,
                                                                                    tmp_path):
    """4D NIfTI file with the schedule beside it; the U-Net and dictionary matching in one chained job."""
    from neuroshift.mrf.frames_io import write_frames_nifti
    from neuroshift.mrf.schedule import data_dir, representative_schedule
    from neuroshift.mrf.simulate import simulate
    from neuroshift_slicer.volume_nodes import volume_from_node
    from QuantitativeMRILib import MRFRequest, QuantitativeMRICore

    t1, t2 = np.full((1, 32, 32), 900.0), np.full((1, 32, 32), 70.0)  # on the small dictionary's grid
    t1[:, 8:24, 8:24], t2[:, 8:24, 8:24] = 1400.0, 40.0
    frames = simulate(representative_schedule(), t1, t2).numpy().astype(np.float32)
    path = write_frames_nifti(frames, _ref((1, 32, 32)), tmp_path / "sub.nii.gz")
    (tmp_path / "schedule.json").write_text((data_dir() / "schedule_representative.json").read_text())
    core = QuantitativeMRICore(mrml_scene)
    request = MRFRequest("both", dictionary=str(small_dictionary[1]), device="cpu")
    job = core.start_mrf(str(path), request, python=sys.executable)
    assert [c[1] for c in job.run.commands] == ["match", "predict"]
    assert _wait(job).returncode == 0, job.run.poll().log
    out = core.finish(job)
    assert list(out.volumes) == [
        "sub_match_T1_ms", "sub_match_T2star_ms", "sub_match_B1_scale", "sub_match_PD_au", "sub_match_quality_cosine",
        "sub_UNet_T1_ms", "sub_UNet_T2star_ms", "sub_UNet_NAWM_percent", "sub_UNet_GM_percent",
        "sub_UNet_lesion_percent"]
    np.testing.assert_allclose(volume_from_node(out.volumes["sub_match_T1_ms"]).data, t1, rtol=1e-6)
    np.testing.assert_allclose(volume_from_node(out.volumes["sub_match_T2star_ms"]).data, t2, rtol=1e-6)
    for name in ("NAWM", "GM", "lesion"):
        p = volume_from_node(out.volumes[f"sub_UNet_{name}_percent"]).data
        assert p.min() >= 0.0 and p.max() <= 100.0
    assert "SYNTHETIC" in out.volumes["sub_UNet_T1_ms"].GetAttribute("NeuroShift.Model")
    assert out.segmentation.GetName() == "sub_lesion_33percent"
    np.testing.assert_allclose(_matrix(out.volumes["sub_UNet_lesion_percent"]), IJK_TO_RAS, atol=1e-5)


def test_a_dictionary_of_another_schedule_fails_with_the_cli_message(mrml_scene, small_dictionary, tmp_path):
    from neuroshift.errors import NeuroShiftError
    from neuroshift.mrf.schedule import data_dir
    from QuantitativeMRILib import MRFRequest, QuantitativeMRICore
    from QuantitativeMRILib.frames import frames_to_sequence

    doc = json.loads((data_dir() / "schedule_representative.json").read_text())
    doc["frames"][0]["fa_deg"] += 1.0  # 34 -> 35 degrees: another schedule hash
    (tmp_path / "other.json").write_text(json.dumps(doc))
    seq = frames_to_sequence(mrml_scene, np.ones((1, 2, 3, 35), np.float32), _ref((1, 2, 3)), "MRF")
    core = QuantitativeMRICore(mrml_scene)
    job = core.start_mrf(seq, MRFRequest("match", schedule=str(tmp_path / "other.json"),
                                         dictionary=str(small_dictionary[1])), python=sys.executable)
    assert _wait(job).returncode == 2
    before = mrml_scene.GetNumberOfNodes()
    with pytest.raises(NeuroShiftError, match=r"mrf failed: \[step 1/1 \(mrf match\)\] .* was made for schedule"):
        core.finish(job)
    assert mrml_scene.GetNumberOfNodes() == before and not job.workdir.exists()


def test_cancel_ends_the_run_and_leaves_nothing(mrml_scene, tmp_path):
    import time

    from neuroshift.mrf.schedule import data_dir
    from QuantitativeMRILib import MRFRequest, QuantitativeMRICore
    from QuantitativeMRILib.frames import frames_to_sequence

    seq = frames_to_sequence(mrml_scene, np.ones((1, 2, 3, 35), np.float32), _ref((1, 2, 3)), "MRF")
    core = QuantitativeMRICore(mrml_scene)
    before = mrml_scene.GetNumberOfNodes()
    job = core.start_mrf(seq, MRFRequest("match", schedule=str(data_dir() / "schedule_representative.json")),
                         python=sys.executable)  # no dictionary: the full one is simulated first (tens of s)
    time.sleep(1.0)
    core.cancel(job)
    state = job.run.poll()
    assert state.returncode is not None and state.returncode != 0 and job.run.step == 0
    assert not job.workdir.exists() and mrml_scene.GetNumberOfNodes() == before


def _se(pd, t1, t2, te, tr):
    return pd * (1 - np.exp(-tr / t1)) * np.exp(-te / t2)


def test_fit_in_the_background_recovers_t2(mrml_scene, tmp_path):
    from neuroshift_slicer.volume_nodes import volume_from_node
    from QuantitativeMRILib import FitRequest, QuantitativeMRICore

    t2 = np.array([40.0, 80.0, 120.0, 200.0, 60.0, 90.0]).reshape(1, 2, 3)
    a = _volume_node(mrml_scene, _se(1000.0, 1000.0, t2, 15.0, 3000.0), "e15")
    b = _volume_node(mrml_scene, _se(1000.0, 1000.0, t2, 90.0, 3000.0), "e90")
    core = QuantitativeMRICore(mrml_scene)
    job = core.start_fit([a, b], FitRequest(["se", "se"], ["TE=15,TR=3000", "TE=90,TR=3000"]),
                         python=sys.executable)
    assert _wait(job).returncode == 0, job.run.poll().log
    out = core.finish(job)
    assert set(out.volumes) == {"e15_PD_au", "e15_T2_ms"}  # one TR: T1 not identified
    np.testing.assert_allclose(volume_from_node(out.volumes["e15_T2_ms"]).data, t2, rtol=1e-3)
    np.testing.assert_allclose(_matrix(out.volumes["e15_T2_ms"]), IJK_TO_RAS, rtol=0, atol=1e-12)
    assert any(m.startswith("identified: ") and "T2" in m for m in out.messages)


def test_fit_reads_parameters_from_the_sidecar_beside_the_loaded_file(mrml_scene, tmp_path):
    from QuantitativeMRILib import QuantitativeMRICore

    node = _volume_node(mrml_scene, np.ones((1, 2, 3)), "e1")
    (tmp_path / "e1.json").write_text(json.dumps({"EchoTime": 0.015, "RepetitionTime": 3.0}))
    storage = mrml_scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "e1.nii.gz"))
    node.SetAndObserveStorageNodeID(storage.GetID())
    assert QuantitativeMRICore.params_text(node, "") == "TE=15,TR=3000"
    assert QuantitativeMRICore.params_text(node, " TE=20,TR=2000 ") == "TE=20,TR=2000"
    assert QuantitativeMRICore.params_text(_volume_node(mrml_scene, np.ones((1, 2, 3)), "x"), "") == ""
    node.SetAttribute("DICOM.InversionTime", "2500")  # below the sidecar in precedence, but it adds TI
    node.SetAttribute("DICOM.EchoTime", "99")
    node.SetAttribute("NeuroShift.TR_ms", "9000")  # above the sidecar
    assert QuantitativeMRICore.params_text(node, "") == "TE=15,TI=2500,TR=9000"


def test_synth_in_the_background_is_named_synthetic_and_equals_the_engine(mrml_scene):
    from neuroshift.io.params import AcquisitionParams
    from neuroshift.qmri.maps import QMRIMaps
    from neuroshift.qmri.synth import synthesize
    from neuroshift_slicer.volume_nodes import volume_from_node
    from QuantitativeMRILib import QuantitativeMRICore, SynthRequest

    pd = np.array([800.0, 900.0, 1000.0, 700.0, 600.0, 500.0]).reshape(1, 2, 3)
    t1 = np.array([900.0, 1300.0, 4000.0, 800.0, 1000.0, 1200.0]).reshape(1, 2, 3)
    t2 = np.array([70.0, 90.0, 400.0, 60.0, 80.0, 100.0]).reshape(1, 2, 3)
    nodes = {"PD": _volume_node(mrml_scene, pd, "sub_PD_au"), "T1": _volume_node(mrml_scene, t1, "sub_T1_ms"),
             "T2": _volume_node(mrml_scene, t2, "sub_T2_ms")}
    core = QuantitativeMRICore(mrml_scene)
    job = core.start_synth(nodes, SynthRequest("flair", "TE=112,TI=2500,TR=9000"), python=sys.executable)
    assert _wait(job).returncode == 0, job.run.poll().log
    out = core.finish(job)
    node = out.volumes["sub_SYNTHETIC_FLAIR"]
    assert node.GetAttribute("NeuroShift.Synthetic") == "true"
    assert json.loads(node.GetAttribute("NeuroShift.Sidecar"))["InversionTime"] == 2.5
    assert node.GetAttribute("NeuroShift.sequence") == "flair" and node.GetAttribute("NeuroShift.TI_ms") == "2500"
    assert core.params_text(node, "") == "TE=112,TI=2500,TR=9000"  # the fit panel reads the synthetic's parameters
    maps = QMRIMaps({k: volume_from_node(n) for k, n in nodes.items()})
    expected = synthesize(maps, "flair", AcquisitionParams.parse("TE=112,TI=2500,TR=9000")).data
    np.testing.assert_allclose(volume_from_node(node).data, expected, rtol=1e-5)
    np.testing.assert_allclose(_matrix(node), IJK_TO_RAS, rtol=0, atol=1e-12)


def test_synth_needs_pd_and_known_map_names(mrml_scene):
    from neuroshift.errors import InputError
    from QuantitativeMRILib import QuantitativeMRICore, SynthRequest

    core = QuantitativeMRICore(mrml_scene)
    t1 = _volume_node(mrml_scene, np.ones((1, 2, 3)), "T1")
    with pytest.raises(InputError, match="choose the PD map"):
        core.start_synth({"T1": t1, "PD": None}, SynthRequest())
    with pytest.raises(InputError, match=r"unknown map\(s\) \['R2'\]"):
        core.start_synth({"PD": t1, "R2": t1}, SynthRequest())


# ---------------------------------------------------------------------------------------------- module file
def test_panel_values_become_requests(load_module_file):
    import types

    module = load_module_file("QuantitativeMRI")
    p = types.SimpleNamespace(mrfMethod=module.MRFMethod.both, mrfSchedule="s.json", mrfModel="", mrfDictionary="",
                              mrfDenoise=True, mrfSvdEnergy=0.0, mrfDevice="cpu", mrfSegmentLesions=False,
                              mrfThreshold=33.0)
    r = module.mrf_request(p)
    assert (r.method, r.svd_energy, r.lesion_threshold_percent, r.denoise) == ("both", None, None, True)
    assert r.device == "cpu" and r.dictionary_cache.endswith("mrf-dictionaries")
    p.mrfSvdEnergy, p.mrfSegmentLesions, p.mrfThreshold = 0.999, True, 40.0
    assert (module.mrf_request(p).svd_energy, module.mrf_request(p).lesion_threshold_percent) == (0.999, 40.0)
    rows = {"fitImage1": "A", "fitImage2": None, "fitImage3": "C", "fitImage4": None, "fitMethod": "nlls",
            **{f"fitSequence{i}": s for i, s in enumerate(["se", "ir", "gre", "se"], 1)},
            **{f"fitParams{i}": f"TE={i}" for i in range(1, 5)}}
    images, fit = module.fit_rows(types.SimpleNamespace(**rows))
    assert images == ["A", "C"] and fit.sequences == ["se", "gre"] and fit.params == ["TE=1", "TE=3"]
    assert fit.method == "nlls"
    s = types.SimpleNamespace(synthPD="PD", synthT1="T1", synthT2=None, synthT2star=None, synthB1=None,
                              synthSequence="se", synthTarget="TE=80,TR=3000", synthField=0.0, synthNoise=0.5,
                              synthSeed=-1, synthT2starForT2=True)
    maps, syn = module.synth_request(s)
    assert maps == {"PD": "PD", "T1": "T1", "T2": None, "T2star": None, "B1": None}
    assert (syn.field_T, syn.seed, syn.noise_sigma, syn.t2star_for_t2) == (None, None, 0.5, True)
    s.synthField, s.synthSeed = 3.0, 4
    assert (module.synth_request(s)[1].field_T, module.synth_request(s)[1].seed) == (3.0, 4)


def test_cmake_lists_every_python_file_of_the_module():
    """A file missing from MODULE_PYTHON_SCRIPTS is not installed: the module fails to import in a built Slicer."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cmake = (root / "QuantitativeMRI" / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = {line.strip().replace("${MODULE_NAME}", "QuantitativeMRI") for line in cmake.splitlines()
              if line.strip().startswith("${MODULE_NAME}")}
    files = {str(p.relative_to(root / "QuantitativeMRI")) for p in (root / "QuantitativeMRI").rglob("*.py")}
    assert listed == files
    assert "add_subdirectory(QuantitativeMRI)" in (root / "CMakeLists.txt").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_self_test_runs_under_the_stand_ins(load_module_file):
    """The ScriptedLoadableModuleTest that runs inside Slicer, run here on a real MRML scene with the engine
    in a child process (the stand-in base class has no asserts, so unittest.TestCase provides them)."""
    import unittest

    module = load_module_file("QuantitativeMRI")

    class SelfTest(module.QuantitativeMRITest, unittest.TestCase):
        messages: list = []

        def __init__(self, name):
            unittest.TestCase.__init__(self, name)  # the stand-in base swallows the arguments

        def delayDisplay(self, message):
            self.messages.append(message)

    test = SelfTest("test_QuantitativeMRI_match_and_synth")
    test.runTest()
    assert SelfTest.messages == ["QuantitativeMRI test passed"]


def test_outputs_take_the_input_grid_exactly_and_unique_names(mrml_scene, tmp_path):
    """NIfTI keeps the grid in float32: outputs get the input node's matrix back exactly (checked to 1e-3 mm),
    a file on another grid is refused, and a second run does not reuse the first run's node names."""
    from neuroshift.errors import GeometryError
    from neuroshift.io.files import write_volume
    from QuantitativeMRILib import QuantitativeMRICore

    write_volume(_ref().with_data(np.arange(24, dtype=np.float32).reshape(2, 3, 4)), tmp_path / "T1.nii.gz")
    core = QuantitativeMRICore(mrml_scene)
    exact = IJK_TO_RAS.copy()
    first = core.add_map(tmp_path / "T1.nii.gz", "x_T1_ms", "ms", "test", exact)
    second = core.add_map(tmp_path / "T1.nii.gz", "x_T1_ms", "ms", "test", exact)
    assert (first.GetName(), second.GetName()) == ("x_T1_ms", "x_T1_ms_1")
    assert np.array_equal(_matrix(first), exact) and first.GetAttribute("NeuroShift.Units") == "ms"
    from neuroshift_slicer.volume_nodes import volume_from_node

    assert volume_from_node(first).data[1, 2, 3] == 23.0
    moved = exact.copy()
    moved[0, 3] += 1.0
    with pytest.raises(GeometryError, match="T1.nii.gz: written on another grid"):
        core.add_map(tmp_path / "T1.nii.gz", "y", "ms", "test", moved)
