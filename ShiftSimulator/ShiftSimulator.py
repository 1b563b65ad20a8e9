"""ShiftSimulator: simulate how a scan would look with other acquisition parameters (3D Slicer module).

Module -> Widget -> Logic -> Test, as in Slicer's scripted-module template. The
science lives in the ``neuroshift`` engine; the Qt-free part of the logic lives
in ``ShiftSimulatorLib/logic.py`` (tested with pytest against a real MRML scene
from slicer-core). This file only binds the GUI (``parameterNodeWrapper`` +
``SlicerParameterName`` properties in the .ui), calls the logic, runs long jobs
in a background ``PythonSlicer`` process with progress and Cancel, and holds the
in-Slicer self test.

The "Stress test" section runs ``neuroshift stress-test`` on the scene's case (the
input volume, tissues and source parameters above plus a lesion mask) or on a
folder / CSV of cases, through the Qt-free ``ShiftSimulatorLib/stress_logic.py``
(:class:`StressTestLogic`), and shows the results as a table node, a plot chart
(metric against the first grid axis, one series per value of the second) and a
heat-map volume, with the HTML report one click away.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import typing
from typing import Annotated, Optional

import ctk
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
from slicer.parameterNodeWrapper import (
    Choice,
    GuiConnector,
    WithinRange,
    parameterNodeGuiConnector,
    parameterNodeWrapper,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
except ImportError:  # Slicer < 5.4
    def _(text):
        return text

from neuroshift_slicer.environment import MODEL_REQUIREMENTS, REPORT_REQUIREMENTS, engine_process, ensure_requirements
from ShiftSimulatorLib.logic import SEQUENCES
from ShiftSimulatorLib.logic import ShiftSimulatorLogic as CoreLogic

TISSUE_MODES = ("label map", "segmentation", "partial-volume maps")
UNKNOWN = -1.0  # spin-box value shown as "unknown" / "same as source"

# Stress-test panel (the choices of ``neuroshift stress-test``)
STRESS_SOURCES = ("scene", "folder")
STRESS_METRICS = ("lesion_f1", "dice", "lesion_recall", "lesion_precision")
STRESS_SURFACES = ("quadratic", "linear", "interaction", "cubic", "auto")
DEFAULT_STRESS_MODEL = "wmh-demo"
DEFAULT_STRESS_GRID = "TE=84:150:7,TI=2200:2900:7"


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
    # Stress test
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
# GUI connectors for two bindings Slicer does not provide (plain text in an editable combo box and in a
# path line edit, where empty means "not set"); everything else binds through Slicer's own connectors.
#
def _isPlainStr(datatype) -> bool:
    if typing.get_origin(datatype) is Annotated:
        datatype = typing.get_args(datatype)[0]
    return datatype is str


@parameterNodeGuiConnector
class EditableComboBoxToStrConnector(GuiConnector):
    """``str`` <-> the text of an editable ``ctkComboBox`` (its items are suggestions; free text allowed)."""

    @staticmethod
    def canRepresent(widget, datatype) -> bool:
        return type(widget) == ctk.ctkComboBox and bool(widget.editable) and _isPlainStr(datatype)

    @staticmethod
    def create(widget, datatype):
        if EditableComboBoxToStrConnector.canRepresent(widget, datatype):
            return EditableComboBoxToStrConnector(widget)
        return None

    def __init__(self, widget) -> None:
        super().__init__()
        self._widget = widget

    def _connect(self):
        self._widget.editTextChanged.connect(self.changed)  # typing and picking an item both change the text

    def _disconnect(self):
        self._widget.editTextChanged.disconnect(self.changed)

    def widget(self):
        return self._widget

    def read(self) -> str:
        return self._widget.currentText

    def write(self, value: str) -> None:
        if self._widget.currentText != value:
            self._widget.setEditText(value)


@parameterNodeGuiConnector
class PathLineEditToStrConnector(GuiConnector):
    """``str`` <-> ``ctkPathLineEdit.currentPath`` (Slicer's own connector binds ``pathlib.Path``, where empty is ".")."""

    @staticmethod
    def canRepresent(widget, datatype) -> bool:
        return type(widget) == ctk.ctkPathLineEdit and _isPlainStr(datatype)

    @staticmethod
    def create(widget, datatype):
        if PathLineEditToStrConnector.canRepresent(widget, datatype):
            return PathLineEditToStrConnector(widget)
        return None

    def __init__(self, widget) -> None:
        super().__init__()
        self._widget = widget

    def _connect(self):
        self._widget.currentPathChanged.connect(self.changed)

    def _disconnect(self):
        self._widget.currentPathChanged.disconnect(self.changed)

    def widget(self):
        return self._widget

    def read(self) -> str:
        return self._widget.currentPath

    def write(self, value: str) -> None:
        if self._widget.currentPath != value:
            self._widget.currentPath = value


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
        self._stressRun = None
        self._stressContext = None
        self._stressTimer = None
        self._stressCancelRequested = False

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
        # Stress test (the model list is filled before the parameter node binds the combo box's text)
        self.ui.stressModelComboBox.addItems(_modelNames())
        self.ui.stressRunButton.connect("clicked(bool)", self.onStressRun)
        self.ui.stressCancelButton.connect("clicked(bool)", self.onStressCancel)
        self.ui.stressReportButton.connect("clicked(bool)", self.onStressOpenReport)
        self.ui.stressCancelButton.enabled = False
        self.ui.stressProgressBar.setVisible(False)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onCancelButton()
        self.onStressCancel()
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
        # Stress test
        scene_mode = p.stressSource == "scene"
        self.ui.stressSceneFrame.setVisible(scene_mode)
        self.ui.stressFolderFrame.setVisible(not scene_mode)
        if scene_mode:
            cases_ready = bool(p.inputVolume) and has_tissues and p.stressLesionMask is not None
            why = _("Choose the input volume and its tissues above, and the lesion mask")
        else:
            cases_ready = bool(p.stressCasesPath.strip())
            why = _("Choose the cases folder or CSV")
        ready = cases_ready and bool(p.stressModel.strip()) and bool(p.stressGrid.strip())
        self.ui.stressRunButton.enabled = ready and self._stressRun is None
        self.ui.stressRunButton.toolTip = (_("Run (or resume) the stress test in a separate process") if ready
                                           else why if not cases_ready else _("Enter the model and the grid"))
        self.ui.stressReportButton.enabled = self._stressReportPath() is not None

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
            if not ensure_requirements("ShiftSimulator"):
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
        python, env = engine_process()
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

    # ---------------------------------------------------------------- stress test
    def _stressOutdir(self, p) -> str:
        """The output folder; when empty, a new one (stored, so Run again resumes into it)."""
        outdir = p.stressOutputFolder.strip()
        if not outdir:
            base = slicer.app.defaultScenePath or tempfile.gettempdir()
            outdir = os.path.join(base, "NeuroShift-stress-" + time.strftime("%Y%m%d-%H%M%S"))
            p.stressOutputFolder = outdir
        return outdir

    def _stressReportPath(self) -> Optional[str]:
        p = self._parameterNode
        outdir = p.stressOutputFolder.strip() if p else ""
        path = os.path.join(outdir, "report.html") if outdir else ""
        return path if path and os.path.isfile(path) else None

    def _stressCases(self, logic, p):
        """Scene mode: one in-memory case from the simulation panel's selections; folder mode: the path."""
        if p.stressSource == "folder":
            path = p.stressCasesPath.strip()
            if not os.path.exists(path):
                raise ValueError(_("Cases folder or CSV not found: {path}").format(path=path))
            return path
        tissues, mapping, source, _target, _field = self._request()
        return [logic.case_from_nodes(_caseId(p.inputVolume), p.inputVolume, p.stressLesionMask, tissues,
                                      params=source, label_mapping=mapping, sequence=p.sequence)]

    def onStressRun(self) -> None:
        from ShiftSimulatorLib.stress_logic import StressTestLogic

        with slicer.util.tryWithErrorDisplay(_("Could not start the stress test."), waitCursor=True):
            p = self._parameterNode
            model = p.stressModel.strip()
            extra = {**REPORT_REQUIREMENTS, **({} if model.startswith("cmd:") else MODEL_REQUIREMENTS)}
            if not ensure_requirements("ShiftSimulator", extra):
                return
            logic = StressTestLogic(slicer.mrmlScene)
            cases = self._stressCases(logic, p)
            outdir = self._stressOutdir(p)
            python, env = engine_process()
            self._stressRun = logic.start_background(cases, model, p.stressGrid.strip(), outdir,
                                                     sequence=p.sequence, metric=p.stressMetric,
                                                     form=p.stressSurface, workers=p.stressWorkers,
                                                     python=python, env=env)
            self._stressContext = (logic, outdir, p.stressMetric)
            self._stressCancelRequested = False
            self._setStressBusy(True)
            self._stressTimer = qt.QTimer()
            self._stressTimer.setInterval(300)
            self._stressTimer.connect("timeout()", self._pollStress)
            self._stressTimer.start()

    def _pollStress(self) -> None:
        if self._stressRun is None:
            return
        state = self._stressRun.poll()
        self.ui.stressProgressBar.value = int(100 * state.progress)
        if state.message:
            self.ui.stressStatusLabel.text = state.message
        if state.returncode is None:
            return
        self._stressTimer.stop()
        logic, outdir, metric = self._stressContext
        cancelled = self._stressCancelRequested
        self._stressRun, self._stressContext, self._stressCancelRequested = None, None, False
        self._setStressBusy(False)
        if cancelled:
            self.ui.stressStatusLabel.text = _(
                "Cancelled. Finished points are kept in {outdir}; Run again resumes.").format(outdir=outdir)
        elif state.returncode == 0:
            with slicer.util.tryWithErrorDisplay(_("Could not load the stress-test results."), waitCursor=True):
                nodes = logic.load_results(outdir, metric=metric)["nodes"]
                self._showStressResults(nodes)
                self.ui.stressStatusLabel.text = _("Done: results in {outdir}").format(outdir=outdir)
        else:
            self.ui.stressStatusLabel.text = _("Stress test failed (exit code {code}).").format(code=state.returncode)
            slicer.util.errorDisplay(_("Stress test failed."), detailedText="\n".join(state.log[-20:]))
        self._updateGui()

    def onStressCancel(self) -> None:
        if self._stressRun is not None:
            self._stressCancelRequested = True
            self._stressRun.cancel()
            self.ui.stressStatusLabel.text = _("Cancelling...")

    def onStressOpenReport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not open the report.")):
            path = self._stressReportPath()
            if path is None:
                raise ValueError(_("No report.html in the output folder yet"))
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(path))

    def _setStressBusy(self, busy: bool) -> None:
        self.ui.stressProgressBar.setVisible(busy)
        self.ui.stressProgressBar.value = 0
        self.ui.stressCancelButton.enabled = busy
        if busy:
            self.ui.stressStatusLabel.text = _("Running...")
        self._updateGui()

    def _showStressResults(self, nodes: dict) -> None:
        """Table in the table view, chart in the plot view, heat map in the slice views."""
        appLogic = slicer.app.applicationLogic()
        layout = getattr(slicer.vtkMRMLLayoutNode, "SlicerLayoutFourUpPlotTableView", None)
        if layout is not None and slicer.app.layoutManager() is not None:
            slicer.app.layoutManager().setLayout(layout)
        appLogic.GetSelectionNode().SetActiveTableID(nodes["table"].GetID())
        appLogic.PropagateTableSelection()
        if nodes.get("chart") is not None:
            slicer.modules.plots.logic().ShowChartInLayout(nodes["chart"])
        heatmap = nodes.get("heatmap")
        if heatmap is not None:
            colors = slicer.mrmlScene.GetFirstNodeByName("Viridis")
            display = heatmap.GetDisplayNode()
            if display is not None and colors is not None:
                display.SetAndObserveColorNodeID(colors.GetID())
            slicer.util.setSliceViewerLayers(background=heatmap, fit=True)


