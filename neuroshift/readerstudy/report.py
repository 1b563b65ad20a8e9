"""Write the analysis: CSV tables, JSON, and a Markdown/HTML report laid out like paper 004's Table 5.

Files in the output folder (all written atomically):

* ``detection.csv`` - one row per reader x image set x threshold, columns
  ``reader,image_set,threshold_mm,n_ref,tp,fp,fn,se,se_ci_low,se_ci_high,fdr,fdr_ci_half,ppv,f1``;
* ``detection_comparisons.csv``, ``reader_average.csv``, ``quality.csv``,
  ``quality_tests.csv``, ``times.csv``, ``time_tests.csv``, ``agreement.csv``,
  ``count_comparisons.csv``, ``turing_accuracy.csv``, ``turing_plausibility.csv``,
  ``turing_tests.csv`` (those that have rows);
* ``results.json`` - everything, with software versions and test options;
* ``report.md`` and ``report.html``.

Numbers in CSV/JSON are unrounded; the reports round half to even.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from pathlib import Path

import re

from ..io.atomic import write_text_atomic
from ..io.jsonsafe import json_safe
from .analysis import DETECTION_COLUMNS
from .stats import fixed, format_p, percent


_P = re.compile(r"^p([<=])(\.\d+)")


def _csv_text(rows: list[dict], columns: tuple[str, ...] | None = None) -> str:
    columns = columns or tuple(rows[0].keys())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None or (isinstance(r.get(c), float) and math.isnan(r[c]))
                    else (repr(r[c]) if isinstance(r[c], float) else r[c]) for c in columns])
    return buf.getvalue()


def _label(result: dict, image_set: str) -> str:
    return result["study"]["image_sets"].get(image_set, {}).get("label", image_set)


def _threshold_label(t: float) -> str:
    return "all lesions (>= 0 mm)" if t == 0 else f">= {t:g} mm"


# ------------------------------------------------------------------ Table 5
def table5(result: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the detection table in paper 004's layout (strings)."""
    rows = result.get("detection", [])
    if not rows:
        return [], []
    readers = list(dict.fromkeys(r["reader"] for r in rows))
    sets = list(dict.fromkeys(r["image_set"] for r in rows))
    thresholds = list(dict.fromkeys(r["threshold_mm"] for r in rows))
    det = {(r["reader"], r["image_set"], r["threshold_mm"]): r for r in rows}
    comp = {}
    for c in result.get("detection_comparisons", []):
        comp[(c["comparison"], c["reader_a"], c["image_set_a"], c["reader_b"], c["image_set_b"], c["threshold_mm"])] = c
    avg = {(a["image_set"], a["threshold_mm"]): a for a in result.get("reader_average", [])}
    set_pairs = [(a, b) for i, a in enumerate(sets) for b in sets[i + 1:]]
    reader_pairs = [(a, b) for i, a in enumerate(readers) for b in readers[i + 1:]]

    header = ["threshold", "metric"]
    for rd in readers:
        header += [f"{rd} {_label(result, s)}" for s in sets]
        header += [f"{rd} {_label(result, a)} vs {_label(result, b)}" for a, b in set_pairs]
    for a, b in reader_pairs:
        header += [f"{a} vs {b} {_label(result, s)}" for s in sets]
    header += [f"average {_label(result, s)}" for s in sets]

    out = []
    for t in thresholds:
        for metric in ("SE", "FDR", "PPV", "F1"):
            line = [_threshold_label(t), metric]
            for rd in readers:
                for s in sets:
                    r = det.get((rd, s, t))
                    line.append(_cell(metric, r) if r else "")
                for a, b in set_pairs:
                    c = comp.get(("image_sets", rd, a, rd, b, t))
                    line.append(_pcell(metric, c))
            for a, b in reader_pairs:
                for s in sets:
                    c = comp.get(("readers", a, s, b, s, t))
                    line.append(_pcell(metric, c))
            for s in sets:
                a = avg.get((s, t))
                line.append(_avg_cell(metric, a) if a else "")
            out.append(line)
    return header, out


