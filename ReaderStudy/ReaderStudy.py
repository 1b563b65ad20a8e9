"""ReaderStudy: blinded, randomised reader studies of real and synthetic images.

A reader opens the study database (made with ``neuroshift reader-study create``),
picks their name and works through their schedule: each read loads only the
volumes it allows, neutrally named ("Image A", "Pre-contrast T1"), with the
study's questions (Likert with anchors, 1-6 stars, real or synthetic, lesion
counts, free text) and line markups for the long and short axes of lesions.
A clock counts active reading time and pauses with the reader. "Submit" writes
the read at once as an immutable record; drafts allow stopping and resuming.

This file only binds the GUI; the logic lives in :mod:`ReaderStudyLib` (Qt-free,
tested against real MRML with slicer-core) and the science in
:mod:`neuroshift.readerstudy`.
"""

from __future__ import annotations

import os
import pathlib

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

try:
    from slicer.parameterNodeWrapper import parameterNodeWrapper
except ImportError:  # Slicer < 5.2
    parameterNodeWrapper = None

from ReaderStudyLib import scene as rs_scene
from ReaderStudyLib.session import ReadingSession


class ReaderStudy(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ReaderStudy"
        self.parent.categories = ["NeuroShift"]
        self.parent.dependencies = ["Markups"]
        self.parent.contributors = ["NeuroShift developers"]
        self.parent.helpText = (
            "Blinded, randomised reader studies of real and synthetic images: seeded balanced schedules "
            "with washout between phases, neutral image names, Likert/stars/real-or-synthetic/lesion-count "
            "questions, lesion long and short axes as line markups, active reading time, immutable reads in "
            "an SQLite database. Analyse with 'neuroshift reader-study analyze' (paper 004's Table 5 layout).")
        self.parent.acknowledgementText = (
            "Protocols: Ammari et al., Invest Radiol 2021 (virtual contrast reader study); H. Li, dissertation "
            "(visual Turing test, synthDIR lesion counting).")


if parameterNodeWrapper is not None:
    @parameterNodeWrapper
    class ReaderStudyParameterNode:
        databasePath: pathlib.Path
        reader: str
else:  # pragma: no cover - old Slicer
    ReaderStudyParameterNode = None


class ReaderStudyWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._guiObserver = None
        self.questionWidgets = {}
        self.clock = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/ReaderStudy.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = ReaderStudyLogic()
        self.ui.databasePathLineEdit.connect("currentPathChanged(QString)", self.onDatabaseChanged)
        self.ui.startButton.clicked.connect(self.onNextRead)
        self.ui.pauseButton.toggled.connect(self.onPause)
        self.ui.addLesionButton.clicked.connect(self.onAddLesion)
        self.ui.saveDraftButton.clicked.connect(self.onSaveDraft)
        self.ui.submitButton.clicked.connect(self.onSubmit)
        self.ui.refreshProgressButton.clicked.connect(self.onRefreshProgress)
        self.clock = qt.QTimer()
        self.clock.setInterval(1000)
        self.clock.timeout.connect(self.onTick)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, lambda *a: self.onSaveDraft())
        self.initializeParameterNode()
        self.updateButtons()

    # ------------------------------------------------------------ parameter node
    def initializeParameterNode(self):
        if ReaderStudyParameterNode is None:
            return
        self._parameterNode = ReaderStudyParameterNode(self.logic.getParameterNode())
        self._guiObserver = self._parameterNode.connectGui(self.ui)

    def enter(self):
        self.logic.resume()

    def exit(self):
        self.logic.pause()

    def cleanup(self):
        self.onSaveDraft()
        self.removeObservers()
        if self._parameterNode and self._guiObserver:
            self._parameterNode.disconnectGui(self._guiObserver)

    # ------------------------------------------------------------ study and reader
    def onDatabaseChanged(self, path):
        self.ui.readerComboBox.clear()
        with slicer.util.tryWithErrorDisplay("Cannot open the study database.", waitCursor=True):
            if path and os.path.isfile(path):
                for reader in self.logic.readers(path):
                    self.ui.readerComboBox.addItem(reader)
        self.updateButtons()

    def onNextRead(self):
        with slicer.util.tryWithErrorDisplay("Cannot open the next read.", waitCursor=True):
            self.logic.open(self.ui.databasePathLineEdit.currentPath, self.ui.readerComboBox.currentText)
            current = self.logic.nextRead(slicer.mrmlScene)
            self.buildQuestions()
            if current is None:
                self.ui.caseLabel.text = "All reads of your schedule are submitted. Thank you!"
            else:
                s = current.scheduled
                phase = self.logic.session.study.all_phases[s.phase - 1].name
                self.ui.caseLabel.text = f"{current.case_label} - {phase}, read {s.position}"
                self.restoreAnswers(current.answers)
                self.clock.start()
        self.updateProgress()
        self.updateButtons()

    # ------------------------------------------------------------ questions
    def buildQuestions(self):
        layout = self.ui.questionsWidget.layout()
        while layout.count():
            item = layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.questionWidgets = {}
        if self.logic.session is None or self.logic.session.current is None:
            return
        for task in self.logic.session.study.tasks:
            label = task.prompt or task.id.replace("_", " ").capitalize()
            if task.type in ("likert", "stars"):
                w = qt.QComboBox()
                w.addItem("", None)
                for g in range(task.min, task.max + 1):
                    text = ("\u2605" * g) if task.type == "stars" else str(g)
                    if g in task.anchors:
                        text += f" - {task.anchors[g]}"
                    w.addItem(text, g)
            elif task.type == "real_or_synthetic":
                w = qt.QComboBox()
                for text in ("", "real", "synthetic"):
                    w.addItem(text)
            elif task.type == "lesion_counts":
                w = qt.QWidget()
                form = qt.QFormLayout(w)
                w.spins = {}
                for cls in task.classes:
                    sb = qt.QSpinBox()
                    sb.setRange(0, 999)
                    form.addRow(cls, sb)
                    w.spins[cls] = sb
            elif task.type == "free_text":
                w = qt.QPlainTextEdit()
                w.setMaximumHeight(60)
            else:  # lesion_axes: markups
                continue
            layout.addRow(label + ":", w)
            self.questionWidgets[task.id] = (task, w)

    def restoreAnswers(self, answers):
        for qid, (task, w) in self.questionWidgets.items():
            if qid not in answers:
                continue
            value = answers[qid]
            if task.type in ("likert", "stars"):
                w.setCurrentIndex(int(value) - task.min + 1)
            elif task.type == "real_or_synthetic":
                w.setCurrentText(value)
            elif task.type == "lesion_counts":
                for cls, n in value.items():
                    w.spins[cls].value = n
            elif task.type == "free_text":
                w.setPlainText(value)

    def collectAnswers(self):
        answers = {}
        for qid, (task, w) in self.questionWidgets.items():
            if task.type in ("likert", "stars"):
                if w.currentIndex > 0:
                    answers[qid] = task.min + w.currentIndex - 1
            elif task.type == "real_or_synthetic":
                if w.currentText:
                    answers[qid] = w.currentText
            elif task.type == "lesion_counts":
                answers[qid] = {cls: int(sb.value) for cls, sb in w.spins.items()}
            elif task.type == "free_text":
                if w.toPlainText():
                    answers[qid] = w.toPlainText()
        return answers

    # ------------------------------------------------------------ lesions
    def onAddLesion(self):
        with slicer.util.tryWithErrorDisplay("Cannot add a lesion."):
            long_node, short_node = self.logic.newLesion(slicer.mrmlScene)
            self._placing = [long_node, short_node]
            self.addObserver(long_node, long_node.PointPositionDefinedEvent, self.onLongAxisPlaced)
            self.placeLine(long_node)
        self.updateButtons()

    def onLongAxisPlaced(self, caller, event):
        if caller.GetNumberOfDefinedControlPoints() >= 2 and getattr(self, "_placing", None):
            self.removeObserver(caller, caller.PointPositionDefinedEvent, self.onLongAxisPlaced)
            self.placeLine(self._placing[1])
            self._placing = None
        self.updateButtons()

    @staticmethod
    def placeLine(node):
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsLineNode")
        selection.SetActivePlaceNodeID(node.GetID())
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        interaction.SetCurrentInteractionMode(interaction.Place)

    # ------------------------------------------------------------ timer, draft, submit
    def onTick(self):
        if self.logic.session and self.logic.session.timer:
            from neuroshift.readerstudy.stats import format_duration

            self.ui.timerLabel.text = format_duration(self.logic.session.timer.elapsed())

    def onPause(self, paused):
        (self.logic.pause if paused else self.logic.resume)()
        self.ui.pauseButton.text = "Resume" if paused else "Pause"

    def onSaveDraft(self):
        if self.logic and self.logic.session and self.logic.session.current:
            with slicer.util.tryWithErrorDisplay("Cannot save the draft."):
                self.logic.saveDraft(slicer.mrmlScene, self.collectAnswers())

    def onSubmit(self):
        with slicer.util.tryWithErrorDisplay("The read was not submitted.", waitCursor=True):
            problems = self.logic.submit(slicer.mrmlScene, self.collectAnswers())
            if problems:
                slicer.util.warningDisplay("Submitted. Note: " + "; ".join(problems))
            self.onNextRead()

    # ------------------------------------------------------------ progress
    def updateProgress(self):
        if self.logic.session:
            done, total = self.logic.session.progress()
            self.ui.progressBar.maximum = max(total, 1)
            self.ui.progressBar.value = done
            self.ui.progressBar.format = f"{done}/{total} reads"

    def onRefreshProgress(self):
        with slicer.util.tryWithErrorDisplay("Cannot read the progress."):
            self.ui.ownerProgressText.setPlainText(self.logic.progressText(self.ui.databasePathLineEdit.currentPath))

    def updateButtons(self):
        has_db = bool(self.ui.databasePathLineEdit.currentPath) and self.ui.readerComboBox.count > 0
        reading = bool(self.logic and self.logic.session and self.logic.session.current)
        self.ui.startButton.enabled = has_db and not reading
        for b in (self.ui.addLesionButton, self.ui.saveDraftButton, self.ui.submitButton, self.ui.pauseButton):
            b.enabled = reading
        if reading:
            n = len(rs_scene.lesions_from_scene(slicer.mrmlScene)[0])
            self.ui.lesionsLabel.text = f"{n} lesion{'s' if n != 1 else ''}"


