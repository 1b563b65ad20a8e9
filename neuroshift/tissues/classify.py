"""Built-in partial-volume tissue classifier for brain-masked T1w (and FLAIR for lesions).

What it does
------------
A user without FreeSurfer, FSL or SPM still needs CSF/GM/WM fractions to run the
tissue-wise simulation. :func:`partial_volume_maps` estimates them from one
T1-weighted image:

1. **Brain mask**: the given mask; else the non-zero voxels when the image is
   skull-stripped (>= 5 % exact zeros); else an Otsu threshold with hole filling,
   opening and the largest connected component (crude: skull-strip first for
   real data).
2. **Mixture model with mixel classes** (Tohka, Zijdenbos & Evans 2004,
   NeuroImage 23:84-97, "Fast and robust parameter estimation for statistical
   partial volume models in brain MRI"): three pure Gaussian classes CSF < GM <
   WM on T1w intensity plus two mixed classes CSF/GM and GM/WM whose intensity is
   ``y = α·μ_a + (1 − α)·μ_b + noise`` with α uniform on [0, 1] (the mixel
   density is integrated numerically over 21 values of α). Parameters by EM,
   initialised from intensity quantiles; the pure means and variances are
   re-estimated from the pure-class responsibilities, the five class weights
   from all of them.
3. **Spatial smoothing** (optional, ``mrf_beta``): a mean-field Potts-like prior,
   ``p(c | x) ∝ p(y | c)·π_c·exp(β·mean of the neighbours' posterior of c)``,
   two iterations over the 26-neighbourhood.
4. **Fractions** as posterior expectations: a pure class contributes a fraction
   of 1 to its tissue; a mixed class contributes the maximum-likelihood fraction
   ``α = (y − μ_b)/(μ_a − μ_b)`` clipped to [0, 1]. Fractions sum to 1 in the
   brain and are 0 outside.
5. **Lesions** (paper 000's second PV pass): with a FLAIR on the same grid,
   voxels brighter than both GM and WM by ``lesion_z`` robust standard
   deviations seed lesions; in the seeds and their 1-voxel neighbourhood the
   lesion fraction is ``(y − μ_WM)/(μ_lesion − μ_WM)`` on FLAIR, taken from the
   voxel's non-CSF share; ``f_GM = 0`` where the lesion fraction is >= 0.5 (as
   in paper 000). With a lesion mask instead (or as well), the lesion fraction
   is restricted to the mask (mask only: the whole non-CSF share of a mask
   voxel is lesion).

Accuracy on NeuroShift's phantom (ICBM152 anatomy at 2 mm, Rician noise 2 % of WM; seed 0, see
``Testing/tissues/test_tissues_classify.py`` and ``Testing/phantom/test_phantom_simulation.py``): mean absolute fraction
error inside the brain 0.032 (CSF), 0.072 (GM), 0.048 (WM); Dice of the hard labels 0.93 / 0.96 / 0.95;
lesion Dice 0.94 with FLAIR. Used for the tissue-wise simulation of the phantom FLAIR (112/2500 ms) at
paper 000's corner protocols, its maps give per-tissue errors of at most 2.4 % (GM), 0.6 % (WM) and
0.7 % (lesion) against the signal equations, and a voxel RMSE of 1.1-2.7 noise SDs, against 1.5-9.5
with hard labels; CSF near its inversion null (TI 2200) is off by ~60 %, the same weakness paper 000
reports for CSF.

How it compares with what you would otherwise use
--------------------------------------------------
FSL FAST (HMRF + bias-field correction, PV estimates), SPM12 / CAT12 segment
(spatial tissue priors registered to the image, bias correction, PV in CAT12)
and SynthSeg (a CNN robust to contrast and resolution) followed by a Tohka-type
PV estimation, as in paper 000, are all better:
they use spatial atlas priors, correct intensity non-uniformity and handle
deep-GM / cerebellum contrast. This classifier has **no spatial priors and no
bias correction** and assumes CSF < GM < WM on the input. It is meant to give
every user *some* fractions for acquisition-shift simulation, where small
fraction errors change the simulated contrast only slightly (the texture
residual absorbs what the model misses). **Do not use it for morphometry**
(volumes, cortical thickness); run N4 bias correction first on real data, and
prefer FAST/SPM/SynthSeg maps (``--pv``) when you have them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ..io.volume import Volume

PURE = ("CSF", "GM", "WM")
#: class list: pure classes, then mixed classes (pure index a, pure index b)
CLASSES = (("CSF",), ("GM",), ("WM",), ("CSF", "GM"), ("GM", "WM"))
MIXED = ((0, 1), (1, 2))
N_ALPHA = 21


@dataclass
class MixtureFit:
    """Fitted intensity model: pure means/SDs (CSF, GM, WM) and the five class weights."""

    means: np.ndarray
    sds: np.ndarray
    weights: np.ndarray
    iterations: int
    converged: bool


# --------------------------------------------------------------------------- brain mask
def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def brain_mask_from_image(image: Volume) -> np.ndarray:
    """Brain mask of an image: its non-zero voxels if skull-stripped, else an Otsu foreground mask."""
    data = np.asarray(image.data, dtype=np.float64)
    if np.mean(data == 0) >= 0.05:
        mask = data > 0
    else:
        mask = data > otsu_threshold(data[np.isfinite(data)])
        mask = ndi.binary_opening(mask, iterations=2)
    mask = ndi.binary_fill_holes(mask)
    lab, n = ndi.label(mask)
    if n > 1:
        sizes = ndi.sum(mask, lab, index=np.arange(1, n + 1))
        mask = lab == (1 + int(np.argmax(sizes)))
    return mask


# --------------------------------------------------------------------------- mixture model
def _gauss(y, mu, var):
    return np.exp(-0.5 * (y - mu) ** 2 / var) / np.sqrt(2 * np.pi * var)


def _likelihoods(y: np.ndarray, means: np.ndarray, sds: np.ndarray) -> np.ndarray:
    """p(y | class) for the five classes, shape (5, N)."""
    var = sds ** 2
    out = np.empty((5, y.size))
    for c in range(3):
        out[c] = _gauss(y, means[c], var[c])
    alphas = np.linspace(0.0, 1.0, N_ALPHA)
    for m, (a, b) in enumerate(MIXED):
        acc = np.zeros(y.size)
        for al in alphas:
            acc += _gauss(y, al * means[a] + (1 - al) * means[b], al * var[a] + (1 - al) * var[b])
        out[3 + m] = acc / N_ALPHA
    return np.maximum(out, 1e-300)


def fit_mixture(y: np.ndarray, *, max_iter: int = 60, tol: float = 1e-5, shared_sd: bool = True) -> MixtureFit:
    """EM fit of the 3-pure + 2-mixel intensity model (means ordered CSF < GM < WM).

    ``shared_sd`` (default) gives the three pure classes one noise SD (homoscedastic
    noise, as in magnitude MR at useful SNR); this stops a class with few pure voxels
    (CSF at 2 mm) from absorbing the mixels with an inflated variance.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    if y.size < 100:
        raise InputError(f"only {y.size} brain voxels: too few to estimate tissue classes")
    q = np.quantile(y, [0.05, 0.15, 0.45, 0.55, 0.85, 0.95])
    spread = max(q[-1] - q[0], 1e-6)
    means = np.array([q[0], (q[2] + q[3]) / 2, q[5]])
    sds = np.full(3, spread / 12.0)
    weights = np.array([0.15, 0.3, 0.3, 0.1, 0.15])
    prev = -np.inf
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        lik = _likelihoods(y, means, sds) * weights[:, None]
        total = lik.sum(axis=0)
        resp = lik / total
        ll = float(np.log(total).mean())
        weights = np.maximum(resp.mean(axis=1), 1e-4)
        weights /= weights.sum()
        for c in range(3):
            r = resp[c]
            s = r.sum()
            if s > 1e-6:
                means[c] = (r * y).sum() / s
                sds[c] = max(np.sqrt((r * (y - means[c]) ** 2).sum() / s), spread * 1e-3)
        if shared_sd:
            r = resp[:3]
            pooled = np.sqrt((r * (y[None, :] - means[:, None]) ** 2).sum() / max(r.sum(), 1e-6))
            sds[:] = max(pooled, spread * 1e-3)
        means.sort()
        if abs(ll - prev) < tol * max(1.0, abs(ll)):
            converged = True
            break
        prev = ll
    if not (means[0] < means[1] < means[2]):
        raise InputError("could not separate CSF, GM and WM intensities; is this a brain-masked T1-weighted image?")
    return MixtureFit(means, sds, weights, it, converged)


