"""Region-wise synthesis metrics (numpy in, floats out).

Protocol (:func:`normalise_pair`, after BraSyn): each image is clipped to its own 0.5-99.5 percentiles of the
brain voxels and mapped linearly to [0, 1] (a constant image maps to 0). Then over a region mask
(brain, lesion or NAWM):

* MAE = mean |ref - pred| over the region's voxels;
* PSNR = 10 log10(1 / MSE) dB with data range 1 and MSE over the region's voxels (inf when MSE = 0);
* SSIM = the full SSIM map (MONAI ``compute_ssim_and_cs``: Gaussian window 7 (2D slices) or 7^3, sigma 1.5,
  k1 0.01, k2 0.03, data range 1) averaged over the region's voxels whose window lies inside the image
  (the map is the valid part; the mask is cropped to it).

Contrast measures on raw intensities (no normalisation, they are ratios):

* LBR = mean(lesion) / mean(NAWM) (Finck 2022);
* CNR = (mean(lesion) - mean(NAWM)) / SD(NAWM), SD with ddof = 1 (Finck 2020);
* enhancement AUC (paper 004): enhancement = post - pre clipped at 0 for the reference and the prediction;
  the reference enhancement is binarised with Otsu's threshold over brain voxels; the AUC (Mann-Whitney,
  ties counted half) ranks the predicted enhancement of brain voxels against that binary reference.

Empty masks raise :class:`~neuroshift.errors.InputError` naming the region.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

SSIM_WINDOW = 7


def _mask(mask: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(mask).astype(bool)
    if m.shape != shape:
        raise InputError(f"{name} mask has shape {m.shape}, image has {shape}")
    if not m.any():
        raise InputError(f"{name} mask is empty: the metric needs at least one voxel")
    return m


def normalise(image: np.ndarray, brain: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip to the ``low``-``high`` percentiles of the brain voxels and map to [0, 1] (float64)."""
    img = np.asarray(image, dtype=np.float64)
    b = _mask(brain, "brain", img.shape)
    lo, hi = np.percentile(img[b], [low, high])
    if hi <= lo:
        return np.zeros_like(img)
    return (np.clip(img, lo, hi) - lo) / (hi - lo)


