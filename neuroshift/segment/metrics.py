"""Segmentation metrics with the definitions of segmentation.md section 3 and the WMH-challenge scorer.

Definitions (G = ground truth, P = prediction, binary; V = volume):

* ``dice``: DSC = 2|G∩P| / (|G| + |P|).
* ``volume_similarity``: VS = 1 - |V_G - V_P| / (V_G + V_P).
* ``avd_percent``: AVD = |V_G - V_P| / V_G x 100.
* ``hd95_mm``: the larger of the two directed 95th percentiles (linear interpolation, as
  ``numpy.percentile``) of the distances in mm from each boundary voxel of one mask to the nearest
  boundary voxel of the other, with the physical voxel spacing (Euclidean distance transform of the
  other boundary with ``sampling=spacing``). Boundary definitions:

  - ``boundary="3d"`` (default): mask voxels with at least one of their 6 face neighbours outside
    the mask (outside the image counts as outside): the surface in every direction, so a shift along
    any axis counts alike (a sphere shifted by 2 voxels of 0.5 mm gives 1.0 mm along each axis);
  - ``boundary="2d"`` (the WMH-challenge scorer, for exact replication of its numbers): the mask minus
    its in-plane erosion by a 3x3 box within each slice (array axis 0 = the ``k`` axis of a
    :class:`~neuroshift.io.volume.Volume`), voxels outside the image counting as foreground (ITK's
    ``BinaryErode`` with radius (1, 1, 0)). Slice-wise rims under-count shifts across slices (the
    same sphere shifted across slices gives 0.87 mm instead of 1.0 mm).

* ``lesion_detection``: 26-connected components. recall = GT components touched by P / GT
  components; precision = P components touching G / P components; F1 = 2PR / (P + R) (the challenge
  scorer; the dissertation's "F1 = N_P/(N_P+N_F)" is precision).

Empty masks (documented fallbacks; the challenge scorer divides by zero there):

* both empty: DSC 1, VS 1, AVD 0, HD95 0, recall 1, precision 1, F1 1;
* G empty, P not: DSC 0, VS 0, AVD NaN (undefined), HD95 NaN, recall 1 (nothing to find), precision 0;
* P empty, G not: DSC 0, VS 0, AVD 100, HD95 NaN, recall 0, precision 1 (no false detection), F1 0.

WMH-challenge conventions (:func:`evaluate_masks`): GT label 1 is the lesion class, GT label 2
("other pathology") is masked out of the prediction and so counts neither way; a prediction with an
integer type is foreground where >= 1, a floating-point one where >= 0.5 (probabilities).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import DimensionError

STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def _binary(mask) -> np.ndarray:
    a = np.asarray(getattr(mask, "data", mask))
    if a.dtype == bool:
        return a
    if np.issubdtype(a.dtype, np.floating):
        return a >= 0.5
    return a >= 1


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p, g = _binary(pred), _binary(gt)
    if p.shape != g.shape:
        raise DimensionError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    return p, g


def dice(pred, gt) -> float:
    """Dice similarity coefficient 2|G∩P|/(|G|+|P|); 1.0 when both masks are empty."""
    p, g = _pair(pred, gt)
    denom = int(p.sum()) + int(g.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, g).sum()) / denom


def volume_similarity(pred, gt) -> float:
    """VS = 1 - |V_G - V_P|/(V_G + V_P); 1.0 when both are empty."""
    p, g = _pair(pred, gt)
    vp, vg = int(p.sum()), int(g.sum())
    if vp + vg == 0:
        return 1.0
    return 1.0 - abs(vg - vp) / (vg + vp)


def avd_percent(pred, gt) -> float:
    """AVD = |V_G - V_P|/V_G x 100; 0 when both are empty, NaN when only G is empty."""
    p, g = _pair(pred, gt)
    vp, vg = int(p.sum()), int(g.sum())
    if vg == 0:
        return 0.0 if vp == 0 else math.nan
    return abs(vg - vp) / vg * 100.0


def boundary(mask: np.ndarray, mode: str = "3d") -> np.ndarray:
    """Boundary voxels of a 3D binary mask (see the module docstring for ``"2d"`` and ``"3d"``)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise DimensionError(f"expected a 3D mask, got {mask.ndim}D")
    if mode == "2d":
        eroded = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), bool), border_value=1)
    elif mode == "3d":
        eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    else:
        raise ValueError(f"boundary mode must be '2d' or '3d', got {mode!r}")
    return mask & ~eroded


def directed_surface_distances(a: np.ndarray, b: np.ndarray, spacing, mode: str = "3d") -> np.ndarray:
    """Distances (mm) from every boundary voxel of ``a`` to the nearest boundary voxel of ``b``.

    ``spacing`` is per array axis (for a Volume's ``data[k, j, i]`` that is ``spacing[::-1]``).
    """
    ba, bb = boundary(a, mode), boundary(b, mode)
    if not ba.any() or not bb.any():
        return np.zeros(0)
    # Both boundaries lie in the bounding box of their union: the distance transform there is exact.
    union = ba | bb
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(union))
    dist_to_b = ndimage.distance_transform_edt(~bb[box], sampling=spacing)
    return dist_to_b[ba[box]]


