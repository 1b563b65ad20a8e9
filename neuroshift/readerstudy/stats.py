"""Statistics of reader studies (NumPy/SciPy only), with the conventions of paper 004.

* :func:`clopper_pearson`: exact binomial interval of a proportion (SE);
* :func:`t_interval`: mean and Student-t half-width (df = n - 1) of per-patient
  counts (false detections per patient);
* :func:`mcnemar_midp`: two-sided McNemar mid-p, ``2[P(X <= k) - P(X = k)/2]``,
  ``X ~ Bin(b + c, 1/2)``, ``k = min(b, c)`` (capped at 1);
* :func:`wilcoxon_signed_rank`: SciPy's signed-rank test (zero differences
  dropped, normal approximation with tie correction, no continuity correction:
  the defaults of SciPy 1.5 for n > 25 that the paper used);
* :func:`paired_t`, :func:`unpaired_t`, :func:`rank_sum` (Mann-Whitney U);
* agreement: :func:`cohen_kappa` (unweighted, linear or quadratic weights) and
  :func:`icc_2_1` (two-way random, absolute agreement, single rater, with the
  McGraw & Wong confidence interval);
* display: :func:`round_half_even`, :func:`percent`, :func:`format_p`,
  :func:`format_duration` (145 s -> ``2'25''``).

Averages across readers are computed from unrounded values; only display rounds.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Sequence

import numpy as np
from scipy import stats

#: Options recorded in every report.
TEST_OPTIONS = {
    "alpha": 0.05,
    "sidedness": "two-sided",
    "se_interval": "Clopper-Pearson (exact binomial)",
    "fdr_interval": "Student t, df = n_patients - 1, of per-patient false-positive counts",
    "mcnemar": "mid-p, 2[P(X<=k) - P(X=k)/2], X ~ Bin(b+c, 1/2)",
    "wilcoxon": "scipy.stats.wilcoxon(zero_method='wilcox', correction=False, method='approx')",
    "t_tests": "scipy.stats.ttest_ind (Student, equal variances) between image sets and readers; ttest_rel when paired",
    "kappa": "Cohen's kappa; weighted with linear and quadratic weights",
    "icc": "ICC(2,1): two-way random effects, absolute agreement, single rater (McGraw & Wong 1996)",
    "rounding": "on display only: round half to even (percentages, rates, means); p-values half up",
}


# ------------------------------------------------------------------ intervals
def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 1 - alpha interval of k successes out of n."""
    if n <= 0:
        return (math.nan, math.nan)
    lo = 0.0 if k <= 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k >= n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def t_interval(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float]:
    """(mean, half-width) of the Student-t 1 - alpha interval of the mean (sample SD, df = n - 1)."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        return (math.nan, math.nan)
    if n == 1:
        return (float(x[0]), math.nan)
    half = float(stats.t.ppf(1 - alpha / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return float(x.mean()), half


# ------------------------------------------------------------------ tests
def mcnemar_midp(b: int, c: int) -> float:
    """Two-sided McNemar mid-p value from the discordant counts b and c (1.0 when b = c or both 0)."""
    n = int(b) + int(c)
    if n == 0:
        return 1.0
    k = min(int(b), int(c))
    dist = stats.binom(n, 0.5)
    return float(min(1.0, 2.0 * (dist.cdf(k) - 0.5 * dist.pmf(k))))


def mcnemar_counts(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int]:
    """Discordant counts (a only, b only) of two paired binary outcomes."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p of paired samples (1.0 when all differences are zero)."""
    d = np.asarray(x, float) - np.asarray(y, float)
    if d.size == 0 or np.all(d == 0):
        return 1.0
    res = stats.wilcoxon(d, zero_method="wilcox", correction=False, alternative="two-sided", method="approx")
    return float(res.pvalue)


