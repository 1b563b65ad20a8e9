"""``neuroshift demo``: phantom cases + stress test of the bundled demo model + report, in one command."""

from __future__ import annotations

import argparse

from .common import add_device_arg, plain
from .stress_test import DEFAULT_GRID

#: ``--quick``: one subject on a 3 x 3 grid (9 points + baseline: 10 inferences instead of 150).
QUICK_SUBJECTS = 1
QUICK_GRID = "TE=84:150:3,TI=2200:2900:3"
DEFAULT_SUBJECTS = 3
#: The model set beside ``--model`` over the same grid (``--compare none`` skips it).
DEFAULT_COMPARE = "wmh-qsynth-demo"

EPILOG = f"""\
What it does:
  1. writes 3 digital phantom subjects (SYNTHETIC; different lesion seeds) to OUTDIR/cases/;
  2. stress-tests the bundled demo WMH model 'wmh-demo' on FLAIR derivatives simulated over the
     7 x 7 TE x TI grid of paper 000 (TE 84-150 ms, TI 2200-2900 ms), plus each subject's baseline;
  3. fits the quadratic response surface of lesion F1 and writes OUTDIR/report.html;
  4. does the same for the qSynth-trained demo model '{DEFAULT_COMPARE}' on the same images
     (OUTDIR/{DEFAULT_COMPARE}/report.html) and writes OUTDIR/compare.html: both models' surfaces
     side by side and their difference (--compare none skips it, --compare MODEL picks another).
Time: 2 x 150 model inferences, about 4 min on 2 idle cores, 10-20 min on a busy machine.
--quick: {QUICK_SUBJECTS} subject on the 3 x 3 grid {QUICK_GRID} (2 x 10 inferences, under a minute idle).
Rerunning resumes where it stopped (use another OUTDIR for --quick and the full demo). Torch uses the
cores available to this process (--threads or NEUROSHIFT_THREADS to change it) with OMP_WAIT_POLICY=PASSIVE.
The demo models are trained on synthetic images only (phantoms; qSynth images rendered from label maps,
some with real MS lesion masks): a demonstration of the workflow, not clinical models.
"""


