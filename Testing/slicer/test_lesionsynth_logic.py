"""LesionSynth module logic against a real MRML scene (slicer-core): command lines built from the panel's choices,
model resolution, markup points -> lesion mask voxels (literal counts), background synthesis and lesion insertion
through the CLI with geometry kept (matrices asserted), SYNTHETIC names and attributes, the uncertainty overlay,
Cancel, and clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neuroshift.io.volume import Volume

from helpers.seg_helpers import phantom_ras, stored_as

SYNTHDIR_ARCH = {"in_channels": 2, "out_channels": 1, "base": 4, "depth": 2, "dropout": 0.3}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NEUROSHIFT_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the background CLI runs on the shared CPU


def _geometry(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _manifest(folder: Path, task: str, target: str, inputs) -> Path:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"task": task, "target": target, "inputs": list(inputs),
                                                      "architecture": {}, "trained_on": "test"}), encoding="utf-8")
    return folder


def _oblique_scan(depth: int = 6) -> Volume:
    """A small SYNTHETIC head-like scan stored LPS-first with an origin offset (a wrong matrix would show)."""
    vol = stored_as(phantom_ras(spacing=(1.0, 1.1, 1.2), fov_mm=(40.0, 44.0, 1.2 * depth)), "LPS")
    return Volume(vol.data, vol.spacing, vol.origin + np.array([4.5, -3.0, 12.25]), vol.direction)


# ---------------------------------------------------------------------------------------------- command lines
def test_synthesize_command_from_the_panel_choices(tmp_path):
    from LesionSynthLib.synthesis import SynthesisParameters, build_command

    params = SynthesisParameters(target="dir", device="cpu", uncertainty=True, mc_samples=7, tta=True, seed=3)
    paths = {"t2": tmp_path / "input_t2.nii.gz", "flair": tmp_path / "input_flair.nii.gz",
             "brain_mask": tmp_path / "input_brain_mask.nii.gz"}
    args, outputs = build_command(paths, params, "/models/synthdir-demo", tmp_path)
    assert args == ["synthesize", str(tmp_path / "synthetic.nii.gz"), "--target", "dir", "--model",
                    "/models/synthdir-demo", "--flair", str(paths["flair"]), "--t2", str(paths["t2"]),
                    "--brain-mask", str(paths["brain_mask"]), "--uncertainty", str(tmp_path / "uncertainty.nii.gz"),
                    "--mc-samples", "7", "--seed", "3", "--tta", "--device", "cpu"]
    assert outputs == {"synthetic": tmp_path / "synthetic.nii.gz", "sidecar": tmp_path / "synthetic.json",
                       "uncertainty": tmp_path / "uncertainty.nii.gz"}
    params = SynthesisParameters(target="t1c", histogram_match=False)
    args, outputs = build_command({"low_dose": "l.nii.gz", "adc": "a.nii.gz", "t1": "t.nii.gz", "flair": "f.nii.gz"},
                                  params, "m", tmp_path)
    assert args[5:] == ["m", "--flair", "f.nii.gz", "--t1", "t.nii.gz", "--adc", "a.nii.gz", "--low-dose", "l.nii.gz",
                        "--no-histogram-match", "--device", "auto"]
    assert set(outputs) == {"synthetic", "sidecar"}
    with pytest.raises(Exception, match="at least 2 samples"):
        build_command(paths, SynthesisParameters(uncertainty=True, mc_samples=1), "m", tmp_path)


def test_insert_lesions_command_from_the_panel_choices(tmp_path):
    from LesionSynthLib.insertion import InsertionParameters, build_command

    params = InsertionParameters(sequence="flair", parameters="TE=112,TI=2500,TR=9000", diameter_mm=5.0, count=4,
                                 seed=9)
    args, outputs = build_command(tmp_path / "host.nii.gz", tmp_path / "pv", params, tmp_path)
    assert args == ["insert-lesions", str(tmp_path / "out"), "--image", f"{tmp_path / 'host.nii.gz'}:flair", "--pv",
                    str(tmp_path / "pv"), "--source", "TE=112,TI=2500,TR=9000", "--count", "4", "--diameter",
                    "5.0,5.0", "--seed", "9"]
    assert outputs["image"] == tmp_path / "out" / "host_lesions.nii.gz"
    assert outputs["mask"] == tmp_path / "out" / "lesion_mask.nii.gz"
    args, _ = build_command(tmp_path / "host.nii.gz", tmp_path / "pv", params, tmp_path, tmp_path / "lesions.nii.gz")
    assert args[-2:] == ["--mask", str(tmp_path / "lesions.nii.gz")] and "--count" not in args
    with pytest.raises(Exception, match="FLAIR needs TI") as err:
        build_command(tmp_path / "h.nii.gz", tmp_path / "pv", InsertionParameters(parameters="TE=112,TR=9000"),
                      tmp_path)
    assert "acquisition parameters field" in str(err.value) and "--source" not in str(err.value)


# ---------------------------------------------------------------------------------------------- models
def test_model_listing_prefers_the_bundled_demos_and_checks_inputs(tmp_path):
    from neuroshift.errors import InputError
    from LesionSynthLib.synthesis import SynthesisParameters, available_models, resolve_model

    models = tmp_path / "models"
    _manifest(models / "a-other-dir", "diamondgan", "dir", ("flair", "t1", "t2"))
    _manifest(models / "synthdir-demo", "synthdir", "dir", ("flair", "t1"))
    _manifest(models / "dir-demo", "diamondgan", "dir", ("flair", "t1", "t2"))
    _manifest(models / "vt1c-demo", "vt1c", "t1c", ("adc", "flair", "t1", "low_dose"))
    (models / "wmh").mkdir()
    (models / "wmh" / "manifest.json").write_text('{"task": "wmh", "input_channels": ["FLAIR"]}')
    assert [m["name"] for m in available_models("dir")] == ["synthdir-demo", "dir-demo", "a-other-dir"]
    assert [m["name"] for m in available_models("t1c")] == ["vt1c-demo"]

    def resolve(given, **kw):
        return Path(resolve_model(SynthesisParameters(**kw), given)).name

    assert resolve(["t2"]) == "dir-demo"  # DiamondGAN: any subset
    assert resolve(["flair", "t1"]) == "synthdir-demo"  # preferred where it takes the inputs
    assert resolve(["flair", "t1"], uncertainty=True) == "synthdir-demo"  # only synthDIR has dropout
    assert resolve(["adc", "flair", "t1", "low_dose"], target="t1c") == "vt1c-demo"
    with pytest.raises(InputError, match="missing ADC, low-dose T1c"):
        resolve(["flair", "t1"], target="t1c")
    with pytest.raises(InputError, match="no installed DIR model takes T2 with uncertainty"):
        resolve(["t2"], uncertainty=True)
    with pytest.raises(InputError, match="synthesises t1c, not dir"):
        resolve(["flair"], model=str(models / "vt1c-demo"))
    with pytest.raises(InputError, match="not a synthesis model package"):
        resolve(["flair"], model=str(models / "wmh"))


# ---------------------------------------------------------------------------------------------- points -> mask
def _reference(spacing, direction=None, origin=(0.0, 0.0, 0.0), shape=(21, 21, 21)) -> Volume:
    return Volume(np.zeros(shape, np.float32), spacing, np.array(origin), np.eye(3) if direction is None else direction)


def _rotation(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def test_points_to_mask_voxel_counts():
    """Voxel centres within d/2 of a point. 1 mm isotropic, d = 5 mm: lattice points with x²+y²+z² <= 6.25 (= <= 6):
    1 + 6 + 12 + 8 + 6 + 24 + 24 = 81, in any orientation (the count is invariant to a rotation of the grid about a
    voxel centre). Spacing 1 x 1 x 2 mm: x²+y²+(2z)² <= 6.25: 21 in the plane z = 0 and 9 in each of z = ±1: 39."""
    from LesionSynthLib import points_to_mask

    for reference in (_reference([1, 1, 1]), _reference([1, 1, 1], _rotation(30), (4.5, -3.0, 12.25))):
        centre = (reference.ijk_to_ras() @ [10, 10, 10, 1.0])[:3]
        mask = points_to_mask([("p", centre)], reference, 5.0)
        assert mask.data.dtype == np.uint8 and int(mask.data.sum()) == 81
        assert mask.data[10, 10, 10] == 1 and mask.same_grid(reference)
        far = (reference.ijk_to_ras() @ [3, 3, 3, 1.0])[:3]
        assert int(points_to_mask([("p", centre), ("q", far)], reference, 5.0).data.sum()) == 162
    reference = _reference([1, 1, 2])
    centre = (reference.ijk_to_ras() @ [10, 10, 10, 1.0])[:3]
    assert int(points_to_mask([("p", centre)], reference, 5.0).data.sum()) == 39
    # a ball cut by the grid border keeps the voxels inside: centred on the corner voxel, one octant of the 81:
    # non-negative (a, b, c) with a²+b²+c² = 0, 1, 2, 3, 4, 5, 6: 1 + 3 + 3 + 1 + 3 + 6 + 3 = 20
    reference = _reference([1, 1, 1], _rotation(30), (4.5, -3.0, 12.25))
    corner = (reference.ijk_to_ras() @ [0, 0, 0, 1.0])[:3]
    assert int(points_to_mask([("c", corner)], reference, 5.0).data.sum()) == 20


def test_points_outside_the_host_are_refused():
    from neuroshift.errors import InputError
    from LesionSynthLib import points_to_mask

    reference = _reference([1, 1, 1])
    with pytest.raises(InputError, match=r"point 'F-2' at RAS \(-80.0, 5.0, 5.0\) mm is outside the host"):
        points_to_mask([("F-1", np.array([-5.0, -5.0, 5.0])), ("F-2", np.array([-80.0, 5.0, 5.0]))], reference, 4.0)
    with pytest.raises(InputError, match="no control points"):
        points_to_mask([], reference, 4.0)


def test_markup_points_in_world_ras(mrml_scene):
    from LesionSynthLib import markup_points_ras, points_to_mask

    points = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "lesions")
    points.AddControlPoint([-3.0, 7.5, 1.25], "L1")
    points.AddControlPoint([2.0, -1.0, 0.0], "L2")
    got = markup_points_ras(points)
    assert [label for label, _p in got] == ["L1", "L2"]
    np.testing.assert_allclose(got[0][1], [-3.0, 7.5, 1.25])
    reference = _reference([1, 1, 1], origin=(-10.0, -10.0, -10.0))
    mask = points_to_mask(got, reference, 3.0)
    # L2 sits on voxel (12, 9, 10): x²+y²+z² <= 2.25 -> 1 + 6 + 12 = 19 voxels. L1 = voxel (7, 17.5, 11.25), between
    # centres: offsets dy = ±0.5 with dz = -0.25 (any dx of -1, 0, 1: 6), dz = 0.75 (any dx: 6), dz = -1.25 (dx = 0:
    # 2); dy = ±1.5 is already 2.25 -> 14 voxels.
    assert int(mask.data.sum()) == 19 + 14


# ---------------------------------------------------------------------------------------------- node helpers
def test_synthetic_tags_and_uncertainty_overlay(mrml_scene):
    from LesionSynthLib.nodes import (DESCRIPTION_ATTRIBUTE, UNCERTAINTY_COLOR_NODE_ID, is_synthetic,
                                      show_uncertainty_overlay, synthetic_name, tag_synthetic)
    from neuroshift_slicer.volume_nodes import add_volume_node

    assert synthetic_name("FLAIR DIR") == "FLAIR DIR SYNTHETIC" and synthetic_name("a synthetic b") == "a synthetic b"
    scan = _oblique_scan(2)
    image = add_volume_node(mrml_scene, scan, "DIR")
    unc = add_volume_node(mrml_scene, scan, "sd")
    tag_synthetic(image, "made by a test")
    assert image.GetName() == "DIR SYNTHETIC" and is_synthetic(image) and not is_synthetic(unc)
    assert image.GetAttribute(DESCRIPTION_ATTRIBUTE) == "made by a test"
    views = [mrml_scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _v in range(3)]
    show_uncertainty_overlay(mrml_scene, image, unc)
    assert unc.GetDisplayNode().GetColorNodeID() == UNCERTAINTY_COLOR_NODE_ID
    for view in views:
        assert (view.GetBackgroundVolumeID(), view.GetForegroundVolumeID()) == (image.GetID(), unc.GetID())
        assert view.GetForegroundOpacity() == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------- background runs
@pytest.fixture(scope="module")
def synthdir_package(tmp_path_factory):
    import torch

    from neuroshift.synthesis.inference import save_package
    from neuroshift.synthesis.pix2pix import UNetGenerator

    folder = tmp_path_factory.mktemp("pkg") / "synthdir-test"
    torch.manual_seed(0)
    save_package(folder, "synthdir", "dir", ("flair", "t1"), SYNTHDIR_ARCH, UNetGenerator(**SYNTHDIR_ARCH),
                 {"trained_on": "untrained test package"})
    return folder


def test_background_synthesis_keeps_geometry_and_tags_outputs(mrml_scene, synthdir_package, tmp_path):
    """The panel's run end to end: nodes -> files -> ``neuroshift synthesize`` in a child process -> nodes. The
    synthetic node equals what the CLI computes from the same inputs, voxel for voxel, on the input's matrix."""
    from neuroshift.cli.main import main
    from neuroshift.io.files import read_volume, write_volume
    from neuroshift_slicer.volume_nodes import add_volume_node, volume_from_node
    from LesionSynthLib import SYNTHETIC_ATTRIBUTE, SynthesisCore, SynthesisParameters
    from LesionSynthLib.nodes import UNCERTAINTY_COLOR_NODE_ID

    scan = _oblique_scan()
    flair = add_volume_node(mrml_scene, scan, "FLAIR")
    t1 = add_volume_node(mrml_scene, scan.with_data(np.where(scan.data > 0, 300.0 - scan.data, 0)), "T1")
    view = mrml_scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    core = SynthesisCore(mrml_scene)
    params = SynthesisParameters(target="dir", model=str(synthdir_package), device="cpu", uncertainty=True,
                                 mc_samples=3, seed=1)
    job = core.start_background({"t1": t1, "flair": flair, "t2": None}, params)
    state = job.run.wait(240)
    assert state.returncode == 0, state.log
    out = core.finish_background(job)
    assert not job.workdir.exists()  # temporary files removed

    assert out.synthetic.GetName() == "FLAIR DIR SYNTHETIC" and out.synthetic.GetAttribute(SYNTHETIC_ATTRIBUTE) == "true"
    assert "synthdir-test" in out.synthetic.GetAttribute("NeuroShift.SyntheticDescription")
    assert out.uncertainty.GetName() == "FLAIR DIR SYNTHETIC MC SD"
    assert "mc_dropout" in out.uncertainty.GetAttribute("NeuroShift.SyntheticDescription")  # the kind, from the sidecar
    for node in (out.synthetic, out.uncertainty):
        np.testing.assert_allclose(_geometry(node), _geometry(flair), atol=1e-6)
        np.testing.assert_allclose(_geometry(node), scan.ijk_to_ras(), atol=1e-6)
    assert out.sidecar["Synthetic"] is True and out.sidecar["MCSamples"] == 3
    assert view.GetForegroundVolumeID() == out.uncertainty.GetID()
    assert out.uncertainty.GetDisplayNode().GetColorNodeID() == UNCERTAINTY_COLOR_NODE_ID

    # parity with the CLI run on the same files (in this process: float32 sums in another thread count, so to 1e-5)
    write_volume(scan, tmp_path / "f.nii.gz")
    write_volume(volume_from_node(t1), tmp_path / "t.nii.gz")
    assert main(["synthesize", str(tmp_path / "d.nii.gz"), "--target", "dir", "--model", str(synthdir_package),
                 "--flair", str(tmp_path / "f.nii.gz"), "--t1", str(tmp_path / "t.nii.gz"), "--uncertainty",
                 str(tmp_path / "sd.nii.gz"), "--mc-samples", "3", "--seed", "1", "--device", "cpu"]) == 0
    np.testing.assert_allclose(volume_from_node(out.synthetic).data, read_volume(tmp_path / "d.nii.gz").data,
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(volume_from_node(out.uncertainty).data, read_volume(tmp_path / "sd.nii.gz").data,
                               rtol=1e-5, atol=1e-3)
    brain = scan.data != 0
    assert not volume_from_node(out.synthetic).data[~brain].any() and volume_from_node(out.uncertainty).data.max() > 0

    # finishing into the chosen nodes fills them instead of adding new ones (a finished run, stubbed)
    import shutil
    import types

    from neuroshift_slicer.background import RunState
    from LesionSynthLib.synthesis import SynthesisJob

    work = tmp_path / "work"
    work.mkdir()
    for src, dst in (("d.nii.gz", "synthetic.nii.gz"), ("d.json", "synthetic.json"), ("sd.nii.gz", "sd.nii.gz")):
        shutil.copy(tmp_path / src, work / dst)
    done = types.SimpleNamespace(poll=lambda: RunState(1.0, "", 0, []))
    job = SynthesisJob(done, work, {"synthetic": work / "synthetic.nii.gz", "sidecar": work / "synthetic.json",
                                    "uncertainty": work / "sd.nii.gz"}, params, "FLAIR", str(synthdir_package))
    n_volumes = mrml_scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    again = core.finish_background(job, out.synthetic, out.uncertainty)
    assert again.synthetic is out.synthetic and again.uncertainty is out.uncertainty
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == n_volumes and not work.exists()
    failed = types.SimpleNamespace(poll=lambda: RunState(0.4, "", 2, ["neuroshift: error: brain mask is empty"]))
    work.mkdir()
    with pytest.raises(Exception, match="synthesis failed: neuroshift: error: brain mask is empty"):
        core.finish_background(SynthesisJob(failed, work, {}, params, "FLAIR", "m"))
    assert not work.exists()


def test_cancel_ends_the_run_and_removes_its_files(mrml_scene, synthdir_package):
    from neuroshift_slicer.volume_nodes import add_volume_node
    from LesionSynthLib import SynthesisCore, SynthesisParameters

    scan = _oblique_scan()
    flair = add_volume_node(mrml_scene, scan, "FLAIR")
    t1 = add_volume_node(mrml_scene, scan, "T1")
    core = SynthesisCore(mrml_scene)
    job = core.start_background({"flair": flair, "t1": t1},
                                SynthesisParameters(model=str(synthdir_package), device="cpu"))
    core.cancel_background(job)
    assert job.run.process.poll() is not None and not job.workdir.exists()
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 2  # nothing added


def test_bad_synthesis_inputs_are_refused_before_any_process_starts(mrml_scene, synthdir_package):
    from neuroshift.errors import GeometryError, InputError
    from neuroshift_slicer.volume_nodes import add_volume_node
    from LesionSynthLib import SynthesisCore, SynthesisParameters

    scan = _oblique_scan()
    flair = add_volume_node(mrml_scene, scan, "FLAIR a")
    shifted = add_volume_node(mrml_scene, Volume(scan.data, scan.spacing, scan.origin + 2.0, scan.direction), "T1 b")
    core = SynthesisCore(mrml_scene)
    params = SynthesisParameters(model=str(synthdir_package), device="cpu")
    with pytest.raises(GeometryError, match="'T1 b' \\(t1\\) is not on the grid of 'FLAIR a' \\(flair\\)"):
        core.start_background({"flair": flair, "t1": shifted}, params)
    with pytest.raises(InputError, match="choose at least one input"):
        core.start_background({"flair": None}, params)
    with pytest.raises(InputError, match="needs every input; missing T1"):
        core.start_background({"flair": flair}, params)
    transform = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shifted.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="'T1 b' is under a transform"):
        core.start_background({"flair": flair, "t1": shifted}, params)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    from neuroshift.phantom import make_phantom

    d = tmp_path_factory.mktemp("phantom")
    make_phantom(d, seed=0, quantitative=False)
    return d


