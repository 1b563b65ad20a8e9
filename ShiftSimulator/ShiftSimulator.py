"""ShiftSimulator: simulate how a scan would look with other acquisition parameters (3D Slicer module).

Module -> Widget -> Logic -> Test, as in Slicer's scripted-module template. The
science lives in the ``neuroshift`` engine; the Qt-free part of the logic lives
in ``ShiftSimulatorLib/logic.py`` (tested with pytest against a real MRML scene
from slicer-core). This file only binds the GUI (``parameterNodeWrapper`` +
``SlicerParameterName`` properties in the .ui), calls the logic, runs long jobs
in a background ``PythonSlicer`` process with progress and Cancel, and holds the
in-Slicer self test.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from typing import Annotated, Optional

import qt
import vtk

import slicer
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
)
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
except ImportError:  # Slicer < 5.4
    def _(text):
        return text

from ShiftSimulatorLib.logic import SEQUENCES
from ShiftSimulatorLib.logic import ShiftSimulatorLogic as CoreLogic

#: Engine dependencies that Slicer's Python may lack (import name -> pip requirement).
ENGINE_REQUIREMENTS = {"scipy": "scipy", "SimpleITK": "SimpleITK", "nibabel": "nibabel"}

TISSUE_MODES = ("label map", "segmentation", "partial-volume maps")
UNKNOWN = -1.0  # spin-box value shown as "unknown" / "same as source"


#
# Module
#
class ShiftSimulator(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Shift Simulator")
        self.parent.categories = ["NeuroShift"]
        self.parent.dependencies = []
        self.parent.contributors = ["NeuroShift developers"]
        self.parent.helpText = _(
            "Simulate an acquisition-shift derivative of a scan: the same anatomy as if acquired with other "
            "TE/TI/TR/flip angle, by re-weighting each tissue with its MR signal equation "
            "(tissue-wise model of Posselt et al., FLAIR derivatives). Choose the input volume, its tissue "
            "segmentation (label map, segmentation or partial-volume maps), check the source parameters "
            "(pre-filled from DICOM or the BIDS sidecar) and set the target parameters. "
            "Times in ms, angles in degrees, field in tesla."
        )
        self.parent.acknowledgementText = _(
            "Sample data: digital phantom built from the MNI ICBM152 2009a templates "
            "(Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
            "Institute, McGill University; see NOTICE-ICBM152.txt)."
        )


#
# Parameter node
#
@parameterNodeWrapper
class ShiftSimulatorParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    tissueMode: Annotated[str, Choice(list(TISSUE_MODES))] = "label map"
    tissueLabelmap: vtkMRMLLabelMapVolumeNode
    labelMapping: str = "CSF=1,GM=2,WM=3,lesion=4"
    tissueSegmentation: vtkMRMLSegmentationNode
    pvCSF: vtkMRMLScalarVolumeNode
    pvGM: vtkMRMLScalarVolumeNode
    pvWM: vtkMRMLScalarVolumeNode
    pvLesion: vtkMRMLScalarVolumeNode
    sequence: Annotated[str, Choice(list(SEQUENCES))] = "flair"
    sourceTE: Annotated[float, WithinRange(UNKNOWN, 5000.0)] = UNKNOWN
    sourceTI: Annotated[float, WithinRange(UNKNOWN, 20000.0)] = UNKNOWN
    sourceTR: Annotated[float, WithinRange(UNKNOWN, 100000.0)] = UNKNOWN
    sourceFA: Annotated[float, WithinRange(UNKNOWN, 180.0)] = UNKNOWN
    sourceField: Annotated[float, WithinRange(UNKNOWN, 21.0)] = UNKNOWN
    targetTE: Annotated[float, WithinRange(UNKNOWN, 5000.0)] = 150.0
    targetTI: Annotated[float, WithinRange(UNKNOWN, 20000.0)] = 2900.0
    targetTR: Annotated[float, WithinRange(UNKNOWN, 100000.0)] = UNKNOWN
    targetFA: Annotated[float, WithinRange(UNKNOWN, 180.0)] = UNKNOWN
    outputVolume: vtkMRMLScalarVolumeNode
    runInBackground: bool = True


def _params(te, ti, tr, fa, field=UNKNOWN):
    """AcquisitionParams from spin-box values; negative means unknown / keep."""
    from neuroshift.io.params import AcquisitionParams

    values = {"TE_ms": te, "TI_ms": ti, "TR_ms": tr, "FA_deg": fa, "field_T": field}
    return AcquisitionParams(**{k: float(v) for k, v in values.items() if v is not None and v >= 0})


#
# Widget
#
class ShiftSimulatorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None
        self._runContext = None
        self._timer = None
        self._cancelRequested = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ShiftSimulator.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        for box in (self.ui.sourceTESpinBox, self.ui.sourceTISpinBox, self.ui.sourceTRSpinBox,
                    self.ui.sourceFASpinBox, self.ui.sourceFieldSpinBox):
            box.setSpecialValueText(_("unknown"))
        for box in (self.ui.targetTESpinBox, self.ui.targetTISpinBox, self.ui.targetTRSpinBox,
                    self.ui.targetFASpinBox):
            box.setSpecialValueText(_("same as source"))

        self.logic = ShiftSimulatorLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.readHeaderButton.connect("clicked(bool)", self.onReadHeader)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.cancelButton.enabled = False
        self.ui.progressBar.setVisible(False)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onCancelButton()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode: Optional[ShiftSimulatorParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    def _updateGui(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        mode = p.tissueMode
        self.ui.labelmapFrame.setVisible(mode == "label map")
        self.ui.segmentationFrame.setVisible(mode == "segmentation")
        self.ui.pvFrame.setVisible(mode == "partial-volume maps")
        has_tissues = {
            "label map": p.tissueLabelmap is not None,
            "segmentation": p.tissueSegmentation is not None,
            "partial-volume maps": any(n is not None for n in (p.pvCSF, p.pvGM, p.pvWM, p.pvLesion)),
        }[mode]
        busy = self._run is not None
        self.ui.applyButton.enabled = bool(p.inputVolume) and has_tissues and not busy
        self.ui.applyButton.toolTip = (_("Simulate the derivative") if self.ui.applyButton.enabled
                                       else _("Choose an input volume and its tissue segmentation"))

    # ---------------------------------------------------------------- source parameters
    def onInputChanged(self, node) -> None:
        if node is not None:
            self.onReadHeader()

    def onReadHeader(self) -> None:
        """Pre-fill the source parameters from the node's DICOM header / BIDS sidecar / stored values."""
        from ShiftSimulatorLib.logic import dicom_attributes_from_database

        p = self._parameterNode
        node = p.inputVolume if p else None
        if node is None:
            return
        try:
            dicom_attributes_from_database(node, getattr(slicer, "dicomDatabase", None))
            params = self.logic.source_parameters(node)
        except Exception as exc:  # a broken sidecar must not break the GUI
            logging.warning(f"ShiftSimulator: could not read acquisition parameters: {exc}")
            return
        p.sourceTE = params.TE_ms if params.TE_ms is not None else UNKNOWN
        p.sourceTI = params.TI_ms if params.TI_ms is not None else UNKNOWN
        p.sourceTR = params.TR_ms if params.TR_ms is not None else UNKNOWN
        p.sourceFA = params.FA_deg if params.FA_deg is not None else UNKNOWN
        p.sourceField = params.field_T if params.field_T is not None else UNKNOWN
        hint = self.logic.sequence_hint(node)
        if hint:
            p.sequence = hint

    # ---------------------------------------------------------------- run
    def _request(self):
        from neuroshift.tissues.maps import parse_label_mapping

        p = self._parameterNode
        if p.tissueMode == "label map":
            tissues, mapping = p.tissueLabelmap, parse_label_mapping(p.labelMapping)
        elif p.tissueMode == "segmentation":
            tissues, mapping = p.tissueSegmentation, None
        else:
            tissues = {t: n for t, n in (("CSF", p.pvCSF), ("GM", p.pvGM), ("WM", p.pvWM), ("lesion", p.pvLesion))
                       if n is not None}
            mapping = None
        source = _params(p.sourceTE, p.sourceTI, p.sourceTR, p.sourceFA, p.sourceField)
        target = _params(p.targetTE, p.targetTI, p.targetTR, p.targetFA)
        field = p.sourceField if p.sourceField >= 0 else None
        return tissues, mapping, source, target, field

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Simulation failed."), waitCursor=True):
            if not _ensureEngineDependencies():
                return
            p = self._parameterNode
            tissues, mapping, source, target, field = self._request()
            self.logic.store_parameters(p.inputVolume, source, p.sequence)  # the user's confirmed values
            if p.runInBackground:
                self._startBackground(p, tissues, mapping, source, target, field)
            else:
                self._runForeground(p, tissues, mapping, source, target, field)

    def _runForeground(self, p, tissues, mapping, source, target, field) -> None:
        self._cancelRequested = False
        self._setBusy(True)
        try:
            def progress(fraction, message):
                self.ui.progressBar.value = int(100 * fraction)
                self.ui.statusLabel.text = message
                slicer.app.processEvents()

            from neuroshift.progress import Cancelled

            try:
                node = self.logic.simulate(p.inputVolume, tissues, p.sequence, target, source=source,
                                           field_T=field, label_mapping=mapping, progress=progress,
                                           cancel=lambda: self._cancelRequested, output_node=p.outputVolume)
            except Cancelled:
                self.ui.statusLabel.text = _("Cancelled")
                return
            self._showResult(node)
        finally:
            self._setBusy(False)

    def _startBackground(self, p, tissues, mapping, source, target, field) -> None:
        from neuroshift_slicer.background import BackgroundRun

        workdir = tempfile.mkdtemp(prefix="ShiftSimulator-")
        args, out_path = self.logic.prepare_cli_run(p.inputVolume, tissues, p.sequence, target, workdir,
                                                    source=source, field_T=field, label_mapping=mapping)
        import neuroshift

        engine_root = os.path.dirname(os.path.dirname(neuroshift.__file__))
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [engine_root, os.environ.get("PYTHONPATH", "")]))}
        python = shutil.which("PythonSlicer") or sys.executable
        self._run = BackgroundRun(args, python=python, env=env)
        self._runContext = (workdir, out_path, p.inputVolume, target, p.sequence, p.outputVolume)
        self._setBusy(True)
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self._poll)
        self._timer.start()

    def _poll(self) -> None:
        if self._run is None:
            return
        state = self._run.poll()
        self.ui.progressBar.value = int(100 * state.progress)
        self.ui.statusLabel.text = state.message
        if state.returncode is None:
            return
        self._timer.stop()
        workdir, out_path, input_node, target, sequence, output_node = self._runContext
        self._run, self._runContext = None, None
        self._setBusy(False)
        try:
            if state.returncode == 0:
                with slicer.util.tryWithErrorDisplay(_("Could not load the simulated volume."), waitCursor=True):
                    node = self.logic.load_cli_result(out_path, input_node, target, sequence, output_node=output_node)
                    self._showResult(node)
            elif not self._cancelRequested:
                tail = "\n".join(state.log[-15:])
                slicer.util.errorDisplay(_("Simulation failed."), detailedText=tail)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            self._cancelRequested = False

    def onCancelButton(self) -> None:
        self._cancelRequested = True
        if self._run is not None:
            self._run.cancel()
            self.ui.statusLabel.text = _("Cancelled")

    def _setBusy(self, busy: bool) -> None:
        self.ui.progressBar.setVisible(busy)
        self.ui.progressBar.value = 0
        self.ui.cancelButton.enabled = busy
        if busy:
            self.ui.statusLabel.text = _("Running...")
        self._updateGui()

    def _showResult(self, node) -> None:
        self._parameterNode.outputVolume = node
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        self.ui.statusLabel.text = _("Created {name}").format(name=node.GetName())