def normalise_pair(ref: np.ndarray, pred: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images through :func:`normalise` with the same brain mask."""
    return normalise(ref, brain), normalise(pred, brain)


def mae(ref: np.ndarray, pred: np.ndarray, mask: np.ndarray, name: str = "region") -> float:
    m = _mask(mask, name, np.shape(ref))
    return float(np.mean(np.abs(np.asarray(ref, float)[m] - np.asarray(pred, float)[m])))


def psnr(ref: np.ndarray, pred: np.ndarray, mask: np.ndarray, data_range: float = 1.0, name: str = "region") -> float:
    m = _mask(mask, name, np.shape(ref))
    mse = float(np.mean((np.asarray(ref, float)[m] - np.asarray(pred, float)[m]) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def ssim_map(ref: np.ndarray, pred: np.ndarray, data_range: float = 1.0, window: int = SSIM_WINDOW) -> np.ndarray:
    """MONAI's valid SSIM map of two 2D or 3D images (shape reduced by ``window - 1`` per axis)."""
    import torch
    from monai.metrics.regression import compute_ssim_and_cs
    a = torch.as_tensor(np.asarray(ref, np.float64))[None, None]
    b = torch.as_tensor(np.asarray(pred, np.float64))[None, None]
    dims = a.ndim - 2
    smap, _ = compute_ssim_and_cs(b, a, spatial_dims=dims, kernel_size=[window] * dims,
                                  kernel_sigma=[1.5] * dims, data_range=float(data_range))
    return smap[0, 0].numpy()


def ssim(ref: np.ndarray, pred: np.ndarray, mask: np.ndarray, data_range: float = 1.0, name: str = "region",
         window: int = SSIM_WINDOW) -> float:
    m = _mask(mask, name, np.shape(ref))
    smap = ssim_map(ref, pred, data_range, window)
    h = window // 2
    crop = m[tuple(slice(h, s - h) for s in m.shape)]
    if not crop.any():
        raise InputError(f"{name} mask has no voxel at least {h} voxels from the image border (SSIM window)")
    return float(smap[crop].mean())


def region_metrics(ref: np.ndarray, pred: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """PSNR / SSIM / MAE per region after :func:`normalise_pair` (``masks`` must contain ``brain``)."""
    if "brain" not in masks:
        raise InputError("region metrics need a 'brain' mask")
    r, p = normalise_pair(ref, pred, masks["brain"])
    return {name: {"psnr_db": psnr(r, p, m, name=name), "ssim": ssim(r, p, m, name=name),
                   "mae": mae(r, p, m, name=name)} for name, m in masks.items()}


def lbr(image: np.ndarray, lesion: np.ndarray, nawm: np.ndarray) -> float:
    """Lesion-to-background ratio mean(lesion) / mean(NAWM)."""
    img = np.asarray(image, float)
    le, wm = _mask(lesion, "lesion", img.shape), _mask(nawm, "NAWM", img.shape)
    denom = float(img[wm].mean())
    if denom == 0:
        raise InputError("NAWM mean is zero: LBR undefined")
    return float(img[le].mean()) / denom


def cnr(image: np.ndarray, lesion: np.ndarray, nawm: np.ndarray) -> float:
    """(mean(lesion) - mean(NAWM)) / SD(NAWM), SD with ddof = 1."""
    img = np.asarray(image, float)
    le, wm = _mask(lesion, "lesion", img.shape), _mask(nawm, "NAWM", img.shape)
    if wm.sum() < 2:
        raise InputError("NAWM mask needs at least 2 voxels for a standard deviation")
    sd = float(img[wm].std(ddof=1))
    if sd == 0:
        raise InputError("NAWM standard deviation is zero: CNR undefined")
    return (float(img[le].mean()) - float(img[wm].mean())) / sd


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (maximum between-class variance) on a ``bins``-bin histogram; returns a bin edge
    (values > threshold are the upper class)."""
    v = np.asarray(values, float).ravel()
    if v.size == 0:
        raise InputError("Otsu threshold of no values")
    counts, edges = np.histogram(v, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1].astype(float)
    w1 = v.size - w0
    s0 = np.cumsum(counts * centers)[:-1]
    mu0 = np.divide(s0, w0, out=np.zeros_like(s0), where=w0 > 0)
    mu1 = np.divide(s0[-1] + counts[-1] * centers[-1] - s0 if len(s0) else s0, w1, out=np.zeros_like(s0),
                    where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1:-1][int(np.argmax(between))])


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney statistic (ties half)."""
    from scipy.stats import rankdata
    s = np.asarray(scores, float).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise InputError("AUC needs both enhancing and non-enhancing reference voxels")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def enhancement_auc(pre: np.ndarray, post_ref: np.ndarray, post_pred: np.ndarray, brain: np.ndarray) -> float:
    """Enhancement AUC over brain voxels: reference ``max(post_ref - pre, 0)`` binarised by Otsu, scores
    ``max(post_pred - pre, 0)``."""
    b = _mask(brain, "brain", np.shape(pre))
    ref_enh = np.clip(np.asarray(post_ref, float) - np.asarray(pre, float), 0, None)[b]
    pred_enh = np.clip(np.asarray(post_pred, float) - np.asarray(pre, float), 0, None)[b]
    return auc(pred_enh, ref_enh > otsu_threshold(ref_enh))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation: Pearson correlation of the average ranks (ties share their mean rank).

    Raises :class:`~neuroshift.errors.InputError` for fewer than 2 values, different sizes, or a constant input
    (the correlation is undefined)."""
    from scipy.stats import rankdata
    x, y = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if x.size != y.size or x.size < 2:
        raise InputError(f"Spearman needs two equally long inputs of >= 2 values, got {x.size} and {y.size}")
    rx, ry = rankdata(x) - (x.size + 1) / 2.0, rankdata(y) - (y.size + 1) / 2.0
    den = math.sqrt(float((rx ** 2).sum()) * float((ry ** 2).sum()))
    if den == 0:
        raise InputError("Spearman correlation is undefined for a constant input")
    return float((rx * ry).sum() / den)


def local_mean(values: np.ndarray, mask: np.ndarray, size: int = 3, in_plane: bool = False) -> np.ndarray:
    """Mean of ``values`` over the ``mask`` voxels of each voxel's ``size``-neighbourhood (a cube, or with
    ``in_plane`` a ``size`` x ``size`` square in the last two axes: the axial plane of the 2D models); 0 where
    the neighbourhood holds no mask voxel."""
    from scipy.ndimage import uniform_filter
    m = np.asarray(mask, bool)
    shape = (1,) * (m.ndim - 2) + (size, size) if in_plane else size
    v = np.asarray(values, np.float64) * m
    n = uniform_filter(m.astype(np.float64), shape, mode="constant")
    s = uniform_filter(v, shape, mode="constant")
    return np.where(n > 1e-9, s / np.maximum(n, 1e-9), 0.0)


def uncertainty_spearman(sd: np.ndarray, abs_error: np.ndarray, region: np.ndarray, *, brain: np.ndarray | None = None,
                         local: int = 0, in_plane: bool = True, name: str = "region") -> float:
    """Spearman of a per-voxel uncertainty ``sd`` with ``abs_error`` over the ``region`` voxels; with ``local``
    = k > 1 both maps are first replaced by their k x k (``in_plane``) or k^3 local means over ``brain``
    (default: the region) voxels (:func:`local_mean`)."""
    r = _mask(region, name, np.shape(sd))
    if local and int(local) > 1:
        b = r if brain is None else _mask(brain, "brain", r.shape)
        sd, abs_error = (local_mean(v, b, int(local), in_plane) for v in (sd, abs_error))
    return spearman(np.asarray(sd)[r], np.asarray(abs_error)[r])


def neighbour_rms(abs_error: np.ndarray, mask: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Root mean square of ``abs_error`` over each voxel's ``mask`` neighbours in a ``size`` window (e.g.
    (1, 3, 3): the 3x3 axial square; (3, 3, 3)), the voxel itself EXCLUDED; 0 where it has no mask neighbour.

    The neighbour oracle of the uncertainty study: a map that knows every other voxel's actual error. Its
    Spearman with the per-voxel error estimates what any map smooth at that scale can reach."""
    from scipy.ndimage import uniform_filter
    m = np.asarray(mask, bool)
    e2 = np.where(m, np.asarray(abs_error, np.float64) ** 2, 0.0)
    vol = float(np.prod(size))
    total = np.clip(uniform_filter(e2, size=size, mode="constant") * vol - e2, 0.0, None)
    count = np.rint(uniform_filter(m.astype(np.float64), size=size, mode="constant") * vol) - m
    return np.where(count > 0, np.sqrt(total / np.maximum(count, 1.0)), 0.0)


def pooled_uncertainty_spearman(subjects: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """Per-voxel Spearman of uncertainty with absolute error over the region voxels of SEVERAL subjects pooled:
    ``subjects`` is a list of (sd, abs_error, region mask); the region voxels of all are concatenated and ranked
    together (one SD scale must rank error across subjects too). Empty regions raise like
    :func:`uncertainty_spearman`."""
    if not subjects:
        raise InputError("pooled Spearman needs at least one subject")
    sds, errs = [], []
    for n, (sd, err, region) in enumerate(subjects):
        r = _mask(region, f"region of subject {n}", np.shape(sd))
        sds.append(np.asarray(sd, float)[r])
        errs.append(np.asarray(err, float)[r])
    return spearman(np.concatenate(sds), np.concatenate(errs))


__all__ = ["SSIM_WINDOW", "auc", "cnr", "enhancement_auc", "lbr", "mae", "neighbour_rms", "normalise",
           "normalise_pair", "local_mean", "otsu_threshold", "pooled_uncertainty_spearman", "psnr",
           "region_metrics", "spearman", "ssim", "ssim_map", "uncertainty_spearman"]