@pytest.mark.parametrize("tissue_source", ["label map", "partial-volume maps"])
def test_background_lesion_insertion_from_markup_points(mrml_scene, phantom_dir, tissue_source):
    """Points + diameter -> the mask the CLI inserts; the written mask equals it; outside the mask dilated by 2
    voxels the host is unchanged; geometry and SYNTHETIC tags on both outputs; tissues from a label map or from
    partial-volume maps."""
    from scipy import ndimage as ndi

    from neuroshift.io.files import read_volume
    from neuroshift_slicer.volume_nodes import add_volume_node, volume_from_node
    from LesionSynthLib import InsertionCore, InsertionParameters, known_parameters, known_sequence, points_to_mask

    host_vol = read_volume(phantom_dir / "FLAIR.nii.gz")
    host = add_volume_node(mrml_scene, host_vol, "FLAIR")
    for keyword, value in (("EchoTime", "112"), ("InversionTime", "2500"), ("RepetitionTime", "9000")):
        host.SetAttribute(f"DICOM.{keyword}", value)  # as Slicer's DICOM loader / ShiftSimulator record them
    host.SetAttribute("NeuroShift.TE_ms", "110")  # a typed value wins over the header
    assert known_parameters(host) == "TE=110,TI=2500,TR=9000"
    assert known_sequence(host) is None
    host.SetAttribute("NeuroShift.sequence", "FLAIR")
    assert known_sequence(host) == "flair"
    if tissue_source == "label map":
        tissues = add_volume_node(mrml_scene, read_volume(phantom_dir / "tissue_labels.nii.gz"), "tissues",
                                  labelmap=True)
    else:
        tissues = {t: add_volume_node(mrml_scene, read_volume(phantom_dir / f"pv_{t}.nii.gz"), f"pv {t}")
                   for t in ("CSF", "GM", "WM")}
    wm = read_volume(phantom_dir / "pv_WM.nii.gz").data >= 0.99
    core_wm = ndi.binary_erosion(wm, iterations=4)
    k, j, i = np.argwhere(core_wm)[len(np.argwhere(core_wm)) // 2]
    centre = (host_vol.ijk_to_ras() @ [i, j, k, 1.0])[:3]
    points = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "lesions")
    points.AddControlPoint(list(centre), "L1")
    params = InsertionParameters(sequence="flair", parameters=known_parameters(host), diameter_mm=8.0)
    expected = points_to_mask([("L1", centre)], host_vol, 8.0).data
    assert int(expected.sum()) == 33  # 2 mm voxels, radius 4 mm = 2 voxels: lattice points with r² <= 4: 1+6+12+8+6

    ins = InsertionCore(mrml_scene)
    job = ins.start_background(host, tissues, params, lesion_points=points)
    state = job.run.wait(240)
    assert state.returncode == 0, state.log
    out = ins.finish_background(job)
    assert not job.workdir.exists()
    assert out.image.GetName() == "FLAIR lesions SYNTHETIC" and out.image.GetAttribute("NeuroShift.Synthetic") == "true"
    assert out.mask.IsA("vtkMRMLLabelMapVolumeNode") and out.mask.GetName() == "FLAIR inserted lesion mask"
    for node in (out.image, out.mask):
        np.testing.assert_allclose(_geometry(node), host_vol.ijk_to_ras(), atol=1e-6)
    mask = volume_from_node(out.mask).data
    np.testing.assert_array_equal(mask, expected)
    assert out.lesion_voxels == 33
    after = volume_from_node(out.image).data
    outside = ~ndi.binary_dilation(expected > 0, iterations=2)
    np.testing.assert_array_equal(after[outside], host_vol.data[outside])
    assert after[expected > 0].mean() > 1.3 * host_vol.data[wm & outside].mean()  # FLAIR lesions are bright