def _caseId(node) -> str:
    """A file-name-safe case id from a node name."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node.GetName()).strip("._") or "case"


def _modelNames() -> list:
    """Installed model packages (the bundled demo first), as suggestions for the editable model combo box."""
    try:
        from neuroshift.segment.registry import list_models

        names = [m["name"] for m in list_models() if not m.get("error")]
    except Exception as exc:  # a broken model folder must not break the GUI
        logging.warning(f"ShiftSimulator: could not list the model packages: {exc}")
        names = []
    return [DEFAULT_STRESS_MODEL] + [n for n in names if n != DEFAULT_STRESS_MODEL]


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
        self.setUp()
        self.test_StressTest()

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

    def test_StressTest(self):
        """The stress-test panel's logic on the phantom: 2×2 grid, cancel + resume, result nodes, report."""
        import numpy as np

        from ShiftSimulatorLib.stress_logic import StressTestLogic
        from neuroshift.phantom.make import make_phantom
        from neuroshift.progress import Cancelled

        tmp = tempfile.mkdtemp(prefix="ShiftSimulatorStressTest-")
        try:
            self.delayDisplay("Making the phantom")
            paths = make_phantom(os.path.join(tmp, "phantom"), seed=0)
            flair = slicer.util.loadVolume(str(paths["FLAIR"]))
            labels = slicer.util.loadLabelVolume(str(paths["tissue_labels"]))
            lesions = slicer.util.loadLabelVolume(str(paths["lesion_mask"]))
            logic = StressTestLogic(slicer.mrmlScene)
            case = logic.case_from_nodes("phantom", flair, lesions, labels)
            self.assertEqual((case.params.TE_ms, case.params.TI_ms), (112.0, 2500.0))
            grid, outdir, model = "TE=84|150,TI=2200|2900", os.path.join(tmp, "stress"), ThresholdModel()

            self.delayDisplay("Stress test, cancelled after the first points")
            calls = []

            def cancel():
                calls.append(1)
                return len(calls) > 3

            with self.assertRaises(Cancelled):
                logic.run([case], model, grid, outdir, form="linear", cancel=cancel, show=False)
            with open(os.path.join(outdir, "points.jsonl"), encoding="utf-8") as f:
                finished = len(f.read().splitlines())
            self.assertTrue(0 < finished < 5, finished)

            self.delayDisplay("Resuming")
            out = logic.run([case], model, grid, outdir, form="linear")
            self.assertEqual(out["run"].computed, 5 - finished)  # baseline + 4 grid points, none recomputed
            nodes = out["nodes"]
            table = nodes["table"].GetTable()
            self.assertEqual(table.GetNumberOfRows(), 5)
            names = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
            self.assertEqual(names[:5], ["case", "point", "baseline", "TE", "TI"])
            f1 = [table.GetValue(r, names.index("lesion_f1")).ToDouble() for r in range(5)]
            self.assertTrue(all(0.0 <= v <= 1.0 for v in f1), f1)
            chart = nodes["chart"]
            self.assertEqual(chart.GetNumberOfPlotSeriesNodes(), 2)  # one series per TI
            self.assertEqual(chart.GetNthPlotSeriesNode(0).GetXColumnName(), "TE")
            heat = slicer.util.arrayFromVolume(nodes["heatmap"])
            self.assertEqual(heat.shape, (1, 2, 2))
            self.assertTrue(np.all(np.isfinite(heat)))
            self.assertTrue(os.path.isfile(nodes["files"]["html"]))
            slicer.modules.plots.logic().ShowChartInLayout(chart)

            again = logic.load_results(outdir)["nodes"]  # as after a background run
            self.assertEqual(again["table"].GetTable().GetNumberOfRows(), 5)
            self.delayDisplay("Test passed")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class ThresholdModel:
    """A stand-in segmentation model for the self test (no torch needed): FLAIR above its 99.5th percentile."""

    name = "threshold"
    image_channel = "FLAIR"
    extra_inputs = ()

    def predict(self, inputs, *, case_id=""):
        import numpy as np

        image = inputs["FLAIR"]
        data = np.asarray(image.data, dtype=np.float32)
        return image.with_data((data > np.percentile(data, 99.5)).astype(np.uint8))
