"""ClaustrumSeg: claustrum and white-matter-hyperintensity segmentation with multi-view U-Net ensembles.

Module -> Parameter node -> Widget -> Logic -> Test, as in Slicer's scripted-module template
(Slicer >= 5.10). The GUI is bound to a ``parameterNodeWrapper`` (saved with the scene) and is a
thin layer over :class:`ClaustrumSegLib.logic.ClaustrumSegCore` (Qt-free, tested against MRML with
slicer-core), held by :class:`ClaustrumSegLogic` by composition. Segmentation runs in a background
``PythonSlicer`` process (``neuroshift segment ...``) through the shared
:class:`neuroshift_slicer.jobs.BackgroundJobController`, with progress and Cancel.
"""

from __future__ import annotations

from typing import Annotated, Optional

import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

import neuroshift_slicer.connectors  # noqa: F401  (registers the str path connector used by modelPath)
from neuroshift_slicer.environment import MODEL_REQUIREMENTS, engine_process, ensure_requirements
from neuroshift_slicer.jobs import BackgroundJobController
from ClaustrumSegLib.logic import (DEVICES, PRECISIONS, UNCERTAINTY_KINDS, ClaustrumSegCore, SegmentationParameters,
                                   SegmentationTask, parameters_from_fields)


#
# Module
#
class ClaustrumSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("ClaustrumSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "NeuroShift")]
        self.parent.dependencies = []
        self.parent.contributors = ["NeuroShift developers"]
        self.parent.helpText = _(
            "Segment the claustrum (skull-stripped T1w, or T2w with a neonatal model) or white-matter "
            "hyperintensities (FLAIR, optionally with a T1 registered to it) with the multi-view 2D U-Net "
            "ensembles of Li et al. (NeuroImage 2018; Hum Brain Mapp 2021; Clin Neuroradiol 2022). "
            "Models are NeuroShift packages: the bundled phantom-trained WMH demo (not for clinical use), "
            "packages imported from the authors' Keras files ('neuroshift models import-keras') or trained "
            "with 'neuroshift train'. No claustrum weights are bundled.")
        self.parent.acknowledgementText = _("Method: Hongwei Li, Bjoern Menze and co-authors (TU Munich).")


#
# Parameter node (the model list is filled from the installed packages and is therefore not bound)
#
@parameterNodeWrapper
class ClaustrumSegParameterNode:
    task: SegmentationTask = SegmentationTask.claustrum
    inputVolume: vtkMRMLScalarVolumeNode
    t1Volume: vtkMRMLScalarVolumeNode
    modelPath: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    precision: Annotated[str, Choice(list(PRECISIONS))] = "auto"
    batchSize: Annotated[int, WithinRange(0, 1024)] = 0
    threshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.0
    useAge: bool = False
    ageWeeks: Annotated[float, WithinRange(0.0, 5000.0)] = 40.0
    tta: bool = False
    relativeMask: bool = False
    outputSegmentation: vtkMRMLSegmentationNode
    probabilities: bool = False
    uncertainty: bool = False
    uncertaintyKind: Annotated[str, Choice(list(UNCERTAINTY_KINDS))] = "variance"


#
# Widget
#
class ClaustrumSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._modelsForTask = None
        self.jobs = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ClaustrumSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ClaustrumSegLogic()
        self.jobs = BackgroundJobController(self._onFinished, on_progress=self._onProgress, on_busy=self._onBusy)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.updateModels)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self._updateGui)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.jobs.cancel()
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

    def setParameterNode(self, inputParameterNode: Optional[ClaustrumSegParameterNode]) -> None:
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
        task = p.task.value
        if task != self._modelsForTask:
            self.updateModels()
            return  # updateModels calls back here
        wmh = task == "wmh"
        self.ui.inputLabel.text = _("FLAIR:") if wmh else _("Input (T1w / T2w):")
        self.ui.t1Label.visible = wmh
        self.ui.t1Selector.visible = wmh
        hasModel = self.ui.modelComboBox.count > 0 or bool(p.modelPath)
        ready = p.inputVolume is not None and hasModel
        self.ui.applyButton.enabled = ready and not self.jobs.busy
        self.ui.applyButton.toolTip = (_("Segment in a separate process") if ready
                                       else _("Choose the input volume and a model"))

    def updateModels(self) -> None:
        """Fill the model list (installed and bundled packages) for the current task."""
        p = self._parameterNode
        if p is None:
            return
        self._modelsForTask = p.task.value
        self.ui.modelComboBox.clear()
        try:
            models = self.logic.core.available_models(self._modelsForTask)
        except Exception as exc:  # a broken model folder must not break the GUI
            models = []
            self.ui.statusLabel.text = _("Cannot list models: {error}").format(error=exc)
        for m in models:
            tag = _(" (demo)") if m.get("demo") else ""
            self.ui.modelComboBox.addItem(f"{m['name']}{tag} - {m.get('source', '')}", m["path"])
        if not models:
            self.ui.statusLabel.text = ClaustrumSegCore.no_model_message(self._modelsForTask).splitlines()[0]
        self._updateGui()

    def parameters(self) -> SegmentationParameters:
        p = self._parameterNode
        return parameters_from_fields(
            task=p.task.value, model=p.modelPath or self.ui.modelComboBox.currentData, device=p.device,
            tta=p.tta, probabilities=p.probabilities, uncertainty=p.uncertainty, uncertainty_kind=p.uncertaintyKind,
            batch_size=p.batchSize, threshold=p.threshold, use_age=p.useAge, age_weeks=p.ageWeeks,
            relative_mask=p.relativeMask, precision=p.precision)

    # ------------------------------------------------------------------ run
    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation."), waitCursor=True):
            if not ensure_requirements("ClaustrumSeg", MODEL_REQUIREMENTS):
                return
            p = self._parameterNode
            inputs = {"input": p.inputVolume}
            if p.task.value == "wmh" and p.t1Volume is not None:
                inputs["T1"] = p.t1Volume
            python, env = engine_process()
            job = self.logic.core.start_background(inputs, self.parameters(), python=python, env=env)
            self.jobs.start(job.run, context=job)

    def _onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        if message:
            self.ui.statusLabel.text = message

    def _onBusy(self, busy: bool) -> None:
        self.ui.cancelButton.enabled = busy
        self.ui.progressBar.value = 0
        if busy:
            self.ui.statusLabel.text = _("Running...")
        self._updateGui()

    def _onFinished(self, state, job, cancelled: bool) -> None:
        if cancelled:
            self.logic.core.cancel_background(job)  # removes the temporary folder
            self.ui.statusLabel.text = _("Cancelled")
            return
        with slicer.util.tryWithErrorDisplay(_("Segmentation failed."), waitCursor=True):
            self.ui.statusLabel.text = _("Failed")
            out = self.logic.core.finish_background(job, self._parameterNode.outputSegmentation)
            self._parameterNode.outputSegmentation = out.segmentation
            volumes = ", ".join(f"{k}: {v:.0f} mm\u00b3" for k, v in out.volumes_mm3.items())
            self.ui.statusLabel.text = _("Done. {volumes}").format(volumes=volumes)
            self.ui.progressBar.value = 100
            appLogic = slicer.app.applicationLogic()
            appLogic.GetSelectionNode().SetActiveTableID(out.table.GetID())
            appLogic.PropagateTableSelection()  # without it the table view keeps showing the previous table
            if out.warnings:
                slicer.util.warningDisplay("\n\n".join(out.warnings),
                                           windowTitle=_("ClaustrumSeg quality control"))

    def onCancelButton(self) -> None:
        self.jobs.cancel()


