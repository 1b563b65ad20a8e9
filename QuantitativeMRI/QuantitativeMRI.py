"""QuantitativeMRI: MR fingerprinting maps, quantitative map fitting, and synthetic images from maps.

Module -> Parameter node -> Widget -> Logic -> Test, as in Slicer's scripted-module template (Slicer >= 5.10).
Three panels share one background job (``neuroshift mrf ...`` / ``neuroshift qmri ...`` in a ``PythonSlicer``
process through :class:`neuroshift_slicer.jobs.BackgroundJobController`, with progress and Cancel):

* MRF (paper 001): frames (sequence node, multi-volume, or a 4D NIfTI file) + schedule -> T1/T2* (ms) and
  NAWM/GM/lesion probability (%) with the U-Net, and/or T1/T2*/B1/PD/match quality by dictionary matching;
  optional lesion segmentation at a probability threshold (paper 001: 33 %).
* qMRI fit (paper 002): two to four images with their sequence and parameters -> PD and the T1/T2/T2* maps
  they identify.
* qMRI synth: PD/T1/T2/T2*/B1 maps + sequence + parameters -> a SYNTHETIC image.

The widget is a thin layer over :class:`QuantitativeMRILib.logic.QuantitativeMRICore` (Qt-free, tested on
MRML with slicer-core), held by :class:`QuantitativeMRILogic` by composition.
"""

from __future__ import annotations

from typing import Annotated, Optional, Union

import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

import neuroshift_slicer.connectors  # noqa: F401  (registers the str path connector of the file fields)
from neuroshift_slicer.environment import MODEL_REQUIREMENTS, engine_process, ensure_requirements
from neuroshift_slicer.jobs import BackgroundJobController
from QuantitativeMRILib.logic import SYNTH_MAPS, QuantitativeMRICore
from QuantitativeMRILib.requests import (DEVICES, FIT_METHODS, FIT_ROWS, LESION_THRESHOLD_PERCENT, SEQUENCE_CHOICES,
                                         FitRequest, MRFMethod, MRFRequest, SynthRequest, default_dictionary_cache)

#: dipy runs the MP-PCA denoising of the MRF frames (neuroshift/mrf/denoise.py).
DENOISE_REQUIREMENTS = {"dipy": "dipy"}


#
# Module
#
class QuantitativeMRI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Quantitative MRI")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "NeuroShift")]
        self.parent.dependencies = []
        self.parent.contributors = ["NeuroShift developers"]
        self.parent.helpText = _(
            "MR fingerprinting: T1 and T2* maps and NAWM, GM and lesion probability maps from MRF-EPI frames "
            "(regression U-Net, or dictionary matching with T1, T2*, B1, PD and match quality). The shipped "
            "schedule is REPRESENTATIVE and the demo U-Net is trained on SYNTHETIC phantoms: not for clinical use. "
            "qMRI fit: PD, T1, T2 and T2* maps from two or more images with known parameters. qMRI synth: a "
            "SYNTHETIC image of any sequence from the maps. Times in ms, angles in degrees, probabilities in %.")
        self.parent.acknowledgementText = _(
            "MRF: paper 001 of the NeuroShift seeds (MRF-EPI lesion mapping). Quantitative route: paper 002.")


#
# Parameter node (the fit panel has FIT_ROWS fixed image rows)
#
@parameterNodeWrapper
class QuantitativeMRIParameterNode:
    # None in the Union: UnionSerializer writes the default (None) only through a NoneSerializer (Slicer
    # Docs/developer_guide/parameter_nodes/gui_connection.md, 5.4+); without it the wrapper raises TypeError.
    mrfInput: Union[vtkMRMLSequenceNode, vtkMRMLScalarVolumeNode, None]
    mrfFramesFile: str = ""
    mrfSchedule: str = ""
    mrfMethod: MRFMethod = MRFMethod.unet
    mrfModel: str = ""
    mrfDictionary: str = ""
    mrfDenoise: bool = False
    mrfSvdEnergy: Annotated[float, WithinRange(0.0, 1.0)] = 0.0
    mrfSegmentLesions: bool = True
    mrfThreshold: Annotated[float, WithinRange(0.0, 100.0)] = LESION_THRESHOLD_PERCENT
    mrfDevice: Annotated[str, Choice(list(DEVICES))] = "auto"
    fitImage1: vtkMRMLScalarVolumeNode
    fitImage2: vtkMRMLScalarVolumeNode
    fitImage3: vtkMRMLScalarVolumeNode
    fitImage4: vtkMRMLScalarVolumeNode
    fitSequence1: Annotated[str, Choice(SEQUENCE_CHOICES)] = "se"
    fitSequence2: Annotated[str, Choice(SEQUENCE_CHOICES)] = "se"
    fitSequence3: Annotated[str, Choice(SEQUENCE_CHOICES)] = "se"
    fitSequence4: Annotated[str, Choice(SEQUENCE_CHOICES)] = "se"
    fitParams1: str = ""
    fitParams2: str = ""
    fitParams3: str = ""
    fitParams4: str = ""
    fitMask: vtkMRMLScalarVolumeNode
    fitB1: vtkMRMLScalarVolumeNode
    fitMethod: Annotated[str, Choice(list(FIT_METHODS))] = "auto"
    synthPD: vtkMRMLScalarVolumeNode
    synthT1: vtkMRMLScalarVolumeNode
    synthT2: vtkMRMLScalarVolumeNode
    synthT2star: vtkMRMLScalarVolumeNode
    synthB1: vtkMRMLScalarVolumeNode
    synthSequence: Annotated[str, Choice(SEQUENCE_CHOICES)] = "flair"
    synthTarget: str = "TE=112,TI=2500,TR=9000"
    synthField: Annotated[float, WithinRange(0.0, 20.0)] = 0.0
    synthNoise: Annotated[float, WithinRange(0.0, 1.0e6)] = 0.0
    synthSeed: Annotated[int, WithinRange(-1, 2147483647)] = -1
    synthT2starForT2: bool = False


