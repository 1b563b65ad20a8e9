"""Guards from the mutation audit (issue 13): washout from the last read, the full design's reader
counterbalancing, and the two-sided rank-sum test (exact values derived by hand)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from neuroshift.readerstudy import stats as st
from neuroshift.readerstudy.definition import load_study, parse_study
from neuroshift.readerstudy.errors import WashoutError
from neuroshift.readerstudy.schedule import build_schedule, check_phase_open, phase_opens_at

from helpers.readerstudy_helpers import small_study_folder

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


def test_washout_counts_from_the_last_read_of_the_previous_phase(tmp_path):
    study = load_study(small_study_folder(tmp_path, images=False))  # phase 2: 14-day washout
    sched = build_schedule(study)
    mine = sorted((r for r in sched if r.reader == "R2" and r.phase == 1), key=lambda r: r.position)
    assert len(mine) == 4
    # the four phase-1 reads on days 0, 1, 2 and 5
    done = {r.key: (T0 + timedelta(days=d)).isoformat() for r, d in zip(mine, (0, 1, 2, 5))}
    opens, why = phase_opens_at(study, sched, done, "R2", 2)
    assert opens == datetime(2024, 3, 20, 9, 0, tzinfo=timezone.utc)  # day 5 + 14 days
    assert "14-day washout" in why
    # 14 days after the first read (day 14) is still inside the washout of the last one
    with pytest.raises(WashoutError, match="14-day washout"):
        check_phase_open(study, sched, done, "R2", 2, T0 + timedelta(days=14, hours=1))
    with pytest.raises(WashoutError):
        check_phase_open(study, sched, done, "R2", 2, T0 + timedelta(days=18, hours=23))
    check_phase_open(study, sched, done, "R2", 2, T0 + timedelta(days=19))


def test_full_design_counterbalances_readers(tmp_path):
    path = small_study_folder(tmp_path, images=False)
    doc = yaml.safe_load(path.read_text())
    doc["design"] = {"type": "full", "image_sets": ["low", "virtual"]}
    study = parse_study(doc, path.parent)
    reads = [r for r in build_schedule(study) if r.kind == "read"]
    # every reader reads every case in both image sets, once each: 2 readers x 4 cases x 2 sets
    assert Counter((r.reader, r.case, r.image_set) for r in reads) == Counter(
        {(rd, c, s): 1 for rd in ("R1", "R2") for c in ("C1", "C2", "C3", "C4") for s in ("low", "virtual")})
    for reader in ("R1", "R2"):
        for phase in (1, 2):
            mine = [r for r in reads if r.reader == reader and r.phase == phase]
            assert Counter(r.image_set for r in mine) == {"low": 2, "virtual": 2}  # balanced per phase
            assert sorted(r.case for r in mine) == ["C1", "C2", "C3", "C4"]
    # counterbalanced: in each phase the second reader sees the other image set of each case
    r1 = {(r.case, r.phase): r.image_set for r in reads if r.reader == "R1"}
    r2 = {(r.case, r.phase): r.image_set for r in reads if r.reader == "R2"}
    assert len(r1) == 8 and all(r1[k] != r2[k] for k in r1)


def test_rank_sum_is_two_sided_exact():
    # U = 0 for complete separation of 3 vs 3: exact P(U <= 0) = 1 / C(6, 3) = 1/20; two-sided 2/20 = 0.1
    assert st.rank_sum([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1, abs=1e-12)
    assert st.rank_sum([4, 5, 6], [1, 2, 3]) == pytest.approx(0.1, abs=1e-12)
    # U = 1 (one swap, 4 vs 3): P(U <= 1) = 2 / C(7, 3) = 2/35; two-sided 4/35
    assert st.rank_sum([1, 2, 4], [3, 5, 6, 7]) == pytest.approx(4 / 35, abs=1e-12)
    assert st.rank_sum([3, 5, 6, 7], [1, 2, 4]) == pytest.approx(4 / 35, abs=1e-12)
    assert st.rank_sum([2, 2], [2, 2, 2]) == 1.0
    assert math.isnan(st.rank_sum([], [1.0]))