def test_bad_insertion_inputs_are_refused(mrml_scene, phantom_dir):
    from neuroshift.errors import GeometryError, InputError, MissingParameterError
    from neuroshift.io.files import read_volume
    from neuroshift_slicer.volume_nodes import add_volume_node
    from LesionSynthLib import InsertionCore, InsertionParameters

    host_vol = read_volume(phantom_dir / "FLAIR.nii.gz")
    host = add_volume_node(mrml_scene, host_vol, "FLAIR")
    labels = add_volume_node(mrml_scene, read_volume(phantom_dir / "tissue_labels.nii.gz"), "tissues", labelmap=True)
    small = add_volume_node(mrml_scene, _oblique_scan(), "other grid", labelmap=True)
    ins = InsertionCore(mrml_scene)
    ok = InsertionParameters(sequence="flair", parameters="TE=112,TI=2500,TR=9000")
    with pytest.raises(InputError, match="choose the host's tissues"):
        ins.start_background(host, None, ok)
    with pytest.raises(InputError, match="choose CSF, GM and WM \\(missing CSF, WM\\)"):
        ins.start_background(host, {"CSF": None, "GM": labels, "WM": None}, ok)
    with pytest.raises(MissingParameterError, match="FLAIR needs TI"):
        ins.start_background(host, labels, InsertionParameters(sequence="flair", parameters="TE=112,TR=9000"))
    with pytest.raises(GeometryError, match="host 'FLAIR' and the tissue label map"):
        ins.start_background(host, small, ok)
    with pytest.raises(GeometryError, match="host 'FLAIR' and the GM map"):
        ins.start_background(host, {"CSF": labels, "GM": small, "WM": labels}, ok)
    with pytest.raises(GeometryError, match="host 'FLAIR' and the lesion mask"):
        ins.start_background(host, labels, ok, lesion_mask=small)
    far = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "far")
    far.AddControlPoint([900.0, 0.0, 0.0], "F")
    with pytest.raises(InputError, match="point 'F' at RAS \\(900.0, 0.0, 0.0\\) mm is outside the host volume"):
        ins.start_background(host, labels, ok, lesion_points=far)


