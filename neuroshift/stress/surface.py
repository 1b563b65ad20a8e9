"""Response surfaces: a metric (lesion F1...) as a polynomial of the grid parameters, by OLS.

Paper 000's Eq. 10 is the ``quadratic`` form in two parameters::

    F1 = b0 + b1·TE + b2·TI + b3·TE² + b4·TI² + b5·TE·TI

Forms (any number of parameters; terms ordered by degree, pure powers first):

* ``linear``       1, x_i
* ``interaction``  1, x_i, x_i·x_j
* ``quadratic``    1, x_i, x_i², x_i·x_j  (full second order = Eq. 10 for two parameters)
* ``cubic``        every monomial of total degree <= 3
* ``auto``         quadratic, or cubic when the quadratic fits badly (adjusted R² < 0.9) and
                   the grid identifies the cubic terms

The fit is done on *coded* variables ``z = (x − centre) / half_range`` (each in
[−1, 1] over the grid), which keeps the normal equations well conditioned; the
coefficients and their standard errors are then transformed exactly to
**original units** (ms, degrees...) by expanding each coded monomial — the
covariance goes through the same linear map. Both sets are reported.

Relative influence of each parameter (two views, both in ``influence``):

* ``share``: its share of the explained variation — the increase of the residual
  sum of squares when every term containing the parameter is removed (partial SS
  of the parameter with its interactions), normalised to sum to 1;
* ``effect_range``: max − min of the fitted surface when the parameter spans its
  grid range with the others held at their centre (metric units).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError

FORMS = ("linear", "interaction", "quadratic", "cubic", "auto")
AUTO_THRESHOLD = 0.9


class SurfaceFitError(InputError):
    """The grid cannot identify the requested surface (too few levels or points)."""


def form_terms(form: str, k: int) -> list[tuple[int, ...]]:
    """Exponent tuples of the form's monomials in ``k`` variables (intercept first)."""
    form = form.lower().replace("full-quadratic", "quadratic").replace("full_quadratic", "quadratic")
    degree = {"linear": 1, "interaction": 2, "quadratic": 2, "cubic": 3}.get(form)
    if degree is None:
        raise InputError(f"unknown surface form '{form}'; choose one of {', '.join(FORMS)}")
    terms = [e for e in itertools.product(range(degree + 1), repeat=k) if sum(e) <= degree]
    if form == "interaction":
        terms = [e for e in terms if max(e, default=0) <= 1]
    # degree, then pure powers before mixed terms, then variable order (x0 before x1)
    return sorted(terms, key=lambda e: (sum(e), sum(1 for p in e if p) > 1, [-p for p in e]))


def term_name(exponents: Sequence[int], names: Sequence[str]) -> str:
    parts = [n if p == 1 else f"{n}^{p}" for n, p in zip(names, exponents) if p]
    return "*".join(parts) if parts else "1"


def _design(z: np.ndarray, terms: Sequence[tuple[int, ...]]) -> np.ndarray:
    return np.column_stack([np.prod(z ** np.asarray(e, dtype=float), axis=1) for e in terms]) \
        if z.shape[1] else np.ones((z.shape[0], 1))


