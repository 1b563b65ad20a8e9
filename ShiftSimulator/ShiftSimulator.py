"""ShiftSimulator: simulate how a scan would look with other acquisition parameters (3D Slicer module).

Module -> Parameter node -> Widget -> Logic -> Test, as in Slicer's scripted-module template (Slicer >= 5.10).
The science lives in the ``neuroshift`` engine; the Qt-free logic in ``ShiftSimulatorLib/``
(:class:`ShiftSimulationCore`, :class:`StressTestLogic`, tested with pytest against slicer-core's MRML),
held by :class:`ShiftSimulatorLogic` by composition. This file binds the GUI (``parameterNodeWrapper`` +
``SlicerParameterName`` in the .ui), calls the logic and runs long jobs in a background ``PythonSlicer``
process through the shared :class:`neuroshift_slicer.jobs.BackgroundJobController`. The "Stress test"
section is its own panel (``ShiftSimulatorLib/stress_panel.py``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from typing import Annotated, Optional

import vtk

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

import neuroshift_slicer.connectors  # noqa: F401  (registers the str path connector used by stressCasesPath)
from neuroshift_slicer.environment import REPORT_REQUIREMENTS, engine_process, ensure_requirements
from neuroshift_slicer.jobs import BackgroundJobController
from ShiftSimulatorLib.logic import SEQUENCES, ShiftSimulationCore
from ShiftSimulatorLib.naming import case_id
from ShiftSimulatorLib.parameters import UNKNOWN, fields_from_params, header_needs_reading, simulation_request
from ShiftSimulatorLib.progress_display import show_busy, show_progress
from ShiftSimulatorLib.stress_panel import (DEFAULT_STRESS_GRID, DEFAULT_STRESS_MODEL, STRESS_METRICS,
                                            STRESS_SOURCES, STRESS_SURFACES, StressTestPanel)

TISSUE_MODES = ("label map", "segmentation", "partial-volume maps")


#
# Module
#
class ShiftSimulator(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Shift Simulator")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "NeuroShift")]
        self.parent.dependencies = []
        self.parent.contributors = ["NeuroShift developers"]
        self.parent.helpText = _(
            "Simulate an acquisition-shift derivative of a scan: the same anatomy as if acquired with other "
            "TE/TI/TR/flip angle, by re-weighting each tissue with its MR signal equation "
            "(tissue-wise model of Posselt et al., FLAIR derivatives). Choose the input volume, its tissue "
            "segmentation (label map, segmentation or partial-volume maps), check the source parameters "
            "(pre-filled from DICOM or the BIDS sidecar) and set the target parameters. "
            "Times in ms, angles in degrees, field in tesla.")
        self.parent.acknowledgementText = _(
            "Sample data: digital phantom built from the MNI ICBM152 2009a templates "
            "(Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
            "Institute, McGill University; see NOTICE-ICBM152.txt).")


#
# Parameter node (times in ms, angles in degrees, field in tesla; UNKNOWN = -1 means unknown / same as source)
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
    #: Not bound: ID of the node whose header last filled the source fields (saved with the scene).
    headerReadFor: str = ""
    # Stress test panel
    stressSource: Annotated[str, Choice(list(STRESS_SOURCES))] = "scene"
    stressLesionMask: vtkMRMLLabelMapVolumeNode
    stressCasesPath: str = ""
    stressModel: str = DEFAULT_STRESS_MODEL
    stressGrid: str = DEFAULT_STRESS_GRID
    stressMetric: Annotated[str, Choice(list(STRESS_METRICS))] = "lesion_f1"
    stressSurface: Annotated[str, Choice(list(STRESS_SURFACES))] = "quadratic"
    stressOutputFolder: str = ""
    stressWorkers: Annotated[int, WithinRange(1, 64)] = 1


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
        self._cancelRequested = False  # foreground runs
        self.jobs = None
        self.stressPanel = None

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
        self.jobs = BackgroundJobController(self._onBackgroundFinished, on_progress=self._onProgress,
                                            on_busy=self._setBusy)
        self.stressPanel = StressTestPanel(self.ui, lambda: self._parameterNode, self._sceneCase, self._updateGui)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.readHeaderButton.connect("clicked(bool)", self.onReadHeader)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.cancelButton.enabled = False
        self.ui.progressBar.setVisible(False)
        self.stressPanel.setup()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onCancelButton()
        self.stressPanel.cleanup()
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
        hasTissues = {
            "label map": p.tissueLabelmap is not None,
            "segmentation": p.tissueSegmentation is not None,
            "partial-volume maps": any(n is not None for n in (p.pvCSF, p.pvGM, p.pvWM, p.pvLesion)),
        }[mode]
        busy = self.jobs is not None and self.jobs.busy
        self.ui.applyButton.enabled = bool(p.inputVolume) and hasTissues and not busy
        self.ui.applyButton.toolTip = (_("Simulate the derivative") if self.ui.applyButton.enabled
                                       else _("Choose an input volume and its tissue segmentation"))
        self.stressPanel.updateGui(p, sceneReady=bool(p.inputVolume) and hasTissues)

    # ---------------------------------------------------------------- source parameters
    def onInputChanged(self, node) -> None:
        p = self._parameterNode
        if p is not None and header_needs_reading(node.GetID() if node else None, p.headerReadFor):
            try:
                self._readHeader()
            except Exception as exc:  # an automatic read must not interrupt choosing a volume; the button shows errors
                logging.warning(f"ShiftSimulator: could not read the acquisition parameters: {exc}")

    def onReadHeader(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not read the acquisition parameters."), waitCursor=True):
            self._readHeader()

    def _readHeader(self) -> None:
        """Pre-fill the source parameters from the node's DICOM header / BIDS sidecar / stored values."""
        from ShiftSimulatorLib.parameters import dicom_attributes_from_database

        p = self._parameterNode
        node = p.inputVolume if p else None
        if node is None:
            return
        dicom_attributes_from_database(node, getattr(slicer, "dicomDatabase", None))
        params = self.logic.core.source_parameters(node)
        for name, value in fields_from_params(params).items():
            setattr(p, name, value)
        hint = self.logic.core.sequence_hint(node)
        if hint:
            p.sequence = hint
        p.headerReadFor = node.GetID()

    # ---------------------------------------------------------------- run
    def _request(self):
        return simulation_request(self._parameterNode)

    def _sceneCase(self, stressLogic, p) -> list:
        """The stress panel's scene case: this panel's input, tissues and source parameters plus the lesion mask."""
        tissues, mapping, source, _target, _field = self._request()
        return [stressLogic.case_from_nodes(case_id(p.inputVolume.GetName()), p.inputVolume, p.stressLesionMask,
                                            tissues, params=source, label_mapping=mapping, sequence=p.sequence)]

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Simulation failed."), waitCursor=True):
            if not ensure_requirements("ShiftSimulator"):
                return
            p = self._parameterNode
            tissues, mapping, source, target, field = self._request()
            self.logic.core.store_parameters(p.inputVolume, source, p.sequence)  # the user's confirmed values
            if p.runInBackground:
                self._startBackground(p, tissues, mapping, source, target, field)
            else:
                self._runForeground(p, tissues, mapping, source, target, field)

    def _runForeground(self, p, tissues, mapping, source, target, field) -> None:
        from neuroshift.progress import Cancelled

        def progress(fraction, message):
            self._onProgress(fraction, message)
            slicer.app.processEvents()

        self._cancelRequested = False
        self._setBusy(True)
        try:
            node = self.logic.core.simulate(p.inputVolume, tissues, p.sequence, target, source=source,
                                            field_T=field, label_mapping=mapping, progress=progress,
                                            cancel=lambda: self._cancelRequested, output_node=p.outputVolume)
            self._showResult(node)
        except Cancelled:
            self.ui.statusLabel.text = _("Cancelled")
        finally:
            self._setBusy(False)

    def _startBackground(self, p, tissues, mapping, source, target, field) -> None:
        from neuroshift_slicer.background import BackgroundRun

        workdir = tempfile.mkdtemp(prefix="ShiftSimulator-")
        args, outPath = self.logic.core.prepare_cli_run(p.inputVolume, tissues, p.sequence, target, workdir,
                                                        source=source, field_T=field, label_mapping=mapping)
        python, env = engine_process()
        self.jobs.start(BackgroundRun(args, python=python, env=env),
                        context=(workdir, outPath, p.inputVolume, target, p.sequence, p.outputVolume))

    def _onProgress(self, fraction: float, message: str) -> None:
        show_progress(self.ui.progressBar, self.ui.statusLabel, fraction, message)

    def _onBackgroundFinished(self, state, context, cancelled: bool) -> None:
        workdir, outPath, inputNode, target, sequence, outputNode = context
        try:
            if cancelled:
                self.ui.statusLabel.text = _("Cancelled")
            elif state.returncode == 0:
                with slicer.util.tryWithErrorDisplay(_("Could not load the simulated volume."), waitCursor=True):
                    self._showResult(self.logic.core.load_cli_result(outPath, inputNode, target, sequence,
                                                                     output_node=outputNode))
            else:
                self.ui.statusLabel.text = _("Simulation failed.")
                slicer.util.errorDisplay(_("Simulation failed."), detailedText="\n".join(state.log[-15:]))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def onCancelButton(self) -> None:
        self._cancelRequested = True
        if self.jobs is not None:
            self.jobs.cancel()

    def _setBusy(self, busy: bool) -> None:
        show_busy(self.ui.progressBar, self.ui.statusLabel, self.ui.cancelButton, busy, _("Running..."))
        self._updateGui()

    def _showResult(self, node) -> None:
        self._parameterNode.outputVolume = node
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        self.ui.statusLabel.text = _("Created {name}").format(name=node.GetName())