# ---------------------------------------------------------------------------------------------- build and self-test
def test_cmake_lists_every_python_file_and_resource_of_the_module():
    """A file missing from MODULE_PYTHON_SCRIPTS / _RESOURCES is not installed: the module fails in a built Slicer."""
    root = Path(__file__).resolve().parents[2]
    cmake = (root / "LesionSynth" / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = {line.strip().replace("${MODULE_NAME}", "LesionSynth") for line in cmake.splitlines()
              if line.strip().startswith(("${MODULE_NAME}", "Resources/"))}
    files = {str(p.relative_to(root / "LesionSynth")) for p in (root / "LesionSynth").rglob("*")
             if p.is_file() and p.suffix in (".py", ".ui", ".png") and "__pycache__" not in p.parts}
    assert listed == files
    assert "add_subdirectory(LesionSynth)" in (root / "CMakeLists.txt").read_text(encoding="utf-8")


def test_the_self_test_runs_under_the_stand_ins(load_module_file):
    """The ScriptedLoadableModuleTest that runs inside Slicer (tiny synthDIR package through the background CLI;
    markup point -> 81-voxel ball), here on a real MRML scene (unittest.TestCase provides the asserts)."""
    import unittest

    module = load_module_file("LesionSynth")

    class SelfTest(module.LesionSynthTest, unittest.TestCase):
        messages: list = []

        def __init__(self, name):
            unittest.TestCase.__init__(self, name)  # the stand-in base swallows the arguments

        def delayDisplay(self, message):
            self.messages.append(message)

    SelfTest("runTest").runTest()
    assert SelfTest.messages == ["LesionSynth synthesis test passed", "LesionSynth points-to-mask test passed"]


def test_widget_state_follows_the_parameter_node(load_module_file, mrml_scene):
    """The widget's _updateGui under the stand-ins (plain objects for the .ui widgets and the parameter node): a
    newly chosen host fills sequence and parameters from its attributes, a reload of the same host keeps typed
    values, another host replaces them; PV maps disable the label map; buttons follow readiness; uncertainty is
    offered only for synthDIR (or an unknown) model."""
    import types

    module = load_module_file("LesionSynth")
    widget = module.LesionSynthWidget()
    names = {"adcLabel", "adcSelector", "lowDoseLabel", "lowDoseSelector", "mcSamplesSpinBox", "synthesizeButton",
             "uncertaintyCheckBox", "lesionCountSpinBox", "lesionDiameterSpinBox", "tissueSelector",
             "labelMappingLineEdit", "insertButton"}
    widget.ui = types.SimpleNamespace(**{n: types.SimpleNamespace() for n in names})
    widget.ui.modelComboBox = types.SimpleNamespace(currentData="/m/dg")
    widget.jobs = widget.insertJobs = types.SimpleNamespace(busy=False)
    widget._modelsForTarget = "dir"
    widget._modelTasks = {"/m/dg": "diamondgan", "/m/sd": "synthdir"}
    host_a = mrml_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "A")
    host_a.SetAttribute("DICOM.EchoTime", "90")
    host_a.SetAttribute("DICOM.RepetitionTime", "600")
    host_a.SetAttribute("NeuroShift.sequence", "se")
    host_b = mrml_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "B")
    fields = dict(target=module.SynthesisTarget.dir, modelPath="", uncertainty=True, hostVolume=host_a,
                  hostSequence="flair", hostParameters="", hostParametersFor="", pvCSF=None, pvGM=None, pvWM=None,
                  tissueLabels=None, lesionMask=None, lesionPoints=None,
                  **{f: None for f in module.INPUT_FIELDS.values()})
    p = widget._parameterNode = types.SimpleNamespace(**fields)
    widget._updateGui()
    assert (p.hostSequence, p.hostParameters, p.hostParametersFor) == ("se", "TE=90,TR=600", host_a.GetID())
    ui = widget.ui
    assert not ui.synthesizeButton.enabled and not ui.insertButton.enabled and ui.tissueSelector.enabled
    assert not ui.uncertaintyCheckBox.enabled and not ui.adcSelector.visible and ui.mcSamplesSpinBox.enabled
    p.hostParameters = "TE=95,TR=600"  # typed; a scene reload or module enter keeps it
    p.flairVolume, p.pvWM = host_b, host_b
    ui.modelComboBox.currentData = "/m/sd"
    widget._updateGui()
    assert p.hostParameters == "TE=95,TR=600" and ui.synthesizeButton.enabled and ui.insertButton.enabled
    assert not ui.tissueSelector.enabled and not ui.labelMappingLineEdit.enabled and ui.uncertaintyCheckBox.enabled
    p.hostVolume, p.target = host_b, module.SynthesisTarget.t1c
    widget._modelsForTarget = "t1c"
    widget._updateGui()
    assert (p.hostSequence, p.hostParameters) == ("se", "") and ui.adcSelector.visible and ui.lowDoseLabel.visible
    host_c = mrml_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "C")
    host_c.SetAttribute("DICOM.EchoTime", "-5")  # out of the physical range: not used, and the GUI keeps working
    p.hostVolume, p.hostParameters = host_c, "TE=1"
    ui.insertionStatusLabel = types.SimpleNamespace()
    widget._updateGui()
    assert p.hostParameters == "" and "TE_ms = -5 is outside" in ui.insertionStatusLabel.text


