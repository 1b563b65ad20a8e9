"""Analysis of a reader study: detection, comparisons, agreement, Turing test, quality and reading times.

Detection and its comparisons live in :mod:`.detection` (paper 004's definitions); this module adds ratings,
reading times, agreement, lesion counts and the Turing test, and gathers everything in :func:`analyze_reads`.
"""

from __future__ import annotations

import itertools
import math
import platform
from dataclasses import asdict
from typing import Iterable, Sequence

import numpy as np

from .. import __version__
from . import stats as st
from .answers import Read
from .definition import StudyDefinition
from .detection import (  # noqa: F401  (DETECTION_COLUMNS, THRESHOLDS_MM: public names of the analysis)
    DETECTION_COLUMNS, THRESHOLDS_MM, AnalysisOptions, detection_comparisons, detection_table, reader_averages,
)


def software_versions() -> dict[str, str]:
    import scipy

    return {"neuroshift": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version()}


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
