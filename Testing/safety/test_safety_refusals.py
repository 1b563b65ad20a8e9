"""Clean refusals instead of tracebacks: exit 2 and the path in the message (issue 8).

Read-only cases run the CLI in a subprocess without root's permission override (``setpriv`` drops
CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH when the tests run as root; as another user permissions apply).
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from neuroshift.cli import main as cli_main
from neuroshift.cli.main import main

from helpers.safety_helpers import permissions_apply, run_cli

from helpers.readerstudy_helpers import small_study_folder

ANSWERS = "reader,case,image_set,phase,question,answer\n"


@pytest.fixture()
def study_db(tmp_path) -> Path:
    y = small_study_folder(tmp_path / "study_src")
    db = tmp_path / "study.sqlite"
    assert main(["reader-study", "create", str(y), "--db", str(db)]) == 0
    return db


@pytest.fixture()
def readonly(tmp_path) -> Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    ok, why = permissions_apply(ro)
    if not ok:
        ro.chmod(0o755)
        pytest.skip(why)
    yield ro
    ro.chmod(0o755)


def _refused(r, *paths) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    for p in paths:
        assert str(p) in r.stderr, r.stderr


# --------------------------------------------------------------------------- read-only outputs
def test_simulate_into_readonly_folder(phantom, readonly):
    r = run_cli("simulate", phantom / "FLAIR.nii.gz", readonly / "o.nii.gz", "--sequence", "flair",
                "--target", "TE=150", "--tissues", phantom / "tissue_labels.nii.gz", unprivileged=True)
    _refused(r, readonly / "o.nii.gz")
    assert "read-only" in r.stderr and os.listdir(readonly) == []


def test_evaluate_json_into_readonly_folder(phantom, readonly):
    r = run_cli("evaluate", phantom / "lesion_mask.nii.gz", phantom / "lesion_mask.nii.gz",
                "--json", readonly / "scores.json", unprivileged=True)
    _refused(r, readonly / "scores.json")
    assert os.listdir(readonly) == []


def test_tissues_and_stress_test_into_readonly_folder(phantom, readonly):
    r = run_cli("tissues", phantom / "T1w.nii.gz", readonly / "maps", unprivileged=True)
    _refused(r, readonly / "maps")
    r = run_cli("stress-test", readonly / "st", "--cases", phantom, "--model", "wmh-demo", unprivileged=True)
    _refused(r, readonly / "st")
    assert os.listdir(readonly) == []


def test_export_reads_and_analyze_into_readonly_folder(study_db, readonly):
    r = run_cli("reader-study", "export-reads", "--db", study_db, readonly / "reads.csv", unprivileged=True)
    _refused(r, readonly / "reads.csv")
    r = run_cli("reader-study", "analyze", "--db", study_db, "--out", readonly / "analysis", unprivileged=True)
    _refused(r, readonly / "analysis")
    assert os.listdir(readonly) == []


def test_database_in_readonly_folder(study_db, readonly):
    """SQLite needs to write its -wal/-shm beside the database: refused naming the database."""
    shutil.copy(study_db, readonly.parent / "copy.sqlite")
    readonly.chmod(0o755)
    shutil.move(readonly.parent / "copy.sqlite", readonly / "copy.sqlite")
    readonly.chmod(0o555)
    r = run_cli("reader-study", "status", "--db", readonly / "copy.sqlite", unprivileged=True)
    _refused(r, readonly / "copy.sqlite")
    assert "writable" in r.stderr


# --------------------------------------------------------------------------- files in the way
def test_stress_test_outdir_is_an_existing_file(phantom, tmp_path, capsys):
    f = tmp_path / "results"
    f.write_text("keep me")
    assert main(["stress-test", str(f), "--cases", str(phantom), "--model", "wmh-demo"]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "not a folder" in err
    assert f.read_text() == "keep me"


def test_output_below_a_file(phantom, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["evaluate", str(phantom / "lesion_mask.nii.gz"), str(phantom / "lesion_mask.nii.gz"),
                 "--json", str(f / "sub" / "scores.json")]) == 2
    assert f"{f} is a file, not a folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- databases and text encodings
@pytest.mark.parametrize("kind", ["truncated", "not_a_database", "text"])
@pytest.mark.parametrize("command", ["status", "export-reads", "import-reads", "analyze"])
def test_corrupt_or_foreign_database(study_db, tmp_path, capsys, kind, command):
    bad = tmp_path / f"{kind}.sqlite"
    if kind == "truncated":
        bad.write_bytes(study_db.read_bytes()[:3000])  # SQLite header intact, pages missing
    elif kind == "not_a_database":
        bad.write_bytes(os.urandom(8192))
    else:
        bad.write_text("reader,case\nR1,C1\n")
    before = bad.read_bytes()
    argv = {"status": ["status", "--db", bad],
            "export-reads": ["export-reads", "--db", bad, tmp_path / "out.csv"],
            "import-reads": ["import-reads", "--db", bad, tmp_path / "r.csv"],
            "analyze": ["analyze", "--db", bad, "--out", tmp_path / "an"]}[command]
    (tmp_path / "r.csv").write_text(ANSWERS)
    assert main(["reader-study", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and ("not a reader-study database" in err or "damaged" in err)
    assert bad.read_bytes() == before
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "an").exists()


def test_non_utf8_reads_csv(study_db, tmp_path, capsys):
    csv = tmp_path / "reads_latin1.csv"
    csv.write_bytes((ANSWERS + "R1,Caf\u00e9,x,1,q,1\n").encode("latin-1"))
    n_before = sqlite3.connect(study_db).execute("SELECT count(*) FROM reads").fetchone()[0]
    assert main(["reader-study", "import-reads", "--db", str(study_db), str(csv)]) == 2
    err = capsys.readouterr().err
    assert str(csv) in err and "not UTF-8" in err and "0xe9" in err
    assert sqlite3.connect(study_db).execute("SELECT count(*) FROM reads").fetchone()[0] == n_before


def test_non_utf8_study_definition(tmp_path, capsys):
    y = tmp_path / "study.yaml"
    y.write_bytes("name: \u00e9tude\n".encode("latin-1"))
    assert main(["reader-study", "create", str(y), "--db", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err
    assert str(y) in err and "not UTF-8" in err
    assert not (tmp_path / "s.sqlite").exists()


# --------------------------------------------------------------------------- the CLI boundary
def test_boundary_maps_oserror_with_a_path(monkeypatch, capsys, tmp_path):
    """OSError with a file name: exit 2 (permission) or 1 (no space); without a name it stays a traceback."""
    import argparse

    def parser_with(exc):
        def raise_it(args):
            raise exc
        p = argparse.ArgumentParser()
        p.set_defaults(func=raise_it)
        return p

    cases = [(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x")), 2, "read-only"),
             (OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "y")), 1, "No space"),
             (IsADirectoryError(errno.EISDIR, "Is a directory", str(tmp_path)), 2, "Is a directory")]
    for exc, code, text in cases:
        monkeypatch.setattr(cli_main, "build_parser", lambda exc=exc: parser_with(exc))
        assert main([]) == code
        err = capsys.readouterr().err
        assert exc.filename in err and text in err
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser_with(OSError("no file name")))
    with pytest.raises(OSError, match="no file name"):
        main([])


def test_neuroshift_warnings_are_one_line(monkeypatch, capsys):
    """A FractionWarning raised inside any command is printed as 'neuroshift: warning: ...' (no source path)."""
    import argparse
    import warnings

    from neuroshift.tissues.maps import FractionWarning

    def warn(args):
        warnings.warn("the tissue fractions sum to less than 0.98 in 12.5% of the voxels", FractionWarning)
        return 0

    p = argparse.ArgumentParser()
    p.set_defaults(func=warn)
    monkeypatch.setattr(cli_main, "build_parser", lambda: p)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main([]) == 0
    err = capsys.readouterr().err
    assert err == "neuroshift: warning: the tissue fractions sum to less than 0.98 in 12.5% of the voxels\n"