class ReaderStudyLogic(ScriptedLoadableModuleLogic):
    """Slicer-facing logic: a :class:`ReadingSession` plus the MRML scene helpers."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.session = None
        self._lesion_counter = 0

    def getParameterNode(self):
        return ScriptedLoadableModuleLogic.getParameterNode(self)

    @staticmethod
    def readers(db_path):
        from neuroshift.readerstudy.store import StudyStore

        with StudyStore(db_path) as store:
            return [r.id for r in store.study.readers]

    def open(self, db_path, reader):
        if self.session and (str(self.session.store.path) != str(db_path) or self.session.reader != reader):
            self.session.close()
            self.session = None
        if self.session is None:
            self.session = ReadingSession(db_path, reader)

    def nextRead(self, scene):
        current = self.session.next_read()
        rs_scene.clear_read(scene)
        if current is not None:
            rs_scene.load_read_volumes(scene, self.session.image_paths(), current.names)
            self._lesion_counter = 0
            for les in current.lesions:  # restore draft lesions as lines
                self._lesion_counter += 1
                self._drawLesion(scene, les)
        return current

    def _drawLesion(self, scene, les):
        import numpy as np

        c = np.array(les.center_ras_mm)
        half_l, half_s = les.long_mm / 2, les.short_mm / 2
        rs_scene.add_lesion_lines(scene, les.lesion_id, [c - [half_l, 0, 0], c + [half_l, 0, 0]],
                                  [c - [0, half_s, 0], c + [0, half_s, 0]])

    def newLesion(self, scene):
        self._lesion_counter += 1
        lid = f"L{self._lesion_counter}"
        nodes = []
        for axis in ("long", "short"):
            node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"Lesion {lid} {axis}")
            node.SetAttribute(rs_scene.ROLE, "lesion")
            node.SetAttribute(rs_scene.LESION_ID, lid)
            node.SetAttribute(rs_scene.AXIS, axis)
            nodes.append(node)
        return tuple(nodes)

    def _tolerance(self):
        tasks = [t for t in self.session.study.tasks if t.type == "lesion_axes"]
        return tasks[0].orthogonality_tolerance_deg if tasks else 10.0

    def saveDraft(self, scene, answers):
        self.session.current.answers = dict(answers)
        self.session.set_lesions(rs_scene.lesions_from_scene(scene, tolerance_deg=self._tolerance())[0])
        self.session.save_draft()

    def submit(self, scene, answers):
        for q, v in answers.items():
            self.session.set_answer(q, v)
        lesions, problems = rs_scene.lesions_from_scene(scene, tolerance_deg=self._tolerance())
        self.session.set_lesions(lesions)
        self.session.submit()
        flagged = [les.lesion_id for les in lesions if les.orthogonality_flag]
        if flagged:
            problems.append(f"axes of {', '.join(flagged)} are far from orthogonal (flagged)")
        rs_scene.clear_read(scene)
        return problems

    def pause(self):
        if self.session:
            self.session.pause()

    def resume(self):
        if self.session:
            self.session.resume()

    @staticmethod
    def progressText(db_path):
        from neuroshift.readerstudy.store import StudyStore

        with StudyStore(db_path) as store:
            lines = [f"{r['reader']}  phase {r['phase']} ({r['phase_name']}): {r['submitted']}/{r['scheduled']} "
                     f"submitted, {r['in_progress']} in progress" for r in store.progress()]
        return "\n".join(lines)


class ReaderStudyTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: a one-case study, one read with a lesion, submitted and read back."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_one_read()

    def test_one_read(self):
        import tempfile

        import numpy as np
        import yaml
        from neuroshift.io import Volume, write_volume
        from neuroshift.readerstudy.definition import load_study
        from neuroshift.readerstudy.store import StudyStore

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
        logic = ReaderStudyLogic()
        logic.open(folder / "s.sqlite", "R1")
        logic.nextRead(slicer.mrmlScene)
        names = sorted(n.GetName() for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"))
        self.assertEqual(names, ["Image A", "Pre-contrast T1"])
        rs_scene.add_lesion_lines(slicer.mrmlScene, "L1", [[0, 0, 0], [10, 0, 0]], [[5, -3, 0], [5, 3, 0]])
        logic.submit(slicer.mrmlScene, {"quality": 4})
        with StudyStore(folder / "s.sqlite") as store:
            reads = store.reads()
        self.assertEqual(len(reads), 1)
        self.assertAlmostEqual(reads[0].lesions[0].long_mm, 10.0)
        self.delayDisplay("ReaderStudy self-test passed")
