"""Reads made in other tools or at other sites: CSV import and export, through the same validation as Slicer reads.

Two layouts (recognised by their header line):

* lesion rows ``reader,case,image_set,phase,lesion_id,center_r_mm,center_a_mm,center_s_mm,long_mm,short_mm``
  (centre in physical RAS mm, axes in mm; an optional trailing column
  ``axes_angle_deg`` flags non-orthogonal axes). A row with an empty
  ``lesion_id`` and empty numbers records a read without lesions;
* answer rows ``reader,case,image_set,phase,question,answer``. ``question`` is
  a task id; a lesion count per location class is ``TASK:CLASS``. Reserved
  questions carry the read's metadata: ``_started_at``, ``_submitted_at``
  (ISO 8601), ``_active_seconds`` (active reading time, s) and ``_n_lesions``
  (checked against the lesion rows; lets a read without lesions be stated).

Rows of one read (same reader, case, image set, phase) may come from several
files. Every read is validated before anything is written, and all are
written in one transaction: a file with one bad row writes nothing.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path
from typing import Iterable

from ..io.atomic import write_text_atomic
from .answers import Lesion, Read, validate_read
from .errors import InvalidAnswerError
from .store import StudyStore

LESION_COLUMNS = ("reader", "case", "image_set", "phase", "lesion_id",
                  "center_r_mm", "center_a_mm", "center_s_mm", "long_mm", "short_mm")
ANSWER_COLUMNS = ("reader", "case", "image_set", "phase", "question", "answer")
RESERVED = ("_started_at", "_submitted_at", "_active_seconds", "_n_lesions")
_INT = re.compile(r"^[+-]?\d+$")


def _float(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidAnswerError(f"{where}: {what} must be a number in mm, got '{text}'") from None
    if not math.isfinite(value):
        raise InvalidAnswerError(f"{where}: {what} must be finite, got '{text}'")
    return value


def _phase(text: str, where: str, study=None) -> int:
    """A phase number, or a phase name of the study file (``phase 2``, ``reference``) when ``study`` is given."""
    if study is not None and not _INT.match(text.strip()):
        from .errors import StudyDefinitionError

        try:
            return study.phase_number(text, where=where)
        except StudyDefinitionError as exc:
            raise InvalidAnswerError(str(exc)) from None
    if not _INT.match(text.strip()):
        raise InvalidAnswerError(f"{where}: phase must be an integer or a phase name, got '{text}'")
    return int(text)


class _Builder:
    def __init__(self):
        self.answers: dict = {}
        self.lesions: list[Lesion] = []
        self.meta: dict = {}
        self.where: str = ""
        self.explicit_empty = False


def parse_reads_csv(paths: Iterable[str | os.PathLike], store: StudyStore, *, source: str = "import") -> list[Read]:
    """Parse and validate lesion/answer CSV files into reads (nothing is written)."""
    study = store.study
    reads: dict[tuple, _Builder] = {}
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise InvalidAnswerError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise InvalidAnswerError(
                f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                "save the CSV as UTF-8") from None
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            raise InvalidAnswerError(f"{path}: empty file (expected a header line)")
        header = tuple(h.strip() for h in rows[0])
        if header[:len(LESION_COLUMNS)] == LESION_COLUMNS and set(header[len(LESION_COLUMNS):]) <= {"axes_angle_deg"}:
            kind = "lesions"
        elif header == ANSWER_COLUMNS:
            kind = "answers"
        else:
            raise InvalidAnswerError(
                f"{path}: unknown header {','.join(header)}; expected\n  {','.join(LESION_COLUMNS)}\nor\n  "
                f"{','.join(ANSWER_COLUMNS)}")
        for lineno, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path.name} line {lineno}"
            if len(row) != len(header):
                raise InvalidAnswerError(f"{where}: {len(row)} columns, the header has {len(header)}")
            rec = dict(zip(header, (c.strip() for c in row)))
            key = (rec["reader"], rec["case"], rec["image_set"], _phase(rec["phase"], where, study))
            b = reads.setdefault(key, _Builder())
            b.where = b.where or where
            if kind == "lesions":
                if not rec["lesion_id"] and not any(rec[c] for c in LESION_COLUMNS[5:]):
                    b.explicit_empty = True
                    continue
                angle = rec.get("axes_angle_deg") or None
                b.lesions.append(Lesion(
                    rec["lesion_id"],
                    tuple(_float(rec[c], where, c) for c in ("center_r_mm", "center_a_mm", "center_s_mm")),
                    _float(rec["long_mm"], where, "long_mm"), _float(rec["short_mm"], where, "short_mm"),
                    _float(angle, where, "axes_angle_deg") if angle else None))
            else:
                q, a = rec["question"], rec["answer"]
                if q in RESERVED:
                    b.meta[q] = a
                    continue
                task_id, _, cls = q.partition(":")
                try:
                    task = study.task(task_id)
                except Exception:
                    raise InvalidAnswerError(
                        f"{where}: '{q}' is not a question of study '{study.name}' "
                        f"(questions: {', '.join(t.id for t in study.tasks)})") from None
                if task.type == "lesion_counts":
                    if not cls:
                        raise InvalidAnswerError(f"{where}: lesion counts are given per class as '{task_id}:CLASS'")
                    value = int(a) if _INT.match(a) else a
                    b.answers.setdefault(task_id, {})[cls] = value
                elif task.type in ("likert", "stars"):
                    b.answers[q] = int(a) if _INT.match(a) else a
                else:
                    b.answers[q] = a
    scheduled = store._schedule_ids().keys()
    out = []
    for key, b in reads.items():
        try:
            active = b.meta.get("_active_seconds")
            n_les = b.meta.get("_n_lesions")
            if n_les is not None:
                if not _INT.match(n_les) or int(n_les) != len(b.lesions):
                    raise InvalidAnswerError(f"_n_lesions is {n_les} but {len(b.lesions)} lesion rows were given")
            read = Read(key[0], key[1], key[2], key[3], b.answers, tuple(b.lesions),
                        b.meta.get("_started_at") or None, b.meta.get("_submitted_at") or None,
                        _float(active, b.where, "_active_seconds") if active else None, source)
            out.append(validate_read(study, read, scheduled))
        except InvalidAnswerError as exc:
            raise type(exc)(f"read of {key[0]}/{key[1]}/{key[2]}/phase {key[3]} ({b.where}): {exc}") from None
    return out


def import_reads(store: StudyStore, paths: Iterable[str | os.PathLike], *, check_washout: bool = True) -> int:
    """Validate and store the reads of the CSV files (all or nothing). Returns the number of reads."""
    reads = parse_reads_csv(paths, store)
    store.submit_many(reads, check_washout=check_washout)
    return len(reads)


def _fmt(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def export_reads(store: StudyStore, answers_csv: str | os.PathLike, lesions_csv: str | os.PathLike) -> int:
    """Write every submitted read as answer rows and lesion rows (re-importable). Returns the number of reads.

    Both CSVs are built in memory, then written atomically and read back (:func:`write_text_atomic`).
    """
    reads = store.reads()
    study = store.study
    types = {t.id: t.type for t in study.tasks}
    answers = io.StringIO(newline="")
    w = csv.writer(answers)
    w.writerow(ANSWER_COLUMNS)
    for r in reads:
        base = [r.reader, r.case, r.image_set, r.phase]
        for q, a in r.answers.items():
            if types.get(q) == "lesion_counts":
                for cls, n in a.items():
                    w.writerow(base + [f"{q}:{cls}", n])
            else:
                w.writerow(base + [q, a])
        if r.started_at:
            w.writerow(base + ["_started_at", r.started_at])
        if r.submitted_at:
            w.writerow(base + ["_submitted_at", r.submitted_at])
        if r.active_seconds is not None:
            w.writerow(base + ["_active_seconds", _fmt(r.active_seconds)])
        w.writerow(base + ["_n_lesions", len(r.lesions)])
    lesions = io.StringIO(newline="")
    w = csv.writer(lesions)
    w.writerow(LESION_COLUMNS + ("axes_angle_deg",))
    for r in reads:
        base = [r.reader, r.case, r.image_set, r.phase]
        if not r.lesions:
            w.writerow(base + [""] * 7)
        for les in r.lesions:
            w.writerow(base + [les.lesion_id, *(_fmt(c) for c in les.center_ras_mm), _fmt(les.long_mm),
                               _fmt(les.short_mm), _fmt(les.axes_angle_deg)])
    write_text_atomic(answers_csv, answers.getvalue())
    write_text_atomic(lesions_csv, lesions.getvalue())
    return len(reads)
