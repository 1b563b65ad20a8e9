"""ReaderStudy: blinded, randomised reader studies of real and synthetic images.

A reader opens the study database (made with ``neuroshift reader-study create``),
picks their name and works through their schedule: each read loads only the
volumes it allows, neutrally named ("Image A", "Pre-contrast T1"), with the
study's questions (Likert with anchors, 1-6 stars, real or synthetic, lesion
counts, free text) and line markups for the long and short axes of lesions.
A clock counts active reading time and pauses with the reader. "Submit" writes
the read at once as an immutable record; drafts allow stopping and resuming.

Module -> Parameter node -> Widget -> Logic -> Test, as in Slicer's scripted-module template
(Slicer >= 5.10). This file only binds the GUI; the Qt-free core is
:class:`ReaderStudyLib.reading.ReaderStudyCore` (tested against real MRML with slicer-core),
held by :class:`ReaderStudyLogic` by composition; the science is in :mod:`neuroshift.readerstudy`.
"""

from __future__ import annotations

import os
from typing import Optional

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

import neuroshift_slicer.connectors  # noqa: F401  (registers the str path connector used by databasePath)
from neuroshift_slicer.environment import ensure_requirements
from ReaderStudyLib.reading import ReaderStudyCore, answer_index, answer_items, answer_value


#
# Module
#
class ReaderStudy(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("ReaderStudy")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "NeuroShift")]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["NeuroShift developers"]
        self.parent.helpText = _(
            "Blinded, randomised reader studies of real and synthetic images: seeded balanced schedules "
            "with washout between phases, neutral image names, Likert/stars/real-or-synthetic/lesion-count "
            "questions, lesion long and short axes as line markups, active reading time, immutable reads in "
            "an SQLite database. Analyse with 'neuroshift reader-study analyze' (paper 004's Table 5 layout).")
        self.parent.acknowledgementText = _(
            "Protocols: Ammari et al., Invest Radiol 2021 (virtual contrast reader study); H. Li, dissertation "
            "(visual Turing test, synthDIR lesion counting).")


#
# Parameter node (the reader list is filled from the database, so the reader combo box is not bound:
# its choice is kept in ``reader`` and restored after the list is refilled)
#
@parameterNodeWrapper
class ReaderStudyParameterNode:
    databasePath: str = ""
    reader: str = ""