def hd95_mm(pred, gt, spacing=None, *, boundary_mode: str = "3d") -> float:
    """95th-percentile Hausdorff distance in mm (max of both directed 95th percentiles).

    ``pred``/``gt`` are Volumes (spacing taken from them) or arrays with ``spacing`` per array axis
    (default 1 mm). NaN when exactly one mask is empty, 0 when both are.
    """
    if spacing is None:
        spacing = np.asarray(gt.spacing)[::-1] if hasattr(gt, "spacing") else np.ones(3)
    spacing = np.asarray(spacing, dtype=np.float64).reshape(-1)
    p, g = _pair(pred, gt)
    if spacing.size != p.ndim:
        raise DimensionError(f"spacing has {spacing.size} values for a {p.ndim}D mask")
    if not p.any() and not g.any():
        return 0.0
    if not p.any() or not g.any():
        return math.nan
    d_pg = directed_surface_distances(p, g, spacing, boundary_mode)
    d_gp = directed_surface_distances(g, p, spacing, boundary_mode)
    if d_pg.size == 0 or d_gp.size == 0:  # a mask filling whole slices has no in-plane boundary
        return math.nan
    return float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))


def lesion_detection(pred, gt) -> dict[str, Any]:
    """Lesion-wise detection with 26-connected components.

    Returns ``recall, precision, f1, n_gt, n_pred, tp_gt`` (GT lesions touched by the prediction)
    and ``tp_pred`` (predicted components touching a GT lesion).
    """
    p, g = _pair(pred, gt)
    lab_g, n_gt = ndimage.label(g, structure=STRUCTURE_26)
    lab_p, n_pred = ndimage.label(p, structure=STRUCTURE_26)
    tp_gt = int(np.unique(lab_g[p & (lab_g > 0)]).size)
    tp_pred = int(np.unique(lab_p[g & (lab_p > 0)]).size)
    recall = tp_gt / n_gt if n_gt else 1.0
    precision = tp_pred / n_pred if n_pred else 1.0
    f1 = 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"recall": recall, "precision": precision, "f1": f1, "n_gt": int(n_gt), "n_pred": int(n_pred),
            "tp_gt": tp_gt, "tp_pred": tp_pred}


def challenge_masks(pred, gt, ignore_label: int | None = 2) -> tuple[np.ndarray, np.ndarray]:
    """Binary ``(prediction, ground truth)`` with the WMH-challenge conventions.

    GT foreground: voxels > 0 other than ``ignore_label``; the prediction is set to 0 where the GT
    equals ``ignore_label`` (``None``: nothing ignored, every non-zero GT label is foreground).
    """
    g_raw = np.asarray(getattr(gt, "data", gt))
    p = _binary(pred).copy()
    g_int = np.rint(g_raw).astype(np.int64) if np.issubdtype(g_raw.dtype, np.floating) else g_raw.astype(np.int64)
    if p.shape != g_int.shape:
        raise DimensionError(f"prediction {p.shape} and ground truth {g_int.shape} differ in shape")
    if ignore_label is None:
        return p, g_int > 0
    ignore = g_int == int(ignore_label)
    p[ignore] = False
    return p, (g_int > 0) & ~ignore


def evaluate_masks(pred, gt, *, ignore_label: int | None = 2, boundary_mode: str = "3d") -> dict[str, Any]:
    """All metrics for one case: ``dsc, vs, avd_percent, hd95_mm, recall, precision, f1, n_gt, n_pred,
    tp_gt, tp_pred, volume_gt_mm3, volume_pred_mm3, ignored_voxels``.

    ``pred`` and ``gt`` are :class:`~neuroshift.io.volume.Volume` objects on the same grid (a
    :class:`~neuroshift.errors.GeometryError` names the difference otherwise) or arrays (1 mm voxels).
    """
    if hasattr(pred, "require_same_grid") and hasattr(gt, "require_same_grid"):
        pred.require_same_grid(gt, "prediction vs ground truth")
        spacing = np.asarray(gt.spacing, dtype=np.float64)[::-1]
    else:
        spacing = np.ones(np.asarray(getattr(gt, "data", gt)).ndim)
    p, g = challenge_masks(pred, gt, ignore_label)
    voxel_mm3 = float(np.prod(spacing))
    g_raw = np.asarray(getattr(gt, "data", gt))
    ignored = int(np.count_nonzero(np.rint(g_raw) == ignore_label)) if ignore_label is not None else 0
    out: dict[str, Any] = {
        "dsc": dice(p, g),
        "vs": volume_similarity(p, g),
        "avd_percent": avd_percent(p, g),
        "hd95_mm": hd95_mm(p, g, spacing, boundary_mode=boundary_mode),
    }
    out.update(lesion_detection(p, g))
    out.update(volume_gt_mm3=float(g.sum()) * voxel_mm3, volume_pred_mm3=float(p.sum()) * voxel_mm3,
               ignored_voxels=ignored, ignore_label=ignore_label, hd95_boundary=boundary_mode)
    return out