def rank_sum(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided Wilcoxon rank-sum (Mann-Whitney U) p of independent samples."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size == 0 or y.size == 0:
        return math.nan
    if np.all(np.concatenate([x, y]) == x[0]):
        return 1.0
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def paired_t(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2:
        return math.nan
    if np.all(x - y == (x - y)[0]):
        return 1.0 if (x - y)[0] == 0 else 0.0
    return float(stats.ttest_rel(x, y).pvalue)


def unpaired_t(x: Sequence[float], y: Sequence[float], *, equal_var: bool = True) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2 or y.size < 2:
        return math.nan
    if x.std() == 0 and y.std() == 0:
        return 1.0 if x[0] == y[0] else 0.0
    return float(stats.ttest_ind(x, y, equal_var=equal_var).pvalue)


# ------------------------------------------------------------------ agreement
def cohen_kappa(a: Sequence, b: Sequence, *, categories: Sequence | None = None,
                weights: str | None = None) -> float:
    """Cohen's kappa of two raters; ``weights`` None, ``"linear"`` or ``"quadratic"`` (ordinal categories)."""
    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        raise ValueError("kappa needs two equally long, non-empty rating lists")
    cats = list(categories) if categories is not None else sorted(set(a) | set(b))
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    obs = np.zeros((k, k))
    for x, y in zip(a, b):
        obs[index[x], index[y]] += 1
    obs /= obs.sum()
    exp = np.outer(obs.sum(1), obs.sum(0))
    i, j = np.indices((k, k))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j) / max(k - 1, 1)
    elif weights == "quadratic":
        w = (i - j) ** 2 / max(k - 1, 1) ** 2
    else:
        raise ValueError(f"weights: None, 'linear' or 'quadratic', got {weights!r}")
    denom = float((w * exp).sum())
    if denom == 0:
        return 1.0 if float((w * obs).sum()) == 0 else math.nan
    return float(1.0 - (w * obs).sum() / denom)


def icc_2_1(ratings: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """ICC(2,1) of an (n subjects x k raters) matrix with its 1 - alpha interval (McGraw & Wong 1996, case 2A)."""
    y = np.asarray(ratings, float)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
        raise ValueError("ICC needs an n x k matrix with n >= 2 subjects and k >= 2 raters")
    n, k = y.shape
    grand = y.mean()
    ssr = k * ((y.mean(1) - grand) ** 2).sum()
    ssc = n * ((y.mean(0) - grand) ** 2).sum()
    sse = ((y - grand) ** 2).sum() - ssr - ssc
    msr = ssr / (n - 1)
    msc = ssc / (k - 1)
    mse = sse / ((n - 1) * (k - 1))
    denom = msr + (k - 1) * mse + k * (msc - mse) / n
    if denom == 0:
        return (math.nan, math.nan, math.nan)
    icc = (msr - mse) / denom
    if mse == 0:
        return float(icc), math.nan, math.nan
    fr = msr / mse
    a = k * icc / (n * (1 - icc)) if icc != 1 else math.inf
    b = 1 + k * icc * (n - 1) / (n * (1 - icc)) if icc != 1 else math.inf
    vn = (a * msc + b * mse) ** 2
    vd = (a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1))
    v = vn / vd if vd > 0 else math.inf
    f_lo = stats.f.ppf(1 - alpha / 2, n - 1, v)
    f_hi = stats.f.ppf(1 - alpha / 2, v, n - 1)
    lo = n * (msr - f_lo * mse) / (f_lo * (k * msc + (k * n - k - n) * mse) + n * msr)
    hi = n * (f_hi * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_hi * msr)
    return float(icc), float(lo), float(hi)


# ------------------------------------------------------------------ display
def round_half_even(value: float, digits: int = 0, *, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """Round for display, half to even, after removing binary noise (0.625 -> 0.62, 62.5 -> 62)."""
    d = Decimal(repr(float(f"{value:.12g}")))
    return d.quantize(Decimal(1).scaleb(-digits), rounding=rounding)


def percent(value: float, digits: int = 0) -> str:
    """``0.625 -> '62%'`` (round half to even)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{round_half_even(100.0 * value, digits)}%"


def fixed(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return str(round_half_even(value, digits))


def format_p(p: float) -> str:
    """p-value as in the paper's tables: ``p<.001``, ``p=.01``, ``p=.046``, ``p>.99``.

    p-values round half up (a mid-p of exactly 0.125 is shown ``p=.13``, as in
    paper 004's Table 5); three decimals below .01 and near .05.
    """
    if p is None or math.isnan(p):
        return "n/a"
    if p < 0.001:
        return "p<.001"
    if p > 0.99:
        return "p>.99"
    digits = 3 if p < 0.01 or 0.045 <= p < 0.055 else 2
    text = str(round_half_even(p, digits, rounding=ROUND_HALF_UP))
    return "p=" + text.lstrip("0")


def format_duration(seconds: float) -> str:
    """Seconds as minutes' and seconds'': ``145 -> 2'25''`` (seconds rounded half to even)."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "n/a"
    total = int(round_half_even(seconds, 0))
    return f"{total // 60}'{total % 60:02d}''"
