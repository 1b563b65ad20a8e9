"""The study database: SQLite in WAL mode, one immutable record per submitted read.

Durability and concurrency:

* ``journal_mode=WAL`` and ``synchronous=FULL``: a read is on disk when
  :meth:`StudyStore.submit` returns; killing the process at any moment loses
  no submitted read and never leaves a half-written one (one transaction per
  read: the read row and its lesion rows commit together or not at all).
* Several readers (processes) can work on one database at once: writes are
  short ``BEGIN IMMEDIATE`` transactions, waiting up to ``busy_timeout``
  (default 30 s) for one another; readers never block writers.
* Triggers forbid UPDATE and DELETE on reads and lesions and refuse lesions
  beyond the count recorded with their read: a submitted read cannot change.
  Drafts (work in progress, for resuming) are the only mutable rows.

The schema is versioned (``meta.schema_version``); opening a database of
another version is refused with a clear message. The study definition is
stored with the database (``meta.study``), so analysis needs only the DB.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import __version__
from ..io.atomic import atomic_path
from .answers import Lesion, Read, validate_read
from .blinding import blind_case_ids
from .definition import StudyDefinition, parse_study
from .errors import DuplicateReadError, InvalidAnswerError, StudyDatabaseError
from .schedule import ScheduledRead, build_schedule, check_phase_open, schedule_digest

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE readers(id TEXT PRIMARY KEY, role TEXT NOT NULL, reference INTEGER NOT NULL);
CREATE TABLE cases(id TEXT PRIMARY KEY, blind_id TEXT NOT NULL UNIQUE, position INTEGER NOT NULL);
CREATE TABLE images(case_id TEXT NOT NULL REFERENCES cases(id), image_set TEXT NOT NULL, path TEXT NOT NULL,
                    PRIMARY KEY(case_id, image_set));
CREATE TABLE schedule(
    id INTEGER PRIMARY KEY,
    reader TEXT NOT NULL REFERENCES readers(id),
    phase INTEGER NOT NULL, position INTEGER NOT NULL,
    case_id TEXT NOT NULL REFERENCES cases(id), image_set TEXT NOT NULL,
    kind TEXT NOT NULL, shows TEXT NOT NULL,
    UNIQUE(reader, case_id, image_set, phase), UNIQUE(reader, phase, position));
CREATE TABLE reads(
    id INTEGER PRIMARY KEY,
    schedule_id INTEGER NOT NULL UNIQUE REFERENCES schedule(id),
    reader TEXT NOT NULL REFERENCES readers(id),
    case_id TEXT NOT NULL REFERENCES cases(id),
    image_set TEXT NOT NULL, phase INTEGER NOT NULL,
    started_at TEXT, submitted_at TEXT, active_seconds REAL,
    answers TEXT NOT NULL, n_lesions INTEGER NOT NULL,
    source TEXT NOT NULL, recorded_at TEXT NOT NULL,
    UNIQUE(reader, case_id, image_set, phase));
CREATE TABLE lesions(
    read_id INTEGER NOT NULL REFERENCES reads(id), lesion_id TEXT NOT NULL,
    center_r_mm REAL NOT NULL, center_a_mm REAL NOT NULL, center_s_mm REAL NOT NULL,
    long_mm REAL NOT NULL, short_mm REAL NOT NULL, axes_angle_deg REAL, orthogonality_flag INTEGER NOT NULL,
    PRIMARY KEY(read_id, lesion_id));
CREATE TABLE drafts(
    schedule_id INTEGER PRIMARY KEY REFERENCES schedule(id),
    started_at TEXT, active_seconds REAL NOT NULL, answers TEXT NOT NULL, lesions TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TRIGGER reads_immutable_u BEFORE UPDATE ON reads BEGIN
    SELECT RAISE(ABORT, 'submitted reads are immutable'); END;
CREATE TRIGGER reads_immutable_d BEFORE DELETE ON reads BEGIN
    SELECT RAISE(ABORT, 'submitted reads are immutable'); END;
CREATE TRIGGER lesions_immutable_u BEFORE UPDATE ON lesions BEGIN
    SELECT RAISE(ABORT, 'submitted lesions are immutable'); END;
CREATE TRIGGER lesions_immutable_d BEFORE DELETE ON lesions BEGIN
    SELECT RAISE(ABORT, 'submitted lesions are immutable'); END;
CREATE TRIGGER lesions_sealed BEFORE INSERT ON lesions
    WHEN (SELECT count(*) FROM lesions WHERE read_id = NEW.read_id)
         >= (SELECT n_lesions FROM reads WHERE id = NEW.read_id)
    BEGIN SELECT RAISE(ABORT, 'the read is complete: no lesions can be added to a submitted read'); END;
CREATE TRIGGER schedule_immutable_u BEFORE UPDATE ON schedule BEGIN
    SELECT RAISE(ABORT, 'the schedule is fixed at creation'); END;
CREATE TRIGGER schedule_immutable_d BEFORE DELETE ON schedule BEGIN
    SELECT RAISE(ABORT, 'the schedule is fixed at creation'); END;
"""


