"""Histogram matching of synthetic images to a reference histogram of the training targets (dissertation 003,
synthDIR clinical study: "the DIR slices are normalized by histogram matching and spatially concatenated into
3D volumes", only the slices with brain are synthesised).

The reference is stored in the model package (``manifest.json`` key :data:`MANIFEST_KEY`) as the intensity
quantiles of the training targets over their brain voxels, in the model's output range mapped to [0, 1], at
evenly spaced probabilities. Matching is a quantile mapping: each synthetic brain voxel's empirical CDF value
(mid-rank, ties averaged) is sent to the reference quantile at that probability (linear interpolation between
the stored quantiles), so the matched image's brain quantiles equal the reference's. It is done once over
the stacked brain slice range, not slice by slice: a single volume histogram imposed on each slice would
distort the top and bottom slices, which hold little white matter (a choice made here; the text does not say
which was used).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import InputError

#: Manifest key of the stored reference.
MANIFEST_KEY = "histogram_reference"
#: Number of stored quantiles (probabilities 0, 0.01, ..., 1).
N_QUANTILES = 101


def reference_from_values(values: np.ndarray, n_quantiles: int = N_QUANTILES,
                          source: str = "training targets, brain voxels of the brain slice range") -> dict[str, Any]:
    """The manifest entry for ``values`` (already in [0, 1]): probabilities, quantiles and where they came from."""
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError("reference values must be a non-empty set of finite numbers")
    probs = np.linspace(0.0, 1.0, int(n_quantiles))
    return {"probabilities": [round(float(p), 6) for p in probs],
            "quantiles": [float(q) for q in np.quantile(v, probs)],
            "range": "model output mapped to [0, 1]", "source": source}


def check_reference(ref: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, quantiles)`` of a stored reference; refuses a malformed one with :class:`InputError`."""
    try:
        p = np.asarray(ref["probabilities"], np.float64)
        q = np.asarray(ref["quantiles"], np.float64)
    except (KeyError, TypeError, ValueError):
        raise InputError(f"model manifest: '{MANIFEST_KEY}' needs 'probabilities' and 'quantiles' lists") from None
    if (p.ndim != 1 or p.shape != q.shape or p.size < 2 or not np.all(np.isfinite(q)) or p[0] != 0 or p[-1] != 1
            or np.any(np.diff(p) <= 0) or np.any(np.diff(q) < 0)):
        raise InputError(f"model manifest: '{MANIFEST_KEY}' must hold increasing probabilities from 0 to 1 and "
                         "non-decreasing quantiles of the same length")
    return p, q


def match_values(values: np.ndarray, ref: Mapping[str, Any]) -> np.ndarray:
    """``values`` (1-D) mapped so that their empirical distribution follows the reference quantiles."""
    from scipy.stats import rankdata

    p, q = check_reference(ref)
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        return v
    cdf = (rankdata(v, method="average") - 0.5) / v.size
    return np.interp(cdf, p, q)


def transfer_function(values: np.ndarray, ref: Mapping[str, Any], n_points: int = 1001):
    """The monotone map ``T`` that :func:`match_values` applies to ``values``, as a callable on any intensity
    (piecewise linear through ``n_points`` source quantiles): used to carry a standard deviation through the
    matching (``SD' = |T(m + SD) - T(m - SD)| / 2``)."""
    p, q = check_reference(ref)
    v = np.asarray(values, np.float64).ravel()
    probs = np.linspace(0.0, 1.0, int(n_points))
    src = np.quantile(v, probs)
    # strictly increasing abscissae for np.interp (ties of the source collapse to one step)
    src = src + np.arange(src.size) * 1e-12 * max(1.0, float(np.ptp(src)))
    dst = np.interp(probs, p, q)
    return lambda x: np.interp(np.asarray(x, np.float64), src, dst)


def match_volume(image01: np.ndarray, brain: np.ndarray, ref: Mapping[str, Any],
                 sd01: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Match the brain voxels of ``image01`` (intensities in [0, 1]) to ``ref``; voxels outside ``brain`` are
    unchanged. ``sd01`` (same units) is carried through the matching's local slope."""
    brain = np.asarray(brain, bool)
    out = np.array(image01, dtype=np.float32, copy=True)
    if not brain.any():
        raise InputError("histogram matching: the brain mask is empty")
    vals = out[brain]
    out[brain] = match_values(vals, ref).astype(np.float32)
    sd_out = None
    if sd01 is not None:
        t = transfer_function(vals, ref)
        s = np.asarray(sd01, np.float64)[brain]
        sd_out = np.array(sd01, dtype=np.float32, copy=True)
        sd_out[brain] = (np.abs(t(vals + s) - t(vals - s)) / 2.0).astype(np.float32)
    return out, sd_out


__all__ = ["MANIFEST_KEY", "N_QUANTILES", "check_reference", "match_values", "match_volume",
           "reference_from_values", "transfer_function"]
