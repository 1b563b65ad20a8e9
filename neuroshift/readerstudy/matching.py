"""Lesion matching (paper 004): a detection and a reference lesion pair when their centres are
closer than half the average of long and short axes.

Configurable (:class:`MatchRule`):

* ``axes``: whose axes set the radius: ``"reference"`` (default; radius
  ``(L_ref + S_ref) / 4``), ``"detection"``, ``"mean"`` (average of both
  lesions' radii), ``"max"`` or ``"min"``;
* ``strict``: ``distance < radius`` (default, as the paper's "smaller than") or ``<=``;
* ``assignment``: ``"hungarian"`` (default; one-to-one, the most pairs, then the
  smallest total distance: ``scipy.optimize.linear_sum_assignment``),
  ``"greedy"`` (one-to-one, closest pairs first) or ``"none"`` (every
  detection near any reference lesion is a TP and every reference lesion
  near any detection is detected).

Distances are Euclidean in physical RAS millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .answers import Lesion

AXES_RULES = ("reference", "detection", "mean", "max", "min")
ASSIGNMENTS = ("hungarian", "greedy", "none")


@dataclass(frozen=True)
class MatchRule:
    axes: str = "reference"
    strict: bool = True
    assignment: str = "hungarian"

    def __post_init__(self):
        if self.axes not in AXES_RULES:
            raise ValueError(f"axes: one of {AXES_RULES}, got {self.axes!r}")
        if self.assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment: one of {ASSIGNMENTS}, got {self.assignment!r}")


@dataclass(frozen=True)
class MatchResult:
    """Indices into the reference and detection lists."""

    pairs: tuple[tuple[int, int], ...]
    ref_detected: tuple[bool, ...]
    det_matched: tuple[bool, ...]


def _radius(ref: Lesion, det: Lesion, axes: str) -> float:
    rr = (ref.long_mm + ref.short_mm) / 4.0
    rd = (det.long_mm + det.short_mm) / 4.0
    return {"reference": rr, "detection": rd, "mean": (rr + rd) / 2, "max": max(rr, rd), "min": min(rr, rd)}[axes]


def admissible(references: Sequence[Lesion], detections: Sequence[Lesion], rule: MatchRule = MatchRule()):
    """(distance matrix, boolean matrix of pairs close enough), shape (n_ref, n_det)."""
    nr, nd = len(references), len(detections)
    dist = np.zeros((nr, nd))
    ok = np.zeros((nr, nd), bool)
    for i, r in enumerate(references):
        for j, d in enumerate(detections):
            dist[i, j] = float(np.linalg.norm(np.subtract(r.center_ras_mm, d.center_ras_mm)))
            rad = _radius(r, d, rule.axes)
            ok[i, j] = dist[i, j] < rad if rule.strict else dist[i, j] <= rad
    return dist, ok


def match_lesions(references: Sequence[Lesion], detections: Sequence[Lesion],
                  rule: MatchRule = MatchRule()) -> MatchResult:
    """Match one read's detections to the reference lesions of the same case."""
    nr, nd = len(references), len(detections)
    if nr == 0 or nd == 0:
        return MatchResult((), (False,) * nr, (False,) * nd)
    dist, ok = admissible(references, detections, rule)
    pairs: list[tuple[int, int]] = []
    if rule.assignment == "none":
        pairs = [(int(i), int(j)) for i, j in zip(*np.nonzero(ok))]
    elif rule.assignment == "greedy":
        used_r, used_d = set(), set()
        for flat in np.argsort(np.where(ok, dist, np.inf), axis=None, kind="stable"):
            i, j = divmod(int(flat), nd)
            if not ok[i, j]:
                break
            if i not in used_r and j not in used_d:
                pairs.append((i, j))
                used_r.add(i)
                used_d.add(j)
    else:
        # inadmissible pairs cost more than all admissible ones together: the assignment
        # first maximises the number of pairs, then minimises their total distance
        big = float(dist[ok].sum()) + 1.0 if ok.any() else 1.0
        cost = np.where(ok, dist, big)
        rows, cols = linear_sum_assignment(cost)
        pairs = [(int(i), int(j)) for i, j in zip(rows, cols) if ok[i, j]]
    ref_hit = [False] * nr
    det_hit = [False] * nd
    for i, j in pairs:
        ref_hit[i] = True
        det_hit[j] = True
    return MatchResult(tuple(sorted(pairs)), tuple(ref_hit), tuple(det_hit))


def count_at_threshold(references: Sequence[Lesion], detections: Sequence[Lesion], result: MatchResult,
                       threshold_mm: float) -> dict[str, int]:
    """TP/FN counted over reference lesions with long axis >= threshold; FP over unmatched detections >= threshold."""
    n_ref = sum(1 for r in references if r.long_mm >= threshold_mm)
    tp = sum(1 for r, hit in zip(references, result.ref_detected) if hit and r.long_mm >= threshold_mm)
    fp = sum(1 for d, hit in zip(detections, result.det_matched) if not hit and d.long_mm >= threshold_mm)
    return {"n_ref": n_ref, "tp": tp, "fp": fp, "fn": n_ref - tp}
