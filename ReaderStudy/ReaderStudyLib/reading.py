"""The Qt-free core of the ReaderStudy module: a reading session plus its MRML scene, and answer widgets' values.

:class:`ReaderStudyCore` is what the module's widget calls (open the database, next read,
new lesion, save draft, submit, pause/resume, progress); it takes MRML scenes and plain values
and is tested with pytest against slicer-core's MRML. The ``answer_*`` functions map a question
to the items of its combo box and back, so the widget only creates widgets and reads indices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import scene as rs_scene
from .session import CurrentRead, ReadingSession

#: Orthogonality tolerance (degrees) when the study has no lesion_axes task.
DEFAULT_TOLERANCE_DEG = 10.0


def answer_items(task) -> list[tuple[str, Any]]:
    """(text, value) items of a choice question's combo box, the first one "no answer" (value None).

    Likert and stars: grades ``task.min``..``task.max`` (anchors appended); real_or_synthetic: two labels.
    """
    if task.type in ("likert", "stars"):
        items = [("", None)]
        for grade in range(task.min, task.max + 1):
            text = ("\u2605" * grade) if task.type == "stars" else str(grade)
            if grade in task.anchors:
                text += f" - {task.anchors[grade]}"
            items.append((text, grade))
        return items
    if task.type == "real_or_synthetic":
        return [("", None), ("real", "real"), ("synthetic", "synthetic")]
    raise ValueError(f"question type '{task.type}' has no choice items")


def answer_index(task, value) -> int:
    """Combo-box index that shows ``value`` (0 = no answer)."""
    for index, (_text, item) in enumerate(answer_items(task)):
        if item == value and index > 0:
            return index
    return 0


def answer_value(task, index: int):
    """Answer of the combo-box item at ``index`` (None for "no answer" or an invalid index)."""
    items = answer_items(task)
    return items[index][1] if 0 <= index < len(items) else None


class ReaderStudyCore:
    """One reader's session in one study database, with the reads shown in an MRML scene."""

    def __init__(self) -> None:
        self.session: ReadingSession | None = None
        self._lesion_counter = 0

    @property
    def reading(self) -> bool:
        """True while a read is open."""
        return bool(self.session and self.session.current)

    @staticmethod
    def readers(db_path) -> list[str]:
        """Reader ids of the study in ``db_path``."""
        from neuroshift.readerstudy.store import StudyStore

        with StudyStore(db_path) as store:
            return [r.id for r in store.study.readers]

    def open(self, db_path, reader: str) -> None:
        """Open (or keep) the session of ``reader`` in ``db_path``."""
        if self.session and (str(self.session.store.path) != str(db_path) or self.session.reader != reader):
            self.close()
        if self.session is None:
            self.session = ReadingSession(db_path, reader)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def next_read(self, scene) -> CurrentRead | None:
        """Clear the previous read, load the next one's volumes and its draft lesions; None when done."""
        current = self.session.next_read()
        rs_scene.clear_read(scene)
        self._lesion_counter = 0
        if current is not None:
            rs_scene.load_read_volumes(scene, self.session.image_paths(), current.names)
            for lesion in current.lesions:  # restore draft lesions as lines
                self._lesion_counter += 1
                self._draw_lesion(scene, lesion)
        return current

    @staticmethod
    def _draw_lesion(scene, lesion) -> None:
        """Long axis along R, short axis along A, centred on the lesion (RAS mm)."""
        c = np.array(lesion.center_ras_mm, dtype=float)
        half_l, half_s = lesion.long_mm / 2, lesion.short_mm / 2
        rs_scene.add_lesion_lines(scene, lesion.lesion_id, [c - [half_l, 0, 0], c + [half_l, 0, 0]],
                                  [c - [0, half_s, 0], c + [0, half_s, 0]])

    def new_lesion(self, scene) -> tuple:
        """Two empty, tagged line markups (long, short) for the next lesion, to be placed by the reader."""
        self._lesion_counter += 1
        lesion_id = f"L{self._lesion_counter}"
        nodes = []
        for axis in ("long", "short"):
            node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"Lesion {lesion_id} {axis}")
            node.SetAttribute(rs_scene.ROLE, "lesion")
            node.SetAttribute(rs_scene.LESION_ID, lesion_id)
            node.SetAttribute(rs_scene.AXIS, axis)
            nodes.append(node)
        return tuple(nodes)

    def lesion_count(self, scene) -> int:
        return len(rs_scene.lesions_from_scene(scene, tolerance_deg=self.tolerance_deg())[0])

    def tolerance_deg(self) -> float:
        """Orthogonality tolerance of the study's lesion_axes task (degrees)."""
        tasks = [t for t in self.session.study.tasks if t.type == "lesion_axes"] if self.session else []
        return tasks[0].orthogonality_tolerance_deg if tasks else DEFAULT_TOLERANCE_DEG

    def save_draft(self, scene, answers: dict) -> None:
        """Keep the open read's answers and lesions as a draft (nothing is submitted)."""
        self.session.current.answers = dict(answers)
        self.session.set_lesions(rs_scene.lesions_from_scene(scene, tolerance_deg=self.tolerance_deg())[0])
        self.session.save_draft()

    def submit(self, scene, answers: dict) -> list[str]:
        """Validate and submit the open read (immutable record); returns notes for the reader."""
        for question, value in answers.items():
            self.session.set_answer(question, value)
        lesions, problems = rs_scene.lesions_from_scene(scene, tolerance_deg=self.tolerance_deg())
        self.session.set_lesions(lesions)
        self.session.submit()
        flagged = [les.lesion_id for les in lesions if les.orthogonality_flag]
        if flagged:
            problems.append(f"axes of {', '.join(flagged)} are far from orthogonal (flagged)")
        rs_scene.clear_read(scene)
        return problems

    def pause(self) -> None:
        if self.session:
            self.session.pause()

    def resume(self) -> None:
        if self.session:
            self.session.resume()

    @staticmethod
    def progress_text(db_path) -> str:
        """One line per reader and phase: submitted / scheduled / in progress."""
        from neuroshift.readerstudy.store import StudyStore

        with StudyStore(db_path) as store:
            lines = [f"{r['reader']}  phase {r['phase']} ({r['phase_name']}): {r['submitted']}/{r['scheduled']} "
                     f"submitted, {r['in_progress']} in progress" for r in store.progress()]
        return "\n".join(lines)
