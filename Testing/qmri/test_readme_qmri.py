"""Every ``qmri`` example of the README runs as written on ``sample-data`` and recovers the phantom's maps.

The commands are parsed from the README's "Quantitative maps" code block and run from a folder holding
``neuroshift sample-data phantom/``. Ground truth: the 3 T relaxation table in pure-tissue voxels (tissue
fraction >= 0.99), literal values below; apparent PDs follow from the signal equations.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from neuroshift.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
#: 3 T relaxation values (ms) and PD of the phantom's table (neuroshift.physics.relaxation), PD scaled by 1000
TRUTH = {"CSF": dict(pd=1000.0, t1=4163.0, t2=379.0, t2s=190.0),
         "GM": dict(pd=800.0, t1=1331.0, t2=110.0, t2s=66.0),
         "WM": dict(pd=700.0, t1=832.0, t2=79.6, t2s=53.2)}


def readme_qmri_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Quantitative maps"):]
    block = section[section.index("```bash") + 7:]
    block = block[:block.index("```")]
    block = re.sub(r"\\\n\s*", " ", block)
    return [ln.strip() for ln in block.splitlines() if ln.strip().startswith("neuroshift ")]


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Run sample-data and every README qmri command in one folder; returns (folder, commands)."""
    import os

    cmds = readme_qmri_commands()
    work = tmp_path_factory.mktemp("readme_qmri")
    old = os.getcwd()
    os.chdir(work)
    try:
        assert main(["sample-data", "phantom/", "--seed", "0"]) == 0
        for cmd in cmds:
            argv = shlex.split(cmd)
            assert argv[0] == "neuroshift"
            assert main(argv[1:]) == 0, cmd
    finally:
        os.chdir(old)
    return work, cmds


def _read(path):
    from neuroshift.io.files import read_volume

    return np.asarray(read_volume(path).data, dtype=np.float64)


def _pure(work, tissue, threshold=0.99):
    fraction = _read(work / "phantom" / f"pv_{tissue}.nii.gz")
    return (fraction >= threshold) & (_read(work / "phantom/brain_mask.nii.gz") > 0)


def _median_ratio(work, rel, tissue, truth, threshold=0.99):
    """Median of image / truth (a number or a truth image path) over the tissue's (almost) pure voxels."""
    m = _pure(work, tissue, threshold)
    assert m.sum() > 100
    ref = _read(work / truth)[m] if isinstance(truth, str) else truth
    return float(np.median(_read(work / rel)[m] / ref))


def _brain_within(work, rel, truth, tolerance):
    """Fraction of brain voxels where image / truth is within 1 +- tolerance."""
    brain = _read(work / "phantom/brain_mask.nii.gz") > 0
    ratio = _read(work / rel)[brain] / _read(work / truth)[brain]
    return float(np.mean(np.abs(ratio - 1.0) < tolerance))


def test_readme_lists_the_five_examples(ran):
    _, cmds = ran
    assert [c.split()[2] for c in cmds] == ["fit", "fit", "fit", "synth", "synth"]
    assert all("phantom/" in c for c in cmds)


def test_ground_truth_maps_hold_the_table_values(ran):
    work, _ = ran
    for tissue in ("CSF", "WM"):  # voxels of one tissue only (no GM voxel of the template is pure)
        t = TRUTH[tissue]
        for rel, key in (("T1", "t1"), ("T2", "t2"), ("T2star", "t2s"), ("PD", "pd")):
            assert _median_ratio(work, f"phantom/maps/{rel}.nii.gz", tissue, t[key], 0.999) == pytest.approx(1.0,
                                                                                                              abs=1e-6)
    # >= 99 % GM: within 1 % x the largest contrast to another tissue (CSF T1 4163 ms) of the GM values
    for rel, key in (("T1", "t1"), ("T2", "t2"), ("PD", "pd")):
        assert _median_ratio(work, f"phantom/maps/{rel}.nii.gz", "GM", TRUTH["GM"][key]) == pytest.approx(1.0,
                                                                                                         abs=0.025)
    side = json.loads((work / "phantom/qmri/ir.json").read_text())
    assert side["InversionTime"] == 2.5 and side["RepetitionTime"] == 6.0 and side["MagneticFieldStrength"] == 3.0
    assert json.loads((work / "phantom/maps/T1.json").read_text())["Units"] == "ms"


