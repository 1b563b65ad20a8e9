"""Lesion detection in a reader study (paper 004): SE, FDR, PPV, F1 per reader x image set x size threshold.

Detection (paper 004): the reference reader's reads of the reference image
set define the reference lesions. Each other read with lesions is matched to
the reference lesions of its case (:mod:`.matching`); then per reader x image
set x size threshold (long axis >= threshold, mm):

* TP and FN over reference lesions of at least the threshold (TPs counted by
  the *reference* lesion's size), FP over unmatched detections whose *own*
  long axis reaches the threshold;
* SE = TP / N_ref pooled over patients, Clopper-Pearson interval;
* FDR = false detections per patient = FP / n_patients (not 1 - PPV), with the
  Student-t half-width of the per-patient FP counts;
* PPV = TP / (TP + FP); F1 = 2TP / (2TP + FP + FN).

Comparisons: between image sets per reader and between readers per image set,
McNemar mid-p on the per-reference-lesion detections (paired) and Wilcoxon
signed-rank on per-patient FP counts. Reader averages are means of the
unrounded per-reader values.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from . import stats as st
from .answers import Lesion, Read
from .definition import StudyDefinition
from .errors import InputError
from .matching import MatchRule, match_lesions

THRESHOLDS_MM = (0.0, 2.5, 5.0, 7.5, 10.0)
DETECTION_COLUMNS = ("reader", "image_set", "threshold_mm", "n_ref", "tp", "fp", "fn", "se", "se_ci_low",
                     "se_ci_high", "fdr", "fdr_ci_half", "ppv", "f1")


@dataclass(frozen=True)
class AnalysisOptions:
    thresholds_mm: tuple[float, ...] = THRESHOLDS_MM
    match: MatchRule = field(default_factory=MatchRule)
    reference_reader: str | None = None
    alpha: float = 0.05


@dataclass
class _ReaderSet:
    reader: str
    image_set: str
    cases: list[str]
    #: (case, reference lesion index) -> detected
    detected: dict[tuple[str, int], bool]
    #: case -> detections with their matched flags
    detections: dict[str, list[tuple[Lesion, bool]]]


def reference_lesions(study: StudyDefinition, reads: Sequence[Read], reference_reader: str | None = None
                      ) -> tuple[str, dict[str, tuple[Lesion, ...]]]:
    """(reference reader, case -> reference lesions) from the reference reader's reads."""
    rr = study.reference_reads
    if rr is None:
        raise InputError("the study defines no reference reads ('reference_reads' in the YAML): "
                         "detection needs a reference reader's lesions")
    reader = reference_reader or rr.readers[0]
    if reader not in rr.readers:
        raise InputError(f"'{reader}' is not a reference reader of the study ({', '.join(rr.readers)})")
    out: dict[str, tuple[Lesion, ...]] = {}
    for r in reads:
        if r.reader == reader and r.image_set == rr.image_set and r.phase == study.reference_phase:
            out.setdefault(r.case, r.lesions)
    return reader, out


def _reader_sets(study, reads, refs, rule) -> list[_ReaderSet]:
    rr = study.reference_reads
    groups: dict[tuple[str, str], dict[str, Read]] = {}
    for r in reads:
        if rr and r.image_set == rr.image_set and r.phase == study.reference_phase:
            continue
        if r.case not in refs:
            continue
        groups.setdefault((r.reader, r.image_set), {}).setdefault(r.case, r)
    reader_order = {x.id: i for i, x in enumerate(study.readers)}
    set_order = {s: i for i, s in enumerate(study.image_sets)}
    out = []
    for (reader, s) in sorted(groups, key=lambda k: (reader_order[k[0]], set_order[k[1]])):
        by_case = groups[(reader, s)]
        detected, dets = {}, {}
        for case in sorted(by_case):
            ref = refs[case]
            det = by_case[case].lesions
            m = match_lesions(ref, det, rule)
            for i, hit in enumerate(m.ref_detected):
                detected[(case, i)] = hit
            dets[case] = list(zip(det, m.det_matched))
        out.append(_ReaderSet(reader, s, sorted(by_case), detected, dets))
    return out


