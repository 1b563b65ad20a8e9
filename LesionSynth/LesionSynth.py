"""LesionSynth: synthetic DIR / contrast-enhanced T1 from the available contrasts, with uncertainty, and
physics-based lesion insertion.

Module -> Parameter node -> Widget -> Logic -> Test, as in Slicer's scripted-module template
(Slicer >= 5.10). The GUI is bound to a ``parameterNodeWrapper`` (saved with the scene) and is a
thin layer over the Qt-free :class:`LesionSynthLib.synthesis.SynthesisCore` and
:class:`LesionSynthLib.insertion.InsertionCore` (tested against MRML with slicer-core), held by
:class:`LesionSynthLogic` by composition. Both panels run the engine's CLI (``neuroshift synthesize``,
``neuroshift insert-lesions``) in a background ``PythonSlicer`` process through the shared
:class:`neuroshift_slicer.jobs.BackgroundJobController`, with progress and Cancel.
Every output is SYNTHETIC: in its node name and in the ``NeuroShift.Synthetic`` attribute.
"""

from __future__ import annotations

from typing import Annotated, Optional

import vtk

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

import neuroshift_slicer.connectors  # noqa: F401  (registers the str path connector used by modelPath)
from neuroshift_slicer.environment import MODEL_REQUIREMENTS, engine_process, ensure_requirements
from neuroshift_slicer.jobs import BackgroundJobController
from LesionSynthLib import (DEFAULT_LABELS, DEVICES, SEQUENCES, InsertionCore, InsertionParameters, SynthesisCore,
                            SynthesisParameters, SynthesisTarget, available_models, known_parameters, known_sequence)

#: Parameter-node field of each synthesis input (keys of LesionSynthLib.synthesis.INPUT_FLAGS).
INPUT_FIELDS = {"flair": "flairVolume", "t1": "t1Volume", "t2": "t2Volume", "adc": "adcVolume",
                "low_dose": "lowDoseVolume"}