def test_uncertainty_colour_table_id_is_slicers_file_colour_node_id():
    """Slicer fact (Slicer main 583e9b3, 2026-08; the same since 5.0): the colour table files shipped in
    ``Base/Logic/Resources/ColorFiles/`` (``Inferno.txt`` among them, listed in ``Libs/MRML/Logic/vtkMRMLColorLogic.h``)
    become nodes whose ID ``vtkMRMLColorLogic::GetFileColorNodeID`` builds as ``vtkMRMLColorTableNode`` + ``File`` +
    file name. The overlay's fixed ID must be that one, computed here by the real MRML library."""
    from slicer import vtkMRMLColorLogic

    from LesionSynthLib.nodes import UNCERTAINTY_COLOR_NODE_ID

    assert vtkMRMLColorLogic.GetFileColorNodeID("Inferno.txt") == UNCERTAINTY_COLOR_NODE_ID
    assert UNCERTAINTY_COLOR_NODE_ID == "vtkMRMLColorTableNodeFileInferno.txt"


def test_a_package_with_an_error_model_gives_an_error_sd_node(mrml_scene, synthdir_package, tmp_path):
    """The CLI picks the package's error model (sidecar UncertaintyKind residual_sd...); finishing the run names
    the node '... error SD' and describes it as the learned SD of the error, not an MC standard deviation."""
    import shutil
    import types

    from neuroshift.cli.main import main
    from neuroshift.io.files import write_volume
    from neuroshift.synthesis import error_model as em
    from neuroshift.synthesis.inference import RESIDUAL
    from neuroshift_slicer.background import RunState
    from LesionSynthLib import SynthesisCore, SynthesisParameters
    from LesionSynthLib.synthesis import SynthesisJob

    pkg = tmp_path / "with-error"
    shutil.copytree(synthdir_package, pkg)
    arch = {"network": "UNet", "channels": [4, 8], "strides": [2], "num_res_units": 0}
    em.attach(pkg, em.build_error_net(2, arch), arch, {"trained_on": "untrained test error model"})
    scan = _oblique_scan()
    work = tmp_path / "work"
    work.mkdir()
    write_volume(scan, tmp_path / "f.nii.gz")
    assert main(["synthesize", str(work / "synthetic.nii.gz"), "--target", "dir", "--model", str(pkg), "--flair",
                 str(tmp_path / "f.nii.gz"), "--t1", str(tmp_path / "f.nii.gz"), "--uncertainty",
                 str(work / "sd.nii.gz"), "--mc-samples", "2", "--device", "cpu"]) == 0
    params = SynthesisParameters(target="dir", model=str(pkg), device="cpu", uncertainty=True, mc_samples=2)
    done = types.SimpleNamespace(poll=lambda: RunState(1.0, "", 0, []))
    job = SynthesisJob(done, work, {"synthetic": work / "synthetic.nii.gz", "sidecar": work / "synthetic.json",
                                    "uncertainty": work / "sd.nii.gz"}, params, "FLAIR", str(pkg))
    out = SynthesisCore(mrml_scene).finish_background(job)
    assert out.sidecar["UncertaintyKind"] == RESIDUAL
    assert out.uncertainty.GetName() == "FLAIR DIR SYNTHETIC error SD"
    assert "learned SD of the error" in out.uncertainty.GetAttribute("NeuroShift.SyntheticDescription")