def _ensureEngineDependencies() -> bool:
    """Install missing engine wheels into Slicer's Python after asking (nothing is installed silently)."""
    import importlib.util

    missing = [req for mod, req in ENGINE_REQUIREMENTS.items() if importlib.util.find_spec(mod) is None]
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(
            _("ShiftSimulator needs these Python packages: {names}. Install them now?").format(names=", ".join(missing))):
        return False
    slicer.util.pip_install(missing)
    return True


#
# Logic
#
class ShiftSimulatorLogic(ScriptedLoadableModuleLogic, CoreLogic):
    """Slicer-facing logic: the parameter node plus the Qt-free :class:`ShiftSimulatorLib.logic.ShiftSimulatorLogic`."""

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        CoreLogic.__init__(self, scene or slicer.mrmlScene)

    def getParameterNode(self):
        return ShiftSimulatorParameterNode(super().getParameterNode())


#
# Test (runs inside Slicer; the same logic is tested with pytest + slicer-core in Testing/)
#
class ShiftSimulatorTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_PhantomDerivative()
        self.setUp()
        self.test_MissingSourceParameters()

    def _phantom(self):
        from neuroshift.phantom import make_phantom

        self._tmp = tempfile.mkdtemp(prefix="ShiftSimulatorTest-")
        return make_phantom(self._tmp, seed=0)

    def test_PhantomDerivative(self):
        import numpy as np

        from neuroshift.io.files import read_volume
        from neuroshift.io.params import AcquisitionParams
        from neuroshift.simulate import simulate_derivative
        from neuroshift.tissues.maps import fractions_from_labels

        self.delayDisplay("Making the phantom")
        paths = self._phantom()
        flair = slicer.util.loadVolume(str(paths["FLAIR"]))
        labels = slicer.util.loadLabelVolume(str(paths["tissue_labels"]))
        logic = ShiftSimulatorLogic()
        params = logic.source_parameters(flair)
        self.assertEqual((params.TE_ms, params.TI_ms, params.TR_ms), (112.0, 2500.0, 9000.0))
        self.delayDisplay("Simulating TE=150, TI=2900")
        out = logic.simulate(flair, labels, "flair", "TE=150,TI=2900")
        self.assertTrue(out.GetName().endswith("_TE150_TI2900"))
        m_in, m_out = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        flair.GetIJKToRASMatrix(m_in)
        out.GetIJKToRASMatrix(m_out)
        for r in range(4):
            for c in range(4):
                self.assertAlmostEqual(m_in.GetElement(r, c), m_out.GetElement(r, c), places=6)
        ref = simulate_derivative(read_volume(paths["FLAIR"], dtype=np.float32),
                                  fractions_from_labels(read_volume(paths["tissue_labels"])), "flair",
                                  AcquisitionParams.for_image(paths["FLAIR"]), AcquisitionParams.parse("TE=150,TI=2900"))
        np.testing.assert_allclose(slicer.util.arrayFromVolume(out), ref.data, rtol=1e-6, atol=1e-3)
        shutil.rmtree(self._tmp, ignore_errors=True)
        self.delayDisplay("Test passed")

    def test_MissingSourceParameters(self):
        import numpy as np

        from neuroshift.errors import MissingParameterError

        node = slicer.util.addVolumeFromArray(np.ones((4, 5, 6), np.float32), name="no_header")
        labels = slicer.util.addVolumeFromArray(np.full((4, 5, 6), 3, np.uint8), name="labels",
                                                nodeClassName="vtkMRMLLabelMapVolumeNode")
        with self.assertRaises(MissingParameterError):
            ShiftSimulatorLogic().simulate(node, labels, "flair", "TE=150,TI=2900")
        self.delayDisplay("Test passed")