#
# Module
#
class LesionSynth(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LesionSynth")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "NeuroShift")]
        self.parent.dependencies = []
        self.parent.contributors = ["NeuroShift developers"]
        self.parent.helpText = _(
            "Synthesise a double inversion recovery (DIR) image from any subset of FLAIR, T1 and T2 (DiamondGAN, "
            "Li et al. MICCAI 2019), a lesion-focused DIR with an uncertainty map from FLAIR and T1 (synthDIR, "
            "Finck et al. 2022; the learned error SD of packages with an error model, else the MC-dropout SD), or a virtual contrast-enhanced T1 from ADC, FLAIR, T1 and a low-dose T1c "
            "(Ammari et al.); and insert lesions into a real scan through the tissue-wise signal model. "
            "Every output is SYNTHETIC (node name and attribute). The bundled demo models are phantom-trained "
            "and not for clinical use.")
        self.parent.acknowledgementText = _("Methods: Hongwei Li, Tom Finck, Bjoern Menze and co-authors (TU Munich); "
                                            "Samy Ammari, Alexandre Bone and co-authors.")


#
# Parameter node (the model list is filled from the installed packages and is therefore not bound)
#
@parameterNodeWrapper
class LesionSynthParameterNode:
    target: SynthesisTarget = SynthesisTarget.dir
    flairVolume: vtkMRMLScalarVolumeNode
    t1Volume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    adcVolume: vtkMRMLScalarVolumeNode
    lowDoseVolume: vtkMRMLScalarVolumeNode
    brainMask: vtkMRMLScalarVolumeNode
    modelPath: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    uncertainty: bool = False
    mcSamples: Annotated[int, WithinRange(2, 1000)] = 20
    tta: bool = False
    histogramMatch: bool = True
    outputVolume: vtkMRMLScalarVolumeNode
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    hostVolume: vtkMRMLScalarVolumeNode
    hostSequence: Annotated[str, Choice(list(SEQUENCES))] = "flair"
    hostParameters: str = ""
    # Not bound: the ID of the host whose known parameters filled hostParameters, so that a scene reload or
    # module enter keeps what the user typed (ShiftSimulator's headerReadFor, defect 9 of issue 14).
    hostParametersFor: str = ""
    pvCSF: vtkMRMLScalarVolumeNode
    pvGM: vtkMRMLScalarVolumeNode
    pvWM: vtkMRMLScalarVolumeNode
    tissueLabels: vtkMRMLLabelMapVolumeNode
    labelMapping: str = DEFAULT_LABELS
    lesionMask: vtkMRMLScalarVolumeNode
    lesionPoints: vtkMRMLMarkupsFiducialNode
    lesionDiameter: Annotated[float, WithinRange(0.5, 100.0)] = 6.0
    lesionCount: Annotated[int, WithinRange(1, 100)] = 3
    lesionSeed: Annotated[int, WithinRange(0, 1000000)] = 0
    insertedVolume: vtkMRMLScalarVolumeNode
    insertedMask: vtkMRMLLabelMapVolumeNode


#
# Widget
#
class LesionSynthWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._modelsForTarget = None
        self._modelTasks = {}  # package path -> task of the listed models (uncertainty needs synthDIR)
        self.jobs = None
        self.insertJobs = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LesionSynth.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LesionSynthLogic()
        self.jobs = BackgroundJobController(self._onSynthesisFinished, on_progress=self._onSynthesisProgress,
                                            on_busy=self._onSynthesisBusy)
        self.insertJobs = BackgroundJobController(self._onInsertionFinished, on_progress=self._onInsertionProgress,
                                                  on_busy=self._onInsertionBusy)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.synthesizeButton.connect("clicked(bool)", self.onSynthesizeButton)
        self.ui.synthesisCancelButton.connect("clicked(bool)", self.jobs.cancel)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.updateModels)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self._updateGui)
        self.ui.insertButton.connect("clicked(bool)", self.onInsertButton)
        self.ui.insertionCancelButton.connect("clicked(bool)", self.insertJobs.cancel)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.jobs.cancel()
        self.insertJobs.cancel()
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

    def setParameterNode(self, inputParameterNode: Optional[LesionSynthParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    def _pvMaps(self) -> dict:
        p = self._parameterNode
        return {"CSF": p.pvCSF, "GM": p.pvGM, "WM": p.pvWM}

    def _inputs(self) -> dict:
        p = self._parameterNode
        return {key: getattr(p, field) for key, field in INPUT_FIELDS.items()}

    def _updateGui(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        if p.target.value != self._modelsForTarget:
            self.updateModels()
            return  # updateModels calls back here
        t1c = p.target.value == "t1c"
        for widget in (self.ui.adcLabel, self.ui.adcSelector, self.ui.lowDoseLabel, self.ui.lowDoseSelector):
            widget.visible = t1c
        task = None if p.modelPath else self._modelTasks.get(self.ui.modelComboBox.currentData)
        self.ui.uncertaintyCheckBox.enabled = task in (None, "synthdir")  # None: automatic, or a folder
        self.ui.mcSamplesSpinBox.enabled = p.uncertainty
        ready = any(node is not None for node in self._inputs().values())
        self.ui.synthesizeButton.enabled = ready and not self.jobs.busy
        self.ui.synthesizeButton.toolTip = (_("Synthesise in a separate process") if ready
                                            else _("Choose at least one input volume"))
        host = p.hostVolume
        if host is not None and host.GetID() != p.hostParametersFor:  # a newly chosen host, not a scene reload
            p.hostParametersFor = host.GetID()
            p.hostSequence = known_sequence(host) or p.hostSequence
            try:
                p.hostParameters = known_parameters(host)  # the previous host's values do not carry over
            except Exception as exc:  # an out-of-range header value: say so, let the user type the values
                p.hostParameters = ""
                self.ui.insertionStatusLabel.text = _("Header parameters not used: {error}").format(error=exc)
        self.ui.lesionCountSpinBox.enabled = p.lesionMask is None and p.lesionPoints is None
        self.ui.lesionDiameterSpinBox.enabled = p.lesionMask is None
        pvMaps = any(node is not None for node in self._pvMaps().values())
        self.ui.tissueSelector.enabled = self.ui.labelMappingLineEdit.enabled = not pvMaps
        insertReady = host is not None and (pvMaps or p.tissueLabels is not None)
        self.ui.insertButton.enabled = insertReady and not self.insertJobs.busy
        self.ui.insertButton.toolTip = (_("Insert lesions in a separate process") if insertReady
                                        else _("Choose the host volume and its tissues (maps or label map)"))

    def updateModels(self) -> None:
        """Fill the model list (installed and bundled synthesis packages) for the current target."""
        p = self._parameterNode
        if p is None:
            return
        self._modelsForTarget = p.target.value
        self.ui.modelComboBox.clear()
        self.ui.modelComboBox.addItem(_("automatic (first that fits the inputs)"), "")
        try:
            models = available_models(self._modelsForTarget)
        except Exception as exc:  # a broken model folder must not break the GUI
            models = []
            self.ui.synthesisStatusLabel.text = _("Cannot list models: {error}").format(error=exc)
        self._modelTasks = {m["path"]: m["task"] for m in models}
        for m in models:
            inputs = "/".join(m["inputs"])
            self.ui.modelComboBox.addItem(f"{m['name']} ({m['task']}: {inputs}) - {m['source']}", m["path"])
        self._updateGui()

    # ------------------------------------------------------------------ synthesis
    def onSynthesizeButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start the synthesis."), waitCursor=True):
            if not ensure_requirements("LesionSynth", MODEL_REQUIREMENTS):
                return
            p = self._parameterNode
            model = p.modelPath or self.ui.modelComboBox.currentData or ""
            params = SynthesisParameters(target=p.target.value, model=model, device=p.device,
                                         uncertainty=p.uncertainty, mc_samples=p.mcSamples, tta=p.tta,
                                         histogram_match=p.histogramMatch)
            python, env = engine_process()
            job = self.logic.synthesis.start_background(self._inputs(), params, brain_mask=p.brainMask,
                                                        python=python, env=env)
            self.jobs.start(job.run, context=job)

    def _onSynthesisProgress(self, fraction: float, message: str) -> None:
        _showProgress(self.ui.synthesisProgressBar, self.ui.synthesisStatusLabel, fraction, message)

    def _onSynthesisBusy(self, busy: bool) -> None:
        _showBusy(self.ui.synthesisProgressBar, self.ui.synthesisStatusLabel, self.ui.synthesisCancelButton, busy)
        self._updateGui()

    def _onSynthesisFinished(self, state, job, cancelled: bool) -> None:
        if cancelled:
            self.logic.synthesis.cancel_background(job)  # removes the temporary folder
            self.ui.synthesisStatusLabel.text = _("Cancelled")
            return
        with slicer.util.tryWithErrorDisplay(_("Synthesis failed."), waitCursor=True):
            self.ui.synthesisStatusLabel.text = _("Failed")
            p = self._parameterNode
            out = self.logic.synthesis.finish_background(job, p.outputVolume, p.uncertaintyVolume)
            p.outputVolume = out.synthetic
            if out.uncertainty is not None:
                p.uncertaintyVolume = out.uncertainty  # shown over the synthetic image by the logic
            else:
                slicer.util.setSliceViewerLayers(background=out.synthetic, foreground=None, fit=True)
            self.ui.synthesisProgressBar.value = 100
            self.ui.synthesisStatusLabel.text = _("Done: {name}").format(name=out.synthetic.GetName())

    # ------------------------------------------------------------------ lesion insertion
    def onInsertButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start the lesion insertion."), waitCursor=True):
            if not ensure_requirements("LesionSynth"):
                return
            p = self._parameterNode
            params = InsertionParameters(sequence=p.hostSequence, parameters=p.hostParameters,
                                         label_mapping=p.labelMapping, diameter_mm=p.lesionDiameter,
                                         count=p.lesionCount, seed=p.lesionSeed)
            python, env = engine_process()
            pvMaps = self._pvMaps()
            tissues = pvMaps if any(node is not None for node in pvMaps.values()) else p.tissueLabels
            job = self.logic.insertion.start_background(p.hostVolume, tissues, params, lesion_mask=p.lesionMask,
                                                        lesion_points=p.lesionPoints, python=python, env=env)
            self.insertJobs.start(job.run, context=job)

    def _onInsertionProgress(self, fraction: float, message: str) -> None:
        _showProgress(self.ui.insertionProgressBar, self.ui.insertionStatusLabel, fraction, message)

    def _onInsertionBusy(self, busy: bool) -> None:
        _showBusy(self.ui.insertionProgressBar, self.ui.insertionStatusLabel, self.ui.insertionCancelButton, busy)
        self._updateGui()

    def _onInsertionFinished(self, state, job, cancelled: bool) -> None:
        if cancelled:
            self.logic.insertion.cancel_background(job)
            self.ui.insertionStatusLabel.text = _("Cancelled")
            return
        with slicer.util.tryWithErrorDisplay(_("Lesion insertion failed."), waitCursor=True):
            self.ui.insertionStatusLabel.text = _("Failed")
            p = self._parameterNode
            out = self.logic.insertion.finish_background(job, p.insertedVolume, p.insertedMask)
            p.insertedVolume, p.insertedMask = out.image, out.mask
            slicer.util.setSliceViewerLayers(background=out.image, label=out.mask, labelOpacity=0.4)
            self.ui.insertionProgressBar.value = 100
            self.ui.insertionStatusLabel.text = _("Done: {voxels} lesion voxels inserted into {name}").format(
                voxels=out.lesion_voxels, name=out.image.GetName())


#
# Logic
#
class LesionSynthLogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic: the parameter node, and the Qt-free cores as ``self.synthesis`` / ``self.insertion``
    (``self.core`` is the synthesis core, as in the other modules)."""

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.synthesis = SynthesisCore(scene or slicer.mrmlScene)
        self.insertion = InsertionCore(scene or slicer.mrmlScene)
        self.core = self.synthesis

    def getParameterNode(self):
        return LesionSynthParameterNode(super().getParameterNode())


#
# Test (runs inside Slicer; the logic is tested with pytest + slicer-core in Testing/slicer/)
#
class LesionSynthTest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer: an untrained tiny synthDIR package on a synthetic two-contrast scan, run through
    the background CLI exactly as the Synthesise button does; and markup points to a lesion mask."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)
        self.assertTrue(ensure_requirements("LesionSynth", MODEL_REQUIREMENTS, ask=False))

    def runTest(self):
        self.setUp()
        self.test_LesionSynth_synthesis()
        self.test_LesionSynth_points_to_mask()

    def test_LesionSynth_synthesis(self):
        from LesionSynthLib.selftest import check_synthesis

        python, env = engine_process()
        check_synthesis(self, LesionSynthLogic(), python, env)

    def test_LesionSynth_points_to_mask(self):
        from LesionSynthLib.selftest import check_points_to_mask

        check_points_to_mask(self)


def _showProgress(bar, label, fraction: float, message: str) -> None:
    """A panel's progress: the bar stays a busy indicator until the engine reports a fraction (0–1)."""
    if fraction > 0:
        bar.maximum = 100
        bar.value = int(round(100 * fraction))
    if message:
        label.text = message


def _showBusy(bar, label, cancelButton, busy: bool) -> None:
    """A panel's running state: Cancel enabled and the bar a busy indicator (maximum 0) while a run is going."""
    cancelButton.enabled = busy
    bar.maximum = 0 if busy else 100
    bar.value = 0
    if busy:
        label.text = _("Running...")