def _to_original(terms: Sequence[tuple[int, ...]], centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Matrix ``T`` with ``b_original = T @ b_coded`` (exact binomial expansion of the coded monomials)."""
    index = {e: i for i, e in enumerate(terms)}
    t = np.zeros((len(terms), len(terms)))
    for col, e in enumerate(terms):
        for q in itertools.product(*(range(p + 1) for p in e)):
            coef = 1.0
            for p_i, q_i, c_i, s_i in zip(e, q, centre, scale):
                coef *= math.comb(p_i, q_i) * (-c_i) ** (p_i - q_i) / s_i ** p_i
            t[index[tuple(q)], col] += coef
    return t


@dataclass
class SurfaceFit:
    """An OLS response surface; coefficients in original units (and coded, for comparison)."""

    form: str
    variables: list[str]
    terms: list[tuple[int, ...]]
    term_names: list[str]
    coefficients: np.ndarray         #: original units
    std_errors: np.ndarray           #: original units (NaN when n == number of terms)
    coded_coefficients: np.ndarray   #: per unit of z = (x - centre) / half_range
    coded_std_errors: np.ndarray
    centre: np.ndarray
    half_range: np.ndarray
    n: int
    r2: float | None
    adj_r2: float | None
    rmse: float
    influence: dict[str, dict[str, float]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  #: parameters with a single grid value (not in the fit)
    notes: list[str] = field(default_factory=list)
    fitted: np.ndarray | None = None
    observed: np.ndarray | None = None

    def predict(self, x: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
        """Surface values at points given as ``{variable: values}`` or an ``(n, k)`` array (original units)."""
        if isinstance(x, Mapping):
            arr = np.column_stack([np.asarray(x[v], dtype=float).reshape(-1) for v in self.variables]) \
                if self.variables else np.zeros((len(next(iter(x.values()), [0])), 0))
        else:
            arr = np.asarray(x, dtype=float).reshape(-1, len(self.variables))
        z = (arr - self.centre) / self.half_range
        return _design(z, self.terms) @ self.coded_coefficients

    def to_dict(self) -> dict:
        def num(v):
            v = float(v)
            return v if math.isfinite(v) else None
        return {
            "form": self.form, "variables": self.variables, "n_points": self.n,
            "r2": self.r2, "adj_r2": self.adj_r2, "rmse": num(self.rmse),
            "terms": [{"term": nm, "coefficient": num(b), "std_error": num(se),
                       "coded_coefficient": num(cb), "coded_std_error": num(cse)}
                      for nm, b, se, cb, cse in zip(self.term_names, self.coefficients, self.std_errors,
                                                    self.coded_coefficients, self.coded_std_errors)],
            "coding": {v: {"centre": num(c), "half_range": num(h)}
                       for v, c, h in zip(self.variables, self.centre, self.half_range)},
            "influence": self.influence, "dropped": self.dropped, "notes": self.notes,
        }


def _ols(design: np.ndarray, y: np.ndarray):
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    return beta, float(resid @ resid)


def fit_surface(x: Mapping[str, Sequence[float]] | np.ndarray, y: Sequence[float], *, form: str = "quadratic",
                names: Sequence[str] | None = None) -> SurfaceFit:
    """Fit ``y`` as a polynomial of the parameters ``x`` (``{name: values}`` or ``(n, k)`` with ``names``)."""
    if isinstance(x, Mapping):
        names = list(x)
        arr = np.column_stack([np.asarray(x[n], dtype=float).reshape(-1) for n in names]) if names else None
    else:
        arr = np.asarray(x, dtype=float)
        arr = arr.reshape(len(arr), -1)
        names = list(names) if names is not None else [f"x{i}" for i in range(arr.shape[1])]
    y = np.asarray(y, dtype=float).reshape(-1)
    if arr is None:
        arr = np.zeros((y.size, 0))
    if arr.shape[0] != y.size:
        raise InputError(f"{arr.shape[0]} points but {y.size} response values")
    ok = np.isfinite(y) & np.all(np.isfinite(arr), axis=1)
    arr, y = arr[ok], y[ok]
    if form.lower() == "auto":
        quad = fit_surface(arr, y, form="quadratic", names=names)
        if quad.adj_r2 is not None and quad.adj_r2 >= AUTO_THRESHOLD:
            return quad
        try:
            cubic = fit_surface(arr, y, form="cubic", names=names)
        except SurfaceFitError:
            quad.notes.append("the quadratic fits badly but the grid cannot identify a cubic surface")
            return quad
        better = cubic if (cubic.adj_r2 or -np.inf) > (quad.adj_r2 or -np.inf) else quad
        better.notes.append(f"auto: quadratic adjusted R² = {_fmt(quad.adj_r2)}, cubic {_fmt(cubic.adj_r2)}; "
                            f"{better.form} chosen")
        return better
    keep = [i for i in range(arr.shape[1]) if np.ptp(arr[:, i]) > 0] if arr.size else []
    dropped = [names[i] for i in range(arr.shape[1]) if i not in keep]
    names_kept = [names[i] for i in keep]
    arr = arr[:, keep]
    terms = form_terms(form, len(keep))
    if y.size < len(terms):
        raise SurfaceFitError(f"a {form} surface in {', '.join(names_kept) or 'no parameters'} has {len(terms)} "
                              f"coefficients but only {y.size} grid points have results")
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    z = (arr - centre) / half
    design = _design(z, terms)
    rank = np.linalg.matrix_rank(design)
    if rank < len(terms):
        levels = {n: int(np.unique(arr[:, i]).size) for i, n in enumerate(names_kept)}
        raise SurfaceFitError(f"the grid cannot identify a {form} surface (levels per parameter: {levels}); "
                              "a quadratic needs >= 3 values per parameter, a cubic >= 4")
    beta, rss = _ols(design, y)
    n, p = y.size, len(terms)
    tss = float(np.sum((y - y.mean()) ** 2))
    notes = []
    scale_y = max(float(np.max(np.abs(y))), 1e-300)
    if tss <= (1e-12 * scale_y) ** 2 * n:
        r2 = adj = None
        notes.append("the response is constant over the grid: R² undefined")
    else:
        r2 = 1.0 - rss / tss
        adj = 1.0 - (1.0 - r2) * (n - 1) / (n - p) if n > p else None
    if n > p:
        sigma2 = rss / (n - p)
        cov = sigma2 * np.linalg.inv(design.T @ design)
    else:
        cov = np.full((p, p), np.nan)
        notes.append("as many coefficients as points: no standard errors")
    t = _to_original(terms, centre, half)
    coef = t @ beta
    se = np.sqrt(np.clip(np.diag(t @ cov @ t.T), 0, None))
    coded_se = np.sqrt(np.clip(np.diag(cov), 0, None))
    fit = SurfaceFit(form=form, variables=names_kept, terms=terms,
                     term_names=[term_name(e, names_kept) for e in terms], coefficients=coef, std_errors=se,
                     coded_coefficients=beta, coded_std_errors=coded_se, centre=centre, half_range=half, n=n,
                     r2=r2, adj_r2=adj, rmse=math.sqrt(rss / n) if n else float("nan"), dropped=dropped,
                     notes=notes, fitted=design @ beta, observed=y)
    fit.influence = _influence(fit, design, y, rss)
    if form == "quadratic" and adj is not None and adj < AUTO_THRESHOLD:
        need = len(form_terms("cubic", len(keep)))
        levels = [int(np.unique(arr[:, i]).size) for i in range(arr.shape[1])]
        if n >= need and min(levels, default=0) >= 4:  # only offer what this grid can fit
            fit.notes.append(f"the quadratic fits badly (adjusted R² = {adj:.3f}); try --surface cubic or auto")
        else:
            fit.notes.append(f"the quadratic fits badly (adjusted R² = {adj:.3f}); a cubic surface would need at "
                             f"least {need} grid points and >= 4 values per parameter (this grid: {n} points, "
                             f"{', '.join(f'{v} {c}' for v, c in zip(names_kept, levels))} values)")
    return fit


def _influence(fit: SurfaceFit, design: np.ndarray, y: np.ndarray, rss: float) -> dict[str, dict[str, float]]:
    partial = {}
    for i, name in enumerate(fit.variables):
        cols = [j for j, e in enumerate(fit.terms) if e[i] == 0]
        _, rss_i = _ols(design[:, cols], y)
        partial[name] = max(rss_i - rss, 0.0)
    total = sum(partial.values())
    out = {}
    for i, name in enumerate(fit.variables):
        z = np.zeros((201, len(fit.variables)))
        z[:, i] = np.linspace(-1, 1, 201)
        curve = _design(z, fit.terms) @ fit.coded_coefficients
        out[name] = {"share": partial[name] / total if total > 0 else 0.0,
                     "partial_ss": partial[name],
                     "effect_range": float(curve.max() - curve.min())}
    return out


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
