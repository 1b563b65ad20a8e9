"""ShiftSimulator stress-test panel logic against a real vtkMRMLScene (slicer-core)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from neuroshift.progress import Cancelled

from helpers.stress_engine import GRID, PassThroughSimulator, QuadraticF1Model, gt_mask, true_f1


def add_case_nodes(scene, name="sub-01"):
    from neuroshift.io import Volume
    from neuroshift_slicer.volume_nodes import add_volume_node

    img = Volume(np.full((1, 20, 20), 100.0, np.float32), spacing=(1.0, 1.0, 1.0))
    image = add_volume_node(scene, img, name)
    for key, value in (("TE_ms", "100"), ("TI_ms", "2500"), ("TR_ms", "9000")):
        image.SetAttribute("NeuroShift." + key, value)
    mask = add_volume_node(scene, img.with_data(gt_mask()), name + " lesions", labelmap=True)
    wm = add_volume_node(scene, img.with_data(np.ones((1, 20, 20), np.float32)), name + " WM")
    return image, mask, {"WM": wm}


def test_stress_results_become_table_plot_chart_and_heat_map_nodes(mrml_scene, tmp_path):
    from ShiftSimulatorLib.stress_logic import StressTestLogic

    logic = StressTestLogic(mrml_scene)
    image, mask, tissues = add_case_nodes(mrml_scene)
    case = logic.case_from_nodes("sub-01", image, mask, tissues)
    assert case.params.TE_ms == 100 and case.params.TI_ms == 2500
    seen = []
    out = logic.run([case], QuadraticF1Model(), GRID, tmp_path, simulator=PassThroughSimulator(),
                    progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0
    nodes = out["nodes"]
    table = nodes["table"].GetTable()
    assert table.GetNumberOfRows() == 26
    names = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    assert names[:5] == ["case", "point", "baseline", "TE", "TI"] and "lesion_f1" in names
    col = {n: i for i, n in enumerate(names)}
    for r in range(table.GetNumberOfRows()):
        if table.GetValue(r, col["baseline"]).ToDouble() == 0:
            te, ti = table.GetValue(r, col["TE"]).ToDouble(), table.GetValue(r, col["TI"]).ToDouble()
            assert table.GetValue(r, col["lesion_f1"]).ToDouble() == pytest.approx(true_f1(te, ti))
    chart = nodes["chart"]
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() == 5  # one per TI
    series = chart.GetNthPlotSeriesNode(0)
    assert series.GetXColumnName() == "TE" and series.GetYColumnName() == "lesion_f1 TI=2100"
    means = nodes["means_table"].GetTable()
    assert means.GetNumberOfRows() == 5 and means.GetNumberOfColumns() == 6
    assert means.GetValue(0, 1).ToDouble() == pytest.approx(true_f1(60, 2100))
    from slicer.util import arrayFromVolume

    heat = arrayFromVolume(nodes["heatmap"])
    assert heat.shape == (1, 5, 5)
    assert heat[0, 4, 0] == pytest.approx(true_f1(60, 2900)) and heat[0, 0, 4] == pytest.approx(true_f1(140, 2100))
    assert nodes["files"]["html"].endswith("report.html")
    # The same results, read back from the folder (as after a background run).
    again = logic.load_results(tmp_path)
    assert again["nodes"]["table"].GetTable().GetNumberOfRows() == 26


def test_cancel_keeps_finished_points_and_a_rerun_resumes(mrml_scene, tmp_path):
    from ShiftSimulatorLib.stress_logic import StressTestLogic

    logic = StressTestLogic(mrml_scene)
    image, mask, tissues = add_case_nodes(mrml_scene)
    case = logic.case_from_nodes("sub-01", image, mask, tissues)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 6

    with pytest.raises(Cancelled):
        logic.run([case], QuadraticF1Model(), GRID, tmp_path, simulator=PassThroughSimulator(), cancel=cancel)
    finished = len((tmp_path / "points.jsonl").read_text().splitlines())
    assert 0 < finished < 26
    out = logic.run([case], QuadraticF1Model(), GRID, tmp_path, simulator=PassThroughSimulator())
    assert out["run"].computed == 26 - finished


def test_background_run_of_the_cli_on_scene_cases(mrml_scene, tmp_path):
    pytest.importorskip("neuroshift.simulate.tissuewise")
    from ShiftSimulatorLib.stress_logic import StressTestLogic
    from neuroshift.io.files import read_volume
    from neuroshift.phantom.make import make_phantom
    from neuroshift_slicer.volume_nodes import add_volume_node
    from helpers.stress_models import TOOL

    paths = make_phantom(tmp_path / "phantom", seed=2)
    image = add_volume_node(mrml_scene, read_volume(paths["FLAIR"]), "FLAIR")
    for key, value in (("TE_ms", "112"), ("TI_ms", "2500"), ("TR_ms", "9000"), ("field_T", "3")):
        image.SetAttribute("NeuroShift." + key, value)
    mask = add_volume_node(mrml_scene, read_volume(paths["lesion_mask"]), "lesions", labelmap=True)
    labels = add_volume_node(mrml_scene, read_volume(paths["tissue_labels"]), "labels", labelmap=True)
    logic = StressTestLogic(mrml_scene)
    case = logic.case_from_nodes("phantom", image, mask, labels)
    tool = tmp_path / "tool.py"
    tool.write_text(TOOL)
    run = logic.start_background([case], f'cmd:"{sys.executable}" "{tool}" --flair {{input}} --output {{output}}',
                                 "TE=84|150,TI=2500", tmp_path / "out", form="linear")
    state = run.wait(timeout=300)
    assert state.returncode == 0, "\n".join(state.log[-20:])
    nodes = logic.load_results(tmp_path / "out")["nodes"]
    assert nodes["table"].GetTable().GetNumberOfRows() == 3
    assert nodes["chart"].GetNumberOfPlotSeriesNodes() == 1
