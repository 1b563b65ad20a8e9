"""No command writes over one of its inputs: same path, symbolic link, hard link (issue 8, data safety 2)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from neuroshift.cli.main import main
from neuroshift.errors import OutputPathError
from neuroshift.io.guard import refuse_overwriting_inputs, same_file


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture()
def flair(phantom, tmp_path) -> Path:
    f = tmp_path / "F.nii.gz"
    shutil.copy(phantom / "FLAIR.nii.gz", f)
    shutil.copy(phantom / "FLAIR.json", tmp_path / "F.json")
    return f


def _refused(capsys, argv, *untouched: Path, says: str = "never writes over an input") -> str:
    before = {p: _digest(p) for p in untouched}
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert says in err
    for p, d in before.items():
        assert _digest(p) == d, f"{p} was modified"
    return err


def test_same_file_paths_symlinks_hardlinks(tmp_path):
    a = tmp_path / "a.nii.gz"
    a.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    os.symlink(a, tmp_path / "link.nii.gz")
    os.link(a, tmp_path / "hard.nii.gz")
    assert same_file(a, tmp_path / "sub" / ".." / "a.nii.gz")
    assert same_file(a, tmp_path / "link.nii.gz")
    assert same_file(a, tmp_path / "hard.nii.gz")
    assert not same_file(a, tmp_path / "b.nii.gz")
    (tmp_path / "copy.nii.gz").write_bytes(b"x")
    assert not same_file(a, tmp_path / "copy.nii.gz")  # equal content is not the same file
    with pytest.raises(OutputPathError, match="a link to it"):
        refuse_overwriting_inputs({"--flair": a}, {"OUTPUT": tmp_path / "hard.nii.gz"})
    with pytest.raises(OutputPathError, match="contains the input"):
        refuse_overwriting_inputs({"INPUT": a}, {}, replaced_folders={"OUTDIR": tmp_path})
    with pytest.raises(OutputPathError, match="are the same file"):
        refuse_overwriting_inputs({}, {"OUTPUT": a, "--json": tmp_path / "link.nii.gz"})
    refuse_overwriting_inputs({"INPUT": a, "none": None}, {"OUTPUT": tmp_path / "new.nii.gz"})  # no error


def test_segment_wmh_output_is_the_flair(flair, capsys):
    err = _refused(capsys, ["segment", "wmh", "--flair", flair, flair], flair)
    assert str(flair) in err and "--flair" in err


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_segment_wmh_output_is_a_link_to_the_flair(flair, capsys, link):
    out = flair.with_name("wmh.nii.gz")
    (os.symlink if link == "symlink" else os.link)(flair, out)
    _refused(capsys, ["segment", "wmh", "--flair", flair, out], flair)


def test_segment_probabilities_over_input(flair, tmp_path, capsys):
    _refused(capsys, ["segment", "wmh", "--flair", flair, tmp_path / "wmh.nii.gz", "--probabilities", flair], flair)
    assert not (tmp_path / "wmh.nii.gz").exists()


def test_simulate_sidecar_would_overwrite_input_sidecar(flair, phantom, capsys):
    """F.nii.gz -> F.nii writes F.json, which is F.nii.gz's own sidecar."""
    _refused(capsys, ["simulate", flair, flair.with_name("F.nii"), "--sequence", "flair", "--target", "TE=150",
                      "--tissues", phantom / "tissue_labels.nii.gz"], flair, flair.with_name("F.json"))
    assert not flair.with_name("F.nii").exists()


def test_simulate_output_over_tissues_and_dicom_folder_holding_input(flair, phantom, tmp_path, capsys):
    labels = tmp_path / "labels.nii.gz"
    shutil.copy(phantom / "tissue_labels.nii.gz", labels)
    _refused(capsys, ["simulate", flair, labels, "--sequence", "flair", "--target", "TE=150", "--tissues", labels],
             labels, flair)
    # a DICOM output folder replaces the folder as a whole: it must not hold an input
    _refused(capsys, ["simulate", flair, tmp_path, "--sequence", "flair", "--target", "TE=150", "--tissues", labels],
             labels, flair, says="contains the input")


def test_evaluate_json_over_prediction(phantom, tmp_path, capsys):
    pred = tmp_path / "pred.nii.gz"
    shutil.copy(phantom / "lesion_mask.nii.gz", pred)
    _refused(capsys, ["evaluate", pred, phantom / "lesion_mask.nii.gz", "--json", pred], pred)


def test_tissues_output_folder_holds_an_input_of_the_same_name(phantom, tmp_path, capsys):
    t1 = tmp_path / "pv_GM.nii.gz"  # a T1w unluckily named like an output
    shutil.copy(phantom / "T1w.nii.gz", t1)
    _refused(capsys, ["tissues", t1, tmp_path], t1)


def test_qmri_synth_output_over_a_map(tmp_path, capsys):
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "T1.nii.gz").write_bytes(b"not read: refused before")
    _refused(capsys, ["qmri", "synth", maps, maps / "T1.nii.gz", "--sequence", "se", "--target", "TE=80,TR=3000"],
             maps / "T1.nii.gz")


def test_stress_test_outdir_is_the_cases_folder(phantom, tmp_path, capsys):
    cases = tmp_path / "cases"
    shutil.copytree(phantom, cases / "case1")
    _refused(capsys, ["stress-test", cases, "--cases", cases, "--model", "wmh-demo"], cases / "case1" / "FLAIR.nii.gz")


def test_reader_study_export_over_the_database(tmp_path, capsys):
    db = tmp_path / "study.sqlite"
    db.write_bytes(b"SQLite format 3\0" + bytes(100))
    _refused(capsys, ["reader-study", "export-reads", "--db", db, db], db)
    _refused(capsys, ["reader-study", "export-reads", "--db", db, tmp_path / "reads.csv", "--lesions-out", db], db)