def register(sub) -> None:
    p = sub.add_parser("demo", help="phantom + stress test of the demo model + HTML report (start here)",
                       description=plain(__doc__), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", nargs="?", default="demo-output", metavar="OUTDIR",
                   help="output folder (default ./demo-output)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_SUBJECTS} subject, 3 x 3 grid: a first look in well under a minute")
    p.add_argument("--subjects", type=int, default=None, metavar="N",
                   help=f"phantom subjects (default {DEFAULT_SUBJECTS}; {QUICK_SUBJECTS} with --quick)")
    p.add_argument("--model", default="wmh-demo", help="model under test (default: the bundled wmh-demo)")
    p.add_argument("--compare", default=DEFAULT_COMPARE, metavar="MODEL",
                   help=f"second model stress-tested on the same grid and shown beside the first in "
                        f"compare.html (default {DEFAULT_COMPARE}; 'none' to skip)")
    p.add_argument("--grid", default=None, help=f"grid (default {DEFAULT_GRID}; {QUICK_GRID} with --quick)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="local worker processes (default 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads with --workers 1 (default: $NEUROSHIFT_THREADS or the available cores)")
    add_device_arg(p)
    p.set_defaults(func=run)


def demo_settings(args) -> tuple[int, str]:
    """(subjects, grid) of a demo run: explicit options win, then --quick, then the full demo."""
    subjects = args.subjects if args.subjects is not None else (QUICK_SUBJECTS if args.quick else DEFAULT_SUBJECTS)
    grid = args.grid if args.grid is not None else (QUICK_GRID if args.quick else DEFAULT_GRID)
    return subjects, grid


def make_demo_cases(outdir, subjects: int = 3) -> list:
    """Phantom subjects ``sub-01``... (seeds 0, 1, ...) in ``outdir/cases``; existing complete ones are kept."""
    from pathlib import Path

    from ..phantom.make import OUTPUT_FILES, make_phantom

    root = Path(outdir) / "cases"
    folders = []
    for i in range(subjects):
        folder = root / f"sub-{i + 1:02d}"
        if not all((folder / name).is_file() for name in OUTPUT_FILES.values()):
            make_phantom(folder, seed=i)
        folders.append(folder)
    return folders


def _stress_and_report(cases, model: str, grid: str, outdir, args, started, t0, step: str):
    """Stress-test ``model`` over ``grid`` into ``outdir`` and write its report; returns (run, report)."""
    import time

    from ..progress import cli_progress
    from ..stress.report import write_report
    from ..stress.report_parts import provenance, report_examples
    from ..stress.runner import run_stress_test
    from ..stress.surface import SurfaceFit

    print(f"{step} stress-testing '{model}' over {grid}")
    with cli_progress("stress test") as progress:
        result = run_stress_test(cases, model, grid, outdir, sequence="flair",
                                 workers=args.workers, progress=progress, device=args.device)
    png, caption = report_examples(cases, result, model, sequence="flair", device=args.device)
    if png is None:
        print(f"  note: {caption}")
    prov = provenance(model, started=started, duration_s=time.monotonic() - t0)
    rep = write_report(result, outdir, metric="lesion_f1", provenance=prov,
                       examples=(png, caption) if png is not None else None)
    fit = rep["surfaces"].get("lesion_f1")
    for f in result.failures:
        print(f"  failed: {f['case']} {f.get('point')}: {f.get('error')}")
    if isinstance(fit, SurfaceFit):
        r2 = "n/a" if fit.r2 is None else f"{fit.r2:.4f}"
        print(f"  lesion F1 = quadratic in TE, TI (ms): R² = {r2}")
        for name, b, se in zip(fit.term_names, fit.coefficients, fit.std_errors):
            print(f"  {name:>6s} {b: .6g} ± {se:.3g}")
        print("  influence: " + ", ".join(f"{v} {100 * i['share']:.0f}%" for v, i in fit.influence.items()))
    base = result.baseline_records()
    if base:
        worst = max(b["baseline_check"]["max_abs_diff"] for b in base)
        print(f"  baseline check: max |simulated - original| = {worst:.3g} over {len(base)} subject(s)")
    return result, rep


def _compare_model(args) -> str | None:
    """The second model's name, or None (``--compare none``, the same model, or not installed: said)."""
    name = str(args.compare or "").strip()
    if not name or name.lower() == "none" or name == args.model:
        return None
    from ..errors import InputError
    from ..segment.registry import find_model

    try:
        find_model(name)
    except InputError as exc:
        if name != DEFAULT_COMPARE:
            raise
        print(f"  note: no comparison ({exc})")
        return None
    return name


def run(args) -> int:
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    from ..errors import InputError

    subjects, grid = demo_settings(args)
    if subjects < 1:
        raise InputError("--subjects must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    other = _compare_model(args)
    n = 4 if other else 3
    t0 = time.monotonic()
    started = datetime.now(timezone.utc)
    out = Path(args.outdir)
    print(f"1/{n} making {subjects} phantom subject(s) in {out / 'cases'}")
    make_demo_cases(out, subjects)
    if args.workers <= 1 and args.device != "cuda":
        from ..threads import configure

        info = configure(args.threads)
        print(f"    torch: {info['torch_threads']} thread(s) of {info['available_cores']} available core(s), "
              f"OMP_WAIT_POLICY={info['omp_wait_policy']}")
    result, rep = _stress_and_report(out / "cases", args.model, grid, out, args, started, t0, f"2/{n}")
    if other:
        t1 = time.monotonic()
        res_b, rep_b = _stress_and_report(out / "cases", other, grid, out / other, args, started, t1, f"3/{n}")
        from ..stress.compare import write_comparison

        print(f"{n}/{n} comparing '{args.model}' with '{other}'")
        cmp = write_comparison(result, res_b, out, names=(args.model, other),
                               links={args.model: "report.html", other: f"{other}/report.html"})
        for m, d in cmp["doc"]["metrics"].items():
            s = d["summary"]
            if s:
                print(f"  {m}: mean over the grid {s['mean_a']:.3f} ({args.model}) vs {s['mean_b']:.3f} ({other}); "
                      f"{other} better at {100 * s['share_b_better']:.0f}% of {s['n_points']} points")
        print(f"  comparison: {cmp['paths']['html'].resolve()}")
    print(f"done in {time.monotonic() - t0:.0f} s; open {rep['paths']['html'].resolve()}")
    return 0 if result.records else 1