def database_problem(path: Path, exc: sqlite3.DatabaseError) -> str:
    """A message naming ``path`` for an SQLite error: damaged, not a database, or not writable."""
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return (f"{path} is not a reader-study database or is damaged ({text}); "
                "use the file 'neuroshift reader-study create' wrote, or a backup of it")
    if "no such table" in text:
        return f"{path} is not a reader-study database ({text}); it is an SQLite database of something else"
    if "readonly" in text or "unable to open" in text:
        return (f"cannot use the study database {path} ({text}): the database and its folder must be writable "
                "(SQLite writes a journal beside it)")
    return f"study database {path}: {text}"


def utc_now() -> str:
    """Current time, ISO 8601 UTC with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _study_to_json(study: StudyDefinition) -> str:
    return json.dumps({"raw": study.raw, "folder": str(study.folder)}, default=str, sort_keys=True)


def _verify_database(path: Path) -> None:
    """Read a just-written database back: SQLite's own integrity check and the schema version."""
    conn = sqlite3.connect(str(path))  # read-write, so that closing removes the -wal/-shm files
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"the new database does not read back ({exc})") from None
    finally:
        conn.close()
    if ok != "ok" or version is None:
        raise ValueError(f"the new database does not read back intact ({ok})")


class StudyStore:
    """A connection to a study database (one per thread/process)."""

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 30.0, _conn=None):
        self.path = Path(path)
        if _conn is None:
            if not self.path.is_file():
                raise StudyDatabaseError(f"no study database at {self.path} (create it with 'neuroshift reader-study create')")
            try:
                _conn = self._connect(self.path, busy_timeout_s)
            except sqlite3.DatabaseError as exc:
                raise StudyDatabaseError(database_problem(self.path, exc)) from None
        self.conn = _conn
        self._check_schema()
        self._study: StudyDefinition | None = None
        self._schedule: list[ScheduledRead] | None = None

    # ------------------------------------------------------------ connection
    @staticmethod
    def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "StudyStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_schema(self) -> None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StudyDatabaseError(database_problem(self.path, exc)) from None
        if row is None:
            raise StudyDatabaseError(f"{self.path} is not a reader-study database (no schema version)")
        if int(row[0]) != SCHEMA_VERSION:
            raise StudyDatabaseError(
                f"{self.path} has schema version {row[0]}; this neuroshift ({__version__}) reads version {SCHEMA_VERSION}")

    # ------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | os.PathLike, study: StudyDefinition, *, overwrite: bool = False) -> "StudyStore":
        """Write a new database for ``study`` with its schedule (atomically: all or nothing)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise StudyDatabaseError(f"{path} exists; a study database is never overwritten (choose another name)")
        schedule = build_schedule(study)
        blind = blind_case_ids(study)
        with atomic_path(path, verify=_verify_database) as tmp:
            tmp.unlink()
            conn = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                conn.executescript(SCHEMA)
                conn.execute("BEGIN")
                meta = {
                    "schema_version": str(SCHEMA_VERSION),
                    "study_name": study.name,
                    "study": _study_to_json(study),
                    "seed": str(study.seed),
                    "blinding": "on" if study.blinding else "off",
                    "created_at": utc_now(),
                    "created_by": f"neuroshift {__version__}",
                    "schedule_sha256": schedule_digest(schedule),
                }
                conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
                conn.executemany("INSERT INTO readers VALUES (?, ?, ?)",
                                 [(r.id, r.role, int(r.reference)) for r in study.readers])
                conn.executemany("INSERT INTO cases VALUES (?, ?, ?)",
                                 [(c.id, blind[c.id], i) for i, c in enumerate(study.cases)])
                conn.executemany("INSERT INTO images VALUES (?, ?, ?)",
                                 [(c.id, s, str(p)) for c in study.cases for s, p in c.images.items()])
                conn.executemany(
                    "INSERT INTO schedule(reader, phase, position, case_id, image_set, kind, shows) VALUES (?,?,?,?,?,?,?)",
                    [(r.reader, r.phase, r.position, r.case, r.image_set, r.kind, _json(list(r.shows))) for r in schedule])
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
        return cls(path)

    # ------------------------------------------------------------ study and schedule
    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    @property
    def study(self) -> StudyDefinition:
        if self._study is None:
            doc = json.loads(self.meta()["study"])
            self._study = parse_study(doc["raw"], doc["folder"])
        return self._study

    def schedule(self) -> list[ScheduledRead]:
        if self._schedule is None:
            rows = self.conn.execute(
                "SELECT reader, phase, position, case_id, image_set, kind, shows FROM schedule ORDER BY id").fetchall()
            self._schedule = [ScheduledRead(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6]))) for r in rows]
        return self._schedule

    def _schedule_ids(self) -> dict[tuple[str, str, str, int], int]:
        return {(r[1], r[2], r[3], r[4]): r[0] for r in self.conn.execute(
            "SELECT id, reader, case_id, image_set, phase FROM schedule")}

    def submitted(self) -> dict[tuple[str, str, str, int], str | None]:
        """Read key -> submission time of every submitted read."""
        return {(r[0], r[1], r[2], r[3]): r[4] for r in self.conn.execute(
            "SELECT reader, case_id, image_set, phase, submitted_at FROM reads")}

    # ------------------------------------------------------------ writing reads
    def submit(self, read: Read, *, now: str | datetime | None = None, check_washout: bool = True) -> int:
        """Validate and store one read at once (one transaction). Returns its row id."""
        return self.submit_many([read], now=now, check_washout=check_washout)[0]

    def submit_many(self, reads: Sequence[Read], *, now: str | datetime | None = None,
                    check_washout: bool = True) -> list[int]:
        """Validate every read first, then store all of them in one transaction (all or nothing).

        Washout: a read is checked at its ``started_at`` (else ``submitted_at``,
        else ``now`` for reads made in the tool); imported reads without any
        timestamp are not checked.
        """
        study = self.study
        sched_ids = self._schedule_ids()
        clean = [validate_read(study, r, sched_ids.keys()) for r in reads]
        stamp = now.isoformat() if isinstance(now, datetime) else (now or utc_now())
        existing = self.submitted()
        batch: dict[tuple, str | None] = {}
        for r in clean:
            if r.key in existing or r.key in batch:
                raise DuplicateReadError(
                    f"reader {r.reader} already submitted case {r.case} / {r.image_set} in phase {r.phase}; "
                    "submitted reads are immutable")
            batch[r.key] = r.submitted_at or (stamp if r.source == "slicer" else None)
        if check_washout:
            everything = {**existing, **batch}
            schedule = self.schedule()
            for r in clean:
                when = r.started_at or r.submitted_at or (stamp if r.source == "slicer" else None)
                if when is not None:
                    check_phase_open(study, schedule, everything, r.reader, r.phase, when)
        ids = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for r in clean:
                cur = self.conn.execute(
                    "INSERT INTO reads(schedule_id, reader, case_id, image_set, phase, started_at, submitted_at,"
                    " active_seconds, answers, n_lesions, source, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (sched_ids[r.key], r.reader, r.case, r.image_set, r.phase, r.started_at, batch[r.key],
                     r.active_seconds, _json(dict(r.answers)), len(r.lesions), r.source, stamp))
                rid = cur.lastrowid
                self.conn.executemany(
                    "INSERT INTO lesions VALUES (?,?,?,?,?,?,?,?,?)",
                    [(rid, les.lesion_id, *les.center_ras_mm, les.long_mm, les.short_mm, les.axes_angle_deg,
                      int(les.orthogonality_flag)) for les in r.lesions])
                self.conn.execute("DELETE FROM drafts WHERE schedule_id = ?", (sched_ids[r.key],))
                ids.append(rid)
            self.conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            self.conn.execute("ROLLBACK")
            raise InvalidAnswerError(f"the database refused the read: {exc}") from None
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return ids

    # ------------------------------------------------------------ drafts (resume)
    def save_draft(self, scheduled: ScheduledRead, *, started_at: str | None, active_seconds: float,
                   answers: dict, lesions: Iterable[Lesion]) -> None:
        """Keep work in progress of a read (replaced on every save, deleted when the read is submitted)."""
        sid = self._schedule_ids()[scheduled.key]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(
                "INSERT OR REPLACE INTO drafts VALUES (?,?,?,?,?,?)",
                (sid, started_at, float(active_seconds), _json(answers), _json([asdict(x) for x in lesions]), utc_now()))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def load_draft(self, scheduled: ScheduledRead) -> dict | None:
        sid = self._schedule_ids()[scheduled.key]
        row = self.conn.execute(
            "SELECT started_at, active_seconds, answers, lesions FROM drafts WHERE schedule_id = ?", (sid,)).fetchone()
        if row is None:
            return None
        lesions = [Lesion(d["lesion_id"], tuple(d["center_ras_mm"]), d["long_mm"], d["short_mm"],
                          d.get("axes_angle_deg"), d.get("orthogonality_flag", False)) for d in json.loads(row[3])]
        return {"started_at": row[0], "active_seconds": row[1], "answers": json.loads(row[2]), "lesions": lesions}

    # ------------------------------------------------------------ reading back
    def reads(self) -> list[Read]:
        """All submitted reads with their lesions, in submission order."""
        lesions: dict[int, list[Lesion]] = {}
        for row in self.conn.execute(
                "SELECT read_id, lesion_id, center_r_mm, center_a_mm, center_s_mm, long_mm, short_mm,"
                " axes_angle_deg, orthogonality_flag FROM lesions ORDER BY read_id, rowid"):
            lesions.setdefault(row[0], []).append(
                Lesion(row[1], (row[2], row[3], row[4]), row[5], row[6], row[7], bool(row[8])))
        out = []
        for row in self.conn.execute(
                "SELECT id, reader, case_id, image_set, phase, answers, started_at, submitted_at, active_seconds,"
                " source FROM reads ORDER BY id"):
            out.append(Read(row[1], row[2], row[3], row[4], json.loads(row[5]), tuple(lesions.get(row[0], ())),
                            row[6], row[7], row[8], row[9]))
        return out

    def next_read(self, reader: str, *, now: str | datetime | None = None) -> ScheduledRead | None:
        """The reader's next unsubmitted read in schedule order; :class:`WashoutError` if its phase is closed."""
        self.study.reader(reader)
        done = self.submitted()
        for r in self.schedule():
            if r.reader == reader and r.key not in done:
                check_phase_open(self.study, self.schedule(), done, reader, r.phase, now)
                return r
        return None

    def progress(self) -> list[dict]:
        """Per reader and phase: scheduled, submitted, drafts in progress (for the study owner)."""
        done = self.submitted()
        drafts = {row[0] for row in self.conn.execute("SELECT schedule_id FROM drafts")}
        ids = self._schedule_ids()
        table: dict[tuple[str, int], dict] = {}
        for r in self.schedule():
            row = table.setdefault((r.reader, r.phase), {"reader": r.reader, "phase": r.phase,
                                                         "phase_name": self.study.all_phases[r.phase - 1].name,
                                                         "scheduled": 0, "submitted": 0, "in_progress": 0,
                                                         "last_submitted_at": None})
            row["scheduled"] += 1
            if r.key in done:
                row["submitted"] += 1
                t = done[r.key]
                if t and (row["last_submitted_at"] is None or t > row["last_submitted_at"]):
                    row["last_submitted_at"] = t
            elif ids[r.key] in drafts:
                row["in_progress"] += 1
        return list(table.values())

    def integrity_check(self) -> list[str]:
        """Problems found (empty when the database is consistent)."""
        problems = [r[0] for r in self.conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {tuple(r)}" for r in self.conn.execute("PRAGMA foreign_key_check")]
        for rid, n, have in self.conn.execute(
                "SELECT r.id, r.n_lesions, (SELECT count(*) FROM lesions l WHERE l.read_id = r.id) FROM reads r"):
            if n != have:
                problems.append(f"read {rid}: {have} lesions stored, {n} recorded")
        return problems
