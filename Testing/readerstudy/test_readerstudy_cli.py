"""CLI: invalid input is refused with exit code 2, a clear message, and nothing written; export/import round trip."""

import csv
import sqlite3

import pytest
import yaml

from neuroshift.cli.main import main
from neuroshift.readerstudy.store import StudyStore

from helpers.readerstudy_helpers import small_study_folder

ANSWERS = ["reader", "case", "image_set", "phase", "question", "answer"]
LESIONS = ["reader", "case", "image_set", "phase", "lesion_id", "center_r_mm", "center_a_mm", "center_s_mm",
           "long_mm", "short_mm"]


@pytest.fixture
def db(tmp_path):
    y = small_study_folder(tmp_path)
    path = tmp_path / "s.sqlite"
    assert main(["reader-study", "create", str(y), "--db", str(path)]) == 0
    return path


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def n_reads(db):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM reads").fetchone()[0]
    finally:
        con.close()


def first_read(db, reader="R1", phase=1):
    with StudyStore(db) as store:
        return next(s for s in store.schedule() if s.reader == reader and s.phase == phase)


def test_create_refuses_path_escape_and_writes_nothing(tmp_path, capsys):
    y = small_study_folder(tmp_path)
    doc = yaml.safe_load(y.read_text())
    doc["cases"][0]["images"]["low"] = "../../secret/low.nii.gz"
    y.write_text(yaml.safe_dump(doc))
    db = tmp_path / "s.sqlite"
    assert main(["reader-study", "create", str(y), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "outside the study folder" in err and "low" in err
    assert not db.exists() and not list(tmp_path.glob("*.sqlite*"))


def test_create_refuses_missing_images_unless_allowed(tmp_path, capsys):
    y = small_study_folder(tmp_path, images=False)
    assert main(["reader-study", "create", str(y), "--db", str(tmp_path / "a.sqlite")]) == 2
    assert "do not exist" in capsys.readouterr().err and not (tmp_path / "a.sqlite").exists()
    assert main(["reader-study", "create", str(y), "--db", str(tmp_path / "a.sqlite"), "--allow-missing-images"]) == 0


def test_likert_6_is_refused_and_nothing_written(db, tmp_path, capsys):
    s = first_read(db)
    good = [["R1", s.case, s.image_set, 1, "quality", 4]]
    other = first_read(db, "R2")
    bad = [["R2", other.case, other.image_set, 1, "quality", 6]]
    path = write_csv(tmp_path / "a.csv", ANSWERS, good + bad)
    assert main(["reader-study", "import-reads", "--db", str(db), str(path)]) == 2
    err = capsys.readouterr().err
    assert "integer 1-5, got 6" in err and "a.csv line 3" in err
    assert n_reads(db) == 0  # the good row was not written either


def test_reader_outside_the_study_is_refused(db, tmp_path, capsys):
    s = first_read(db)
    path = write_csv(tmp_path / "a.csv", ANSWERS, [["R9", s.case, s.image_set, 1, "quality", 3]])
    assert main(["reader-study", "import-reads", "--db", str(db), str(path)]) == 2
    assert "reader 'R9' is not part of study 'small-crossover'" in capsys.readouterr().err
    assert n_reads(db) == 0


@pytest.mark.parametrize("rows,message", [
    ([["R1", "{case}", "{set}", 1, "quality", "3.5"]], "integer 1-5"),
    ([["R1", "{case}", "{set}", 1, "colour", "red"]], "not a question"),
    ([["R1", "{case}", "{set}", 2, "quality", "3"]], "washout|not submitted yet|not open"),
    ([["R1", "{case}", "reference", 1, "quality", "3"]], "schedule"),
    ([["R1", "C99", "{set}", 1, "quality", "3"]], "case 'C99'"),
])
def test_other_invalid_answers(db, tmp_path, capsys, rows, message):
    s = first_read(db)
    rows = [[str(x).format(case=s.case, set=s.image_set) for x in r] for r in rows]
    if rows[0][3] == "2":  # a phase-2 read stamped 1 day after phase 1 would be inside the washout
        other = next(x for x in StudyStore(db).schedule() if x.reader == "R1" and x.phase == 2)
        rows = [["R1", other.case, other.image_set, 2, "quality", 3],
                ["R1", other.case, other.image_set, 2, "_started_at", "2024-01-02T00:00:00+00:00"]]
    path = write_csv(tmp_path / "a.csv", ANSWERS, rows)
    assert main(["reader-study", "import-reads", "--db", str(db), "--", str(path)]) == 2
    import re
    assert re.search(message, capsys.readouterr().err)
    assert n_reads(db) == 0


def test_bad_header_and_bad_numbers(db, tmp_path, capsys):
    path = write_csv(tmp_path / "x.csv", ["a", "b"], [[1, 2]])
    assert main(["reader-study", "import-reads", "--db", str(db), str(path)]) == 2
    assert "unknown header" in capsys.readouterr().err
    s = first_read(db)
    path = write_csv(tmp_path / "l.csv", LESIONS, [["R1", s.case, s.image_set, 1, "L1", "x", 0, 0, 5, 3]])
    assert main(["reader-study", "import-reads", "--db", str(db), str(path)]) == 2
    assert "center_r_mm must be a number" in capsys.readouterr().err


def test_export_import_round_trip_and_status(db, tmp_path, capsys):
    with StudyStore(db) as store:
        sched = [s for s in store.schedule() if s.phase == 1]
    answers, lesions = [], []
    for i, s in enumerate(sched):
        answers += [[s.reader, s.case, s.image_set, 1, "quality", 1 + i % 5],
                    [s.reader, s.case, s.image_set, 1, "_active_seconds", 60 + i],
                    [s.reader, s.case, s.image_set, 1, "_started_at", f"2024-01-01T10:{i:02d}:00+00:00"],
                    [s.reader, s.case, s.image_set, 1, "_submitted_at", f"2024-01-01T10:{i:02d}:30+00:00"]]
        if i % 2:
            lesions.append([s.reader, s.case, s.image_set, 1, "L1", 1.5, -2.25, 30.0, 7.5, 4.0])
        else:
            answers.append([s.reader, s.case, s.image_set, 1, "comment", "nothing, really"])
    a = write_csv(tmp_path / "answers.csv", ANSWERS, answers)
    lz = write_csv(tmp_path / "lesions.csv", LESIONS, lesions)
    assert main(["reader-study", "import-reads", "--db", str(db), str(a), str(lz)]) == 0
    assert n_reads(db) == len(sched)
    assert main(["reader-study", "status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "4/4" in out and "opens 2024-01-15" in out and f"total: {len(sched)}/20" in out
    assert main(["reader-study", "export-reads", "--db", str(db), str(tmp_path / "out.csv")]) == 0
    # re-import the export into a fresh database: identical reads
    y = small_study_folder(tmp_path / "copy")
    db2 = tmp_path / "copy.sqlite"
    assert main(["reader-study", "create", str(y), "--db", str(db2)]) == 0
    assert main(["reader-study", "import-reads", "--db", str(db2), str(tmp_path / "out.csv"),
                 str(tmp_path / "out_lesions.csv")]) == 0
    strip = lambda rs: sorted((r.reader, r.case, r.image_set, r.phase, sorted(r.answers.items()), r.lesions,
                               r.started_at, r.submitted_at, r.active_seconds) for r in rs)
    with StudyStore(db) as s1, StudyStore(db2) as s2:
        assert strip(s1.reads()) == strip(s2.reads())
    # a second import of the same reads is refused (reads are immutable)
    assert main(["reader-study", "import-reads", "--db", str(db2), str(tmp_path / "out.csv"),
                 str(tmp_path / "out_lesions.csv")]) == 2
    assert "already submitted" in capsys.readouterr().err
    # the answers alone contradict the recorded lesion counts
    assert main(["reader-study", "import-reads", "--db", str(db2), str(tmp_path / "out.csv")]) == 2
    assert "_n_lesions is 1 but 0 lesion rows" in capsys.readouterr().err


def test_analyze_refuses_bad_thresholds(db, tmp_path, capsys):
    assert main(["reader-study", "analyze", "--db", str(db), "--out", str(tmp_path / "o"), "--thresholds", "a"]) == 2
    assert not (tmp_path / "o").exists()
