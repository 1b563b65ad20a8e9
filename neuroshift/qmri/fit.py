"""Voxel-wise fit of PD/T1/T2/T2* maps from two or more acquisitions with known parameters.

What a set of acquisitions identifies is decided from the model itself: at
representative tissues (the 3 T table: CSF, GM, WM, lesion) we take the
Jacobian of log S with respect to (log PD, log T1, log T2, log T2*) over the
acquisitions; a relaxation time is *identified* when its unit vector lies in
the Jacobian's row space (a combination of the log-signals isolates it).
Unidentified parameters are fixed to a neutral value (T1 → 0: full recovery;
T2, T2* → ∞: no decay) and their effect is absorbed into an **apparent PD**
(for example two echoes at one TR give T2 and PD·(1 − e^{−TR/T1})). PD is
always returned (apparent unless T1 and the echo decay are identified, and
including the receive field unless a B1 map is given). When no relaxation
time is identified (e.g. two acquisitions that change both TE and TR) the
fit is refused with a message saying what to add.

Methods (``method="auto"``):

* **two-point / log-linear echo fit** when every acquisition has the same
  sequence and parameters except TE: ``T2 = (TE2 − TE1)/ln(S1/S2)`` (T2* for
  gradient echoes), exact on noise-free data; more echoes: weighted
  log-linear least squares.
* **DESPOT1 / variable flip angle** when every acquisition is a spoiled GRE at
  one TR and TE: ``S/sin α = E1·S/tan α + M0(1 − E1)`` is linear, so
  ``T1 = −TR/ln(slope)`` and ``PD_app = intercept/(1 − E1)``.
* otherwise a vectorised **Levenberg–Marquardt** least squares (numpy,
  batched over voxels) over the log relaxation times with PD projected out
  (variable projection), started from the best point of a coarse grid, which
  handles the non-convex magnitude IR/FLAIR models.

Voxels outside ``mask`` or without positive signal get 0 in every map (no
NaN, no warnings); fitted times are clipped to :data:`BOUNDS_MS` and the
number of clipped voxels is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import InputError, MissingParameterError, ParameterRangeError
from ..io.params import AcquisitionParams
from ..io.volume import Volume
from ..physics.relaxation import relaxation_table
from ..physics.signal import sequence_signal
from .maps import QMRIMaps, check_volume
from .closed import despot1_fit, echo2_fit
from .nlls import fit_nlls
from .synth import T2_FAMILY, T2STAR_FAMILY

__all__ = ["fit", "FitResult", "identify", "Identification", "BOUNDS_MS", "PARAMS"]

PARAMS = ("PD", "T1", "T2", "T2star")
#: Clipping range of fitted relaxation times (ms).
BOUNDS_MS = {"T1": (1.0, 10000.0), "T2": (1.0, 5000.0), "T2star": (0.5, 3000.0)}


@dataclass
class Identification:
    """Which parameters a set of acquisitions identifies."""

    influential: list[str]
    identified: list[str]            # relaxation times that are fitted
    apparent_pd: bool                # PD absorbs unidentified factors
    absorbed: list[str]              # influential but unidentified (folded into PD or refused)

    def describe(self) -> str:
        pd = "apparent PD (absorbs " + ", ".join(self.absorbed) + ")" if self.apparent_pd and self.absorbed else "PD"
        return ", ".join([pd] + self.identified)


@dataclass
class FitResult:
    """Maps a fit produced, what they mean, and how they were obtained."""

    maps: QMRIMaps
    identified: list[str]
    method: str
    notes: list[str] = field(default_factory=list)
    identification: Identification | None = None

    def report(self) -> dict:
        return {
            "maps": list(self.maps.maps),
            "identified": self.identified,
            "method": self.method,
            "notes": self.notes,
            "apparent_pd": bool(self.identification.apparent_pd) if self.identification else None,
            "not_identified": self.identification.absorbed if self.identification else [],
        }


# --------------------------------------------------------------------------- forward model
def _norm_seq(seq: str) -> str:
    s = seq.lower()
    s = "se" if s == "fse" else s
    if s not in T2_FAMILY + T2STAR_FAMILY:
        raise ParameterRangeError(f"unknown sequence '{seq}'; choose one of se, ir, flair, dir, gre, mprage")
    return s


def _forward(acqs, pd, t1, t2, t2s, b1=1.0) -> np.ndarray:
    """Signals (..., m) of every acquisition for parameter arrays broadcast together."""
    out = []
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        for seq, p in acqs:
            if seq in T2_FAMILY:
                s = sequence_signal(seq, p, pd=pd, t1_ms=t1, t2_ms=t2, b1=b1, multi_echo=True)  # as qmri.model
            else:
                s = sequence_signal(seq, p, pd=pd, t1_ms=t1, t2star_ms=t2s, b1=b1)
            out.append(np.broadcast_to(np.asarray(s, dtype=np.float64), np.broadcast(pd, t1, t2, t2s).shape))
    return np.stack(out, axis=-1)


def _log_jacobian(acqs, point: dict[str, float], names: Sequence[str]) -> np.ndarray:
    h = 1e-5
    cols = []
    for n in names:
        up, dn = dict(point), dict(point)
        up[n] *= np.exp(h)
        dn[n] *= np.exp(-h)
        su = _forward(acqs, up["PD"], up["T1"], up["T2"], up["T2star"])
        sd = _forward(acqs, dn["PD"], dn["T1"], dn["T2"], dn["T2star"])
        with np.errstate(divide="ignore", invalid="ignore"):
            cols.append((np.log(np.abs(su)) - np.log(np.abs(sd))) / (2 * h))
    return np.nan_to_num(np.stack(cols, axis=-1), nan=0.0, posinf=0.0, neginf=0.0)


def identify(sequences: Sequence[str], params: Sequence[AcquisitionParams]) -> Identification:
    """Decide which of PD, T1, T2, T2* the acquisitions identify (see the module docstring)."""
    acqs = [(_norm_seq(s), p) for s, p in zip(sequences, params)]
    table = relaxation_table(3.0)
    points = [dict(PD=t.pd, T1=t.t1_ms, T2=t.t2_ms, T2star=t.t2star_ms) for t in table.values()]
    jacs = [_log_jacobian(acqs, pt, PARAMS) for pt in points]
    influential = [n for j, n in enumerate(PARAMS) if max(np.abs(J[:, j]).max() for J in jacs) > 1e-6]
    identified = []
    for name in PARAMS:
        if name not in influential:
            continue
        ok = True
        for J in jacs:
            cols = [PARAMS.index(n) for n in influential]
            A = J[:, cols].T  # (k, m): is e_j in the row space of J?
            e = np.zeros(len(cols))
            e[influential.index(name)] = 1.0
            # project e onto the column space of A, ignoring directions with tiny singular values
            # (finite-difference noise must not make parallel columns look independent)
            U, sv, _ = np.linalg.svd(A, full_matrices=False)
            r = int(np.count_nonzero(sv > 1e-6 * max(sv.max(), 1e-300)))
            Ur = U[:, :r]
            if np.linalg.norm(e - Ur @ (Ur.T @ e)) > 1e-3:
                ok = False
                break
        if ok:
            identified.append(name)
    relax = [n for n in identified if n != "PD"]
    absorbed = [n for n in influential if n not in identified and n != "PD"]
    return Identification(influential, relax, apparent_pd="PD" not in identified, absorbed=absorbed)


# --------------------------------------------------------------------------- fit
def fit(images: Sequence[Volume], sequence: str | Sequence[str], params: Sequence[AcquisitionParams], *,
        mask: Volume | None = None, b1: Volume | None = None, method: str = "auto",
        names: Sequence[str] | None = None, max_iter: int = 60, chunk: int = 200_000) -> FitResult:
    """Fit quantitative maps voxel-wise; returns only the maps the acquisitions identify.

    ``images``: two or more magnitude images on one grid; ``sequence``: one name
    for all or one per image ("se", "ir", "flair", "dir", "gre", "mprage");
    ``params``: one :class:`AcquisitionParams` per image (ms, degrees);
    ``mask``: voxels to fit (others 0); ``b1``: receive field, divided out of PD;
    ``method``: "auto", "closed" (refuse if no closed form applies) or "nlls";
    ``names``: labels of the images used in error messages.
    """
    images = list(images)
    n = len(images)
    names = list(names) if names is not None else [f"image {i + 1}" for i in range(n)]
    if n < 2:
        raise InputError(f"a fit needs two or more acquisitions, got {n}")
    seqs = [sequence] * n if isinstance(sequence, str) else list(sequence)
    if len(seqs) != n:
        raise InputError(f"{len(seqs)} sequence names for {n} images; give one for all or one per image")
    params = list(params)
    if len(params) != n:
        raise MissingParameterError(f"{len(params)} parameter sets for {n} images; give one per image "
                                    "(separated by ';')")
    seqs = [_norm_seq(s) for s in seqs]
    for s, p, name in zip(seqs, params, names):
        p.require(s, context=name)
    if method not in ("auto", "closed", "nlls"):
        raise ParameterRangeError(f"unknown fit method '{method}'; use auto, closed or nlls")
    ref = images[0]
    for vol, name in zip(images, names):
        check_volume(vol, name)
        ref.require_same_grid(vol, f"{names[0]} and {name}")
    for extra, what in ((mask, "mask"), (b1, "B1 map")):
        if extra is not None:
            check_volume(extra, what)
            ref.require_same_grid(extra, f"{names[0]} and the {what}")

    ident = identify(seqs, params)
    if not ident.identified:
        raise InputError(
            "these acquisitions identify no relaxation time: "
            + (f"{', '.join(ident.absorbed)} cannot be separated from each other or from PD" if ident.absorbed
               else "their signals do not depend on T1, T2 or T2*")
            + "; vary one parameter at a time (e.g. two TEs at one TR for T2, two flip angles at one TR/TE for T1) "
              "or add acquisitions")

    acqs = list(zip(seqs, params))
    notes: list[str] = []
    closed = _closed_form_kind(acqs, ident)
    if method == "closed" and closed is None:
        raise InputError("no closed form applies to these acquisitions (needs echoes differing only in TE, or "
                         "GRE flip angles at one TR and TE); use method 'auto' or 'nlls'")
    if closed is not None and method != "nlls":
        used = closed[0]
        if used == "echo":
            te = np.array([p.TE_ms for _, p in acqs])
            key = ident.identified[0]

            def solve(Yv):
                pd_app, tt = _fit_echoes(Yv, te)
                return {"PD": pd_app, key: tt}
        else:  # despot1
            fa, tr = np.array([p.FA_deg for _, p in acqs]), acqs[0][1].TR_ms

            def solve(Yv):
                pd_app, t1 = _fit_despot1(Yv, fa, tr)
                return {"PD": pd_app, "T1": t1}
        block = CLOSED_BLOCK
    else:
        used = "nlls"

        def solve(Yv):
            return fit_nlls(Yv, acqs, ident.identified, BOUNDS_MS, max_iter=max_iter, chunk=chunk)
        block = chunk
    if used == "echo" and len(acqs) == 2:  # fused kernels (same results as the general block-wise path)
        pd_map, t_map, n = echo2_fit(images, te, mask, b1, BOUNDS_MS[key])
        out, n_clip = {"PD": pd_map, key: t_map}, {key: n}
    elif used == "despot1":
        pd_map, t_map, n = despot1_fit(images, fa, tr, mask, b1, BOUNDS_MS["T1"])
        out, n_clip = {"PD": pd_map, "T1": t_map}, {"T1": n}
    else:
        out, n_clip = _blockwise(images, mask, b1, ["PD"] + ident.identified, solve, block)
    for k in ident.identified:
        if n_clip[k]:
            lo, hi = BOUNDS_MS[k]
            notes.append(f"{k}: {n_clip[k]} voxel(s) outside [{lo:g}, {hi:g}] ms were clipped")
    if b1 is not None:
        notes.append("PD divided by the receive field (B1 map)")
    else:
        notes.append("PD includes the receive field B1 (no B1 map given)")
    if ident.apparent_pd and ident.absorbed:
        notes.append("PD is apparent: it absorbs the " + ", ".join(
            {"T1": "T1 weighting (1 - e^{-TR/T1} etc.)", "T2": "T2 decay e^{-TE/T2}",
             "T2star": "T2* decay e^{-TE/T2*}"}[a] for a in ident.absorbed) + ", which the inputs do not identify")
    not_written = [k for k in ("T1", "T2", "T2star") if k not in ident.identified]
    if not_written:
        notes.append("not identified by these inputs, so not written: " + ", ".join(not_written))
    shape = ref.data.shape
    maps = QMRIMaps({k: ref.with_data(v.reshape(shape)) for k, v in out.items()})
    identified = ["PD (apparent)" if ident.apparent_pd and ident.absorbed else "PD"] + ident.identified
    method_name = {"echo": "log-linear echo fit (closed form)", "despot1": "DESPOT1 variable flip angle (closed form)",
                   "nlls": "Levenberg-Marquardt least squares (variable projection, grid start)"}[used]
    return FitResult(maps, identified, method_name, notes, ident)


# --------------------------------------------------------------------------- block-wise driver
#: Voxels per block of the closed-form fits (float64 scratch of a few hundred KiB: stays in cache).
CLOSED_BLOCK = 1 << 14


def _blockwise(images, mask, b1, names, solve, block):
    """Run ``solve`` on the fitted voxels block by block and write float32 maps straight into the outputs.

    Per block: the signals (float64, block × m), the voxels to fit (any signal > 0, inside ``mask``),
    ``solve`` on those, then clipping of the relaxation times to :data:`BOUNDS_MS` (non-finite -> the
    nearest bound), PD cleaned (non-finite or negative -> 0) and divided by ``b1`` where it is > 0 (0
    elsewhere). Full-size memory: the output maps only. Returns (maps as flat float32, clip counts).
    """
    flats = [np.ravel(v.data) for v in images]
    n, m = flats[0].size, len(flats)
    mflat = None if mask is None else np.ravel(mask.data)
    bflat = None if b1 is None else np.ravel(b1.data)
    out = {k: np.zeros(n, np.float32) for k in names}
    n_clip = {k: 0 for k in names if k != "PD"}
    block = max(1, min(int(block), n))
    Yb = np.empty((block, m))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        for s in range(0, n, block):
            e = min(s + block, n)
            y = Yb[:e - s]
            for j, f in enumerate(flats):
                y[:, j] = f[s:e]
            valid = (y > 0).any(1)
            if mflat is not None:
                valid &= mflat[s:e] > 0
            idx = np.flatnonzero(valid)
            if idx.size == 0:
                continue
            res = solve(y if idx.size == e - s else y[idx])
            for k in names:
                x = np.asarray(res[k], dtype=np.float64)
                if k == "PD":
                    x = np.where(np.isfinite(x) & (x > 0), x, 0.0)
                    if bflat is not None:
                        b = bflat[s:e][idx].astype(np.float64)
                        x = np.where(b > 0, x / np.where(b > 0, b, 1.0), 0.0)
                else:
                    lo, hi = BOUNDS_MS[k]
                    n_clip[k] += int(np.count_nonzero(~((x >= lo) & (x <= hi))))
                    x = np.clip(np.nan_to_num(x, nan=hi, posinf=hi, neginf=lo), lo, hi)
                out[k][s + idx] = x
    return out, n_clip


# --------------------------------------------------------------------------- closed forms
def _same_except(acqs, allowed: set[str]) -> bool:
    seq0, p0 = acqs[0]
    k0 = p0.known()
    for seq, p in acqs[1:]:
        if seq != seq0:
            return False
        k = p.known()
        keys = (set(k) | set(k0)) - allowed - {"field_T"}
        if any(k.get(x) != k0.get(x) for x in keys):
            return False
    return True


def _closed_form_kind(acqs, ident: Identification):
    seq0 = acqs[0][0]
    if ident.identified in (["T2"], ["T2star"]) and _same_except(acqs, {"TE_ms"}):
        if len({p.TE_ms for _, p in acqs}) >= 2:
            return "echo", None
    if seq0 == "gre" and ident.identified == ["T1"] and _same_except(acqs, {"FA_deg"}):
        if len({p.FA_deg for _, p in acqs}) >= 2:
            return "despot1", None
    return None


def _fit_echoes(Y: np.ndarray, te: np.ndarray):
    """S = A·e^{−TE/T}: two echoes exactly, more by log-linear LS weighted by S² (noise-robust)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if Y.shape[1] == 2:
            s1, s2 = Y[:, 0], Y[:, 1]
            ratio = np.log(np.where(s2 > 0, s1, 1.0) / np.where(s2 > 0, s2, 1.0))
            T = np.where((s1 > 0) & (s2 > 0) & (ratio != 0), (te[1] - te[0]) / np.where(ratio != 0, ratio, 1.0),
                         np.inf)
            T = np.where(T <= 0, np.inf, T)  # no decay (or growth from noise) -> upper bound after clipping
            A = np.where(s1 > 0, s1 * np.exp(np.where(np.isfinite(T), te[0] / T, 0.0)), np.maximum(s2, 0.0))
            return A, T
        pos = Y > 0
        w = np.where(pos, Y ** 2, 0.0)
        L = np.log(np.where(pos, Y, 1.0))
        sw = w.sum(1)
        sx = (w * te).sum(1)
        sy = (w * L).sum(1)
        sxx = (w * te ** 2).sum(1)
        sxy = (w * te * L).sum(1)
        den = sw * sxx - sx ** 2
        ok = den > 1e-12 * np.maximum(sw * sxx, 1e-300)
        slope = np.where(ok, (sw * sxy - sx * sy) / np.where(ok, den, 1.0), 0.0)
        icpt = np.where(sw > 0, (sy - slope * sx) / np.where(sw > 0, sw, 1.0), 0.0)
        T = np.where(slope < 0, -1.0 / np.where(slope < 0, slope, -1.0), np.inf)
        A = np.where(sw > 0, np.exp(icpt), 0.0)
        return A, T


def _fit_despot1(Y: np.ndarray, fa_deg: np.ndarray, tr_ms: float):
    """DESPOT1: S/sin α = E1·S/tan α + M0(1 − E1), least-squares line over the flip angles."""
    a = np.deg2rad(fa_deg)
    x = Y / np.tan(a)
    y = Y / np.sin(a)
    m = Y.shape[1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mx, my = x.mean(1), y.mean(1)
        sxx = ((x - mx[:, None]) ** 2).sum(1)
        sxy = ((x - mx[:, None]) * (y - my[:, None])).sum(1)
        ok = sxx > 0
        e1 = np.where(ok, sxy / np.where(ok, sxx, 1.0), np.nan)
        icpt = my - e1 * mx
        e1_ok = (e1 > 0) & (e1 < 1)
        T1 = np.where(e1_ok, -tr_ms / np.log(np.where(e1_ok, e1, 0.5)), np.where(e1 >= 1, np.inf, 0.0))
        M0 = np.where(e1_ok, icpt / np.where(e1_ok, 1 - e1, 1.0), my)
    del m
    return M0, T1