def mrf_request(p) -> MRFRequest:
    """The MRF panel's values as a request (0 SVD energy = off, unchecked segmentation = no threshold)."""
    return MRFRequest(method=p.mrfMethod.value, schedule=p.mrfSchedule, model=p.mrfModel,
                      dictionary=p.mrfDictionary, dictionary_cache=str(default_dictionary_cache()),
                      denoise=p.mrfDenoise,
                      svd_energy=p.mrfSvdEnergy if p.mrfSvdEnergy > 0 else None, device=p.mrfDevice,
                      lesion_threshold_percent=p.mrfThreshold if p.mrfSegmentLesions else None)


def fit_rows(p) -> tuple[list, FitRequest]:
    """Images of the rows in use and their request (sequence and parameter text per image)."""
    rows = [(getattr(p, f"fitImage{i}"), getattr(p, f"fitSequence{i}"), getattr(p, f"fitParams{i}"))
            for i in range(1, FIT_ROWS + 1)]
    used = [r for r in rows if r[0] is not None]
    return [r[0] for r in used], FitRequest([r[1] for r in used], [r[2] for r in used], method=p.fitMethod)


def synth_request(p) -> tuple[dict, SynthRequest]:
    """Map nodes and the request (0 field = unknown, seed -1 = random)."""
    maps = {name: getattr(p, f"synth{name}") for name in SYNTH_MAPS}
    return maps, SynthRequest(p.synthSequence, p.synthTarget, p.synthField or None, p.synthNoise,
                              None if p.synthSeed < 0 else p.synthSeed, p.synthT2starForT2)


