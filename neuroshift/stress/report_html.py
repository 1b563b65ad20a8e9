"""``report.html`` of a stress test: one self-contained page (figures embedded as base64).

Sections: header (sequence, grid, cases, metric and its colour scale), provenance, response surface
(coefficients, influence, notes), figures, baseline check, per-case results and lesion volumes
(:mod:`neuroshift.stress.report_parts`), example slices, other metrics, failures, notes.
"""

from __future__ import annotations

import base64
import html
import math

import numpy as np

from .report import LABELS, baseline_summary
from .report_parts import case_tables_html, metric_limits, provenance_html
from .runner import StressRun
from .simulator import UNITS
from .surface import SurfaceFit


def _num(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    try:
        v = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    if not math.isfinite(v):
        return "–"
    return f"{v:.{digits}g}"


def render_html(run: StressRun, surfaces: dict, metric: str, images: dict[str, bytes], *,
                provenance: dict | None = None, examples_caption: str | None = None) -> str:
    e = html.escape
    n_grid = int(np.prod([len(v) for v in run.grid.values()]))
    ok_cases = sorted({r["case"] for r in run.records})
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>NeuroShift stress test</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right;font-size:13px}th{background:#f2f2f2}td.l,th.l{text-align:left}"
        "img{max-width:100%;margin:.5em 0}.bad{color:#a00}.note{color:#555;font-size:13px}",
        "</style></head><body>",
        f"<h1>Stress test: {e(run.model_name)}</h1>",
        f"<p>Sequence <b>{e(run.sequence.upper())}</b>; grid "
        + ", ".join(f"{e(k)} = {_num(v.min())}…{_num(v.max())} {e(UNITS.get(k, ''))} ({len(v)} values)"
                    for k, v in run.grid.items())
        + f" ({n_grid} points); {len(run.case_ids)} case(s), {len(ok_cases)} with results; "
          f"metric <b>{e(LABELS.get(metric, metric))}</b>"
        + (" (colour scale fixed to 0–1)" if metric_limits(metric) else "") + ".</p>",
    ]
    if provenance:
        parts.append(provenance_html(provenance))
    fit = surfaces.get(metric)
    if isinstance(fit, SurfaceFit):
        parts.append(f"<h2>Response surface of {e(LABELS.get(metric, metric))}</h2>")
        parts.append(f"<p>{e(fit.form)} model fitted by OLS to the case means at {fit.n} grid points: "
                     f"R² = <b>{_num(fit.r2)}</b>, adjusted R² = {_num(fit.adj_r2)}, RMSE = {_num(fit.rmse)}. "
                     "Coefficients in original units (ms, degrees…); coded = per half grid range "
                     "around the grid centre.</p>")
        parts.append(_coef_table(fit))
        parts.append(_influence_table(fit))
        for note in fit.notes:
            parts.append(f"<p class='note'>{e(note)}</p>")
    elif fit is not None:
        parts.append(f"<p class='bad'>No response surface for {e(metric)}: {e(str(fit))}</p>")
    for name in (f"surface_{metric}.png", f"heatmap_{metric}.png", f"lines_{metric}.png"):
        if name in images:
            parts.append(_img(images[name], name))
    parts.append("<h2>Baseline check</h2><p>Each case simulated at its own parameters vs the unsimulated "
                 "image (the simulation must reproduce it), and the model's metrics on both.</p>")
    parts.append(_baseline_table(run, metric))
    parts.append(case_tables_html(run, metric, LABELS.get(metric, metric)))
    if "examples.png" in images:
        parts.append("<h2>Example slices</h2>")
        if examples_caption:
            parts.append(f"<p>{e(examples_caption)}</p>")
        parts.append(_img(images["examples.png"], "example slices"))
    others = [m for m in surfaces if m != metric]
    if others:
        parts.append("<h2>Other metrics</h2><table><tr><th class='l'>metric</th><th>form</th><th>R²</th>"
                     "<th>adj. R²</th>" + "".join(f"<th>share {e(a)}</th>" for a in run.axes) + "</tr>")
        for m in others:
            s = surfaces[m]
            if isinstance(s, SurfaceFit):
                parts.append(f"<tr><td class='l'>{e(LABELS.get(m, m))}</td><td>{e(s.form)}</td><td>{_num(s.r2)}</td>"
                             f"<td>{_num(s.adj_r2)}</td>"
                             + "".join(f"<td>{_num(s.influence.get(a, {}).get('share'), 3)}</td>" for a in run.axes)
                             + "</tr>")
            else:
                parts.append(f"<tr><td class='l'>{e(m)}</td><td class='l' colspan='{3 + len(run.axes)}'>"
                             f"{e(str(s))}</td></tr>")
        parts.append("</table>")
        for m in others:
            if f"heatmap_{m}.png" in images:
                parts.append(_img(images[f"heatmap_{m}.png"], m))
    from .timing import timing_html  # inference share, overhead and worker efficiency of the run

    parts.append(timing_html(run))
    parts.append("<h2>Failures</h2>")
    if run.failures:
        parts.append("<table><tr><th class='l'>case</th><th class='l'>point</th><th class='l'>problem</th></tr>")
        for f in run.failures:
            point = "whole case" if f.get("point") == "*" else f.get("point")
            parts.append(f"<tr><td class='l'>{e(f['case'])}</td><td class='l'>{e(str(point))}</td>"
                         f"<td class='l bad'>{e(f.get('error', ''))}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None: every case and grid point finished.</p>")
    if run.notes:
        parts.append("<h2>Notes</h2><ul>")
        for case, notes in run.notes.items():
            for n in notes:
                parts.append(f"<li>{e(case)}: {e(n)}</li>")
        parts.append("</ul>")
    parts.append("<p class='note'>Files beside this report: results.csv (one row per case × point × metric), "
                 "surface.json, points.jsonl (the resumable store), the figures as PNG files. Made by NeuroShift "
                 "(see Provenance).</p></body></html>")
    return "\n".join(parts)