#
# Logic
#
class ClaustrumSegLogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic: the parameter node, and the Qt-free :class:`ClaustrumSegCore` as ``self.core``."""

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.core = ClaustrumSegCore(scene or slicer.mrmlScene)

    def getParameterNode(self):
        return ClaustrumSegParameterNode(super().getParameterNode())

    def process(self, inputs, params: SegmentationParameters, progress=None):
        """Segment in this process (blocking); returns :class:`ClaustrumSegLib.logic.OutputNodes`."""
        return self.core.run(inputs, params, progress=progress)


#
# Test (runs inside Slicer; the logic is tested with pytest + slicer-core in Testing/)
#
class ClaustrumSegTest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer: a synthetic scan and a fixed threshold 'network' (no weights needed)."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)
        self.assertTrue(ensure_requirements("ClaustrumSeg", MODEL_REQUIREMENTS, ask=False))

    def runTest(self):
        self.setUp()
        self.test_ClaustrumSeg_synthetic()

    def test_ClaustrumSeg_synthetic(self):
        import numpy as np
        import torch
        from torch import nn

        from neuroshift.io.volume import Volume
        from neuroshift.segment.package import LoadedPackage
        from neuroshift_slicer.volume_nodes import add_volume_node

        class Threshold(nn.Module):
            def forward(self, x):
                return torch.sigmoid(8 * (x[:, :1] - 0.5))

        k, j, i = np.indices((40, 48, 44))
        brain = ((i - 22) / 18.0) ** 2 + ((j - 24) / 20.0) ** 2 + ((k - 20) / 16.0) ** 2 <= 1
        sheets = (np.abs(np.abs(i - 22) - 9) <= 1) & (np.abs(j - 24) <= 9) & (np.abs(k - 20) <= 6)
        data = np.where(brain, 100.0, 0.0) + np.where(brain & sheets, 100.0, 0.0)
        node = add_volume_node(slicer.mrmlScene, Volume(data.astype(np.float32), [1, 1, 1]), "synthetic T1")
        pkg = LoadedPackage({"task": "claustrum", "input_channels": ["T1"], "views": ["axial", "coronal"],
                             "models_per_view": 1, "threshold": 0.4, "slab_fraction": 0.2,
                             "preprocessing": {"spacing_mm": 1.0, "crop_hw": [64, 64],
                                               "brain_mask": {"mode": "relative"}}},
                            {"axial": [Threshold()], "coronal": [Threshold()]})
        out = ClaustrumSegLogic().process({"T1": node}, SegmentationParameters(model=pkg, device="cpu"))
        self.assertEqual(out.segmentation.GetSegmentation().GetNthSegment(0).GetName(), "claustrum")
        self.assertGreater(out.volumes_mm3["claustrum"], 0)
        self.delayDisplay("ClaustrumSeg test passed")
