"""Parts of the stress-test report beyond the surface: provenance, per-case results, volumes, example slices.

* :func:`provenance` — NeuroShift version, model name and SHA-256 (of a package's ``manifest.json``, which
  holds the SHA-256 of every weight file; of the command template for a ``cmd:`` model), command line,
  start date (UTC) and duration in seconds;
* :func:`case_rows` — per case: the metric on the unsimulated image, at the baseline and its mean / min /
  max over the grid with the worst point; ground-truth volume next to the predicted volumes (ml);
* :func:`example_figure` — one case (the first) at its own parameters and at the grid corners: an axial
  slice through the largest ground-truth lesion area with the lesion outlines (green) and the model's
  prediction (red) drawn, as a PNG.
"""

from __future__ import annotations

import hashlib
import html
import math
import shlex
import sys
from datetime import datetime, timezone
from itertools import product
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

#: Metrics bounded to [0, 1]: their colour scales and axes are fixed to 0..1 in every figure.
BOUNDED = ("lesion_f1", "dice", "lesion_recall", "lesion_precision")
GT_COLOUR = "#00d000"
PRED_COLOUR = "#ff2020"


def metric_limits(metric: str) -> tuple[float, float] | None:
    """Fixed (vmin, vmax) of a metric's colour scale, or None (data range) for volumes and counts."""
    return (0.0, 1.0) if metric in BOUNDED else None


# --------------------------------------------------------------------------- provenance
def model_sha256(spec: Any) -> tuple[str, str]:
    """(SHA-256, what was hashed) of a model given as package name/folder, ``cmd:`` template or object."""
    text = str(getattr(spec, "spec", spec))
    if text.startswith("cmd:"):
        return hashlib.sha256(text[4:].encode("utf-8")).hexdigest(), "command template"
    folder = getattr(spec, "path", None) or getattr(spec, "folder", None)
    if folder is None:
        try:
            from ..segment.registry import find_model

            folder = find_model(text)
        except Exception:  # noqa: BLE001 - not a package: no hash to give
            folder = None
    manifest = Path(folder) / "manifest.json" if folder is not None else None
    if manifest is not None and manifest.is_file():
        return hashlib.sha256(manifest.read_bytes()).hexdigest(), "manifest.json (lists every weight file's SHA-256)"
    return "", "not a model package"