#
# Widget
#
class QuantitativeMRIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.jobs = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/QuantitativeMRI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = QuantitativeMRILogic()
        self.jobs = BackgroundJobController(self._onFinished, on_progress=self._onProgress, on_busy=self._onBusy)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.mrfApplyButton.connect("clicked(bool)", self.onMRFApply)
        self.ui.fitApplyButton.connect("clicked(bool)", self.onFitApply)
        self.ui.synthApplyButton.connect("clicked(bool)", self.onSynthApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
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
        if not self._parameterNode.mrfInput:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSequenceNode")
            if first:
                self._parameterNode.mrfInput = first

    def setParameterNode(self, inputParameterNode: Optional[QuantitativeMRIParameterNode]) -> None:
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
        idle = not self.jobs.busy
        method = p.mrfMethod.value
        for widget in (self.ui.mrfModelLabel, self.ui.mrfModelPathLineEdit, self.ui.mrfSegmentCheckBox,
                       self.ui.mrfThresholdSpinBox):
            widget.visible = method != "match"
        for widget in (self.ui.mrfDictionaryLabel, self.ui.mrfDictionaryPathLineEdit, self.ui.mrfDenoiseCheckBox,
                       self.ui.mrfSvdLabel, self.ui.mrfSvdSpinBox):
            widget.visible = method != "unet"
        self.ui.mrfThresholdSpinBox.enabled = p.mrfSegmentLesions
        self.ui.mrfApplyButton.enabled = idle and (p.mrfInput is not None or bool(p.mrfFramesFile))
        images, _request = fit_rows(p)
        self.ui.fitApplyButton.enabled = idle and len(images) >= 2
        self.ui.synthApplyButton.enabled = idle and p.synthPD is not None

    # ------------------------------------------------------------------ run
    def _start(self, what: str, requirements: dict, start) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start {what}.").format(what=what), waitCursor=True):
            if not ensure_requirements("QuantitativeMRI", requirements):
                return
            python, env = engine_process()
            job = start(python, env)
            self.jobs.start(job.run, context=job)

    def onMRFApply(self) -> None:
        p = self._parameterNode
        request = mrf_request(p)
        needs = {**MODEL_REQUIREMENTS, **(DENOISE_REQUIREMENTS if request.denoise and request.runs_match else {})}
        frames = p.mrfFramesFile or p.mrfInput
        self._start(_("the MRF mapping"), needs,
                    lambda python, env: self.logic.core.start_mrf(frames, request, python=python, env=env))

    def onFitApply(self) -> None:
        p = self._parameterNode
        images, request = fit_rows(p)
        self._start(_("the qMRI fit"), {}, lambda python, env: self.logic.core.start_fit(
            images, request, mask=p.fitMask, b1=p.fitB1, python=python, env=env))

    def onSynthApply(self) -> None:
        maps, request = synth_request(self._parameterNode)
        self._start(_("the synthesis"), {},
                    lambda python, env: self.logic.core.start_synth(maps, request, python=python, env=env))

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
            self.logic.core.cancel(job)  # removes the temporary folder
            self.ui.statusLabel.text = _("Cancelled")
            return
        with slicer.util.tryWithErrorDisplay(_("Quantitative MRI failed."), waitCursor=True):
            self.ui.statusLabel.text = _("Failed")
            out = self.logic.core.finish(job)
            self.ui.progressBar.value = 100
            names = list(out.volumes)
            if names:
                slicer.util.setSliceViewerLayers(background=out.volumes[names[0]], fit=True)
            lines = [_("Done: {names}").format(names=", ".join(names))] + out.messages
            if out.segmentation is not None:
                lines.append(_("Lesion segmentation: {name}").format(name=out.segmentation.GetName()))
            self.ui.statusLabel.text = "\n".join(lines)

    def onCancelButton(self) -> None:
        self.jobs.cancel()


#
# Logic
#
class QuantitativeMRILogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic: the parameter node, and the Qt-free :class:`QuantitativeMRICore` as ``self.core``."""

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.core = QuantitativeMRICore(scene or slicer.mrmlScene)

    def getParameterNode(self):
        return QuantitativeMRIParameterNode(super().getParameterNode())


#
# Test (runs inside Slicer; the logic is tested with pytest + slicer-core in Testing/slicer/)
#
class QuantitativeMRITest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer: SYNTHETIC frames of a small dictionary matched back, and a synthesis from maps."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)
        self.assertTrue(ensure_requirements("QuantitativeMRI", MODEL_REQUIREMENTS, ask=False))

    def runTest(self):
        self.setUp()
        self.test_QuantitativeMRI_match_and_synth()

    def test_QuantitativeMRI_match_and_synth(self):
        import tempfile
        from pathlib import Path

        import numpy as np

        from neuroshift.io.params import AcquisitionParams
        from neuroshift.io.volume import Volume
        from neuroshift.mrf.dictionary import build_dictionary, save_dictionary
        from neuroshift.mrf.schedule import data_dir, representative_schedule
        from neuroshift.qmri.maps import QMRIMaps
        from neuroshift.qmri.synth import synthesize
        from neuroshift_slicer.volume_nodes import add_volume_node, volume_from_node
        from QuantitativeMRILib.frames import frames_to_sequence

        core = QuantitativeMRILogic().core
        python, env = engine_process()
        grid = {"t1_ms": np.array([600.0, 900.0, 1400.0]), "t2star_ms": np.array([40.0, 70.0]), "b1": np.array([1.0])}
        d = build_dictionary(representative_schedule(), grid)
        with tempfile.TemporaryDirectory() as tmp:
            save_dictionary(d, Path(tmp) / "d.npz")
            ref = Volume(np.zeros((1, 2, 3), np.float32), [1.0, 1.0, 2.0])
            seq = frames_to_sequence(slicer.mrmlScene, d.atoms().reshape(1, 2, 3, -1).astype(np.float32), ref, "MRF")
            request = MRFRequest("match", schedule=str(data_dir() / "schedule_representative.json"),
                                 dictionary=str(Path(tmp) / "d.npz"), device="cpu")
            job = core.start_mrf(seq, request, python=python, env=env)
            self.assertEqual(job.run.wait(600).returncode, 0)
            out = core.finish(job)
        t1 = volume_from_node(out.volumes["MRF_T1_ms"]).data.reshape(-1)
        np.testing.assert_allclose(t1, d.parameters()[:, 0], rtol=1e-6)
        pd = add_volume_node(slicer.mrmlScene, ref.with_data(np.full((1, 2, 3), 1000.0, np.float32)), "s_PD_au")
        t2 = add_volume_node(slicer.mrmlScene, ref.with_data(np.full((1, 2, 3), 80.0, np.float32)), "s_T2_ms")
        t1n = add_volume_node(slicer.mrmlScene, ref.with_data(np.full((1, 2, 3), 1000.0, np.float32)), "s_T1_ms")
        job = core.start_synth({"PD": pd, "T1": t1n, "T2": t2}, SynthRequest("se", "TE=80,TR=3000"),
                               python=python, env=env)
        self.assertEqual(job.run.wait(600).returncode, 0)
        image = core.finish(job).volumes["s_SYNTHETIC_SE"]
        maps = QMRIMaps({"PD": volume_from_node(pd), "T1": volume_from_node(t1n), "T2": volume_from_node(t2)})
        expected = synthesize(maps, "se", AcquisitionParams.parse("TE=80,TR=3000")).data  # same as in this process
        np.testing.assert_allclose(volume_from_node(image).data, expected, rtol=1e-5)
        self.assertEqual(image.GetAttribute("NeuroShift.Synthetic"), "true")
        self.delayDisplay("QuantitativeMRI test passed")
