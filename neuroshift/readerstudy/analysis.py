"""Analysis of a reader study: detection, comparisons, agreement, Turing test, quality and reading times.

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
import platform
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .. import __version__
from .answers import Lesion, Read
from .definition import StudyDefinition
from .errors import InputError
from .matching import MatchRule, match_lesions
from . import stats as st

THRESHOLDS_MM = (0.0, 2.5, 5.0, 7.5, 10.0)
DETECTION_COLUMNS = ("reader", "image_set", "threshold_mm", "n_ref", "tp", "fp", "fn", "se", "se_ci_low",
                     "se_ci_high", "fdr", "fdr_ci_half", "ppv", "f1")


@dataclass(frozen=True)
class AnalysisOptions:
    thresholds_mm: tuple[float, ...] = THRESHOLDS_MM
    match: MatchRule = field(default_factory=MatchRule)
    reference_reader: str | None = None
    alpha: float = 0.05


def software_versions() -> dict[str, str]:
    import scipy

    return {"neuroshift": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version()}


def _nan(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


# ------------------------------------------------------------------ detection
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


# ------------------------------------------------------------------ ratings and times
def _by(reads: Iterable[Read], value) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in reads:
        v = value(r)
        if v is not None:
            out.setdefault((r.reader, r.image_set), {})[r.case] = float(v)
    return out


def _summaries_and_tests(groups: dict[tuple[str, str], dict[str, float]], label: str) -> tuple[list, list]:
    summary = []
    for (reader, s), vals in groups.items():
        x = np.array(list(vals.values()))
        summary.append({"measure": label, "reader": reader, "image_set": s, "n": int(x.size),
                        "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan})
    tests = []
    keys = list(groups)
    for (ka, kb) in itertools.combinations(keys, 2):
        same_reader, same_set = ka[0] == kb[0], ka[1] == kb[1]
        if not (same_reader or same_set):
            continue
        a, b = groups[ka], groups[kb]
        common = sorted(set(a) & set(b))
        tests.append({"measure": label, "comparison": "image_sets" if same_reader else "readers",
                      "reader_a": ka[0], "image_set_a": ka[1], "reader_b": kb[0], "image_set_b": kb[1],
                      "t_test_p": st.unpaired_t(list(a.values()), list(b.values())),
                      "n_paired": len(common),
                      "paired_t_p": st.paired_t([a[c] for c in common], [b[c] for c in common])
                      if len(common) > 1 else math.nan})
    return summary, tests


def quality_analysis(study: StudyDefinition, reads: Sequence[Read]) -> tuple[list, list]:
    summary, tests = [], []
    for task in study.tasks:
        if task.type == "likert":
            s, t = _summaries_and_tests(_by(reads, lambda r, q=task.id: r.answers.get(q)), task.id)
            summary += s
            tests += t
    return summary, tests


def time_analysis(reads: Sequence[Read]) -> tuple[list, list]:
    summary, tests = _summaries_and_tests(_by(reads, lambda r: r.active_seconds), "reading_time_s")
    for row in summary:
        row["mean_display"] = st.format_duration(row["mean"])
        row["sd_display"] = st.format_duration(row["sd"]) if not math.isnan(row["sd"]) else "n/a"
    return summary, tests


# ------------------------------------------------------------------ agreement
def agreement_analysis(study: StudyDefinition, reads: Sequence[Read]) -> list[dict]:
    """Kappa (plain, linear, quadratic) and ICC(2,1) between readers on the same case and image set."""
    out = []
    readers = [r.id for r in study.readers]
    measures = []
    for task in study.tasks:
        if task.type in ("likert", "stars"):
            measures.append((task.id, lambda r, q=task.id: r.answers.get(q), list(range(task.min, task.max + 1))))
        elif task.type == "lesion_counts":
            for cls in task.classes:
                measures.append((f"{task.id}:{cls}", lambda r, q=task.id, c=cls: (r.answers.get(q) or {}).get(c), None))
            measures.append((f"{task.id}:total", lambda r, q=task.id: sum((r.answers.get(q) or {}).values())
                              if r.answers.get(q) else None, None))
        elif task.type == "lesion_axes":
            measures.append((f"{task.id}:n_lesions", lambda r: len(r.lesions), None))
    for name, fn, cats in measures:
        groups = _by(reads, fn)
        for s in study.image_sets:
            present = [rd for rd in readers if (rd, s) in groups]
            if len(present) < 2:
                continue
            common = sorted(set.intersection(*(set(groups[(rd, s)]) for rd in present)))
            if len(common) >= 2:
                mat = np.array([[groups[(rd, s)][c] for rd in present] for c in common])
                icc, lo, hi = st.icc_2_1(mat)
                out.append({"measure": name, "image_set": s, "readers": "+".join(present), "n": len(common),
                            "statistic": "ICC(2,1)", "value": icc, "ci_low": lo, "ci_high": hi})
            if cats is not None:
                for a, b in itertools.combinations(present, 2):
                    cm = sorted(set(groups[(a, s)]) & set(groups[(b, s)]))
                    if not cm:
                        continue
                    xa = [int(groups[(a, s)][c]) for c in cm]
                    xb = [int(groups[(b, s)][c]) for c in cm]
                    for w, label in ((None, "kappa"), ("linear", "kappa_linear"), ("quadratic", "kappa_quadratic")):
                        out.append({"measure": name, "image_set": s, "readers": f"{a}+{b}", "n": len(cm),
                                    "statistic": label, "value": st.cohen_kappa(xa, xb, categories=cats, weights=w),
                                    "ci_low": math.nan, "ci_high": math.nan})
    return out


def count_comparisons(study: StudyDefinition, reads: Sequence[Read]) -> list[dict]:
    """Wilcoxon signed-rank of lesion counts between image sets per reader (paired by case)."""
    out = []
    for task in study.tasks:
        if task.type != "lesion_counts":
            continue
        for cls in tuple(task.classes) + ("total",):
            if cls == "total":
                fn = lambda r, q=task.id: sum((r.answers.get(q) or {}).values()) if r.answers.get(q) else None
            else:
                fn = lambda r, q=task.id, c=cls: (r.answers.get(q) or {}).get(c)
            groups = _by(reads, fn)
            for reader in [r.id for r in study.readers]:
                sets = [s for s in study.image_sets if (reader, s) in groups]
                for a, b in itertools.combinations(sets, 2):
                    cm = sorted(set(groups[(reader, a)]) & set(groups[(reader, b)]))
                    if not cm:
                        continue
                    xa = [groups[(reader, a)][c] for c in cm]
                    xb = [groups[(reader, b)][c] for c in cm]
                    out.append({"measure": f"{task.id}:{cls}", "reader": reader, "image_set_a": a, "image_set_b": b,
                                "n": len(cm), "mean_a": float(np.mean(xa)), "mean_b": float(np.mean(xb)),
                                "wilcoxon_p": st.wilcoxon_signed_rank(xa, xb)})
    return out


# ------------------------------------------------------------------ Turing test
def turing_analysis(study: StudyDefinition, reads: Sequence[Read], alpha: float = 0.05) -> dict:
    """Real-vs-synthetic accuracy per reader and pooled; plausibility (stars) per image set with tests."""
    choice = [t.id for t in study.tasks if t.type == "real_or_synthetic"]
    stars = [t.id for t in study.tasks if t.type == "stars"]
    trial_sets = set(study.design.trials) if study.design.type == "turing" else set()
    trials = [r for r in reads if r.image_set in trial_sets or (choice and choice[0] in r.answers)]
    out = {"accuracy": [], "plausibility": [], "plausibility_tests": []}
    if not trials:
        return out
    if choice:
        q = choice[0]
        per_reader: dict[str, list[bool]] = {}
        for r in trials:
            if q in r.answers and study.image_sets[r.image_set].synthetic is not None:
                truth = "synthetic" if study.image_sets[r.image_set].synthetic else "real"
                per_reader.setdefault(r.reader, []).append(r.answers[q] == truth)
        pooled = [x for v in per_reader.values() for x in v]
        for reader, v in list(per_reader.items()) + [("all", pooled)]:
            k, n = int(sum(v)), len(v)
            lo, hi = st.clopper_pearson(k, n, alpha)
            out["accuracy"].append({"reader": reader, "correct": k, "n": n, "accuracy": k / n if n else math.nan,
                                    "ci_low": lo, "ci_high": hi,
                                    "binomial_p_vs_chance": _binom_p(k, n)})
    if stars:
        q = stars[0]
        vals: dict[tuple[str, str], list[float]] = {}
        for r in trials:
            if q in r.answers:
                vals.setdefault((r.reader, r.image_set), []).append(float(r.answers[q]))
                vals.setdefault(("all", r.image_set), []).append(float(r.answers[q]))
        for (reader, s), v in vals.items():
            out["plausibility"].append({"reader": reader, "image_set": s, "synthetic": study.image_sets[s].synthetic,
                                        "n": len(v), "mean": float(np.mean(v)),
                                        "sd": float(np.std(v, ddof=1)) if len(v) > 1 else math.nan})
        real_sets = [s for s in study.image_sets if study.image_sets[s].synthetic is False]
        syn_sets = [s for s in study.image_sets if study.image_sets[s].synthetic]
        readers = sorted({k[0] for k in vals} - {"all"})
        for s in syn_sets:
            for real in real_sets:
                for reader in readers + ["all"]:
                    if (reader, s) in vals and (reader, real) in vals:
                        out["plausibility_tests"].append({
                            "reader": reader, "image_set": s, "versus": real,
                            "test": "Wilcoxon rank-sum", "p": st.rank_sum(vals[(reader, s)], vals[(reader, real)])})
                # across readers: per-reader means, paired
                pr = [rd for rd in readers if (rd, s) in vals and (rd, real) in vals]
                if len(pr) >= 2:
                    out["plausibility_tests"].append({
                        "reader": "per-reader means", "image_set": s, "versus": real, "test": "Wilcoxon signed-rank",
                        "p": st.wilcoxon_signed_rank([np.mean(vals[(rd, s)]) for rd in pr],
                                                     [np.mean(vals[(rd, real)]) for rd in pr])})
    return out


def _binom_p(k: int, n: int) -> float:
    from scipy.stats import binomtest

    return float(binomtest(k, n, 0.5).pvalue) if n else math.nan


# ------------------------------------------------------------------ everything
def analyze_reads(study: StudyDefinition, reads: Sequence[Read], options: AnalysisOptions = AnalysisOptions(),
                  *, meta: dict | None = None) -> dict:
    """All analyses as plain data (NaN where undefined)."""
    result: dict = {
        "study": {"name": study.name, "seed": study.seed, "blinding": study.blinding,
                  "n_cases": len(study.cases), "readers": [asdict(r) for r in study.readers],
                  "image_sets": {k: asdict(v) for k, v in study.image_sets.items()},
                  "design": study.design.type, "n_reads": len(reads)},
        "options": {"thresholds_mm": list(options.thresholds_mm), "match": asdict(options.match),
                    "alpha": options.alpha, "tests": dict(st.TEST_OPTIONS)},
        "versions": software_versions(),
        "meta": dict(meta or {}),
    }
    has_lesions = any(t.type == "lesion_axes" for t in study.tasks) and study.reference_reads is not None
    if has_lesions:
        ref_reader, refs, sets, rows = detection_table(study, reads, options)
        result["options"]["reference_reader"] = ref_reader
        result["reference"] = {"reader": ref_reader, "n_cases": len(refs),
                               "n_lesions": {float(t): sum(1 for ls in refs.values() for x in ls if x.long_mm >= t)
                                             for t in options.thresholds_mm}}
        result["detection"] = rows
        result["detection_comparisons"] = detection_comparisons(refs, sets, options.thresholds_mm)
        result["reader_average"] = reader_averages(rows)
        result["orthogonality_flags"] = sum(1 for r in reads for x in r.lesions if x.orthogonality_flag)
    result["quality"], result["quality_tests"] = quality_analysis(study, reads)
    result["times"], result["time_tests"] = time_analysis([r for r in reads if r.active_seconds is not None])
    result["agreement"] = agreement_analysis(study, reads)
    result["count_comparisons"] = count_comparisons(study, reads)
    result["turing"] = turing_analysis(study, reads, options.alpha)
    return result


def analyze_store(store, options: AnalysisOptions = AnalysisOptions()) -> dict:
    meta = store.meta()
    return analyze_reads(store.study, store.reads(), options,
                         meta={k: meta[k] for k in ("created_at", "created_by", "schedule_sha256", "blinding")
                               if k in meta})