#
# Widget
#
class ReaderStudyWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._readersFor = None  # database path the reader list was filled from
        self.questionWidgets = {}  # question id -> (task, widget, {class: spin box} for lesion counts)
        self._placing = None
        self.clock = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ReaderStudy.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ReaderStudyLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.readerComboBox.connect("currentTextChanged(QString)", self.onReaderChanged)
        self.ui.startButton.connect("clicked(bool)", self.onNextRead)
        self.ui.pauseButton.connect("toggled(bool)", self.onPause)
        self.ui.addLesionButton.connect("clicked(bool)", self.onAddLesion)
        self.ui.saveDraftButton.connect("clicked(bool)", self.onSaveDraft)
        self.ui.submitButton.connect("clicked(bool)", self.onSubmit)
        self.ui.refreshProgressButton.connect("clicked(bool)", self.onRefreshProgress)
        self.clock = qt.QTimer()
        self.clock.setInterval(1000)
        self.clock.connect("timeout()", self.onTick)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onSaveDraft()
        self.clock.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self.logic.core.resume()

    def exit(self) -> None:
        self.logic.core.pause()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        self.onSaveDraft()  # the read's volumes and lesion lines are about to be removed
        self.logic.core.close()  # "Start / next read" resumes the draft in the new scene
        self.clock.stop()
        self.buildQuestions()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: Optional[ReaderStudyParameterNode]) -> None:
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
        if p.databasePath != self._readersFor:
            self._fillReaders(p)
        reading = self.logic.core.reading
        self.ui.startButton.enabled = bool(p.databasePath) and bool(p.reader) and not reading
        for button in (self.ui.addLesionButton, self.ui.saveDraftButton, self.ui.submitButton, self.ui.pauseButton):
            button.enabled = reading
        if reading:
            n = self.logic.core.lesion_count(slicer.mrmlScene)
            self.ui.lesionsLabel.text = _("{n} lesion(s)").format(n=n)

    # ------------------------------------------------------------ study and reader
    def _fillReaders(self, p) -> None:
        """Refill the reader list from the database and restore the saved reader."""
        self._readersFor = p.databasePath
        wasBlocked = self.ui.readerComboBox.blockSignals(True)
        self.ui.readerComboBox.clear()
        with slicer.util.tryWithErrorDisplay(_("Cannot open the study database."), waitCursor=True):
            if p.databasePath and os.path.isfile(p.databasePath) and ensure_requirements("ReaderStudy"):
                self.ui.readerComboBox.addItems(self.logic.core.readers(p.databasePath))
        self.ui.readerComboBox.blockSignals(wasBlocked)
        index = self.ui.readerComboBox.findText(p.reader)
        if index >= 0:
            self.ui.readerComboBox.currentIndex = index
        elif self.ui.readerComboBox.count:
            p.reader = self.ui.readerComboBox.currentText
        else:
            p.reader = ""

    def onReaderChanged(self, text) -> None:
        if self._parameterNode is not None:
            self._parameterNode.reader = text

    def onNextRead(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot open the next read."), waitCursor=True):
            if not ensure_requirements("ReaderStudy"):
                return
            p = self._parameterNode
            self.logic.core.open(p.databasePath, p.reader)
            current = self.logic.core.next_read(slicer.mrmlScene)
            self.buildQuestions()
            if current is None:
                self.clock.stop()
                self.ui.caseLabel.text = _("All reads of your schedule are submitted. Thank you!")
            else:
                s = current.scheduled
                phase = self.logic.core.session.study.all_phases[s.phase - 1].name
                self.ui.caseLabel.text = _("{case} - {phase}, read {position}").format(
                    case=current.case_label, phase=phase, position=s.position)
                self.restoreAnswers(current.answers)
                self.clock.start()
        self.updateProgress()
        self._updateGui()

    # ------------------------------------------------------------ questions
    def buildQuestions(self) -> None:
        layout = self.ui.questionsWidget.layout()
        while layout.count():
            item = layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.questionWidgets = {}
        if not self.logic.core.reading:
            return
        for task in self.logic.core.session.study.tasks:
            label = task.prompt or task.id.replace("_", " ").capitalize()
            spins = {}
            if task.type in ("likert", "stars", "real_or_synthetic"):
                w = qt.QComboBox()
                for text, _value in answer_items(task):
                    w.addItem(text)
            elif task.type == "lesion_counts":
                w = qt.QWidget()
                form = qt.QFormLayout(w)
                for cls in task.classes:
                    spin = qt.QSpinBox()
                    spin.setRange(0, 999)
                    form.addRow(cls, spin)
                    spins[cls] = spin  # kept in a dict: PythonQt refuses new attributes on Qt objects
            elif task.type == "free_text":
                w = qt.QPlainTextEdit()
                w.setMaximumHeight(60)
            else:  # lesion_axes: markups
                continue
            layout.addRow(label + ":", w)
            self.questionWidgets[task.id] = (task, w, spins)

    def restoreAnswers(self, answers: dict) -> None:
        for qid, (task, w, spins) in self.questionWidgets.items():
            if qid not in answers:
                continue
            value = answers[qid]
            if task.type in ("likert", "stars", "real_or_synthetic"):
                w.currentIndex = answer_index(task, value)
            elif task.type == "lesion_counts":
                for cls, n in value.items():
                    if cls in spins:
                        spins[cls].value = n
            elif task.type == "free_text":
                w.setPlainText(value)

    def collectAnswers(self) -> dict:
        answers = {}
        for qid, (task, w, spins) in self.questionWidgets.items():
            if task.type in ("likert", "stars", "real_or_synthetic"):
                value = answer_value(task, w.currentIndex)
                if value is not None:
                    answers[qid] = value
            elif task.type == "lesion_counts":
                answers[qid] = {cls: int(spin.value) for cls, spin in spins.items()}
            elif task.type == "free_text" and w.toPlainText():
                answers[qid] = w.toPlainText()
        return answers

    # ------------------------------------------------------------ lesions
    def onAddLesion(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot add a lesion.")):
            longNode, shortNode = self.logic.core.new_lesion(slicer.mrmlScene)
            self._placing = [longNode, shortNode]
            self.addObserver(longNode, longNode.PointPositionDefinedEvent, self.onLongAxisPlaced)
            self.placeLine(longNode)
        self._updateGui()

    def onLongAxisPlaced(self, caller, event) -> None:
        if caller.GetNumberOfDefinedControlPoints() >= 2 and self._placing:
            self.removeObserver(caller, caller.PointPositionDefinedEvent, self.onLongAxisPlaced)
            self.placeLine(self._placing[1])
            self._placing = None
        self._updateGui()

    @staticmethod
    def placeLine(node) -> None:
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsLineNode")
        selection.SetActivePlaceNodeID(node.GetID())
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        interaction.SetCurrentInteractionMode(interaction.Place)

    # ------------------------------------------------------------ timer, draft, submit
    def onTick(self) -> None:
        session = self.logic.core.session
        if session and session.timer:
            from neuroshift.readerstudy.stats import format_duration

            self.ui.timerLabel.text = format_duration(session.timer.elapsed())

    def onPause(self, paused) -> None:
        (self.logic.core.pause if paused else self.logic.core.resume)()
        self.ui.pauseButton.text = _("Resume") if paused else _("Pause")

    def onSaveDraft(self) -> None:
        if self.logic and self.logic.core.reading:
            with slicer.util.tryWithErrorDisplay(_("Cannot save the draft.")):
                self.logic.core.save_draft(slicer.mrmlScene, self.collectAnswers())

    def onSubmit(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The read was not submitted."), waitCursor=True):
            problems = self.logic.core.submit(slicer.mrmlScene, self.collectAnswers())
            if problems:
                slicer.util.warningDisplay(_("Submitted. Note: {notes}").format(notes="; ".join(problems)))
            self.onNextRead()

    # ------------------------------------------------------------ progress
    def updateProgress(self) -> None:
        session = self.logic.core.session
        if session:
            done, total = session.progress()
            self.ui.progressBar.maximum = max(total, 1)
            self.ui.progressBar.value = done
            self.ui.progressBar.format = _("{done}/{total} reads").format(done=done, total=total)

    def onRefreshProgress(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot read the progress.")):
            if ensure_requirements("ReaderStudy"):
                text = self.logic.core.progress_text(self._parameterNode.databasePath)
                self.ui.ownerProgressText.setPlainText(text)


#
# Logic
#
class ReaderStudyLogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic: the parameter node, and the Qt-free :class:`ReaderStudyCore` as ``self.core``."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.core = ReaderStudyCore()

    def getParameterNode(self):
        return ReaderStudyParameterNode(super().getParameterNode())


#
# Test (runs inside Slicer; the core is tested with pytest + slicer-core in Testing/)
#
class ReaderStudyTest(ScriptedLoadableModuleTest):
    """A one-case study, one read with a lesion, submitted and read back."""

    def setUp(self):
        slicer.mrmlScene.Clear()
        self.assertTrue(ensure_requirements("ReaderStudy", ask=False))

    def runTest(self):
        self.setUp()
        self.test_one_read()

    def test_one_read(self):
        import pathlib
        import tempfile

        import numpy as np
        import yaml

        from neuroshift.io import Volume, write_volume
        from neuroshift.readerstudy.definition import load_study
        from neuroshift.readerstudy.store import StudyStore
        from ReaderStudyLib import scene as rs_scene

        folder = pathlib.Path(tempfile.mkdtemp())
        for name in ("a.nii.gz", "t1.nii.gz"):
            write_volume(Volume(np.zeros((4, 8, 8), np.float32), [1.0, 1.0, 2.0]), folder / name)
        (folder / "STUDY.yaml").write_text(yaml.safe_dump({
            "name": "selftest", "seed": 1, "blinding": True,
            "image_sets": {"syn": {"label": "synthetic", "synthetic": True},
                           "t1": {"label": "T1", "kind": "context", "display_name": "Pre-contrast T1"}},
            "shows": ["t1"], "cases": [{"id": "C1", "images": {"syn": "a.nii.gz", "t1": "t1.nii.gz"}}],
            "readers": ["R1"], "design": {"type": "full", "image_sets": ["syn"]},
            "tasks": [{"id": "quality", "type": "likert"}, {"id": "lesions", "type": "lesion_axes"}]}))
        StudyStore.create(folder / "s.sqlite", load_study(folder / "STUDY.yaml")).close()
        core = ReaderStudyLogic().core
        core.open(folder / "s.sqlite", "R1")
        core.next_read(slicer.mrmlScene)
        names = sorted(n.GetName() for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"))
        self.assertEqual(names, ["Image A", "Pre-contrast T1"])
        rs_scene.add_lesion_lines(slicer.mrmlScene, "L1", [[0, 0, 0], [10, 0, 0]], [[5, -3, 0], [5, 3, 0]])
        core.submit(slicer.mrmlScene, {"quality": 4})
        with StudyStore(folder / "s.sqlite") as store:
            reads = store.reads()
        self.assertEqual(len(reads), 1)
        self.assertAlmostEqual(reads[0].lesions[0].long_mm, 10.0)
        self.delayDisplay("ReaderStudy self-test passed")
