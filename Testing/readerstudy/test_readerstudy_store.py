"""Storage: immutable reads, resume from drafts, concurrent readers, and a writer killed mid-session."""

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from neuroshift.readerstudy.answers import Lesion, Read
from neuroshift.readerstudy.definition import load_study
from neuroshift.readerstudy.errors import DuplicateReadError, StudyDatabaseError, WashoutError
from neuroshift.readerstudy.store import SCHEMA_VERSION, StudyStore

from helpers import paper004


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "study.sqlite"
    StudyStore.create(path, load_study(paper004.study_yaml(tmp_path / "s"))).close()
    return path


def phase1(store, reader):
    return [r for r in store.schedule() if r.reader == reader and r.phase == 1]


def make_read(s, n_lesions=2, quality=3):
    les = tuple(Lesion(f"L{i}", (10.0 * i, 1.5, -2.0), 8.0 + i, 5.0) for i in range(n_lesions))
    return Read(s.reader, s.case, s.image_set, s.phase, {"quality": quality}, les, None, None, 42.5, "slicer")


def test_schema_wal_and_meta(db):
    with StudyStore(db) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = store.meta()
        assert meta["schema_version"] == str(SCHEMA_VERSION) and meta["blinding"] == "off"
        assert len(store.schedule()) == 190


def test_submitted_reads_are_immutable(db):
    with StudyStore(db) as store:
        s = phase1(store, "R1")[0]
        rid = store.submit(make_read(s))
        back = store.reads()[0]
        assert back.lesions[1].center_ras_mm == (10.0, 1.5, -2.0) and back.active_seconds == 42.5
        assert back.submitted_at is not None
        for sql in ("UPDATE reads SET answers = '{}' WHERE id = ?", "DELETE FROM reads WHERE id = ?",
                    "UPDATE lesions SET long_mm = 1 WHERE read_id = ?", "DELETE FROM lesions WHERE read_id = ?"):
            with pytest.raises(sqlite3.IntegrityError, match="immutable"):
                store.conn.execute(sql, (rid,))
        with pytest.raises(sqlite3.IntegrityError, match="complete"):
            store.conn.execute("INSERT INTO lesions VALUES (?, 'extra', 0, 0, 0, 5, 3, NULL, 0)", (rid,))
        with pytest.raises(DuplicateReadError, match="already submitted"):
            store.submit(make_read(s, quality=5))
        assert store.reads()[0].answers == {"quality": 3}
        assert store.integrity_check() == []


def test_database_is_never_overwritten_and_other_files_refused(db, tmp_path):
    with pytest.raises(StudyDatabaseError, match="never overwritten"):
        StudyStore.create(db, load_study(paper004.study_yaml(tmp_path / "s2")))
    junk = tmp_path / "junk.sqlite"
    sqlite3.connect(junk).execute("CREATE TABLE x(a)").connection.close()
    with pytest.raises(StudyDatabaseError, match="not a reader-study database"):
        StudyStore(junk)
    with pytest.raises(StudyDatabaseError, match="no study database"):
        StudyStore(tmp_path / "missing.sqlite")


def test_resume_from_draft_and_phase_order(db):
    with StudyStore(db) as store:
        nxt = store.next_read("R1")
        assert nxt.phase == 1 and nxt.position == 1
        store.save_draft(nxt, started_at="2024-01-01T10:00:00+00:00", active_seconds=33.0,
                         answers={"quality": 2}, lesions=[Lesion("L1", (1, 2, 3), 6, 4)])
    with StudyStore(db) as store:  # a new process/session resumes
        assert store.next_read("R1") == nxt
        draft = store.load_draft(nxt)
        assert draft["active_seconds"] == 33.0 and draft["answers"] == {"quality": 2}
        assert draft["lesions"][0].center_ras_mm == (1, 2, 3)
        assert store.progress()[0]["in_progress"] == 1
        store.submit(make_read(nxt))
        assert store.load_draft(nxt) is None
        for s in phase1(store, "R1")[1:]:
            store.submit(make_read(s))
        with pytest.raises(WashoutError, match="washout"):
            store.next_read("R1")  # phase 2 is 14 days away


def _writer(db, reader, out):
    store = StudyStore(db)
    for s in [r for r in store.schedule() if r.reader == reader and r.phase == 1]:
        store.submit(make_read(s, n_lesions=3))
    out.put(reader)


def test_two_readers_write_at_the_same_time(db):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db, rd, q)) for rd in ("R1", "R2")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with StudyStore(db) as store:
        reads = store.reads()
        assert len(reads) == 76 and sum(len(r.lesions) for r in reads) == 228
        assert store.integrity_check() == []


KILL_CHILD = r"""
import sys
from neuroshift.readerstudy.answers import Lesion, Read
from neuroshift.readerstudy.store import StudyStore
store = StudyStore(sys.argv[1])
sched = [r for r in store.schedule() if r.phase == 1]
for i, s in enumerate(sched):
    store.save_draft(s, started_at=None, active_seconds=float(i), answers={"quality": 2}, lesions=[])
    les = tuple(Lesion(f"L{k}", (float(k), float(i), 0.0), 6.0 + k, 4.0) for k in range(1 + i % 5))
    rid = store.submit(Read(s.reader, s.case, s.image_set, 1, {"quality": 1 + i % 5}, les, None, None, 10.0 + i))
    print(f"{rid} {s.reader} {s.case} {s.image_set} {len(les)}", flush=True)
"""


def test_killing_a_writer_mid_session_loses_no_submitted_read(db):
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(db)], stdout=subprocess.PIPE, text=True)
    confirmed = []
    deadline = time.time() + 120
    while len(confirmed) < 12 and time.time() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        confirmed.append(line.split())
    os.kill(child.pid, signal.SIGKILL)  # at an arbitrary moment of the next submit or draft save
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(confirmed) >= 12
    with StudyStore(db) as store:
        assert store.integrity_check() == []
        reads = {(r.reader, r.case, r.image_set): r for r in store.reads()}
        for rid, reader, case, image_set, n in confirmed:
            r = reads[(reader, case, image_set)]
            assert len(r.lesions) == int(n)  # complete: read and lesions committed together
        assert len(reads) >= len(confirmed)
        # the database is still writable and consistent afterwards
        left = [s for s in store.schedule() if s.phase == 1 and (s.reader, s.case, s.image_set) not in reads]
        store.submit(make_read(left[0]))
        assert store.integrity_check() == []