def _img(data: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(data).decode('ascii')}'>"


def _coef_table(fit: SurfaceFit) -> str:
    rows = ["<table><tr><th class='l'>term</th><th>coefficient</th><th>std. error</th>"
            "<th>coded coefficient</th><th>coded std. error</th></tr>"]
    for nm, b, se, cb, cse in zip(fit.term_names, fit.coefficients, fit.std_errors, fit.coded_coefficients,
                                  fit.coded_std_errors):
        rows.append(f"<tr><td class='l'>{html.escape(nm)}</td><td>{_num(b, 6)}</td><td>{_num(se, 3)}</td>"
                    f"<td>{_num(cb, 4)}</td><td>{_num(cse, 3)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _influence_table(fit: SurfaceFit) -> str:
    rows = ["<table><tr><th class='l'>parameter</th><th>share of explained variation</th>"
            "<th>effect over grid range (others at centre)</th></tr>"]
    for v, inf in sorted(fit.influence.items(), key=lambda kv: -kv[1]["share"]):
        rows.append(f"<tr><td class='l'>{html.escape(v)}</td><td>{100 * inf['share']:.1f}%</td>"
                    f"<td>{_num(inf['effect_range'], 3)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _baseline_table(run: StressRun, metric: str) -> str:
    rows = ["<table><tr><th class='l'>case</th><th class='l'>parameters</th><th>max |sim − image|</th>"
            f"<th>relative</th><th>{html.escape(metric)} simulated</th><th>{html.escape(metric)} original</th>"
            "<th>difference</th></tr>"]
    for b in baseline_summary(run):
        params = ",".join(f"{k}={v:g}" for k, v in b["params"].items() if isinstance(v, (int, float)))
        rows.append(f"<tr><td class='l'>{html.escape(b['case'])}</td><td class='l'>{html.escape(params)}</td>"
                    f"<td>{_num(b['max_abs_diff'], 3)}</td><td>{_num(b['rel_max_abs_diff'], 3)}</td>"
                    f"<td>{_num(b['metrics_simulated'].get(metric))}</td>"
                    f"<td>{_num(b['metrics_original'].get(metric))}</td>"
                    f"<td>{_num(b['metric_diff'].get(metric), 3)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)