def provenance(model_spec: Any, *, started: datetime, duration_s: float, argv: Sequence[str] | None = None
               ) -> dict[str, Any]:
    """What made a report: version, model and its hash, command line, start (UTC ISO 8601), duration (s)."""
    from .. import __version__

    sha, hashed = model_sha256(model_spec)
    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = Path(args[0]).name
    return {"neuroshift_version": __version__, "model": str(getattr(model_spec, "name", model_spec)),
            "model_sha256": sha, "model_sha256_of": hashed, "command": shlex.join(args),
            "started_utc": started.astimezone(timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(float(duration_s), 1)}


def provenance_html(prov: Mapping[str, Any]) -> str:
    e = html.escape
    sha = prov.get("model_sha256") or "–"
    rows = [("NeuroShift version", prov.get("neuroshift_version")), ("model", prov.get("model")),
            ("model SHA-256", f"{sha} ({prov.get('model_sha256_of', '')})"),
            ("command line", prov.get("command")), ("started (UTC)", prov.get("started_utc")),
            ("duration", f"{prov.get('duration_s')} s")]
    body = "".join(f"<tr><th class='l'>{e(k)}</th><td class='l'><code>{e(str(v))}</code></td></tr>" for k, v in rows)
    return f"<h2>Provenance</h2><table>{body}</table>"


# --------------------------------------------------------------------------- per-case results
def case_rows(run, metric: str) -> list[dict[str, Any]]:
    """Per case: metric on the original image, at the baseline, mean/min/max over the grid, worst point; volumes."""
    rows = []
    for case in run.case_ids:
        grid = [r for r in run.grid_records() if r["case"] == case and metric in r.get("metrics", {})]
        base = next((r for r in run.baseline_records() if r["case"] == case), None)
        values = [float(r["metrics"][metric]) for r in grid]
        worst = min(grid, key=lambda r: float(r["metrics"][metric])) if grid else None
        preds = [float(r["metrics"]["pred_volume_ml"]) for r in grid if "pred_volume_ml" in r.get("metrics", {})]
        orig = (base or {}).get("baseline_check", {}).get("real_metrics", {})
        gt = next((float(r["metrics"]["gt_volume_ml"]) for r in grid + ([base] if base else [])
                   if "gt_volume_ml" in r.get("metrics", {})), None)
        rows.append({
            "case": case, "points": len(grid),
            "original": orig.get(metric), "baseline": (base or {}).get("metrics", {}).get(metric),
            "mean": float(np.mean(values)) if values else None, "min": min(values) if values else None,
            "max": max(values) if values else None, "worst_point": worst["point"] if worst else None,
            "gt_volume_ml": gt, "pred_volume_ml_original": orig.get("pred_volume_ml"),
            "pred_volume_ml_baseline": (base or {}).get("metrics", {}).get("pred_volume_ml"),
            "pred_volume_ml_mean": float(np.mean(preds)) if preds else None,
            "pred_volume_ml_min": min(preds) if preds else None, "pred_volume_ml_max": max(preds) if preds else None,
        })
    return rows


def _num(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    try:
        v = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    return "–" if not math.isfinite(v) else f"{v:.{digits}g}"


def case_tables_html(run, metric: str, label: str) -> str:
    e = html.escape
    rows = case_rows(run, metric)
    out = [f"<h2>Per case</h2><p>{e(label)} of each case on its unsimulated image, at its own parameters "
           "(baseline, simulated) and over the grid points.</p>",
           "<table><tr><th class='l'>case</th><th>grid points</th><th>original</th><th>baseline</th><th>mean</th>"
           "<th>min</th><th>max</th><th class='l'>worst point</th></tr>"]
    for r in rows:
        out.append(f"<tr><td class='l'>{e(r['case'])}</td><td>{r['points']}</td><td>{_num(r['original'])}</td>"
                   f"<td>{_num(r['baseline'])}</td><td>{_num(r['mean'])}</td><td>{_num(r['min'])}</td>"
                   f"<td>{_num(r['max'])}</td><td class='l'>{e(str(r['worst_point'] or '–'))}</td></tr>")
    out.append("</table><h2>Lesion volumes</h2><p>Ground truth next to the model's prediction (ml): on the "
               "unsimulated image, at the baseline, and mean / min / max over the grid.</p>"
               "<table><tr><th class='l'>case</th><th>ground truth</th><th>predicted, original</th>"
               "<th>predicted, baseline</th><th>predicted, grid mean</th><th>grid min</th><th>grid max</th></tr>")
    for r in rows:
        out.append(f"<tr><td class='l'>{e(r['case'])}</td><td><b>{_num(r['gt_volume_ml'], 4)}</b></td>"
                   f"<td>{_num(r['pred_volume_ml_original'], 4)}</td><td>{_num(r['pred_volume_ml_baseline'], 4)}</td>"
                   f"<td>{_num(r['pred_volume_ml_mean'], 4)}</td><td>{_num(r['pred_volume_ml_min'], 4)}</td>"
                   f"<td>{_num(r['pred_volume_ml_max'], 4)}</td></tr>")
    out.append("</table>")
    return "".join(out)


# --------------------------------------------------------------------------- example slices
def corner_points(grid: Mapping[str, np.ndarray]) -> list[dict[str, float]]:
    """The grid's corners in its first two axes (other axes at their first value), without duplicates."""
    axes = list(grid)
    vary = axes[:2]
    out: list[dict[str, float]] = []
    for combo in product(*[(float(np.min(grid[a])), float(np.max(grid[a]))) for a in vary]):
        p = {a: v for a, v in zip(vary, combo)}
        p.update({a: float(np.asarray(grid[a])[0]) for a in axes[2:]})
        if p not in out:
            out.append(p)
    return out


def best_slice(mask: np.ndarray) -> int:
    """Index along the first array axis (k: axial for an RAS grid) with the most ground-truth lesion voxels."""
    counts = np.count_nonzero(np.asarray(mask) > 0, axis=(1, 2))
    return int(np.argmax(counts)) if counts.any() else mask.shape[0] // 2


def example_panels(case, model, grid: Mapping[str, np.ndarray], *, sequence: str = "flair", simulator=None
                   ) -> list[dict[str, Any]]:
    """Image, prediction and ground truth of one case: the unsimulated image, then each grid corner."""
    from .simulator import PhysicsSimulator, point_key, point_seed, target_params

    simulator = simulator if simulator is not None else PhysicsSimulator()
    loaded = case.load(sequence, inputs=tuple(getattr(model, "extra_inputs", ())))
    fitted = simulator.fit(loaded, sequence)
    panels = []
    original = loaded.image.with_data(loaded.image.data)
    original.meta = {**original.meta, "acquisition": loaded.params.known(), "grid_point": {}}
    images = [("original " + loaded.params.label(), original, {})]
    for p in corner_points(grid):
        target, shifts = target_params(loaded.params, p)
        vol = simulator.render(fitted, loaded, target, shifts, seed=point_seed(loaded.case_id, point_key(p)))
        vol.meta = {**vol.meta, "acquisition": target.known(), "grid_point": dict(p)}
        images.append((point_key(p), vol, p))
    for title, vol, p in images:
        inputs = {model.image_channel: vol, **{n: loaded.inputs[n] for n in getattr(model, "extra_inputs", ())}}
        pred = model.predict(inputs, case_id=loaded.case_id)
        panels.append({"title": title, "point": p, "image": np.asarray(vol.data, dtype=np.float32),
                       "pred": np.asarray(pred.data) > 0, "gt": np.asarray(loaded.mask.data) == 1})
    return panels


def example_figure(panels: Sequence[Mapping[str, Any]], case_id: str = "") -> tuple[bytes, int]:
    """One row of panels (slice through the most lesion voxels) with outlines; returns (PNG, slice index k)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = best_slice(panels[0]["gt"])
    fig = Figure(figsize=(2.6 * len(panels), 3.0))
    FigureCanvasAgg(fig)
    vmax = max(float(np.percentile(p["image"][k], 99.5)) for p in panels) or 1.0
    for i, p in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(p["image"][k], cmap="gray", vmin=0.0, vmax=vmax, origin="lower", interpolation="nearest")
        for mask, colour in ((p["gt"][k], GT_COLOUR), (p["pred"][k], PRED_COLOUR)):
            if mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=0.9, origin="lower")
        ax.set_title(p["title"].replace(",", ", "), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{case_id}: slice k = {k}; ground truth green, prediction red", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue(), k


def report_examples(cases: Any, run, model: Any, *, sequence: str = "flair", simulator=None, device: str = "auto"
                    ) -> tuple[bytes | None, str]:
    """(PNG, caption) of the example slices of the first case with results, or (None, why not).

    ``cases``: the stress test's case folder / CSV or list of cases; ``model``: ``--model`` text or object.
    Costs one model fit of the case and 1 + 4 predictions (the original and the grid corners).
    """
    from ..errors import NeuroShiftError
    from .cases import load_cases
    from .models import resolve_model

    ok = [r["case"] for r in run.records]
    if not ok:
        return None, "no case has results"
    case_list = load_cases(cases, sequence=sequence) if isinstance(cases, (str, Path)) else list(cases)
    case = next((c for c in case_list if c.case_id == ok[0]), None)
    if case is None:
        return None, f"case {ok[0]} is not among the cases given"
    try:
        model_obj = resolve_model(model, device=device, sequence=sequence) if isinstance(model, str) else model
        panels = example_panels(case, model_obj, run.grid, sequence=sequence, simulator=simulator)
        png, k = example_figure(panels, case.case_id)
    except NeuroShiftError as exc:
        return None, f"example slices of {case.case_id} could not be drawn: {exc}"
    titles = "; ".join(p["title"] for p in panels)
    return png, (f"Case {case.case_id}, axial slice k = {k} (the most ground-truth lesion voxels): {titles}. "
                 "Ground-truth lesion outlines in green, the model's prediction in red.")
