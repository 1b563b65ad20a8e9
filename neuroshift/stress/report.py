"""Outputs of a stress test: results.csv, surface.json, PNG figures and a self-contained HTML report.

* ``results.csv`` — one row per case × grid point × metric (``point`` is the grid
  point, ``baseline`` the case's own parameters simulated, ``original`` the
  unsimulated image), with the grid coordinates as columns;
* ``surface.json`` — per metric the response surface fitted to the case-mean
  values over the grid (coefficients in original units with standard errors,
  coded coefficients, R², adjusted R², relative influence), plus the baseline check;
* ``heatmap_<metric>.png``, ``surface_<metric>.png``, ``lines_<metric>.png``;
* ``report.html`` — everything above in one file (images embedded as base64): provenance, per-case
  results, ground-truth next to predicted volumes, example slices (:mod:`neuroshift.stress.report_parts`),
  failures and notes, for a collaborator to open. Bounded metrics (F1, DSC, recall, precision) are drawn
  on a fixed 0..1 colour scale, so reports can be compared by eye.

All files are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.atomic import write_bytes_atomic, write_text_atomic
from ..io.jsonsafe import json_safe
from .runner import METRICS, StressRun
from .report_parts import metric_limits
from .simulator import UNITS
from .surface import SurfaceFit, fit_surface

LABELS = {"lesion_f1": "lesion F1", "dice": "DSC", "lesion_recall": "lesion recall",
          "lesion_precision": "lesion precision", "pred_volume_ml": "predicted volume (ml)",
          "gt_volume_ml": "ground-truth volume (ml)", "n_gt_lesions": "ground-truth lesions",
          "n_pred_lesions": "predicted lesions"}
#: Metrics that get a response surface (the others are case properties).
SURFACE_METRICS = ("lesion_f1", "dice", "lesion_recall", "lesion_precision", "pred_volume_ml")


def metric_names(run: StressRun) -> list[str]:
    names: list[str] = []
    for rec in run.records:
        for m in rec.get("metrics", {}):
            if m not in names:
                names.append(m)
    order = {m: i for i, m in enumerate(METRICS)}
    return sorted(names, key=lambda m: (order.get(m, len(order)), m))


# --------------------------------------------------------------------------- tables
def result_rows(run: StressRun) -> list[dict]:
    """One row per case × point × metric (baseline points also give an ``original`` row set)."""
    rows = []
    for rec in run.records:
        grid = rec.get("grid", {})
        variants = [(rec["point"], True, rec.get("metrics", {}))]
        if rec.get("baseline") and "baseline_check" in rec:
            variants.append(("original", False, rec["baseline_check"].get("real_metrics", {})))
        for point, simulated, values in variants:
            for metric, value in values.items():
                row = {"case": rec["case"], "point": point, "baseline": bool(rec.get("baseline")),
                       "simulated": simulated}
                row.update({axis: grid.get(axis) for axis in run.axes})
                row.update(metric=metric, value=value)
                rows.append(row)
    return rows


def write_results_csv(run: StressRun, path: str | Path) -> Path:
    path = Path(path)
    buf = io.StringIO()
    fields = ["case", "point", "baseline", "simulated", *run.axes, "metric", "value"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in result_rows(run):
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    write_text_atomic(path, buf.getvalue())
    return path


def _csv_value(v):
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    return v


def point_means(run: StressRun, metric: str) -> tuple[list[dict], np.ndarray, np.ndarray, list[str]]:
    """Grid points, the case-mean and standard deviation of ``metric`` there, and the cases averaged.

    Only cases with a result at every grid point are averaged (so no point mixes other cases);
    when no case is complete, every available result is used.
    """
    grid_recs = run.grid_records()
    by_case: dict[str, dict[str, float]] = {}
    points: dict[str, dict] = {}
    for rec in grid_recs:
        value = rec.get("metrics", {}).get(metric)
        if value is None:
            continue
        by_case.setdefault(rec["case"], {})[rec["point"]] = float(value)
        points.setdefault(rec["point"], rec["grid"])
    if not points:
        return [], np.zeros(0), np.zeros(0), []
    complete = [c for c, v in by_case.items() if len(v) == len(points)]
    use = complete or list(by_case)
    keys = list(points)
    means, sds = [], []
    for key in keys:
        vals = [by_case[c][key] for c in use if key in by_case[c]]
        means.append(float(np.mean(vals)) if vals else float("nan"))
        sds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
    return [points[k] for k in keys], np.array(means), np.array(sds), use


def fit_run_surfaces(run: StressRun, metrics: Sequence[str] | None = None, *, form: str = "quadratic"
                     ) -> dict[str, SurfaceFit | str]:
    """Response surface per metric (or the reason it could not be fitted)."""
    out: dict[str, SurfaceFit | str] = {}
    for metric in metrics or [m for m in metric_names(run) if m in SURFACE_METRICS]:
        pts, means, _, _ = point_means(run, metric)
        if not pts:
            out[metric] = "no results"
            continue
        x = {axis: [p[axis] for p in pts] for axis in run.axes}
        try:
            out[metric] = fit_surface(x, means, form=form)
        except Exception as exc:  # noqa: BLE001 - one metric's failure must not hide the others
            out[metric] = str(exc)
    return out


def baseline_summary(run: StressRun) -> list[dict]:
    rows = []
    for rec in run.baseline_records():
        chk = rec.get("baseline_check", {})
        rows.append({"case": rec["case"], "params": rec.get("params", {}),
                     "max_abs_diff": chk.get("max_abs_diff"), "rel_max_abs_diff": chk.get("rel_max_abs_diff"),
                     "metrics_simulated": rec.get("metrics", {}), "metrics_original": chk.get("real_metrics", {}),
                     "metric_diff": chk.get("metric_diff", {})})
    return rows


def surface_document(run: StressRun, surfaces: dict, primary: str) -> dict:
    return {
        "sequence": run.sequence, "model": run.model_name, "primary_metric": primary,
        "grid": {k: v.tolist() for k, v in run.grid.items()},
        "units": {k: UNITS.get(k, "") for k in run.grid},
        "cases": run.case_ids,
        "cases_averaged": {m: point_means(run, m)[3] for m in surfaces},
        "surfaces": {m: (s.to_dict() if isinstance(s, SurfaceFit) else {"error": s}) for m, s in surfaces.items()},
        "baseline_check": baseline_summary(run),
        "failures": run.failures,
        "notes": run.notes,
    }


# --------------------------------------------------------------------------- figures
def _figure(figsize):
    """A matplotlib Figure on the Agg canvas (no pyplot: no global backend state, safe inside Slicer)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _axis_label(axis: str) -> str:
    unit = UNITS.get(axis, "")
    return f"{axis} ({unit})" if unit else axis