def test_two_echoes_recover_t2_and_apparent_pd(ran):
    work, _ = ran
    for tissue in TRUTH:
        assert _median_ratio(work, "fit_se/T2.nii.gz", tissue, "phantom/maps/T2.nii.gz") == pytest.approx(1.0, abs=0.01)
    assert _brain_within(work, "fit_se/T2.nii.gz", "phantom/maps/T2.nii.gz", 0.1) > 0.95
    for tissue in ("CSF", "WM"):  # PD absorbs the T1 weighting at TR 3000
        t = TRUTH[tissue]
        apparent = t["pd"] * (1.0 - math.exp(-3000.0 / t["t1"]))
        assert _median_ratio(work, "fit_se/PD.nii.gz", tissue, apparent, 0.999) == pytest.approx(1.0, abs=0.015)


def test_variable_flip_angle_recovers_t1_and_apparent_pd(ran):
    work, _ = ran
    for tissue in TRUTH:
        assert _median_ratio(work, "fit_vfa/T1.nii.gz", tissue, "phantom/maps/T1.nii.gz") == pytest.approx(1.0,
                                                                                                         abs=0.01)
    assert _brain_within(work, "fit_vfa/T1.nii.gz", "phantom/maps/T1.nii.gz", 0.1) > 0.95
    for tissue in ("CSF", "WM"):  # PD absorbs the T2* decay at TE 4
        t = TRUTH[tissue]
        apparent = t["pd"] * math.exp(-4.0 / t["t2s"])
        assert _median_ratio(work, "fit_vfa/PD.nii.gz", tissue, apparent, 0.999) == pytest.approx(1.0, abs=0.015)


def test_mixed_sequences_recover_pd_t1_t2(ran):
    work, _ = ran
    for name in ("PD", "T1", "T2"):
        for tissue in TRUTH:
            assert _median_ratio(work, f"fit_mixed/{name}.nii.gz", tissue,
                                 f"phantom/maps/{name}.nii.gz") == pytest.approx(1.0, abs=0.01)
        # almost every brain voxel within 10 % (no wrong branch of the magnitude IR signal)
        assert _brain_within(work, f"fit_mixed/{name}.nii.gz", f"phantom/maps/{name}.nii.gz", 0.1) > 0.98
    # parameters came from the sidecars, which carry the field: recorded for qmri synth
    assert json.loads((work / "fit_mixed/qmri.json").read_text())["field_T"] == 3.0


def test_synthesised_contrasts_match_the_signal_equations(ran):
    work, _ = ran
    from neuroshift.physics.signal import mprage_steady_state

    for tissue in ("CSF", "WM"):
        t = TRUTH[tissue]
        # qmri synth's spin-echo convention (that of the qMRI fit, the printed form of papers 000/002):
        # longitudinal factor of TE -> 0 times the echo decay, |1 - 2 e^(-TI/T1) + e^(-TR/T1)| e^(-TE/T2)
        s = t["pd"] * abs(1.0 - 2.0 * math.exp(-2500.0 / t["t1"]) + math.exp(-9000.0 / t["t1"])) \
            * math.exp(-112.0 / t["t2"])
        assert _median_ratio(work, "flair.nii.gz", tissue, float(s), 0.999) == pytest.approx(1.0, abs=1e-5)
        s = t["pd"] * mprage_steady_state(1.0, t["t1"], t["t2s"], te_ms=3.0, ti_ms=900.0, tr_ms=2300.0, fa_deg=9.0,
                                          tx_ms=7.0, n=176.0)
        # Rician sigma 0.1 against 5.6 (CSF) and 31 (WM): the magnitude bias stays well under 2 %
        assert _median_ratio(work, "t1w.nii.gz", tissue, float(s), 0.999) == pytest.approx(1.0, abs=0.02)
    for name, seq in (("flair", "flair"), ("t1w", "mprage")):
        side = json.loads((work / f"{name}.json").read_text())
        assert side["MagneticFieldStrength"] == 3.0 and side["NeuroShiftSequence"] == seq
    assert json.loads((work / "t1w.json").read_text())["NeuroShiftRicianSigma"] == 0.1