#
# Logic
#
class ShiftSimulatorLogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic: the parameter node, and the Qt-free :class:`ShiftSimulationCore` as ``self.core``."""

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.core = ShiftSimulationCore(scene or slicer.mrmlScene)

    def getParameterNode(self):
        return ShiftSimulatorParameterNode(super().getParameterNode())


#
# Test (runs inside Slicer; the same logic is tested with pytest + slicer-core in Testing/)
#
class ShiftSimulatorTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()
        self.assertTrue(ensure_requirements("ShiftSimulator", REPORT_REQUIREMENTS, ask=False))

    def runTest(self):
        self.setUp()
        self.test_PhantomDerivative()
        self.setUp()
        self.test_MissingSourceParameters()
        self.setUp()
        self.test_StressTest()

    def test_PhantomDerivative(self):
        """The phantom's FLAIR at TE=150, TI=2900: geometry kept, voxels equal the engine's derivative."""
        from ShiftSimulatorLib.selftest import check_phantom_derivative

        check_phantom_derivative(self, ShiftSimulatorLogic().core)

    def test_MissingSourceParameters(self):
        """A volume without header values: MissingParameterError, nothing guessed."""
        from ShiftSimulatorLib.selftest import check_missing_source_parameters

        check_missing_source_parameters(self, ShiftSimulatorLogic().core)

    def test_StressTest(self):
        """The stress-test panel's logic on the phantom: 2x2 grid, cancel + resume, result nodes, report."""
        from ShiftSimulatorLib.selftest import check_stress_test

        check_stress_test(self)