def heatmap_matrix(run: StressRun, metric: str):
    """(x axis, y axis, x values, y values, matrix[y, x]) of case means; other axes averaged."""
    pts, means, _, _ = point_means(run, metric)
    axes = run.axes
    ax_x = axes[0]
    ax_y = axes[1] if len(axes) > 1 else None
    xs = list(run.grid[ax_x])
    ys = list(run.grid[ax_y]) if ax_y else [0.0]
    total = np.zeros((len(ys), len(xs)))
    count = np.zeros_like(total)
    for p, m in zip(pts, means):
        if not np.isfinite(m):
            continue
        i = ys.index(p[ax_y]) if ax_y else 0
        j = xs.index(p[ax_x])
        total[i, j] += m
        count[i, j] += 1
    with np.errstate(invalid="ignore"):
        mat = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return ax_x, ax_y, np.array(xs), np.array(ys), mat


def plot_heatmap(run: StressRun, metric: str) -> bytes:
    ax_x, ax_y, xs, ys, mat = heatmap_matrix(run, metric)
    fig = _figure((6.0, 4.8))
    ax = fig.add_subplot()
    if ax_y is None:
        ax.plot(xs, mat[0], "o-")
        ax.set_xlabel(_axis_label(ax_x))
        ax.set_ylabel(LABELS.get(metric, metric))
    else:
        lim = metric_limits(metric)
        vmin, vmax = lim if lim else (None, None)
        im = ax.imshow(mat, origin="lower", aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs], rotation=45)
        ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
        ax.set_xlabel(_axis_label(ax_x))
        ax.set_ylabel(_axis_label(ax_y))
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if np.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if mat[i, j] < (0.5 if lim else np.nanmean(mat)) else "black")
        fig.colorbar(im, ax=ax, label=LABELS.get(metric, metric))
    extra = [a for a in run.axes if a not in (ax_x, ax_y)]
    title = f"{LABELS.get(metric, metric)}, mean over cases"
    if extra:
        title += f" (averaged over {', '.join(extra)})"
    ax.set_title(title, fontsize=10)
    return _png(fig)