def _fp_per_case(rs: _ReaderSet, t: float) -> dict[str, int]:
    return {c: sum(1 for d, hit in rs.detections[c] if not hit and d.long_mm >= t) for c in rs.cases}


def detection_table(study: StudyDefinition, reads: Sequence[Read], options: AnalysisOptions = AnalysisOptions()):
    """(detection rows, per-(reader, image set) matching details) for every reader x image set x threshold."""
    ref_reader, refs = reference_lesions(study, reads, options.reference_reader)
    sets = _reader_sets(study, reads, refs, options.match)
    rows = []
    for rs in sets:
        for t in options.thresholds_mm:
            n_ref = sum(1 for c in rs.cases for les in refs[c] if les.long_mm >= t)
            tp = sum(1 for (c, i), hit in rs.detected.items() if hit and refs[c][i].long_mm >= t)
            fp_case = _fp_per_case(rs, t)
            fp = sum(fp_case.values())
            fn = n_ref - tp
            n_pat = len(rs.cases)
            se = tp / n_ref if n_ref else math.nan
            lo, hi = st.clopper_pearson(tp, n_ref, options.alpha)
            _, half = st.t_interval(list(fp_case.values()), options.alpha)
            ppv = tp / (tp + fp) if tp + fp else math.nan
            f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else math.nan
            rows.append({"reader": rs.reader, "image_set": rs.image_set, "threshold_mm": float(t), "n_ref": n_ref,
                         "tp": tp, "fp": fp, "fn": fn, "se": se, "se_ci_low": lo, "se_ci_high": hi,
                         "fdr": fp / n_pat if n_pat else math.nan, "fdr_ci_half": half, "ppv": ppv, "f1": f1,
                         "n_patients": n_pat})
    return ref_reader, refs, sets, rows


def detection_comparisons(refs, sets: Sequence[_ReaderSet], thresholds: Iterable[float]) -> list[dict]:
    """McNemar mid-p (SE) and Wilcoxon (per-patient FP) between image sets per reader and between readers per set."""
    out = []
    by_key = {(rs.reader, rs.image_set): rs for rs in sets}
    pairs = []
    readers = list(dict.fromkeys(rs.reader for rs in sets))
    image_sets = list(dict.fromkeys(rs.image_set for rs in sets))
    for reader in readers:
        for a, b in itertools.combinations(image_sets, 2):
            if (reader, a) in by_key and (reader, b) in by_key:
                pairs.append(("image_sets", by_key[(reader, a)], by_key[(reader, b)]))
    for s in image_sets:
        for a, b in itertools.combinations(readers, 2):
            if (a, s) in by_key and (b, s) in by_key:
                pairs.append(("readers", by_key[(a, s)], by_key[(b, s)]))
    for t in thresholds:
        for what, A, B in pairs:
            common = sorted(set(A.cases) & set(B.cases))
            keys = [(c, i) for c in common for i, les in enumerate(refs[c]) if les.long_mm >= t]
            b, c = st.mcnemar_counts([A.detected[k] for k in keys], [B.detected[k] for k in keys])
            fa, fb = _fp_per_case(A, t), _fp_per_case(B, t)
            out.append({
                "comparison": what, "threshold_mm": float(t),
                "reader_a": A.reader, "image_set_a": A.image_set, "reader_b": B.reader, "image_set_b": B.image_set,
                "n_ref": len(keys), "discordant_a_only": b, "discordant_b_only": c,
                "mcnemar_midp": st.mcnemar_midp(b, c),
                "n_patients": len(common),
                "wilcoxon_p": st.wilcoxon_signed_rank([fa[x] for x in common], [fb[x] for x in common]),
            })
    return out


def reader_averages(rows: Sequence[dict]) -> list[dict]:
    """Per image set and threshold: mean of the unrounded per-reader SE, FDR, PPV and F1."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["image_set"], r["threshold_mm"]), []).append(r)
    out = []
    for (s, t), rs in groups.items():
        avg = {"image_set": s, "threshold_mm": t, "n_readers": len(rs)}
        for k in ("se", "fdr", "ppv", "f1"):
            vals = [r[k] for r in rs if not (isinstance(r[k], float) and math.isnan(r[k]))]
            avg[k] = float(np.mean(vals)) if vals else math.nan
        out.append(avg)
    return out
