"""ClaustrumSeg module logic against a real MRML scene (slicer-core)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from neuroshift.io.volume import Volume

from helpers.seg_helpers import phantom_ras, stored_as, threshold_package, tiny_unet_package


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NEUROSHIFT_MODELS", raising=False)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _scan() -> Volume:
    vol = stored_as(phantom_ras(spacing=(1.0, 1.1, 1.2)), "LPS")
    return Volume(vol.data, vol.spacing, vol.origin + np.array([4.5, -3.0, 12.25]), vol.direction)


def _geometry(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_run_makes_named_segment_on_input_geometry_and_volume_table(mrml_scene):
    from ClaustrumSegLib import ClaustrumSegCore, SegmentationParameters, segment_array, table_rows
    from neuroshift.segment.inference import segment_volume
    from neuroshift_slicer.volume_nodes import add_volume_node

    scan = _scan()
    node = add_volume_node(mrml_scene, scan, "T1")
    pkg = threshold_package(views=("axial", "coronal"))
    logic = ClaustrumSegCore(mrml_scene)
    params = SegmentationParameters(task="claustrum", model=pkg, device="cpu", probabilities=True, uncertainty=True)
    out = logic.run({"T1": node}, params)

    seg = out.segmentation
    assert seg.IsA("vtkMRMLSegmentationNode")
    segmentation = seg.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    assert segmentation.GetNthSegment(0).GetName() == "claustrum"
    exported = segment_array(seg, "claustrum", node)  # on the input grid
    expected = segment_volume(scan, pkg, device="cpu")
    np.testing.assert_array_equal(exported.data != 0, expected.label.data != 0)
    np.testing.assert_allclose(exported.ijk_to_ras(), _geometry(node), atol=1e-6)

    assert out.table.IsA("vtkMRMLTableNode")
    rows = table_rows(out.table)
    voxel = float(np.prod(scan.spacing))
    assert rows["claustrum"] == pytest.approx(expected.label.data.sum() * voxel, rel=1e-6)
    assert rows["claustrum_left"] + rows["claustrum_right"] == pytest.approx(rows["claustrum"], rel=1e-6)
    assert out.table.GetTable().GetColumnByName("Volume (mL)") is not None

    for vnode in (out.probability, out.uncertainty):
        assert vnode is not None and vnode.IsA("vtkMRMLScalarVolumeNode")
        np.testing.assert_allclose(_geometry(vnode), _geometry(node), atol=1e-6)
    assert mrml_scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0  # temp node removed


def test_wmh_segment_name_and_reuse_of_the_output_node(mrml_scene):
    from ClaustrumSegLib import ClaustrumSegCore, SegmentationParameters
    from neuroshift_slicer.volume_nodes import add_volume_node

    scan = _scan()
    flair = add_volume_node(mrml_scene, scan, "FLAIR")
    t1 = add_volume_node(mrml_scene, scan.with_data(scan.data * 0.5), "T1")
    pkg = threshold_package(task="wmh", channels=("FLAIR", "T1"), views=("axial",), slab_fraction=0.1)
    logic = ClaustrumSegCore(mrml_scene)
    params = SegmentationParameters(task="wmh", model=pkg, device="cpu")
    first = logic.run({"FLAIR": flair, "T1": t1}, params)
    assert first.segmentation.GetSegmentation().GetNthSegment(0).GetName() == "WMH"
    assert first.probability is None and first.uncertainty is None
    again = logic.run({"FLAIR": flair, "T1": t1}, params, segmentation_node=first.segmentation)
    assert again.segmentation is first.segmentation
    assert first.segmentation.GetSegmentation().GetNumberOfSegments() == 1


def test_empty_result_still_gives_the_named_segment(mrml_scene):
    from ClaustrumSegLib import ClaustrumSegCore, SegmentationParameters
    from neuroshift_slicer.volume_nodes import add_volume_node

    node = add_volume_node(mrml_scene, _scan(), "T1")
    pkg = threshold_package(views=("axial",), threshold=1.0)
    out = ClaustrumSegCore(mrml_scene).run({"T1": node}, SegmentationParameters(model=pkg, device="cpu"))
    assert out.segmentation.GetSegmentation().GetNthSegment(0).GetName() == "claustrum"
    assert out.volumes_mm3["claustrum"] == 0
    assert any("nothing was segmented" in w for w in out.warnings)


def test_no_claustrum_model_message(mrml_scene):
    from ClaustrumSegLib import ClaustrumSegCore, SegmentationParameters
    from neuroshift.errors import InputError
    from neuroshift_slicer.volume_nodes import add_volume_node

    node = add_volume_node(mrml_scene, _scan(), "T1")
    logic = ClaustrumSegCore(mrml_scene)
    assert logic.available_models("claustrum") == []
    with pytest.raises(InputError, match="import-keras"):
        logic.run({"T1": node}, SegmentationParameters(task="claustrum", device="cpu"))


def test_background_run_through_the_cli_and_cancel(mrml_scene, tmp_path):
    from ClaustrumSegLib import ClaustrumSegCore, SegmentationParameters, segment_array, table_rows
    from neuroshift_slicer.volume_nodes import add_volume_node

    pkg = tiny_unet_package(tmp_path / "home/.neuroshift/models/claustrum")
    node = add_volume_node(mrml_scene, _scan(), "T1")
    logic = ClaustrumSegCore(mrml_scene)
    assert [m["name"] for m in logic.available_models("claustrum")] == ["claustrum"]
    assert logic.default_model("claustrum") == "claustrum"
    params = SegmentationParameters(task="claustrum", model=str(pkg), device="cpu", uncertainty=True)
    job = logic.start_background({"T1": node}, params)
    seen = []
    deadline = time.monotonic() + 120
    while job.run.poll().returncode is None:
        seen.append(job.run.poll().progress)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    out = logic.finish_background(job)
    assert not job.workdir.exists()
    assert out.segmentation.GetSegmentation().GetNthSegment(0).GetName() == "claustrum"
    assert out.uncertainty is not None and out.probability is None
    exported = segment_array(out.segmentation, "claustrum", node)
    assert exported.data.shape == _scan().data.shape
    assert "claustrum" in table_rows(out.table)

    job2 = logic.start_background({"T1": node}, params)
    logic.cancel_background(job2)
    assert job2.run.poll().returncode is not None
    assert not job2.workdir.exists()


def test_build_command_mirrors_the_cli_options(mrml_scene, tmp_path):
    from ClaustrumSegLib import ClaustrumSegCore, SegmentationParameters

    logic = ClaustrumSegCore(mrml_scene)
    params = SegmentationParameters(task="wmh", model="wmh-demo", device="cuda", tta=True, probabilities=True,
                                    batch_size=8, threshold=0.45, age_weeks=None, mask_mode="relative",
                                    precision="int8")
    args, outputs = logic.build_command({"FLAIR": "f.nii.gz", "T1": "t.nii.gz"}, params, tmp_path)
    assert args[:5] == ["segment", "wmh", "--flair", "f.nii.gz", "--t1"]
    assert args[args.index("--precision") + 1] == "int8"
    for opt in ("--model", "--device", "--tta", "--batch-size", "--threshold", "--probabilities", "--json",
                "--mask-mode"):
        assert opt in args
    assert set(outputs) == {"label", "json", "probability"}
    from neuroshift.cli.main import build_parser

    parsed = build_parser().parse_args(args)  # the CLI accepts exactly these arguments
    assert parsed.t1 == "t.nii.gz" and parsed.batch_size == 8 and parsed.tta and parsed.precision == "int8"


def test_precision_choices_are_the_engines_and_reach_segment_volume(mrml_scene):
    """The module offers exactly the engine's precisions, refuses others, and a run passes the choice on: int8 on a
    package whose networks are not U-Nets is refused by the engine's int8 path (U-Net only), fp32 runs."""
    import ClaustrumSegLib.logic as L
    from ClaustrumSegLib import ClaustrumSegCore, SegmentationParameters
    from neuroshift.errors import InputError
    from neuroshift.segment.int8 import int8_available
    from neuroshift.segment.precision import PRECISIONS
    from neuroshift_slicer.volume_nodes import add_volume_node

    assert L.PRECISIONS == PRECISIONS
    with pytest.raises(InputError, match="unknown precision"):
        SegmentationParameters(precision="int4").validate()
    node = add_volume_node(mrml_scene, _scan(), "T1")
    pkg = threshold_package(views=("axial",))
    logic = ClaustrumSegCore(mrml_scene)
    assert logic.run({"T1": node}, SegmentationParameters(model=pkg, device="cpu", precision="fp32")).segmentation
    if int8_available():
        with pytest.raises(InputError, match="U-Nets only"):
            logic.run({"T1": node}, SegmentationParameters(model=pkg, device="cpu", precision="int8"))
