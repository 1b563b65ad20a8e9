"""The planted bugs of the mutation audit (``dev/mutation.py``): realistic one-line slips per area.

Each :class:`Mutant` replaces one exact snippet of one file. ``issue13`` marks the 21 survivors of the
first audit (issue 13); the others widen the audit to a comparable ~80 mutants over physics,
simulate, io, segment metrics/fusion/package, stress store/surface/runner and reader-study
stats/schedule. When a refactor removes a snippet the runner reports the mutant as *stale*: rewrite
it against the new code rather than deleting it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Mutant:
    area: str
    id: str
    file: str
    original: str
    mutated: str
    tests: tuple[str, ...]
    issue13: bool = False

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("original")
        d.pop("mutated")
        d["tests"] = list(self.tests)
        return d


def _t(*names: str) -> tuple[str, ...]:
    return tuple(f"Testing/{n}.py" for n in names)


T_PHYS = _t("physics/test_physics_signal", "physics/test_guard_physics_simulate")
T_NOISE = _t("physics/test_physics_signal", "simulate/test_simulate_shifts", "simulate/test_simulate_cli")
T_SIM = _t("physics/test_guard_physics_simulate", "simulate/test_simulate_tissuewise")
T_SHIFTS = _t("physics/test_guard_physics_simulate", "simulate/test_simulate_shifts")
T_GRID = _t("simulate/test_simulate_grid")
T_VOL = _t("io/test_guard_io", "io/test_io_volume")
T_PARAMS = _t("io/test_guard_io", "io/test_params")
T_ATOMIC = _t("io/test_guard_io", "io/test_io_volume", "safety/test_safety_writes")
T_METRICS = _t("segment/test_guard_metrics", "segment/test_metrics")
T_FUSION = _t("segment/test_fusion")
T_PACKAGE = _t("io/test_guard_io", "segment/test_guard_package", "segment/test_package")
T_STRESS = _t("stress/test_guard_stress", "stress/test_stress_engine")
T_RS_STATS = _t("readerstudy/test_guard_readerstudy", "readerstudy/test_readerstudy_stats")
T_RS_SCHED = _t("readerstudy/test_guard_readerstudy", "readerstudy/test_readerstudy_schedule")

SIG = "neuroshift/physics/signal.py"
NOISE = "neuroshift/physics/noise.py"
EST = "neuroshift/simulate/estimate.py"
TW = "neuroshift/simulate/tissuewise.py"
SHIFTS = "neuroshift/simulate/shifts.py"
GRID = "neuroshift/simulate/grid.py"
VOL = "neuroshift/io/volume.py"
PARAMS = "neuroshift/io/params.py"
ATOMIC = "neuroshift/io/atomic.py"
METRICS = "neuroshift/segment/metrics.py"
FUSION = "neuroshift/segment/fusion.py"
PACKAGE = "neuroshift/segment/package.py"
STORE = "neuroshift/stress/store.py"
RUNNER = "neuroshift/stress/runner.py"
SURFACE = "neuroshift/stress/surface.py"
STATS = "neuroshift/readerstudy/stats.py"
ANALYSIS = "neuroshift/readerstudy/analysis.py"
SCHED = "neuroshift/readerstudy/schedule.py"


def M(area, ident, file, original, mutated, tests, issue13=False) -> Mutant:
    return Mutant(area, ident, file, original, mutated, tuple(tests), issue13)


MUTANTS: list[Mutant] = [
    # ------------------------------------------------------------------ physics: signal equations
    M("physics", "valid-mask-T-ge-0", SIG, "        v = t > 0", "        v = t >= 0", T_PHYS, True),
    # (rewritten after ba75f52 made the spin-echo family exact: the refocusing pulse inverts Mz at TE/2)
    M("physics", "se-refocusing-dropped", SIG, '    s = b1 * pd * (_em1(be, tr, t1) - 2.0 * _em1(be, tr - 0.5 * te, t1)) * e2',
      "    s = b1 * pd * (-_em1(be, tr, t1)) * e2", T_PHYS),
    M("physics", "se-b1-dropped", SIG, '    s = b1 * pd * (_em1(be, tr, t1) - 2.0 * _em1(be, tr - 0.5 * te, t1)) * e2',
      '    s = pd * (_em1(be, tr, t1) - 2.0 * _em1(be, tr - 0.5 * te, t1)) * e2', T_PHYS),
    M("physics", "flair-inversion-factor", SIG, '    mz = 2.0 * _em1(be, trec - 0.5 * te, t1) - 2.0 * _em1(be, ti, t1) - _em1(be, trec, t1)',
      '    mz = 2.0 * _em1(be, trec - 0.5 * te, t1) - _em1(be, ti, t1) - _em1(be, trec, t1)', T_PHYS),
    M("physics", "flair-trec-default-ti", SIG, "    trec = tr_ms if trec_ms is None else trec_ms",
      "    trec = ti_ms if trec_ms is None else trec_ms", T_PHYS),
    M("physics", "flair-no-magnitude", SIG,
      '    mz = 2.0 * _em1(be, trec - 0.5 * te, t1) - 2.0 * _em1(be, ti, t1) - _em1(be, trec, t1)\n    if magnitude:\n        mz = be.abs(mz)',
      '    mz = 2.0 * _em1(be, trec - 0.5 * te, t1) - 2.0 * _em1(be, ti, t1) - _em1(be, trec, t1)', T_PHYS),
    M("physics", "dir-ti1-sign", SIG, "mz = (2.0 * (_em1(be, ti1, t1) - _em1(be, ti2, t1)",
      "mz = (2.0 * (-_em1(be, ti1, t1) - _em1(be, ti2, t1)", T_PHYS),
    M("physics", "gre-degrees-as-radians", SIG, "    a = fa * _DEG\n    e1 = _rec(be, tr, t1)",
      "    a = fa\n    e1 = _rec(be, tr, t1)", T_PHYS),
    M("physics", "gre-denominator-sign", SIG, "_ratio(be, 1.0 - e1, 1.0 - ca * e1)",
      "_ratio(be, 1.0 - e1, 1.0 + ca * e1)", T_PHYS),
    M("physics", "kernel-gre-cos-sign", "neuroshift/physics/kernels.py", '    a += 1.0 - p["cos"]',
      '    a += 1.0 + p["cos"]', T_PHYS),
    M("physics", "ernst-inverted", SIG, "arccos(be.exp(-tr / t1))", "arccos(be.exp(-t1 / tr))", T_PHYS),
    M("physics", "null-ti-refocusing-dropped", SIG,
      "be.xp.log((1.0 + 2.0 * be.exp(-(tr - 0.5 * te) / t1) - be.exp(-tr / t1)) / 2.0)",
      "be.xp.log((1.0 + be.exp(-tr / t1)) / 2.0)", T_PHYS),
    M("physics", "dispatch-trec-ignored", SIG, "trec_ms=p.Trec_ms, b1=b1)", "trec_ms=None, b1=b1)", T_PHYS),
    # ------------------------------------------------------------------ physics: noise
    M("physics", "rician-same-noise-twice", NOISE, "    out = np.sqrt((x + s * n1) ** 2 + (s * n2) ** 2)",
      "    out = np.sqrt((x + s * n1) ** 2 + (s * n1) ** 2)", T_NOISE),
    M("physics", "rician-sigma-split-sqrt2", NOISE,
      "    n1 = g.standard_normal(x.shape)\n    n2 = g.standard_normal(x.shape)",
      "    n1 = g.standard_normal(x.shape) / np.sqrt(2.0)\n    n2 = g.standard_normal(x.shape) / np.sqrt(2.0)",
      T_NOISE),
    M("physics", "rician-gaussian-only", NOISE, "    out = np.sqrt((x + s * n1) ** 2 + (s * n2) ** 2)",
      "    out = np.abs(x + s * n1)", T_NOISE),
    M("physics", "rician-mean-constant", NOISE, "return s * math.sqrt(math.pi / 2) * lag",
      "return s * math.sqrt(math.pi) * lag", T_NOISE),
    M("physics", "sigma-negative-accepted", NOISE, "np.any(s < 0)", "np.any(s < -1)", T_NOISE),
    # ------------------------------------------------------------------ simulate
    M("simulate", "param-arrays-t2star-from-t2", EST,
      "t2s = np.array([table[t].t2star_ms for t in tissues], dtype=np.float64)",
      "t2s = np.array([table[t].t2_ms for t in tissues], dtype=np.float64)", T_SIM, True),
    M("simulate", "texture-sign", EST,
      "        region -= (np.asarray(weights, dtype=np.float32) @ stack).reshape(region.shape)",
      "        region += (np.asarray(weights, dtype=np.float32) @ stack).reshape(region.shape)", T_SIM),
    # (a sign flip of the PD/T1/T2 log-updates is an equivalent mutant: symmetric priors, log-symmetric
    #  T1/T2 bounds, and the PD bounds only shift along the c·PD degeneracy; dropped after audit 1)
    M("simulate", "reference-may-be-dark", EST, "cand = fitted_mask & (mean >= 0.1 * top)", "cand = fitted_mask",
      T_SIM),
    M("simulate", "min-voxels-ignored", EST, "fitted = tuple(bool(m >= min_voxels) for m in mass)",
      "fitted = tuple(bool(m > 0) for m in mass)", T_SIM),
    M("simulate", "reference-least-abundant", EST, "ref = int(np.argmax(np.where(cand, signals.mass, -1.0)))",
      "ref = int(np.argmin(np.where(cand, signals.mass, np.inf)))", T_SIM),
    M("simulate", "fraction-tolerance-loose", TW, "FRACTION_TOLERANCE = 1e-3", "FRACTION_TOLERANCE = 1.5", T_SIM),
    M("simulate", "slice-axis-ijk-order", SHIFTS, "    sp = volume.spacing[::-1]", "    sp = volume.spacing", T_SHIFTS),
    M("simulate", "rect-profile-full-width", SHIFTS, "        half = width_vox / 2.0\n", "        half = width_vox\n",
      T_SHIFTS),
    M("simulate", "gaussian-fwhm-as-sigma", SHIFTS, "sigma = width_vox / (2.0 * np.sqrt(2.0 * np.log(2.0)))",
      "sigma = width_vox / 2.0", T_SHIFTS),
    M("simulate", "bias-divides", SHIFTS, "(np.asarray(data, dtype=np.float32) * field).astype(np.float32)",
      "(np.asarray(data, dtype=np.float32) / field).astype(np.float32)", T_SHIFTS),
    M("simulate", "grid-count-off-by-one", GRID, "values = np.linspace(start, stop, int(count))",
      "values = np.linspace(start, stop, int(count) + 1)[:-1]", T_GRID),
    M("simulate", "grid-point-order", GRID,
      "for combo in itertools.product(*(np.asarray(grid[k], dtype=np.float64) for k in keys))]",
      "for combo in itertools.product(*(np.asarray(grid[k], dtype=np.float64)[::-1] for k in keys))]", T_GRID),
    # ------------------------------------------------------------------ io: volume geometry
    M("io", "same-grid-ignores-origin", VOL, "            and np.allclose(self.origin, other.origin, atol=atol_mm)\n",
      "", T_VOL, True),
    M("io", "same-grid-ignores-direction", VOL,
      "            and np.allclose(self.direction, other.direction, atol=1e-4)\n", "", T_VOL),
    M("io", "require-grid-ignores-origin", VOL, "        if not np.allclose(self.origin, other.origin, atol=atol_mm):",
      "        if False:", T_VOL),
    M("io", "affine-order", VOL, "        m[:3, :3] = self.direction @ np.diag(self.spacing)",
      "        m[:3, :3] = np.diag(self.spacing) @ self.direction", T_VOL),
    M("io", "affine-spacing-axis", VOL, "        spacing = np.linalg.norm(lin, axis=0)",
      "        spacing = np.linalg.norm(lin, axis=1)", T_VOL),
    M("io", "zero-spacing-accepted", VOL, "        if np.any(self.spacing <= 0) or", "        if np.any(self.spacing < 0) or",
      T_VOL),
    # ------------------------------------------------------------------ io: acquisition parameters
    M("io", "sidecar-tx-in-seconds", PARAMS, '"RepetitionTimeExcitation": ("TX_ms", 1000.0),',
      '"RepetitionTimeExcitation": ("TX_ms", 1.0),', T_PARAMS, True),
    M("io", "multi-echo-last", PARAMS, "value = value[0] if value else None", "value = value[-1] if value else None",
      T_PARAMS, True),
    M("io", "sidecar-te-in-seconds", PARAMS, '"EchoTime": ("TE_ms", 1000.0),', '"EchoTime": ("TE_ms", 1.0),',
      T_PARAMS),
    M("io", "flair-ti-gt-tr-accepted", PARAMS, '        if seq in ("ir", "flair") and self.TI_ms > self.TR_ms:',
      '        if seq == "ir" and self.TI_ms > self.TR_ms:', T_PARAMS),
    M("io", "dir-equal-ti-accepted", PARAMS, "self.TI1_ms <= self.TI2_ms", "self.TI1_ms < self.TI2_ms", T_PARAMS),
    M("io", "dicom-multivalue-last", PARAMS, 'split("\\\\")[0], keyword)', 'split("\\\\")[-1], keyword)', T_PARAMS),
    M("io", "merge-precedence", PARAMS,
      "return replace(self, **{k: v for k, v in asdict(override).items() if v is not None})",
      "return replace(override, **{k: v for k, v in asdict(self).items() if v is not None})", T_PARAMS),
    M("io", "to-sidecar-ms", PARAMS, "else round(value / factor, 9)", "else round(value * factor, 9)", T_PARAMS),
    # ------------------------------------------------------------------ io: atomic writes
    M("io", "atomic-temp-kept-on-error", ATOMIC, "        tmp_path.unlink(missing_ok=True)\n        raise",
      "        raise", T_ATOMIC, True),
    M("io", "atomic-dir-removes-target-first", ATOMIC,
      '    remove_stale_temporaries(target)\n    prefix = f".{target.name}.ns-',
      '    remove_stale_temporaries(target)\n    shutil.rmtree(target, ignore_errors=True)\n'
      '    prefix = f".{target.name}.ns-', T_ATOMIC, True),
    M("io", "atomic-dir-temp-kept-on-error", ATOMIC,
      "    except BaseException:\n        shutil.rmtree(tmp, ignore_errors=True)\n        raise",
      "    except BaseException:\n        raise", T_ATOMIC),
    M("io", "atomic-dir-failed-swap-not-restored", ATOMIC,
      "                    os.replace(backup, target)  # the swap failed: the old folder goes back under its name\n",
      "", T_ATOMIC),
    M("io", "split-suffix-nii-gz", ATOMIC, '    for double in (".nii.gz", ".tar.gz", ".mnc.gz"):',
      '    for double in (".tar.gz", ".mnc.gz"):', T_ATOMIC),
    # ------------------------------------------------------------------ segment: metrics
    M("segment", "hd95-min-of-directions", METRICS,
      "return float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))",
      "return float(min(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))", T_METRICS, True),
    M("segment", "probability-half-is-background", METRICS, "        return a >= 0.5", "        return a > 0.5",
      T_METRICS, True),
    M("segment", "ignored-count-unrounded", METRICS, "np.count_nonzero(np.rint(g_raw) == ignore_label)",
      "np.count_nonzero(g_raw == ignore_label)", T_METRICS, True),
    M("segment", "gt-truncated-not-rounded", METRICS, "g_int = np.rint(g_raw).astype(np.int64) if",
      "g_int = g_raw.astype(np.int64) if", T_METRICS, True),
    M("segment", "dice-factor-2", METRICS, "    return 2.0 * int(np.logical_and(p, g).sum()) / denom",
      "    return int(np.logical_and(p, g).sum()) / denom", T_METRICS),
    M("segment", "vs-signed", METRICS, "    return 1.0 - abs(vg - vp) / (vg + vp)", "    return 1.0 - (vg - vp) / (vg + vp)",
      T_METRICS),
    M("segment", "avd-by-prediction", METRICS, "    return abs(vg - vp) / vg * 100.0", "    return abs(vg - vp) / vp * 100.0",
      T_METRICS),
    M("segment", "boundary-26-neighbours", METRICS, "generate_binary_structure(3, 1), border_value=0",
      "generate_binary_structure(3, 3), border_value=0", T_METRICS),
    M("segment", "boundary-image-edge-inside", METRICS, "generate_binary_structure(3, 1), border_value=0",
      "generate_binary_structure(3, 1), border_value=1", T_METRICS),
    M("segment", "hd-90th-percentile", METRICS, "np.percentile(d_pg, 95), np.percentile(d_gp, 95)",
      "np.percentile(d_pg, 90), np.percentile(d_gp, 90)", T_METRICS),
    M("segment", "hd95-spacing-ijk", METRICS, "spacing = np.asarray(gt.spacing)[::-1] if hasattr",
      "spacing = np.asarray(gt.spacing) if hasattr", T_METRICS),
    M("segment", "lesions-6-connected", METRICS, "    lab_g, n_gt = ndimage.label(g, structure=STRUCTURE_26)",
      "    lab_g, n_gt = ndimage.label(g)", T_METRICS),
    M("segment", "recall-empty-gt-zero", METRICS, "    recall = tp_gt / n_gt if n_gt else 1.0",
      "    recall = tp_gt / n_gt if n_gt else 0.0", T_METRICS),
    M("segment", "ignore-not-masked-in-prediction", METRICS, "    p[ignore] = False\n", "", T_METRICS),
    # ------------------------------------------------------------------ segment: fusion
    M("segment", "ensemble-mean-divisor", FUSION, "    return (acc / len(members)).astype(np.float32)",
      "    return (acc / max(len(members) - 1, 1)).astype(np.float32)", T_FUSION),
    M("segment", "threshold-inclusive", FUSION, "(np.asarray(probability) > float(value))",
      "(np.asarray(probability) >= float(value))", T_FUSION),
    M("segment", "slab-count-rounded", FUSION, "    return int(n * float(fraction))",
      "    return int(round(n * float(fraction)))", T_FUSION),
    M("segment", "slab-end-off-by-one", FUSION, "        index[axis] = slice(n - cut, n)",
      "        index[axis] = slice(n - cut - 1, n)", T_FUSION),
    M("segment", "kept-slices-end", FUSION, "    return np.arange(cut, n - cut)", "    return np.arange(cut, n)", T_FUSION),
    M("segment", "fuse-pools-members", FUSION,
      "    return fuse_views({v: ensemble_mean(ms) for v, ms in members_by_view.items()})",
      "    return ensemble_mean([m for ms in members_by_view.values() for m in ms])", T_FUSION),
    # ------------------------------------------------------------------ segment: package
    M("segment", "sha256-first-mib-only", PACKAGE,
      '        for block in iter(lambda: fh.read(chunk), b""):\n            h.update(block)',
      "        h.update(fh.read(chunk))", T_PACKAGE, True),
    M("segment", "member-symlink-escape", PACKAGE, "        target.resolve().relative_to(root.resolve())",
      "        target.relative_to(root)", T_PACKAGE),
    M("segment", "models-per-view-zero", PACKAGE, "    if not isinstance(n, int) or isinstance(n, bool) or n < 1:",
      "    if not isinstance(n, int) or n < 0:", T_PACKAGE),
    M("segment", "weight-count-short", PACKAGE, "        if len(files) != n:", "        if len(files) < n:", T_PACKAGE),
    M("segment", "in-channels-unchecked", PACKAGE, "    if params_in is not None and params_in != len(channels):",
      "    if params_in is not None and params_in > len(channels):", T_PACKAGE),
    # ------------------------------------------------------------------ stress: store and runner
    M("stress", "failure-overwrites-ok", STORE,
      '                if out.get(key, {}).get("status") == "ok" and rec.get("status") != "ok":\n'
      "                    continue\n", "", T_STRESS, True),
    M("stress", "restart-keeps-points", STORE, "            self.path.unlink(missing_ok=True)", "            pass",
      T_STRESS, True),
    M("stress", "partial-line-kept", STORE, 'fh.truncate(data.rfind(b"\\n") + 1)', "fh.truncate(len(data))", T_STRESS),
    M("stress", "fingerprint-keys-only", STORE, "            if old is not None and old != fingerprint and",
      "            if old is not None and old.keys() != fingerprint.keys() and", T_STRESS),
    M("stress", "failed-points-finished", RUNNER, 'if done.get(f"{case.case_id}|{key}", {}).get("status") == "ok":',
      'if f"{case.case_id}|{key}" in done:', T_STRESS, True),
    M("stress", "failures-as-records", RUNNER, 'ok = [r for r in recs if r and r.get("status") == "ok"]',
      "ok = [r for r in recs if r]", T_STRESS),
    M("stress", "baseline-dropped", RUNNER, "= ([(BASELINE, None)] if baseline else []) + points", "= points",
      T_STRESS),
    # ------------------------------------------------------------------ stress: surface
    M("stress", "share-not-normalised", SURFACE, '"share": partial[name] / total if total > 0 else 0.0',
      '"share": partial[name]', T_STRESS, True),
    M("stress", "effect-range-max", SURFACE, '"effect_range": float(curve.max() - curve.min())',
      '"effect_range": float(curve.max())', T_STRESS, True),
    M("stress", "auto-never-cubic", SURFACE, "if quad.adj_r2 is not None and quad.adj_r2 >= AUTO_THRESHOLD:",
      "if True:", T_STRESS, True),
    M("stress", "coding-centre-at-min", SURFACE, "    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0",
      "    centre, half = lo, (hi - lo) / 2.0", T_STRESS),
    M("stress", "adj-r2-dof", SURFACE, "(1.0 - r2) * (n - 1) / (n - p) if n > p", "(1.0 - r2) * (n - 1) / (n - p + 1) if n > p",
      T_STRESS),
    M("stress", "interaction-allows-squares", SURFACE, "terms = [e for e in terms if max(e, default=0) <= 1]",
      "terms = [e for e in terms if max(e, default=0) <= 2]", T_STRESS),
    M("stress", "uncoding-sign", SURFACE, "math.comb(p_i, q_i) * (-c_i) ** (p_i - q_i)",
      "math.comb(p_i, q_i) * (c_i) ** (p_i - q_i)", T_STRESS),
    M("stress", "se-coded-units", SURFACE, "    se = np.sqrt(np.clip(np.diag(t @ cov @ t.T), 0, None))",
      "    se = np.sqrt(np.clip(np.diag(cov), 0, None))", T_STRESS),
    M("stress", "partial-ss-keeps-linear", SURFACE, "cols = [j for j, e in enumerate(fit.terms) if e[i] == 0]",
      "cols = [j for j, e in enumerate(fit.terms) if e[i] <= 1]", T_STRESS),
    # ------------------------------------------------------------------ reader study: stats
    M("readerstudy", "rank-sum-one-sided", STATS, 'stats.mannwhitneyu(x, y, alternative="two-sided")',
      'stats.mannwhitneyu(x, y, alternative="less")', T_RS_STATS, True),
    M("readerstudy", "clopper-alpha-not-halved", STATS, "stats.beta.ppf(alpha / 2, k, n - k + 1)",
      "stats.beta.ppf(alpha, k, n - k + 1)", T_RS_STATS),
    M("readerstudy", "t-interval-population-sd", STATS, "x.std(ddof=1)", "x.std()", T_RS_STATS),
    M("readerstudy", "t-interval-df-n", STATS, "stats.t.ppf(1 - alpha / 2, n - 1)", "stats.t.ppf(1 - alpha / 2, n)",
      T_RS_STATS),
    M("readerstudy", "mcnemar-not-mid-p", STATS, "2.0 * (dist.cdf(k) - 0.5 * dist.pmf(k))", "2.0 * dist.cdf(k)",
      T_RS_STATS),
    M("readerstudy", "mcnemar-k-max", STATS, "    k = min(int(b), int(c))", "    k = max(int(b), int(c))", T_RS_STATS),
    M("readerstudy", "wilcoxon-continuity", STATS, 'correction=False, alternative="two-sided"',
      'correction=True, alternative="two-sided"', T_RS_STATS),
    M("readerstudy", "kappa-quadratic-as-linear", STATS, "        w = (i - j) ** 2 / max(k - 1, 1) ** 2",
      "        w = np.abs(i - j) / max(k - 1, 1)", T_RS_STATS),
    M("readerstudy", "icc-one-way-denominator", STATS, "    denom = msr + (k - 1) * mse + k * (msc - mse) / n",
      "    denom = msr + (k - 1) * mse", T_RS_STATS),
    M("readerstudy", "round-half-up", STATS, "rounding: str = ROUND_HALF_EVEN", "rounding: str = ROUND_HALF_UP",
      T_RS_STATS),
    M("readerstudy", "p-three-digits-near-05", STATS, "digits = 3 if p < 0.01 or 0.045 <= p < 0.055 else 2",
      "digits = 3 if p < 0.01 else 2", T_RS_STATS),
    M("readerstudy", "f1-as-jaccard", ANALYSIS, "f1 = 2 * tp / (2 * tp + fp + fn) if", "f1 = tp / (tp + fp + fn) if",
      T_RS_STATS),
    M("readerstudy", "fdr-per-lesion", ANALYSIS, '"fdr": fp / n_pat if n_pat', '"fdr": fp / n_ref if n_ref', T_RS_STATS),
    # ------------------------------------------------------------------ reader study: schedule
    M("readerstudy", "washout-from-first-read", SCHED, "    opens = max(times) + timedelta(days=washout)",
      "    opens = min(times) + timedelta(days=washout)", T_RS_SCHED, True),
    M("readerstudy", "full-design-readers-alike", SCHED, "add(reader.id, (g + i + j) % n_phases + 1, case, s, \"read\")",
      "add(reader.id, (g + j) % n_phases + 1, case, s, \"read\")", T_RS_SCHED, True),
    M("readerstudy", "crossover-phases-alike", SCHED, "sets[(g + i + p) % m]", "sets[(g + i) % m]", T_RS_SCHED),
    M("readerstudy", "groups-unshuffled", SCHED, "    order = rng.permutation(len(case_ids))",
      "    order = np.arange(len(case_ids))", T_RS_SCHED),
    M("readerstudy", "pending-reads-ignored", SCHED, "    pending = [r for r in prev if r.key not in submitted]",
      "    pending = []", T_RS_SCHED),
    M("readerstudy", "same-order-every-reader", SCHED, "default_rng([seed, 2, reader_index[reader], phase])",
      "default_rng([seed, 2, phase])", T_RS_SCHED),
    M("readerstudy", "turing-no-recycling", SCHED, "                while len(drawn) < n:",
      "                if len(drawn) < n:", T_RS_SCHED),
]

assert len({m.id for m in MUTANTS}) == len(MUTANTS), "mutant ids must be unique"