def plot_lines(run: StressRun, metric: str) -> bytes:
    """Metric against the first axis, one line per value of the second (F1 against TE per TI)."""
    ax_x, ax_y, xs, ys, mat = heatmap_matrix(run, metric)
    fig = _figure((6.0, 4.2))
    ax = fig.add_subplot()
    for i, y in enumerate(ys):
        ax.plot(xs, mat[i], "o-", label=f"{ax_y} = {y:g}" if ax_y else None)
    ax.set_xlabel(_axis_label(ax_x))
    ax.set_ylabel(LABELS.get(metric, metric))
    if metric_limits(metric):
        ax.set_ylim(*metric_limits(metric))
    if ax_y:
        ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_surface(run: StressRun, metric: str, fit: SurfaceFit) -> bytes | None:
    """3D surface of the fit with the measured case means (two varying axes only)."""
    if len(fit.variables) != 2:
        return None
    pts, means, _, _ = point_means(run, metric)
    a, b = fit.variables
    ga = np.linspace(run.grid[a].min(), run.grid[a].max(), 40)
    gb = np.linspace(run.grid[b].min(), run.grid[b].max(), 40)
    A, B = np.meshgrid(ga, gb)
    others = {v: np.full(A.size, float(np.mean(run.grid[v]))) for v in run.axes if v not in (a, b)}
    Z = fit.predict({a: A.ravel(), b: B.ravel(), **others}).reshape(A.shape)
    fig = _figure((6.4, 5.0))
    ax = fig.add_subplot(projection="3d")
    lim = metric_limits(metric)
    ax.plot_surface(A, B, Z, cmap="viridis", alpha=0.6, linewidth=0, vmin=lim[0] if lim else None,
                    vmax=lim[1] if lim else None)
    if lim:
        ax.set_zlim(*lim)
    ax.scatter([p[a] for p in pts], [p[b] for p in pts], means, color="k", s=12)
    ax.set_xlabel(_axis_label(a))
    ax.set_ylabel(_axis_label(b))
    ax.set_zlabel(LABELS.get(metric, metric))
    r2 = "n/a" if fit.r2 is None else f"{fit.r2:.3f}"
    ax.set_title(f"{fit.form} response surface, R² = {r2}", fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------- report
def write_report(run: StressRun, outdir: str | Path | None = None, *, metric: str = "lesion_f1",
                 form: str = "quadratic", provenance: dict | None = None, examples: tuple[bytes, str] | None = None
                 ) -> dict:
    """Write results.csv, surface.json, the PNGs and report.html; returns paths and the fitted surfaces.

    ``provenance``: :func:`neuroshift.stress.report_parts.provenance` (also stored in surface.json);
    ``examples``: (PNG, caption) of :func:`neuroshift.stress.report_parts.example_figure`, or None.
    """
    outdir = Path(outdir or run.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"results": write_results_csv(run, outdir / "results.csv")}
    names = metric_names(run)
    surf_metrics = [m for m in names if m in SURFACE_METRICS or m == metric]
    if metric not in surf_metrics and run.records:
        from ..errors import InputError

        raise InputError(f"metric '{metric}' is not among the results ({', '.join(names)})")
    surfaces = fit_run_surfaces(run, surf_metrics, form=form)
    doc = surface_document(run, surfaces, metric)
    if provenance:
        doc["provenance"] = provenance
    write_text_atomic(outdir / "surface.json", json.dumps(json_safe(doc), indent=2) + "\n")
    paths["surface"] = outdir / "surface.json"
    images: dict[str, bytes] = {}
    if run.grid_records():
        for m in [metric] + [n for n in surf_metrics if n != metric]:
            images[f"heatmap_{m}.png"] = plot_heatmap(run, m)
        if len(run.axes) >= 2:
            images[f"lines_{metric}.png"] = plot_lines(run, metric)
        fit = surfaces.get(metric)
        if isinstance(fit, SurfaceFit):
            png = plot_surface(run, metric, fit)
            if png:
                images[f"surface_{metric}.png"] = png
    if examples is not None:
        images["examples.png"] = examples[0]
    for name, data in images.items():
        write_bytes_atomic(outdir / name, data)
        paths[name] = outdir / name
    from .report_html import render_html

    html_text = render_html(run, surfaces, metric, images, provenance=provenance,
                            examples_caption=examples[1] if examples is not None else None)
    write_text_atomic(outdir / "report.html", html_text)
    paths["html"] = outdir / "report.html"
    return {"paths": paths, "surfaces": surfaces}
