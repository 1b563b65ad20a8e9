"""ShiftSimulator module logic against a real MRML scene (slicer-core): geometry, values = engine, errors."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.errors import GeometryError, MissingParameterError
from neuroshift.io.files import read_volume
from neuroshift.io.params import AcquisitionParams
from neuroshift.phantom import make_phantom
from neuroshift.progress import Cancelled

TARGET = "TE=150,TI=2900"


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom_slicer")
    make_phantom(out, seed=0)
    return out


def _load(scene, path, name, labelmap=False):
    """Load a file into a node the way Slicer does (storage node), so the storage path is known."""
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(node)
    return node


def _matrix(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _array(node):
    from neuroshift_slicer.volume_nodes import volume_from_node

    return volume_from_node(node).data


def _engine_reference(phantom_dir):
    from neuroshift.simulate import simulate_derivative
    from neuroshift.tissues.maps import fractions_from_labels

    image = read_volume(phantom_dir / "FLAIR.nii.gz", dtype=np.float32)
    fractions = fractions_from_labels(read_volume(phantom_dir / "tissue_labels.nii.gz"))
    source = AcquisitionParams.for_image(phantom_dir / "FLAIR.nii.gz")
    return simulate_derivative(image, fractions, "flair", source, AcquisitionParams.parse(TARGET))


@pytest.fixture
def loaded(mrml_scene, phantom_dir):
    from ShiftSimulatorLib.logic import ShiftSimulationCore

    flair = _load(mrml_scene, phantom_dir / "FLAIR.nii.gz", "FLAIR")
    labels = _load(mrml_scene, phantom_dir / "tissue_labels.nii.gz", "tissue_labels", labelmap=True)
    return ShiftSimulationCore(mrml_scene), flair, labels


def test_node_geometry_matches_file(loaded, phantom_dir):
    _, flair, _ = loaded
    np.testing.assert_allclose(_matrix(flair), read_volume(phantom_dir / "FLAIR.nii.gz").ijk_to_ras(), atol=1e-5)


def test_source_parameters_from_sidecar(loaded):
    logic, flair, _ = loaded
    p = logic.source_parameters(flair)
    assert (p.TE_ms, p.TI_ms, p.TR_ms, p.field_T) == pytest.approx((112.0, 2500.0, 9000.0, 3.0))
    assert logic.sequence_hint(flair) == "flair"


def test_labelmap_run_equals_engine_and_cli(loaded, phantom_dir, tmp_path):
    from neuroshift.cli.main import main

    logic, flair, labels = loaded
    steps = []
    out = logic.simulate(flair, labels, "flair", TARGET, progress=lambda f, m: steps.append(f))
    assert out.GetName() == "FLAIR_TE150_TI2900"
    assert out.GetClassName() == "vtkMRMLScalarVolumeNode"
    # geometry identical to the input node
    np.testing.assert_allclose(_matrix(out), _matrix(flair), atol=1e-9)
    assert out.GetImageData().GetDimensions() == flair.GetImageData().GetDimensions()
    # values equal the engine API ...
    ref = _engine_reference(phantom_dir)
    got = _array(out)
    np.testing.assert_allclose(got, ref.data, rtol=1e-6, atol=1e-3)
    # ... and the CLI
    cli_out = tmp_path / "cli.nii.gz"
    assert main(["simulate", str(phantom_dir / "FLAIR.nii.gz"), str(cli_out), "--sequence", "flair",
                 "--target", TARGET, "--tissues", str(phantom_dir / "tissue_labels.nii.gz")]) == 0
    np.testing.assert_allclose(got, read_volume(cli_out).data, rtol=1e-6, atol=1e-3)
    # it is a real shift: TE 112 -> 150 darkens WM
    wm = read_volume(phantom_dir / "tissue_labels.nii.gz").data == 3
    assert got[wm].mean() < 0.8 * _array(flair)[wm].mean()
    # progress: monotonic, ends at 1; output node records its parameters
    assert steps[-1] == 1.0 and all(b >= a for a, b in zip(steps, steps[1:]))
    p = logic.source_parameters(out)
    assert (p.TE_ms, p.TI_ms, p.TR_ms) == (150.0, 2900.0, 9000.0)
    assert out.GetAttribute("NeuroShift.sequence") == "flair"


def test_pv_nodes_and_segmentation_give_the_same(loaded, phantom_dir, mrml_scene):
    import slicer

    from neuroshift.simulate import simulate_derivative
    from neuroshift.tissues.maps import fractions_from_pv

    logic, flair, labels = loaded
    # partial-volume map nodes
    pv_nodes = {t: _load(mrml_scene, phantom_dir / f"pv_{t}.nii.gz", f"pv_{t}") for t in ("CSF", "GM", "WM", "lesion")}
    out = logic.simulate(flair, pv_nodes, "flair", TARGET)
    image = read_volume(phantom_dir / "FLAIR.nii.gz", dtype=np.float32)
    fr = fractions_from_pv({t: phantom_dir / f"pv_{t}.nii.gz" for t in pv_nodes})
    ref = simulate_derivative(image, fr, "flair", AcquisitionParams.for_image(phantom_dir / "FLAIR.nii.gz"),
                              AcquisitionParams.parse(TARGET))
    np.testing.assert_allclose(_array(out), ref.data, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(_matrix(out), _matrix(flair), atol=1e-9)
    # segmentation node with named segments == the label map
    seg = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tissues")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labels, seg)
    names = {"1": "CSF", "2": "Grey matter", "3": "white matter", "4": "WMH"}
    segmentation = seg.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        s = segmentation.GetNthSegment(i)
        s.SetName(names[s.GetName().split("_")[-1]])
    out_seg = logic.simulate(flair, seg, "flair", TARGET, output_name="from_segmentation")
    out_lab = logic.simulate(flair, labels, "flair", TARGET)
    assert out_seg.GetName() == "from_segmentation"
    np.testing.assert_allclose(_array(out_seg), _array(out_lab), rtol=1e-6, atol=1e-3)


def test_missing_source_parameters_are_a_clear_error(loaded, mrml_scene):
    from neuroshift_slicer.volume_nodes import add_volume_node, volume_from_node

    logic, flair, labels = loaded
    bare = add_volume_node(mrml_scene, volume_from_node(flair), "no_header")  # no sidecar, no DICOM
    n_before = mrml_scene.GetNumberOfNodes()
    with pytest.raises(MissingParameterError, match=r"TE, TI, TR.*Source parameters"):
        logic.simulate(bare, labels, "flair", TARGET)
    assert mrml_scene.GetNumberOfNodes() == n_before
    # TI and TR from DICOM attributes, TE typed by the user: now it runs
    bare.SetAttribute("DICOM.InversionTime", "2500")
    bare.SetAttribute("DICOM.RepetitionTime", "9000")
    with pytest.raises(MissingParameterError, match="TE"):
        logic.simulate(bare, labels, "flair", TARGET)
    bare.SetAttribute("NeuroShift.TE_ms", "112")
    out = logic.simulate(bare, labels, "flair", TARGET)
    np.testing.assert_allclose(_array(out), _array(logic.simulate(flair, labels, "flair", TARGET)), rtol=1e-6, atol=1e-3)


def test_cancel_creates_nothing(loaded, mrml_scene):
    logic, flair, labels = loaded
    n_before = mrml_scene.GetNumberOfNodes()
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        logic.simulate(flair, labels, "flair", TARGET, cancel=cancel)
    assert mrml_scene.GetNumberOfNodes() == n_before


def test_label_map_on_another_grid(loaded, mrml_scene):
    from neuroshift.io.volume import Volume
    from neuroshift_slicer.volume_nodes import add_volume_node, volume_from_node

    logic, flair, labels = loaded
    lab = volume_from_node(labels)
    shifted = add_volume_node(mrml_scene, Volume(lab.data, lab.spacing, lab.origin + 4.0, lab.direction),
                              "shifted", labelmap=True)
    with pytest.raises(GeometryError, match="origins differ"):
        logic.simulate(flair, shifted, "flair", TARGET)


def test_background_cli_path_equals_foreground(loaded, tmp_path):
    from neuroshift.cli.main import main

    logic, flair, labels = loaded
    args, out_path = logic.prepare_cli_run(flair, labels, "flair", TARGET, tmp_path / "work")
    assert args[0] == "simulate" and "--source" in args
    assert main(args) == 0
    node = logic.load_cli_result(out_path, flair, TARGET, "flair")
    fg = logic.simulate(flair, labels, "flair", TARGET)
    assert node.GetName() == fg.GetName() == "FLAIR_TE150_TI2900"
    np.testing.assert_allclose(_array(node), _array(fg), rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(_matrix(node), _matrix(flair), atol=1e-9)


def test_dicom_attributes_from_database(mrml_scene):
    from ShiftSimulatorLib.logic import ShiftSimulationCore, dicom_attributes_from_database

    class FakeDatabase:
        def fileForInstance(self, uid):
            return "/dicom/1.dcm" if uid == "1.2.3" else ""

        def fileValue(self, path, tag):
            return {"0018,0081": "140", "0018,0082": "2800", "0018,0080": "11000", "0018,0087": "1.5"}.get(tag, "")

    node = mrml_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "dicom")
    node.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4")
    found = dicom_attributes_from_database(node, FakeDatabase())
    assert found == {"EchoTime": "140", "InversionTime": "2800", "RepetitionTime": "11000", "MagneticFieldStrength": "1.5"}
    p = ShiftSimulationCore.source_parameters(node).require("flair")
    assert (p.TE_ms, p.TI_ms, p.TR_ms, p.field_T) == (140.0, 2800.0, 11000.0, 1.5)


def test_derived_name():
    from ShiftSimulatorLib.logic import derived_name

    assert derived_name("FLAIR", AcquisitionParams.parse("TE=150,TI=2900")) == "FLAIR_TE150_TI2900"
    assert derived_name("T1", AcquisitionParams.parse("FA=7.5,TR=20")) == "T1_TR20_FA7p5"
