"""Turing-test study builder: a valid turing study for reader-study create, images copied byte-identical."""

from __future__ import annotations

import pytest

from neuroshift.errors import InputError
from neuroshift.readerstudy.definition import load_study
from neuroshift.synthesis.turing import build_turing_study


def _cases(tmp_path, n=3):
    out = []
    for i in range(n):
        d = tmp_path / "in" / f"S{i}"
        d.mkdir(parents=True)
        paths = {}
        for k in ("t1", "dir", "syn_a", "syn_b"):
            p = d / f"{k}.nii.gz"
            p.write_bytes(f"{k}-{i}".encode())
            paths[k] = p
        out.append({"id": f"S{i}", "source": paths["t1"], "real": paths["dir"],
                    "synthetic": {"from_T1": paths["syn_a"], "from_all": paths["syn_b"]}})
    return out


def test_builds_valid_turing_study(tmp_path):
    cases = _cases(tmp_path)
    yml = build_turing_study(tmp_path / "study", cases, ["N1", "N2"], seed=5)
    study = load_study(yml)
    assert study.design.type == "turing" and study.design.source == "source"
    assert study.design.trials == {"real": 3, "from_T1": 3, "from_all": 3}
    assert study.image_sets["from_T1"].synthetic is True and study.image_sets["real"].synthetic is False
    assert {t.id for t in study.tasks} == {"plausibility", "real_or_synthetic"}
    assert (tmp_path / "study" / "cases" / "S1" / "from_all.nii.gz").read_bytes() == b"syn_b-1"
    assert "SYNTHETIC" in yml.read_text().splitlines()[0]
    with pytest.raises(InputError, match="exists"):
        build_turing_study(tmp_path / "study", cases, ["N1"])


def test_refusals(tmp_path):
    cases = _cases(tmp_path)
    with pytest.raises(InputError, match="reader"):
        build_turing_study(tmp_path / "a", cases, [])
    cases[1]["real"] = tmp_path / "missing.nii.gz"
    with pytest.raises(InputError, match="does not exist"):
        build_turing_study(tmp_path / "b", cases, ["N1"])
    assert not (tmp_path / "b").exists()


def test_cli_builds_study(tmp_path):
    from neuroshift.cli.main import main
    cases = _cases(tmp_path, 2)
    rows = ["case,source,real,from_T1,from_all"] + [
        f"{c['id']},{c['source'].relative_to(tmp_path)},{c['real'].relative_to(tmp_path)},"
        f"{c['synthetic']['from_T1'].relative_to(tmp_path)},{c['synthetic']['from_all'].relative_to(tmp_path)}"
        for c in cases]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    assert main(["turing-study", str(tmp_path / "st"), "--pairs", str(tmp_path / "pairs.csv"),
                 "--readers", "R1,R2"]) == 0
    assert load_study(tmp_path / "st" / "study.yaml").design.trials == {"real": 2, "from_T1": 2, "from_all": 2}
    assert main(["turing-study", str(tmp_path / "st2"), "--pairs", str(tmp_path / "nope.csv"),
                 "--readers", "R1"]) == 2
