"""ClaustrumSeg: claustrum and white-matter-hyperintensity segmentation with multi-view U-Net ensembles.

The GUI is a thin layer over :mod:`ClaustrumSegLib.logic` (Qt-free, tested against MRML with
slicer-core); segmentation runs in a background process (``neuroshift segment ...``) with progress
and Cancel, so Slicer stays responsive.
"""

from __future__ import annotations

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from neuroshift_slicer.environment import MODEL_REQUIREMENTS, engine_process, ensure_requirements
from ClaustrumSegLib.logic import ClaustrumSegLogic as _CoreLogic
from ClaustrumSegLib.logic import SegmentationParameters


class ClaustrumSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ClaustrumSeg"
        self.parent.categories = ["NeuroShift"]
        self.parent.dependencies = []
        self.parent.contributors = ["NeuroShift developers"]
        self.parent.helpText = (
            "Segment the claustrum (skull-stripped T1w, or T2w with a neonatal model) or white-matter "
            "hyperintensities (FLAIR, optionally with a T1 registered to it) with the multi-view 2D U-Net "
            "ensembles of Li et al. (NeuroImage 2018; Hum Brain Mapp 2021; Clin Neuroradiol 2022). "
            "Models are NeuroShift packages: the bundled phantom-trained WMH demo (not for clinical use), "
            "packages imported from the authors' Keras files ('neuroshift models import-keras') or trained "
            "with 'neuroshift train'. No claustrum weights are bundled.")
        self.parent.acknowledgementText = "Method: Hongwei Li, Bjoern Menze and co-authors (TU Munich)."


class ClaustrumSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.job = None
        self.timer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/ClaustrumSeg.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = ClaustrumSegLogic()
        self.ui.taskComboBox.addItem("Claustrum", "claustrum")
        self.ui.taskComboBox.addItem("White-matter hyperintensities (WMH)", "wmh")
        for dev in ("auto", "cpu", "cuda"):
            self.ui.deviceComboBox.addItem(dev)
        self.ui.uncertaintyKindComboBox.addItems(["variance", "entropy"])
        self.ui.taskComboBox.currentIndexChanged.connect(self.updateTask)
        self.ui.inputSelector.currentNodeChanged.connect(self.updateButtons)
        self.ui.applyButton.clicked.connect(self.onApply)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.ui.refreshModelsButton.clicked.connect(self.updateModels)
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.onPoll)
        self.updateTask()

    def cleanup(self):
        if self.job is not None:
            self.logic.core.cancel_background(self.job)
            self.job = None
        self.removeObservers()

    # ------------------------------------------------------------------ state
    def task(self) -> str:
        return self.ui.taskComboBox.currentData or "claustrum"

    def updateTask(self):
        wmh = self.task() == "wmh"
        self.ui.inputLabel.text = "FLAIR:" if wmh else "Input (T1w / T2w):"
        self.ui.t1Label.visible = wmh
        self.ui.t1Selector.visible = wmh
        self.updateModels()

    def updateModels(self):
        self.ui.modelComboBox.clear()
        try:
            models = self.logic.core.available_models(self.task())
        except Exception as exc:  # noqa: BLE001 - the engine may not be installed yet
            models = []
            self.ui.statusLabel.text = f"Cannot list models: {exc}"
        for m in models:
            tag = " (demo)" if m.get("demo") else ""
            self.ui.modelComboBox.addItem(f"{m['name']}{tag} - {m.get('source', '')}", m["path"])
        if not models:
            self.ui.statusLabel.text = _CoreLogic.no_model_message(self.task()).splitlines()[0]
        self.updateButtons()

    def updateButtons(self, *_):
        running = self.job is not None
        has_model = self.ui.modelComboBox.count > 0 or bool(self.ui.modelPathLineEdit.currentPath)
        self.ui.applyButton.enabled = (not running and self.ui.inputSelector.currentNode() is not None
                                       and has_model)
        self.ui.cancelButton.enabled = running

    def parameters(self) -> SegmentationParameters:
        model = self.ui.modelPathLineEdit.currentPath or self.ui.modelComboBox.currentData
        return SegmentationParameters(
            task=self.task(), model=model, device=self.ui.deviceComboBox.currentText,
            tta=self.ui.ttaCheckBox.checked, probabilities=self.ui.probabilityCheckBox.checked,
            uncertainty=self.ui.uncertaintyCheckBox.checked,
            uncertainty_kind=self.ui.uncertaintyKindComboBox.currentText,
            batch_size=int(self.ui.batchSizeSpinBox.value) or None,
            threshold=float(self.ui.thresholdSpinBox.value) if self.ui.thresholdSpinBox.value > 0 else None,
            age_weeks=float(self.ui.ageSpinBox.value) if self.ui.ageCheckBox.checked else None,
            mask_mode="relative" if self.ui.relativeMaskCheckBox.checked else None)

    # ------------------------------------------------------------------ run
    def onApply(self):
        try:
            if not ensure_requirements("ClaustrumSeg", MODEL_REQUIREMENTS):
                return
            inputs = {"input": self.ui.inputSelector.currentNode()}
            if self.task() == "wmh" and self.ui.t1Selector.currentNode() is not None:
                inputs["T1"] = self.ui.t1Selector.currentNode()
            python, env = engine_process()
            self.job = self.logic.core.start_background(inputs, self.parameters(), python=python, env=env)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            slicer.util.errorDisplay(f"Could not start the segmentation: {exc}")
            self.job = None
            return
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = "Running..."
        self.timer.start()
        self.updateButtons()

    def onPoll(self):
        if self.job is None:
            self.timer.stop()
            return
        state = self.job.run.poll()
        self.ui.progressBar.value = int(round(100 * state.progress))
        if state.message:
            self.ui.statusLabel.text = state.message
        if state.returncode is None:
            return
        self.timer.stop()
        job, self.job = self.job, None
        try:
            out = self.logic.core.finish_background(job, self.ui.outputSelector.currentNode())
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.ui.statusLabel.text = "Failed"
            slicer.util.errorDisplay(str(exc))
            self.updateButtons()
            return
        self.ui.outputSelector.setCurrentNode(out.segmentation)
        volumes = ", ".join(f"{k}: {v:.0f} mm\u00b3" for k, v in out.volumes_mm3.items())
        self.ui.statusLabel.text = f"Done. {volumes}"
        if out.warnings:
            slicer.util.warningDisplay("\n\n".join(out.warnings), windowTitle="ClaustrumSeg quality control")
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(out.table.GetID())
        self.ui.progressBar.value = 100
        self.updateButtons()

    def onCancel(self):
        if self.job is not None:
            self.logic.core.cancel_background(self.job)
            self.job = None
        self.timer.stop()
        self.ui.statusLabel.text = "Cancelled"
        self.ui.progressBar.value = 0
        self.updateButtons()


class ClaustrumSegLogic(ScriptedLoadableModuleLogic):
    """Slicer-side logic: wraps :class:`ClaustrumSegLib.logic.ClaustrumSegLogic` on ``slicer.mrmlScene``."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.core = _CoreLogic(slicer.mrmlScene)

    def process(self, inputs, params: SegmentationParameters, progress=None):
        """Segment in this process (blocking); returns :class:`ClaustrumSegLib.logic.OutputNodes`."""
        return self.core.run(inputs, params, progress=progress)


class ClaustrumSegTest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer: a synthetic scan and a fixed threshold 'network' (no weights needed)."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

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
