"""Two models' stress tests side by side: ``compare.html``, ``compare.json`` and one PNG per metric.

Both runs must cover the same grid (same axes, same values, same sequence). Per grid point the metric is
averaged over the cases **both** runs finished at every grid point (so the two surfaces describe the same
subjects); the difference is ``B − A`` (positive: the second model is better on a "higher is better" metric
such as lesion F1 or DSC). The quadratic response surface of each run comes from
:func:`neuroshift.stress.report.fit_run_surfaces` (its own complete cases, as in each run's ``report.html``).

Used by ``neuroshift demo`` to set the qSynth-trained demo model beside ``wmh-demo``; usable on any two
stress-test folders (:func:`neuroshift.stress.runner.load_run`). All files are written atomically.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..io.atomic import write_bytes_atomic, write_text_atomic
from ..io.jsonsafe import json_safe
from .runner import StressRun
from .simulator import UNITS

__all__ = ["COMPARE_METRICS", "common_cases", "point_table", "compare_runs", "plot_comparison",
           "render_comparison_html", "write_comparison"]

#: Metrics compared by default (both "higher is better", bounded 0..1).
COMPARE_METRICS = ("lesion_f1", "dice")
_LABELS = {"lesion_f1": "lesion F1", "dice": "DSC", "lesion_recall": "lesion recall",
           "lesion_precision": "lesion precision", "pred_volume_ml": "predicted volume (ml)"}


def _check_same_grid(a: StressRun, b: StressRun) -> None:
    if a.sequence.lower() != b.sequence.lower():
        raise InputError(f"the runs simulate different sequences ({a.sequence} vs {b.sequence}); compare "
                         "stress tests of one sequence")
    if list(a.grid) != list(b.grid):
        raise InputError(f"the runs vary different parameters ({', '.join(a.grid)} vs {', '.join(b.grid)})")
    for axis in a.grid:
        va, vb = np.asarray(a.grid[axis], float), np.asarray(b.grid[axis], float)
        if va.shape != vb.shape or not np.allclose(va, vb, rtol=0, atol=1e-9):
            raise InputError(f"the runs' {axis} values differ ({va.tolist()} vs {vb.tolist()}); rerun one of "
                             "them on the other's grid")


def _values(run: StressRun, metric: str) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """case -> point -> value, and point -> grid coordinates (grid points only, finite values)."""
    by_case: dict[str, dict[str, float]] = {}
    points: dict[str, dict] = {}
    for rec in run.grid_records():
        v = rec.get("metrics", {}).get(metric)
        if v is None or not math.isfinite(float(v)):
            continue
        by_case.setdefault(rec["case"], {})[rec["point"]] = float(v)
        points.setdefault(rec["point"], rec["grid"])
    return by_case, points


def common_cases(a: StressRun, b: StressRun, metric: str) -> list[str]:
    """Cases with a ``metric`` value at every grid point in both runs (in ``a``'s case order)."""
    va, pa = _values(a, metric)
    vb, pb = _values(b, metric)
    keys = set(pa) & set(pb)
    n = int(np.prod([len(v) for v in a.grid.values()]))
    return [c for c in a.case_ids if len(keys) == n and c in va and c in vb
            and keys <= set(va[c]) and keys <= set(vb[c])]


def point_table(a: StressRun, b: StressRun, metric: str, cases: Sequence[str]) -> list[dict]:
    """One row per grid point (grid order of ``a``): coordinates, mean of A and of B over ``cases``, B − A."""
    va, pa = _values(a, metric)
    vb, _ = _values(b, metric)
    rows = []
    for key, coords in pa.items():
        ma = float(np.mean([va[c][key] for c in cases])) if cases else math.nan
        mb = float(np.mean([vb[c][key] for c in cases])) if cases else math.nan
        rows.append({"point": key, **{ax: float(coords[ax]) for ax in a.grid}, "a": ma, "b": mb, "diff": mb - ma})
    return rows


def _matrix(rows: Sequence[dict], grid: Mapping[str, np.ndarray], field: str) -> np.ndarray:
    """``rows[field]`` on the (second axis, first axis) grid; other axes averaged."""
    axes = list(grid)
    xs = [float(v) for v in grid[axes[0]]]
    ys = [float(v) for v in grid[axes[1]]] if len(axes) > 1 else [0.0]
    total = np.zeros((len(ys), len(xs)))
    count = np.zeros_like(total)
    for r in rows:
        if not math.isfinite(r[field]):
            continue
        i = ys.index(r[axes[1]]) if len(axes) > 1 else 0
        j = xs.index(r[axes[0]])
        total[i, j] += r[field]
        count[i, j] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def compare_runs(a: StressRun, b: StressRun, metrics: Sequence[str] = COMPARE_METRICS, *,
                 names: Sequence[str] | None = None) -> dict:
    """The comparison document: per metric the common cases, per-point table, summary and both surfaces.

    Summary per metric: mean over grid points of A, of B and of B − A, the smallest and largest B − A,
    the share of points where B > A, and each run's grid range (max − min of its point means).

    Raises:
        InputError: different sequences, axes or grid values.
    """
    from .report import fit_run_surfaces

    _check_same_grid(a, b)
    name_a, name_b = names or (a.model_name, b.model_name)
    doc: dict = {"models": {"a": name_a, "b": name_b}, "sequence": a.sequence,
                 "grid": {k: np.asarray(v, float).tolist() for k, v in a.grid.items()},
                 "units": {k: UNITS.get(k, "") for k in a.grid}, "difference": "b - a", "metrics": {}}
    fits_a = fit_run_surfaces(a, list(metrics))
    fits_b = fit_run_surfaces(b, list(metrics))
    for m in metrics:
        cases = common_cases(a, b, m)
        rows = point_table(a, b, m, cases)
        ok = [r for r in rows if math.isfinite(r["diff"])]
        summary = None
        if ok:
            A, B, D = (np.array([r[k] for r in ok]) for k in ("a", "b", "diff"))
            summary = {"mean_a": float(A.mean()), "mean_b": float(B.mean()), "mean_diff": float(D.mean()),
                       "min_diff": float(D.min()), "max_diff": float(D.max()),
                       "share_b_better": float(np.mean(D > 0)), "range_a": float(A.max() - A.min()),
                       "range_b": float(B.max() - B.min()), "n_points": len(ok)}
        doc["metrics"][m] = {
            "cases": cases, "points": rows, "summary": summary,
            "surfaces": {k: (f.to_dict() if hasattr(f, "to_dict") else {"error": str(f)})
                         for k, f in (("a", fits_a.get(m)), ("b", fits_b.get(m)))}}
    return doc


def plot_comparison(doc: Mapping, metric: str) -> bytes:
    """PNG: heatmaps of A, B (0..1 scale for bounded metrics) and B − A (diverging, centred on 0)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = {k: np.asarray(v, float) for k, v in doc["grid"].items()}
    axes = list(grid)
    rows = doc["metrics"][metric]["points"]
    mats = {f: _matrix(rows, grid, f) for f in ("a", "b", "diff")}
    bounded = metric in COMPARE_METRICS or metric in ("lesion_recall", "lesion_precision")
    fig = Figure(figsize=(15.0, 4.4))
    FigureCanvasAgg(fig)
    label = _LABELS.get(metric, metric)
    dmax = float(np.nanmax(np.abs(mats["diff"]))) if np.isfinite(mats["diff"]).any() else 1.0
    titles = {"a": doc["models"]["a"], "b": doc["models"]["b"], "diff": f"{doc['models']['b']} − {doc['models']['a']}"}
    for n, f in enumerate(("a", "b", "diff")):
        ax = fig.add_subplot(1, 3, n + 1)
        m = mats[f]
        if f == "diff":
            kw = {"cmap": "RdBu", "vmin": -max(dmax, 1e-6), "vmax": max(dmax, 1e-6)}
        else:
            kw = {"cmap": "viridis", **({"vmin": 0.0, "vmax": 1.0} if bounded else {})}
        im = ax.imshow(m, origin="lower", aspect="auto", **kw)
        ax.set_xticks(range(len(grid[axes[0]])), [f"{v:g}" for v in grid[axes[0]]], rotation=45)
        ax.set_xlabel(f"{axes[0]} ({UNITS.get(axes[0], '')})")
        if len(axes) > 1:
            ax.set_yticks(range(len(grid[axes[1]])), [f"{v:g}" for v in grid[axes[1]]])
            ax.set_ylabel(f"{axes[1]} ({UNITS.get(axes[1], '')})")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(f"{titles[f]}: {label}", fontsize=9)
        fig.colorbar(im, ax=ax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _num(v, digits: int = 3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.{digits}f}" if math.isfinite(v) else "–"


def render_comparison_html(doc: Mapping, images: Mapping[str, bytes], links: Mapping[str, str] | None = None) -> str:
    """``compare.html``: summary table, the side-by-side figures, per-point tables, both surfaces' fit."""
    import base64

    e = html.escape
    a, b = doc["models"]["a"], doc["models"]["b"]
    grid_txt = ", ".join(f"{e(k)} = {min(v):g}…{max(v):g} {e(doc['units'].get(k, ''))} ({len(v)} values)"
                         for k, v in doc["grid"].items())
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>NeuroShift stress-test comparison</title>"
             "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right;font-size:13px}th{background:#f2f2f2}td.l,th.l{text-align:left}"
             "img{max-width:100%}.note{color:#555;font-size:13px}</style></head><body>",
             f"<h1>Stress-test comparison: {e(a)} vs {e(b)}</h1>",
             f"<p>Sequence <b>{e(str(doc['sequence']).upper())}</b>; grid {grid_txt}. Same simulated images for "
             f"both models; difference = {e(b)} − {e(a)} (positive: {e(b)} better).</p>"]
    if links:
        parts.append("<p>Full reports: " + " · ".join(f"<a href='{e(href)}'>{e(name)}</a>"
                                                      for name, href in links.items()) + "</p>")
    parts.append("<h2>Summary (mean over grid points, common cases)</h2><table><tr><th class='l'>metric</th>"
                 f"<th>{e(a)}</th><th>{e(b)}</th><th>mean diff</th><th>min diff</th><th>max diff</th>"
                 f"<th>points {e(b)} better</th><th>range {e(a)}</th><th>range {e(b)}</th><th>cases</th></tr>")
    for m, d in doc["metrics"].items():
        s = d["summary"] or {}
        parts.append(f"<tr><td class='l'>{e(_LABELS.get(m, m))}</td><td>{_num(s.get('mean_a'))}</td>"
                     f"<td>{_num(s.get('mean_b'))}</td><td>{_num(s.get('mean_diff'))}</td>"
                     f"<td>{_num(s.get('min_diff'))}</td><td>{_num(s.get('max_diff'))}</td>"
                     f"<td>{_num(100 * s['share_b_better'], 0) + ' %' if s else '–'}</td>"
                     f"<td>{_num(s.get('range_a'))}</td><td>{_num(s.get('range_b'))}</td>"
                     f"<td>{len(d['cases'])}</td></tr>")
    parts.append("</table>")
    for m, d in doc["metrics"].items():
        label = e(_LABELS.get(m, m))
        parts.append(f"<h2>{label}</h2>")
        png = images.get(f"compare_{m}.png")
        if png:
            parts.append(f"<img alt='{label}: both surfaces and difference' src='data:image/png;base64,"
                         f"{base64.b64encode(png).decode('ascii')}'>")
        axes = list(doc["grid"])
        parts.append("<table><tr>" + "".join(f"<th>{e(x)}</th>" for x in axes)
                     + f"<th>{e(a)}</th><th>{e(b)}</th><th>diff</th></tr>")
        for r in d["points"]:
            parts.append("<tr>" + "".join(f"<td>{r[x]:g}</td>" for x in axes)
                         + f"<td>{_num(r['a'])}</td><td>{_num(r['b'])}</td><td>{_num(r['diff'])}</td></tr>")
        parts.append("</table><p class='note'>Quadratic response surfaces (each run's own report): "
                     + "; ".join(f"{e(doc['models'][k])}: " + (
                         f"R² = {_num(s.get('r2'))}" if "error" not in s else f"not fitted ({e(s['error'])})")
                         for k, s in d["surfaces"].items()) + "</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_comparison(a: StressRun, b: StressRun, outdir: str | os.PathLike, *,
                     metrics: Sequence[str] = COMPARE_METRICS, names: Sequence[str] | None = None,
                     links: Mapping[str, str] | None = None) -> dict:
    """Write ``compare.json``, ``compare_<metric>.png`` and ``compare.html`` in ``outdir``; returns
    ``{"doc": ..., "paths": {...}}``. ``links``: report name -> relative URL shown at the top."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    doc = compare_runs(a, b, metrics, names=names)
    paths: dict[str, Path] = {}
    images = {}
    for m in metrics:
        if doc["metrics"][m]["summary"] is not None:
            images[f"compare_{m}.png"] = plot_comparison(doc, m)
    for name, data in images.items():
        write_bytes_atomic(out / name, data)
        paths[name] = out / name
    write_text_atomic(out / "compare.json", json.dumps(json_safe(doc), indent=2) + "\n")
    paths["json"] = out / "compare.json"
    write_text_atomic(out / "compare.html", render_comparison_html(doc, images, links))
    paths["html"] = out / "compare.html"
    return {"doc": doc, "paths": paths}
