"""Metrics of paper 001: relative deviation of T1/T2*, Dice and lesion detection rate (LDR) vs threshold.

* relative deviation = mean ``|pred - ref| / ref`` over voxels with ``ref != 0`` (and inside an optional mask);
* at a binarisation threshold ``t`` (percent) a probability map (0..100 %) gives the mask ``prob >= t``;
  Dice against the ground-truth mask and LDR = fraction of ground-truth lesions (26-connected components)
  containing any predicted voxel (:func:`neuroshift.segment.metrics.lesion_detection`'s recall; one source
  for Dice and components). Thresholds run over (0, 100] so a ground-truth mask fed back as 0/100 % gives
  Dice = LDR = 1 at every threshold; the mask shrinks as ``t`` grows, so LDR never increases with ``t``.
* paper 001's operating point is 33 % (:data:`PAPER_THRESHOLD_PCT`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import DimensionError

PAPER_THRESHOLD_PCT = 33.0
#: Default thresholds (percent): 1, 2, ..., 100.
DEFAULT_THRESHOLDS_PCT = tuple(float(t) for t in range(1, 101))
CURVE_FIELDS = ("threshold_pct", "dice", "ldr", "n_gt_lesions", "detected_lesions", "predicted_voxels")


def relative_deviation(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean ``|pred - ref| / |ref|`` over ``ref != 0`` (and ``mask``); NaN when no voxel qualifies."""
    p, r = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if p.shape != r.shape:
        raise DimensionError(f"prediction {p.shape} and reference {r.shape} differ in shape")
    sel = r != 0
    if mask is not None:
        sel &= np.asarray(mask, dtype=bool)
    if not sel.any():
        return float("nan")
    return float(np.mean(np.abs(p[sel] - r[sel]) / np.abs(r[sel])))


def threshold_curves(prob_pct: np.ndarray, gt: np.ndarray,
                     thresholds_pct: Iterable[float] = DEFAULT_THRESHOLDS_PCT) -> list[dict[str, float]]:
    """Dice and LDR of ``prob_pct >= t`` against ``gt`` for every threshold ``t`` (percent)."""
    from ..segment.metrics import dice, lesion_detection

    prob = np.asarray(prob_pct, dtype=np.float64)
    g = np.asarray(gt) > 0
    if prob.shape != g.shape:
        raise DimensionError(f"probability map {prob.shape} and ground truth {g.shape} differ in shape")
    rows = []
    for t in thresholds_pct:
        pred = prob >= float(t)
        det = lesion_detection(pred, g)
        rows.append({"threshold_pct": float(t), "dice": float(dice(pred, g)), "ldr": float(det["recall"]),
                     "n_gt_lesions": int(det["n_gt"]), "detected_lesions": int(det["tp_gt"]),
                     "predicted_voxels": int(pred.sum())})
    return rows


def at_threshold(rows: Sequence[dict[str, float]], t: float = PAPER_THRESHOLD_PCT) -> dict[str, float]:
    """The row of threshold ``t`` (the nearest one)."""
    return min(rows, key=lambda r: abs(r["threshold_pct"] - t))


def curves_csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in CURVE_FIELDS})
    return buf.getvalue()


def write_curves_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    from ..io.atomic import write_text_atomic

    write_text_atomic(path, curves_csv_text(rows))
    return Path(path)


def summarise(pred: dict[str, np.ndarray], ref: dict[str, np.ndarray], brain: np.ndarray | None = None,
              thresholds_pct: Iterable[float] = DEFAULT_THRESHOLDS_PCT) -> dict[str, Any]:
    """Relative deviation of T1/T2* (inside ``brain``), Dice of NAWM/GM at 80 % and the lesion curves.

    ``pred``/``ref`` hold ``T1``, ``T2star`` (ms), ``NAWM``, ``GM``, ``lesion`` (percent; the reference
    lesion map may be a 0/1 mask). Returns the summary and the lesion curve rows under ``"curves"``.
    """
    from ..segment.metrics import dice

    out: dict[str, Any] = {
        "T1_rel_dev": relative_deviation(pred["T1"], ref["T1"], brain),
        "T2star_rel_dev": relative_deviation(pred["T2star"], ref["T2star"], brain)}
    for name in ("NAWM", "GM"):
        if name in pred and name in ref:
            out[f"{name}_dice_80pct"] = float(dice(pred[name] >= 80.0, ref[name] >= 80.0))
    if "lesion" in pred and "lesion" in ref:
        gt = np.asarray(ref["lesion"]) >= (50.0 if np.max(ref["lesion"]) > 1 else 0.5)
        rows = threshold_curves(pred["lesion"], gt, thresholds_pct)
        at = at_threshold(rows)
        out.update({"lesion_dice_33pct": at["dice"], "lesion_ldr_33pct": at["ldr"], "n_gt_lesions": at["n_gt_lesions"],
                    "curves": rows})
    return out


__all__ = ["CURVE_FIELDS", "DEFAULT_THRESHOLDS_PCT", "PAPER_THRESHOLD_PCT", "at_threshold", "curves_csv_text",
           "relative_deviation", "summarise", "threshold_curves", "write_curves_csv"]