def _posteriors(y_vol: np.ndarray, mask: np.ndarray, fit: MixtureFit, mrf_beta: float, iterations: int = 2):
    y = y_vol[mask]
    lik = _likelihoods(y, fit.means, fit.sds) * fit.weights[:, None]
    post = lik / lik.sum(axis=0)
    if mrf_beta > 0:
        maskf = mask.astype(np.float64)
        norm = ndi.uniform_filter(maskf, size=3, mode="constant") * 27.0 - 1.0
        norm = np.maximum(norm[mask], 1.0)
        for _ in range(iterations):
            prior = np.empty_like(post)
            vol = np.zeros(mask.shape)
            for c in range(post.shape[0]):
                vol[mask] = post[c]
                nb = (ndi.uniform_filter(vol, size=3, mode="constant") * 27.0)[mask] - post[c]
                prior[c] = nb / norm
            w = lik * np.exp(mrf_beta * (prior - prior.max(axis=0)))
            post = w / w.sum(axis=0)
    return y, post


def _fractions(y: np.ndarray, post: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Expected (CSF, GM, WM) fractions, shape (3, N)."""
    f = post[:3].copy()
    for m, (a, b) in enumerate(MIXED):
        alpha = np.clip((y - means[b]) / (means[a] - means[b]), 0.0, 1.0)
        f[a] += post[3 + m] * alpha
        f[b] += post[3 + m] * (1.0 - alpha)
    return f / np.maximum(f.sum(axis=0), 1e-12)


# --------------------------------------------------------------------------- lesions
def _robust_sd(x: np.ndarray) -> float:
    med = np.median(x)
    return float(1.4826 * np.median(np.abs(x - med))) or float(np.std(x)) or 1e-6


def _lesion_fraction(flair: np.ndarray | None, lesion_mask: np.ndarray | None, mask: np.ndarray,
                     frac: dict[str, np.ndarray], lesion_z: float) -> np.ndarray:
    """Lesion fraction on the full grid (before it is taken out of GM/WM)."""
    les = np.zeros(mask.shape)
    if flair is None:
        les[lesion_mask & mask] = 1.0
        return les
    f = np.asarray(flair, dtype=np.float64)
    wm_pure = mask & (frac["WM"] >= 0.9)
    gm_pure = mask & (frac["GM"] >= 0.9)
    if wm_pure.sum() < 20 or gm_pure.sum() < 20:
        raise InputError("too few pure WM/GM voxels to calibrate the FLAIR lesion pass")
    mu_wm, sd_wm = float(np.median(f[wm_pure])), _robust_sd(f[wm_pure])
    mu_gm, sd_gm = float(np.median(f[gm_pure])), _robust_sd(f[gm_pure])
    thr = max(mu_wm + lesion_z * sd_wm, mu_gm + lesion_z * sd_gm)
    seeds = mask & (f > thr) & (frac["CSF"] < 0.5)
    if lesion_mask is not None:
        seeds &= lesion_mask
    if not seeds.any():
        if lesion_mask is not None:
            les[lesion_mask & mask] = 1.0
        return les
    mu_les = float(np.median(f[seeds]))
    if mu_les <= mu_wm:
        return les
    region = ndi.binary_dilation(seeds, iterations=1) & mask
    if lesion_mask is not None:
        region &= ndi.binary_dilation(lesion_mask, iterations=1)
    les[region] = np.clip((f[region] - mu_wm) / (mu_les - mu_wm), 0.0, 1.0)
    les[seeds] = np.maximum(les[seeds], 0.5)
    return les


def partial_volume_maps(t1w: Volume, flair: Volume | None = None, brain_mask: Volume | None = None,
                        lesion_mask: Volume | None = None, *, mrf_beta: float = 1.0,
                        lesion_z: float = 3.0, return_fit: bool = False):
    """CSF/GM/WM (+ lesion with FLAIR or a lesion mask) fractions, float32 Volumes on the T1w grid.

    ``t1w`` must be T1-weighted (CSF dark, WM bright); ``flair``, ``brain_mask``
    and ``lesion_mask`` must share its grid (:class:`~neuroshift.errors.GeometryError`
    otherwise). ``return_fit=True`` also returns the :class:`MixtureFit`.
    """
    from ..errors import NonFiniteError

    data = np.asarray(t1w.data, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise NonFiniteError(f"T1w: {int(np.count_nonzero(~np.isfinite(data)))} voxel(s) are NaN or infinite")
    for other, what in ((flair, "FLAIR"), (brain_mask, "brain mask"), (lesion_mask, "lesion mask")):
        if other is not None:
            t1w.require_same_grid(other, f"T1w and {what}")
    if flair is not None and not np.all(np.isfinite(np.asarray(flair.data, dtype=np.float64))):
        raise NonFiniteError("FLAIR: some voxels are NaN or infinite")
    mask = (np.asarray(brain_mask.data) > 0) if brain_mask is not None else brain_mask_from_image(t1w)
    if mask.sum() < 100:
        raise InputError(f"the brain mask has only {int(mask.sum())} voxels")
    fit = fit_mixture(data[mask])
    y, post = _posteriors(data, mask, fit, mrf_beta)
    f3 = _fractions(y, post, fit.means)
    frac = {}
    for c, name in enumerate(PURE):
        full = np.zeros(mask.shape)
        full[mask] = f3[c]
        frac[name] = full
    want_lesion = flair is not None or lesion_mask is not None
    if want_lesion:
        lm = (np.asarray(lesion_mask.data) > 0) if lesion_mask is not None else None
        les = _lesion_fraction(None if flair is None else flair.data, lm, mask, frac, lesion_z)
        non_csf = frac["GM"] + frac["WM"]
        les = np.minimum(les, non_csf)
        core = les >= 0.5
        # take the lesion share from WM first, then GM; GM = 0 in lesion cores (paper 000)
        from_wm = np.minimum(les, frac["WM"])
        wm = frac["WM"] - from_wm
        gm = frac["GM"] - (les - from_wm)
        wm = np.where(core, non_csf - les, wm)
        gm = np.where(core, 0.0, gm)
        frac["GM"], frac["WM"], frac["lesion"] = np.maximum(gm, 0.0), np.maximum(wm, 0.0), les
    out = {name: t1w.with_data(arr.astype(np.float32), tissue=name) for name, arr in frac.items()}
    return (out, fit) if return_fit else out


def evaluate_fractions(estimated: dict[str, Volume], truth: dict[str, Volume], brain_mask: Volume) -> dict:
    """Mean absolute fraction error per tissue inside the brain and Dice of the argmax labels per tissue."""
    from .maps import labels_from_fractions, DEFAULT_LABELS

    mask = np.asarray(brain_mask.data) > 0
    names = [t for t in estimated if t in truth]
    mae = {t: float(np.abs(estimated[t].data[mask] - truth[t].data[mask]).mean()) for t in names}
    le = labels_from_fractions({t: estimated[t] for t in names}).data
    lt = labels_from_fractions({t: truth[t] for t in names}).data
    dice = {}
    for t in names:
        a, b = (le == DEFAULT_LABELS[t]) & mask, (lt == DEFAULT_LABELS[t]) & mask
        denom = a.sum() + b.sum()
        dice[t] = float(2 * (a & b).sum() / denom) if denom else float("nan")
    return {"mae": mae, "dice": dice}
