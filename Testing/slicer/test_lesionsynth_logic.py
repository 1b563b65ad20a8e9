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
    params = SynthesisParameters(target="t1c")
    args, outputs = build_command({"low_dose": "l.nii.gz", "adc": "a.nii.gz", "t1": "t.nii.gz", "flair": "f.nii.gz"},
                                  params, "m", tmp_path)
    assert args[5:] == ["m", "--flair", "f.nii.gz", "--t1", "t.nii.gz", "--adc", "a.nii.gz", "--low-dose", "l.nii.gz",
                        "--device", "auto"]
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
    assert [m["name"] for m in available_models("dir")] == ["dir-demo", "synthdir-demo", "a-other-dir"]
    assert [m["name"] for m in available_models("t1c")] == ["vt1c-demo"]

    def resolve(given, **kw):
        return Path(resolve_model(SynthesisParameters(**kw), given)).name

    assert resolve(["t2"]) == "dir-demo"  # DiamondGAN: any subset
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
