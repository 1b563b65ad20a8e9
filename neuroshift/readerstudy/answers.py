"""Validation of one read (answers and lesions) against the study: the single gate for Slicer and CSV reads.

Rules: the reader belongs to the study; (reader, case, image set, phase) is
in the schedule; every answer names a task; Likert answers are integers within
the task's range (1-5 by default: a 6, 3.5 or "3" is refused), stars 1-6,
real-or-synthetic is ``real`` or ``synthetic``, lesion counts are non-negative
integers per declared location class, free text is a string; required
questions are answered. Lesions have finite RAS centres (mm), a positive long
axis and a short axis no longer than the long one; axes drawn far from
orthogonal (more than the task's tolerance, default 10 degrees) are accepted but
flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from .definition import StudyDefinition
from .errors import InvalidAnswerError, NotScheduledError, UnknownReaderError

MAX_FREE_TEXT = 10_000


@dataclass(frozen=True)
class Lesion:
    """A lesion marked by its long and short axes; centre in physical RAS millimetres."""

    lesion_id: str
    center_ras_mm: tuple[float, float, float]
    long_mm: float
    short_mm: float
    #: angle between the two axes in degrees (None when not known, e.g. CSV imports)
    axes_angle_deg: float | None = None
    orthogonality_flag: bool = False


@dataclass(frozen=True)
class Read:
    """One submitted read. Times are ISO 8601 UTC strings; ``active_seconds`` excludes pauses."""

    reader: str
    case: str
    image_set: str
    phase: int
    answers: Mapping[str, Any] = field(default_factory=dict)
    lesions: tuple[Lesion, ...] = ()
    started_at: str | None = None
    submitted_at: str | None = None
    active_seconds: float | None = None
    source: str = "slicer"

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.reader, self.case, self.image_set, self.phase)


def axes_angle_deg(long_direction: Sequence[float], short_direction: Sequence[float]) -> float:
    """Angle between two axis directions in degrees (0..90; 90 = orthogonal)."""
    u = np.asarray(long_direction, float)
    v = np.asarray(short_direction, float)
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        raise InvalidAnswerError("a lesion axis has zero length (both end points at the same place)")
    c = abs(float(np.dot(u, v) / (nu * nv)))
    return math.degrees(math.acos(min(1.0, c)))


def lesion_from_axes(
    lesion_id: str,
    long_ends: Sequence[Sequence[float]],
    short_ends: Sequence[Sequence[float]],
    *,
    tolerance_deg: float = 10.0,
) -> Lesion:
    """A lesion from the end points (RAS mm) of its two axes.

    The centre is the midpoint of the long axis. If the "short" line is the
    longer one the two are swapped. The axes are flagged when their angle
    differs from 90 degrees by more than ``tolerance_deg``.
    """
    a0, a1 = (np.asarray(p, float).reshape(3) for p in long_ends)
    b0, b1 = (np.asarray(p, float).reshape(3) for p in short_ends)
    la, lb = float(np.linalg.norm(a1 - a0)), float(np.linalg.norm(b1 - b0))
    if lb > la:
        a0, a1, b0, b1, la, lb = b0, b1, a0, a1, lb, la
    angle = axes_angle_deg(a1 - a0, b1 - b0)
    centre = tuple(float(x) for x in (a0 + a1) / 2.0)
    return Lesion(str(lesion_id), centre, la, lb, angle, abs(90.0 - angle) > tolerance_deg)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def validate_answer(study: StudyDefinition, question: str, value: Any) -> Any:
    """The normalised answer to ``question`` or :class:`InvalidAnswerError` saying what is wrong."""
    try:
        task = study.task(question)
    except Exception:
        raise InvalidAnswerError(
            f"'{question}' is not a question of study '{study.name}' (questions: {', '.join(t.id for t in study.tasks)})"
        ) from None
    t = task.type
    if t in ("likert", "stars"):
        what = "Likert grade" if t == "likert" else "plausibility (stars)"
        if not _is_int(value):
            raise InvalidAnswerError(f"{question}: {what} must be an integer {task.min}-{task.max}, got {value!r}")
        if not task.min <= int(value) <= task.max:
            raise InvalidAnswerError(f"{question}: {what} must be an integer {task.min}-{task.max}, got {int(value)}")
        return int(value)
    if t == "real_or_synthetic":
        text = str(value).strip().lower() if isinstance(value, str) else None
        if text not in ("real", "synthetic"):
            raise InvalidAnswerError(f"{question}: answer 'real' or 'synthetic', got {value!r}")
        return text
    if t == "lesion_counts":
        if not isinstance(value, Mapping):
            raise InvalidAnswerError(f"{question}: expected counts per location class {list(task.classes)}")
        out = {}
        for cls, n in value.items():
            if cls not in task.classes:
                raise InvalidAnswerError(f"{question}: '{cls}' is not a location class ({', '.join(task.classes)})")
            if not _is_int(n) or int(n) < 0:
                raise InvalidAnswerError(f"{question}.{cls}: a lesion count is a non-negative integer, got {n!r}")
            out[cls] = int(n)
        missing = [c for c in task.classes if c not in out]
        if missing and task.required:
            raise InvalidAnswerError(f"{question}: no count for {', '.join(missing)}")
        return out
    if t == "free_text":
        if not isinstance(value, str):
            raise InvalidAnswerError(f"{question}: free text must be a string")
        if len(value) > MAX_FREE_TEXT:
            raise InvalidAnswerError(f"{question}: free text longer than {MAX_FREE_TEXT} characters")
        return value
    if t == "lesion_axes":
        raise InvalidAnswerError(f"{question}: lesions are given as lesion records, not as an answer value")
    raise InvalidAnswerError(f"{question}: unsupported task type {t}")  # pragma: no cover


def validate_lesion(lesion: Lesion, tolerance_deg: float = 10.0) -> Lesion:
    where = f"lesion '{lesion.lesion_id}'"
    if not str(lesion.lesion_id).strip():
        raise InvalidAnswerError("a lesion needs an id")
    c = tuple(float(x) for x in lesion.center_ras_mm)
    if len(c) != 3 or not all(math.isfinite(x) for x in c):
        raise InvalidAnswerError(f"{where}: the centre must be three finite RAS coordinates in mm, got {lesion.center_ras_mm}")
    lo, sh = float(lesion.long_mm), float(lesion.short_mm)
    if not (math.isfinite(lo) and lo > 0):
        raise InvalidAnswerError(f"{where}: the long axis must be a positive length in mm, got {lesion.long_mm}")
    if not (math.isfinite(sh) and sh >= 0):
        raise InvalidAnswerError(f"{where}: the short axis must be a length >= 0 mm, got {lesion.short_mm}")
    if sh > lo + 1e-9:
        raise InvalidAnswerError(f"{where}: the short axis ({sh:g} mm) is longer than the long axis ({lo:g} mm)")
    flag = lesion.orthogonality_flag
    if lesion.axes_angle_deg is not None:
        flag = abs(90.0 - float(lesion.axes_angle_deg)) > tolerance_deg
    return replace(lesion, lesion_id=str(lesion.lesion_id), center_ras_mm=c, long_mm=lo, short_mm=sh,
                   orthogonality_flag=bool(flag))


def validate_read(
    study: StudyDefinition,
    read: Read,
    scheduled: Collection[tuple[str, str, str, int]] | None = None,
) -> Read:
    """Check ``read`` against ``study`` (and the scheduled read keys when given); return it normalised."""
    if read.reader not in {r.id for r in study.readers}:
        raise UnknownReaderError(
            f"reader '{read.reader}' is not part of study '{study.name}' "
            f"(readers: {', '.join(r.id for r in study.readers)}); nothing was written"
        )
    if read.case not in {c.id for c in study.cases}:
        raise InvalidAnswerError(f"case '{read.case}' is not part of study '{study.name}'")
    if read.image_set not in study.image_sets:
        raise InvalidAnswerError(f"image set '{read.image_set}' is not declared in study '{study.name}'")
    if not _is_int(read.phase) or not 1 <= int(read.phase) <= len(study.all_phases):
        raise InvalidAnswerError(f"phase must be an integer 1-{len(study.all_phases)}, got {read.phase!r}")
    if scheduled is not None and read.key not in scheduled:
        raise NotScheduledError(
            f"reader {read.reader} has no read of case {read.case} / {read.image_set} in phase {read.phase} "
            "in the study schedule"
        )
    answers = {q: validate_answer(study, q, v) for q, v in dict(read.answers).items()}
    for task in study.tasks:
        if task.required and task.type != "lesion_axes" and task.id not in answers:
            raise InvalidAnswerError(f"question '{task.id}' is not answered")
    lesion_tasks = [t for t in study.tasks if t.type == "lesion_axes"]
    if read.lesions and not lesion_tasks:
        raise InvalidAnswerError(f"study '{study.name}' has no lesion annotation task, but the read has lesions")
    tol = lesion_tasks[0].orthogonality_tolerance_deg if lesion_tasks else 10.0
    lesions = tuple(validate_lesion(les, tol) for les in read.lesions)
    ids = [les.lesion_id for les in lesions]
    if len(set(ids)) != len(ids):
        raise InvalidAnswerError(f"duplicate lesion ids in one read: {sorted({i for i in ids if ids.count(i) > 1})}")
    if read.active_seconds is not None:
        a = float(read.active_seconds)
        if not (math.isfinite(a) and a >= 0):
            raise InvalidAnswerError(f"active reading time must be >= 0 seconds, got {read.active_seconds}")
    return replace(read, phase=int(read.phase), answers=answers, lesions=lesions)
