"""``neuroshift demo --quick``: one phantom subject on a 3 x 3 grid, the full report; thread policy of the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuroshift.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _settings(argv):
    from neuroshift.cli.demo import demo_settings

    return demo_settings(build_parser().parse_args(["demo", *argv]))


def test_quick_and_full_settings():
    assert _settings([]) == (3, "TE=84:150:7,TI=2200:2900:7")
    assert _settings(["--quick"]) == (1, "TE=84:150:3,TI=2200:2900:3")
    # explicit options win over --quick
    assert _settings(["--quick", "--subjects", "2"]) == (2, "TE=84:150:3,TI=2200:2900:3")
    assert _settings(["--quick", "--grid", "TE=84:150:2"]) == (1, "TE=84:150:2")


def test_bad_threads_and_subjects_exit_2_without_output(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "a"), "--quick", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
    assert main(["demo", str(tmp_path / "b"), "--subjects", "0"]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_sets_passive_omp_waiting_before_torch_and_keeps_a_user_value():
    code = ("import os, sys\nfrom neuroshift.cli.main import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.stdout.split()[-2:] == ["PASSIVE", "False"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, cwd=ROOT, timeout=120)
    assert out.stdout.split()[-2:] == ["ACTIVE", "False"]


@pytest.mark.slow
def test_quick_demo_runs_one_subject_over_nine_points(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--quick", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "torch: 1 thread(s)" in text and "OMP_WAIT_POLICY=" in text
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["sub-01"]
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    f1 = [r for r in rows if r["metric"] == "lesion_f1"]
    points = sorted({(float(r["TE"]), float(r["TI"])) for r in f1 if r["point"] not in ("baseline", "original")})
    assert points == [(te, ti) for te in (84.0, 117.0, 150.0) for ti in (2200.0, 2550.0, 2900.0)]
    assert {r["point"] for r in f1} >= {"baseline", "original"}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in f1)
    surface = json.loads((out / "surface.json").read_text(encoding="utf-8"))
    assert surface["grid"] == {"TE": [84.0, 117.0, 150.0], "TI": [2200.0, 2550.0, 2900.0]}
    assert surface["cases"] == ["sub-01"]
    assert surface["baseline_check"][0]["max_abs_diff"] == 0.0  # simulating at the source reproduces the image
    assert surface["surfaces"]["lesion_f1"]["n_points"] == 9
    assert (out / "report.html").stat().st_size > 10_000
