"""Reader study first use: the example study, the schedule export, phase names, fixtures that run as they are."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from neuroshift.cli.main import main

FIX = Path(__file__).parents[1] / "fixtures" / "readerstudy"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rs") / "example"
    assert main(["reader-study", "example", str(folder), "--cases", "2"]) == 0
    db = folder / "study.sqlite"
    assert main(["reader-study", "create", str(folder / "study.yaml"), "--db", str(db)]) == 0  # no missing images
    return folder, db


def test_example_images_are_real_files_with_the_expected_contrast(example):
    from neuroshift.io.files import read_volume
    from neuroshift.physics.relaxation import relaxation_table
    from neuroshift.physics.signal import flair
    from neuroshift.readerstudy.definition import load_study, missing_images

    folder, _ = example
    study = load_study(folder / "study.yaml")
    assert [c.id for c in study.cases] == ["C1", "C2"] and missing_images(study) == []
    assert set(study.cases[0].images) == {"acquired", "simulated", "baseline", "t1"}
    gt = json.loads((folder / "C1" / "baseline.json").read_text())
    assert gt["EchoTime"] == 0.112 and gt["InversionTime"] == 2.5
    side = json.loads((folder / "C1" / "simulated.json").read_text())
    assert side["EchoTime"] == 0.15 and side["InversionTime"] == 2.9 and side["MagneticFieldStrength"] == 3.0
    # the acquired and simulated images agree with the signal equation at TE 150 / TI 2900 in pure white matter
    from neuroshift.phantom.make import build_phantom

    ph = build_phantom(seed=0)
    wm = np.asarray(ph.fractions["WM"].data) >= 0.999
    t = relaxation_table(3.0)["WM"]
    c = ph.ground_truth["images"]["FLAIR"]["scale_c"]
    expected = c * float(flair(t.pd, t.t1_ms, t.t2_ms, te_ms=150.0, ti_ms=2900.0, tr_ms=9000.0))
    for name in ("acquired", "simulated"):
        med = float(np.median(np.asarray(read_volume(folder / "C1" / f"{name}.nii.gz").data)[wm]))
        assert med == pytest.approx(expected, rel=0.03), name


def test_example_refuses_an_existing_study(example, capsys):
    folder, _ = example
    before = (folder / "study.yaml").read_bytes()
    assert main(["reader-study", "example", str(folder)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (folder / "study.yaml").read_bytes() == before


def _schedule(db, *extra):
    return ["reader-study", "schedule", "--db", str(db), *extra]


def test_schedule_export_lists_who_reads_what_in_which_phase(example, tmp_path, capsys):
    _, db = example
    out = tmp_path / "schedule.csv"
    assert main(_schedule(db, str(out))) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    # crossover of 2 image sets, 2 cases, 2 readers, 2 phases = 8 reads, + reference reads of R1 (2 cases) = 10
    assert len(rows) == 10
    assert {(r["phase"], r["phase_name"]) for r in rows} == {("1", "phase 1"), ("2", "phase 2"), ("3", "reference")}
    for reader in ("R1", "R2"):
        mine = [(r["case"], r["image_set"]) for r in rows if r["reader"] == reader and r["kind"] == "read"]
        # every case once per phase, and each case in both image sets over the two phases
        assert sorted(mine) == [("C1", "acquired"), ("C1", "simulated"), ("C2", "acquired"), ("C2", "simulated")]
    ref = [r for r in rows if r["kind"] == "reference"]
    assert {(r["reader"], r["image_set"], r["image"]) for r in ref} == {("R1", "baseline", "C1/baseline.nii.gz"),
                                                                        ("R1", "baseline", "C2/baseline.nii.gz")}
    sim = [r for r in rows if r["image_set"] == "simulated"]
    assert all(r["synthetic"] == "true" and r["shows"] == "simulated;t1" for r in sim)
    assert all((db.parent / r["image"]).is_file() for r in rows)


def test_schedule_phase_by_name_or_number(example, capsys):
    _, db = example
    assert main(_schedule(db, "-", "--phase", "Phase_2", "--reader", "R2")) == 0
    by_name = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert main(_schedule(db, "-", "--phase", "2", "--reader", "R2")) == 0
    by_number = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert by_name == by_number and len(by_name) == 2
    assert {r["phase"] for r in by_name} == {"2"} and [r["position"] for r in by_name] == ["1", "2"]
    assert main(_schedule(db, "-", "--phase", "phase 9")) == 2
    err = capsys.readouterr().err
    assert "'phase 9' is not a phase" in err and "2 'phase 2'" in err
    assert main(_schedule(db, "-", "--reader", "R7")) == 2


def test_import_accepts_phase_names_from_the_study_file(example, tmp_path, capsys):
    from neuroshift.readerstudy.store import StudyStore

    _, db = example
    with StudyStore(db) as store:
        first = next(r for r in store.schedule() if r.reader == "R2" and r.phase == 1 and r.position == 1)
    csv_path = tmp_path / "answers.csv"
    csv_path.write_text("reader,case,image_set,phase,question,answer\n"
                        f"R2,{first.case},{first.image_set},Phase 1,quality,4\n", encoding="utf-8")
    assert main(["reader-study", "import-reads", "--db", str(db), str(csv_path)]) == 0
    out = tmp_path / "reads.csv"
    assert main(["reader-study", "export-reads", "--db", str(db), str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["reader"], r["case"], r["phase"], r["answer"]) for r in rows if r["question"] == "quality"] == [
        ("R2", first.case, "1", "4")]
    bad = tmp_path / "bad.csv"
    bad.write_text("reader,case,image_set,phase,question,answer\n"
                   f"R2,{first.case},{first.image_set},washout,quality,4\n", encoding="utf-8")
    assert main(["reader-study", "import-reads", "--db", str(db), str(bad)]) == 2
    assert "'washout' is not a phase" in capsys.readouterr().err


def test_phase_number_rules():
    from neuroshift.readerstudy.definition import load_study
    from neuroshift.readerstudy.errors import StudyDefinitionError

    study = load_study(FIX / "counts_study.yaml")  # phases: session 1, session 2, session 3
    assert [study.phase_number(v) for v in (1, "3", "session 2", " SESSION-3 ", "Session_1")] == [1, 3, 2, 3, 1]
    for bad in ("0", "4", "session", ""):
        with pytest.raises(StudyDefinitionError):
            study.phase_number(bad)


@pytest.mark.parametrize("name", ["small_study.yaml", "counts_study.yaml", "turing_study.yaml"])
def test_fixture_studies_name_no_missing_image(name, tmp_path):
    from neuroshift.readerstudy.definition import load_study, missing_images

    study = load_study(FIX / name)
    assert missing_images(study) == []
    if name == "small_study.yaml":
        assert len([p for c in study.cases for p in c.images.values()]) == 16
        db = tmp_path / "s.sqlite"
        assert main(["reader-study", "create", str(FIX / name), "--db", str(db)]) == 0
        assert db.is_file()
