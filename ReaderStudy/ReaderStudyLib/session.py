"""One reader's session: open the study DB, take the next read of the schedule, collect answers, submit.

Qt-free and MRML-free (the scene part is :mod:`.scene`). Work in progress is
saved as a draft (``save_draft``) so a reader can stop and resume; ``submit``
writes the read at once as an immutable record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from neuroshift.readerstudy.answers import Lesion, Read, validate_answer
from neuroshift.readerstudy.blinding import blind_case_ids, display_names
from neuroshift.readerstudy.schedule import ScheduledRead
from neuroshift.readerstudy.store import StudyStore, utc_now

from .timer import ActiveTimer


@dataclass
class CurrentRead:
    scheduled: ScheduledRead
    case_label: str
    names: dict[str, str]
    started_at: str
    answers: dict[str, Any] = field(default_factory=dict)
    lesions: list[Lesion] = field(default_factory=list)


class ReadingSession:
    """A reader working through their schedule in one study database."""

    def __init__(self, db_path, reader: str, *, clock: Callable[[], float] | None = None,
                 now: Callable[[], datetime] | None = None):
        self.store = StudyStore(db_path)
        self.study = self.store.study
        self.reader = self.study.reader(reader).id  # UnknownReaderError if not in the study
        self._clock = clock
        self._now = now or (lambda: datetime.now(timezone.utc))
        self.current: CurrentRead | None = None
        self.timer: ActiveTimer | None = None
        self._blind = blind_case_ids(self.study)

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------ navigation
    def next_read(self) -> CurrentRead | None:
        """Open the next unsubmitted read (resuming its draft); None when the reader is done.

        Raises :class:`WashoutError` when the next read's phase is not open yet.
        """
        scheduled = self.store.next_read(self.reader, now=self._now())
        if scheduled is None:
            self.current = None
            return None
        draft = self.store.load_draft(scheduled)
        label = self._blind[scheduled.case] if self.study.blinding else scheduled.case
        names = display_names(self.study, scheduled.image_set, scheduled.shows, scheduled.kind)
        self.current = CurrentRead(scheduled, label, names, (draft or {}).get("started_at") or utc_now())
        kwargs = {"clock": self._clock} if self._clock else {}
        self.timer = ActiveTimer(elapsed=(draft or {}).get("active_seconds", 0.0), **kwargs)
        if draft:
            self.current.answers = dict(draft["answers"])
            self.current.lesions = list(draft["lesions"])
        self.timer.start()
        return self.current

    def image_paths(self) -> dict[str, str]:
        """Image set -> file of the images the current read allows (only those)."""
        case = self.study.case(self.current.scheduled.case)
        return {s: str(case.images[s]) for s in self.current.scheduled.shows if s in case.images}

    # ------------------------------------------------------------ answers
    def set_answer(self, question: str, value: Any) -> None:
        """Validate and keep one answer (InvalidAnswerError with a clear message otherwise)."""
        self.current.answers[question] = validate_answer(self.study, question, value)

    def set_lesions(self, lesions: list[Lesion]) -> None:
        self.current.lesions = list(lesions)

    def pause(self) -> None:
        if self.timer:
            self.timer.pause()

    def resume(self) -> None:
        if self.timer:
            self.timer.start()

    def save_draft(self) -> None:
        cur = self.current
        self.store.save_draft(cur.scheduled, started_at=cur.started_at, active_seconds=self.timer.elapsed(),
                              answers=cur.answers, lesions=cur.lesions)

    def submit(self) -> int:
        """Write the current read now (validated, immutable). Returns its row id."""
        cur = self.current
        s = cur.scheduled
        self.timer.pause()
        read = Read(self.reader, s.case, s.image_set, s.phase, dict(cur.answers), tuple(cur.lesions),
                    cur.started_at, None, self.timer.elapsed(), "slicer")
        rid = self.store.submit(read, now=self._now())
        self.current = None
        return rid

    # ------------------------------------------------------------ progress
    def progress(self) -> tuple[int, int]:
        """(submitted, scheduled) reads of this reader."""
        rows = [r for r in self.store.progress() if r["reader"] == self.reader]
        return sum(r["submitted"] for r in rows), sum(r["scheduled"] for r in rows)