def _cell(metric: str, r: dict) -> str:
    if metric == "SE":
        if not r["n_ref"]:
            return "n/a (0 reference lesions)"
        return (f"{percent(r['se'])} ({r['tp']}/{r['n_ref']}) "
                f"[{percent(r['se_ci_low']).rstrip('%')}; {percent(r['se_ci_high']).rstrip('%')}]")
    if metric == "FDR":
        return f"{fixed(r['fdr'])} ({r['fp']}/{r['n_patients']}) [±{fixed(r['fdr_ci_half'])}]"
    if metric == "PPV":
        return f"{percent(r['ppv'])} ({r['tp']}/{r['tp'] + r['fp']})"
    return percent(r["f1"])


def _pcell(metric: str, c: dict | None) -> str:
    if c is None:
        return ""
    if metric == "SE":
        return format_p(c["mcnemar_midp"])
    if metric == "FDR":
        return format_p(c["wilcoxon_p"])
    return "n/a" if metric == "PPV" else ""


def _avg_cell(metric: str, a: dict) -> str:
    if metric == "FDR":
        return fixed(a["fdr"])
    return percent(a[{"SE": "se", "PPV": "ppv", "F1": "f1"}[metric]])


# ------------------------------------------------------------------ other sections
def _sections(result: dict) -> list[tuple[str, list[str], list[list[str]], str]]:
    """(title, header, rows, note) of every report section."""
    secs = []
    h, rows = table5(result)
    if rows:
        ref = result.get("reference", {})
        note = (f"Reference: reads of {ref.get('reader')} ({ref.get('n_cases')} cases). SE: Clopper-Pearson 95% CI, "
                "McNemar mid-p; FDR: false detections per patient, Student-t 95% CI, Wilcoxon signed-rank; "
                "TPs counted by reference-lesion size, FPs by their own long axis. Matching: "
                f"{result['options']['match']}.")
        secs.append(("Lesion detection (layout of paper 004, Table 5)", h, rows, note))
    if result.get("quality"):
        rows = [[q["measure"], q["reader"], _label(result, q["image_set"]), str(q["n"]),
                 f"{fixed(q['mean'], 1)} (±{fixed(q['sd'], 1)})"] for q in result["quality"]]
        rows += [[t["measure"], f"{t['reader_a']} {_label(result, t['image_set_a'])} vs "
                  f"{t['reader_b']} {_label(result, t['image_set_b'])}", "t-test", str(t["n_paired"]),
                  f"{format_p(t['t_test_p'])} (paired: {format_p(t['paired_t_p'])})"]
                 for t in result.get("quality_tests", [])]
        secs.append(("Image quality (Likert)", ["question", "reader / comparison", "image set", "n",
                                                "mean (±SD) / p"], rows, ""))
    if result.get("times"):
        rows = [[t["reader"], _label(result, t["image_set"]), str(t["n"]),
                 f"{t['mean_display']} (±{t['sd_display']})"] for t in result["times"]]
        rows += [[f"{t['reader_a']} {_label(result, t['image_set_a'])} vs {t['reader_b']} "
                  f"{_label(result, t['image_set_b'])}", "t-test", str(t["n_paired"]), format_p(t["t_test_p"])]
                 for t in result.get("time_tests", [])]
        secs.append(("Reading times (active, minutes' seconds'')", ["reader / comparison", "image set", "n",
                                                                   "mean (±SD) / p"], rows, ""))
    if result.get("agreement"):
        rows = [[a["measure"], _label(result, a["image_set"]), a["readers"], str(a["n"]), a["statistic"],
                 fixed(a["value"]) + (f" ({fixed(a['ci_low'])}-{fixed(a['ci_high'])})"
                                      if a.get("ci_low") is not None and not _isnan(a["ci_low"]) else "")]
                for a in result["agreement"]]
        secs.append(("Inter-reader agreement", ["measure", "image set", "readers", "n", "statistic", "value (95% CI)"],
                     rows, ""))
    if result.get("count_comparisons"):
        rows = [[c["measure"], c["reader"], f"{_label(result, c['image_set_a'])} vs {_label(result, c['image_set_b'])}",
                 str(c["n"]), f"{fixed(c['mean_a'], 1)} vs {fixed(c['mean_b'], 1)}", format_p(c["wilcoxon_p"])]
                for c in result["count_comparisons"]]
        secs.append(("Lesion counts", ["measure", "reader", "image sets", "n", "means", "Wilcoxon"], rows, ""))
    tur = result.get("turing", {})
    if tur.get("accuracy"):
        rows = [[a["reader"], f"{percent(a['accuracy'], 1)} ({a['correct']}/{a['n']}) "
                 f"[{percent(a['ci_low'], 1)}; {percent(a['ci_high'], 1)}]", format_p(a["binomial_p_vs_chance"])]
                for a in tur["accuracy"]]
        secs.append(("Visual Turing test: real-vs-synthetic accuracy", ["reader", "accuracy [95% CI]",
                                                                        "vs chance (binomial)"], rows, ""))
    if tur.get("plausibility"):
        rows = [[p["reader"], _label(result, p["image_set"]), str(p["n"]),
                 f"{fixed(p['mean'], 2)} (±{fixed(p['sd'], 2)})"] for p in tur["plausibility"]]
        rows += [[t["reader"], f"{_label(result, t['image_set'])} vs {_label(result, t['versus'])}", t["test"],
                  format_p(t["p"])] for t in tur.get("plausibility_tests", [])]
        secs.append(("Visual Turing test: plausibility (1-6 stars)", ["reader", "image set", "n / test",
                                                                      "mean (±SD) / p"], rows, ""))
    return secs


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _provenance(result: dict) -> list[str]:
    v = result["versions"]
    s = result["study"]
    lines = [f"Study: {s['name']} - design {s['design']}, {s['n_cases']} cases, {len(s['readers'])} readers, "
             f"{s['n_reads']} reads, seed {s['seed']}, blinding {'on' if s['blinding'] else 'off'}.",
             f"Software: neuroshift {v['neuroshift']}, numpy {v['numpy']}, scipy {v['scipy']}, python {v['python']}.",
             "Test options: " + "; ".join(f"{k}: {val}" for k, val in result["options"]["tests"].items()) + ".",
             f"Thresholds (mm): {', '.join(f'{t:g}' for t in result['options']['thresholds_mm'])}."]
    if "orthogonality_flags" in result:
        lines.append(f"Lesions with non-orthogonal axes (flagged): {result['orthogonality_flags']}.")
    return lines


