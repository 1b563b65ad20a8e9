"""In-Slicer self tests of the ShiftSimulator module (need ``slicer.util`` and an application; no Qt widgets).

Called from the ``ShiftSimulatorTest`` methods of ``ShiftSimulator.py`` (the class stays there, where
``ScriptedLoadableModule.runTest`` looks for ``<ModuleName>Test``); ``test`` is that
``ScriptedLoadableModuleTest`` and ``core`` the module logic's :class:`~ShiftSimulatorLib.logic.ShiftSimulationCore`.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import slicer


def check_phantom_derivative(test, core) -> None:
    """The phantom's FLAIR at TE=150 ms, TI=2900 ms: the node keeps the input's IJK-to-RAS matrix and its voxels
    equal :func:`neuroshift.simulate.simulate_derivative` run on the files."""
    import numpy as np
    import vtk

    from neuroshift.io.files import read_volume
    from neuroshift.io.params import AcquisitionParams
    from neuroshift.phantom import make_phantom
    from neuroshift.simulate import simulate_derivative
    from neuroshift.tissues.maps import fractions_from_labels

    tmp = tempfile.mkdtemp(prefix="ShiftSimulatorTest-")
    try:
        test.delayDisplay("Making the phantom")
        paths = make_phantom(tmp, seed=0)
        flair = slicer.util.loadVolume(str(paths["FLAIR"]))
        labels = slicer.util.loadLabelVolume(str(paths["tissue_labels"]))
        params = core.source_parameters(flair)
        test.assertEqual((params.TE_ms, params.TI_ms, params.TR_ms), (112.0, 2500.0, 9000.0))
        test.delayDisplay("Simulating TE=150, TI=2900")
        out = core.simulate(flair, labels, "flair", "TE=150,TI=2900")
        test.assertTrue(out.GetName().endswith("_TE150_TI2900"))
        m_in, m_out = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        flair.GetIJKToRASMatrix(m_in)
        out.GetIJKToRASMatrix(m_out)
        for r in range(4):
            for c in range(4):
                test.assertAlmostEqual(m_in.GetElement(r, c), m_out.GetElement(r, c), places=6)
        ref = simulate_derivative(read_volume(paths["FLAIR"], dtype=np.float32),
                                  fractions_from_labels(read_volume(paths["tissue_labels"])), "flair",
                                  AcquisitionParams.for_image(paths["FLAIR"]), AcquisitionParams.parse("TE=150,TI=2900"))
        np.testing.assert_allclose(slicer.util.arrayFromVolume(out), ref.data, rtol=1e-6, atol=1e-3)
        test.delayDisplay("Test passed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_missing_source_parameters(test, core) -> None:
    """A volume without header values and no typed ones: :class:`~neuroshift.errors.MissingParameterError`."""
    import numpy as np

    from neuroshift.errors import MissingParameterError

    node = slicer.util.addVolumeFromArray(np.ones((4, 5, 6), np.float32), name="no_header")
    labels = slicer.util.addVolumeFromArray(np.full((4, 5, 6), 3, np.uint8), name="labels",
                                            nodeClassName="vtkMRMLLabelMapVolumeNode")
    with test.assertRaises(MissingParameterError):
        core.simulate(node, labels, "flair", "TE=150,TI=2900")
    test.delayDisplay("Test passed")


def check_stress_test(test) -> None:
    """The stress-test panel's logic on the phantom: 2x2 grid, cancel + resume, result nodes, report."""
    import numpy as np

    from ShiftSimulatorLib.stress_logic import StressTestLogic
    from neuroshift.phantom.make import make_phantom
    from neuroshift.progress import Cancelled

    tmp = tempfile.mkdtemp(prefix="ShiftSimulatorStressTest-")
    try:
        test.delayDisplay("Making the phantom")
        paths = make_phantom(os.path.join(tmp, "phantom"), seed=0)
        flair = slicer.util.loadVolume(str(paths["FLAIR"]))
        labels = slicer.util.loadLabelVolume(str(paths["tissue_labels"]))
        lesions = slicer.util.loadLabelVolume(str(paths["lesion_mask"]))
        logic = StressTestLogic(slicer.mrmlScene)
        case = logic.case_from_nodes("phantom", flair, lesions, labels)
        test.assertEqual((case.params.TE_ms, case.params.TI_ms), (112.0, 2500.0))
        grid, outdir, model = "TE=84|150,TI=2200|2900", os.path.join(tmp, "stress"), ThresholdModel()

        test.delayDisplay("Stress test, cancelled after the first points")
        calls = []

        def cancel():
            calls.append(1)
            return len(calls) > 3

        with test.assertRaises(Cancelled):
            logic.run([case], model, grid, outdir, form="linear", cancel=cancel, show=False)
        with open(os.path.join(outdir, "points.jsonl"), encoding="utf-8") as f:
            finished = len(f.read().splitlines())
        test.assertTrue(0 < finished < 5, finished)

        test.delayDisplay("Resuming")
        out = logic.run([case], model, grid, outdir, form="linear")
        test.assertEqual(out["run"].computed, 5 - finished)  # baseline + 4 grid points, none recomputed
        nodes = out["nodes"]
        table = nodes["table"].GetTable()
        test.assertEqual(table.GetNumberOfRows(), 5)
        names = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
        test.assertEqual(names[:5], ["case", "point", "baseline", "TE", "TI"])
        f1 = [table.GetValue(r, names.index("lesion_f1")).ToDouble() for r in range(5)]
        test.assertTrue(all(0.0 <= v <= 1.0 for v in f1), f1)
        chart = nodes["chart"]
        test.assertEqual(chart.GetNumberOfPlotSeriesNodes(), 2)  # one series per TI
        test.assertEqual(chart.GetNthPlotSeriesNode(0).GetXColumnName(), "TE")
        heat = slicer.util.arrayFromVolume(nodes["heatmap"])
        test.assertEqual(heat.shape, (1, 2, 2))
        test.assertTrue(np.all(np.isfinite(heat)))
        test.assertTrue(os.path.isfile(nodes["files"]["html"]))
        slicer.modules.plots.logic().ShowChartInLayout(chart)

        again = logic.load_results(outdir)["nodes"]  # as after a background run
        test.assertEqual(again["table"].GetTable().GetNumberOfRows(), 5)
        test.delayDisplay("Test passed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ThresholdModel:
    """A stand-in segmentation model: FLAIR above its 99.5th percentile (no weights, no torch)."""

    name = "threshold"
    image_channel = "FLAIR"
    extra_inputs = ()

    def predict(self, inputs, *, case_id=""):
        import numpy as np

        image = inputs["FLAIR"]
        data = np.asarray(image.data, dtype=np.float32)
        return image.with_data((data > np.percentile(data, 99.5)).astype(np.uint8))