def markdown_report(result: dict) -> str:
    out = [f"# Reader study report: {result['study']['name']}", ""]
    out += [f"- {x}" for x in _provenance(result)] + [""]
    for title, header, rows, note in _sections(result):
        out += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        if note:
            out += ["", note]
        out.append("")
    return "\n".join(out)


def html_report(result: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>Reader study report: {e(result['study']['name'])}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:90%}"
             "td,th{border:1px solid #bbb;padding:3px 6px;text-align:left}th{background:#eee}"
             ".sig{background:#ffe9a8}</style></head><body>",
             f"<h1>Reader study report: {e(result['study']['name'])}</h1><ul>"]
    parts += [f"<li>{e(x)}</li>" for x in _provenance(result)]
    parts.append("</ul>")
    for title, header, rows, note in _sections(result):
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        for r in rows:
            cells = []
            for c in r:
                m = _P.match(c)
                sig = bool(m) and (m.group(1) == "<" or float("0" + m.group(2)) < 0.05)
                cells.append(f"<td class='sig'>{e(c)}</td>" if sig else f"<td>{e(c)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
        if note:
            parts.append(f"<p>{e(note)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: dict, outdir: str | os.PathLike) -> list[Path]:
    """Write every table and report into ``outdir``; returns the files written.

    All texts are rendered first, so a failure leaves no partial set of files;
    each file is then written atomically (temporary name, then rename).
    """
    texts: dict[str, str] = {}
    if result.get("detection"):
        texts["detection.csv"] = _csv_text(result["detection"], DETECTION_COLUMNS)
    tables = {"detection_comparisons": result.get("detection_comparisons"),
              "reader_average": result.get("reader_average"), "quality": result.get("quality"),
              "quality_tests": result.get("quality_tests"), "times": result.get("times"),
              "time_tests": result.get("time_tests"), "agreement": result.get("agreement"),
              "count_comparisons": result.get("count_comparisons"),
              "turing_accuracy": result.get("turing", {}).get("accuracy"),
              "turing_plausibility": result.get("turing", {}).get("plausibility"),
              "turing_tests": result.get("turing", {}).get("plausibility_tests")}
    for name, rows in tables.items():
        if rows:
            texts[f"{name}.csv"] = _csv_text(rows)
    texts["results.json"] = json.dumps(json_safe(result), indent=2, sort_keys=False, default=str) + "\n"
    texts["report.md"] = markdown_report(result)
    texts["report.html"] = html_report(result)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
        write_text_atomic(outdir / name, text)
        written.append(outdir / name)
    return written
