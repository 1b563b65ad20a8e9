"""``neuroshift demo``: phantom cases + stress test of the bundled demo model + report, in one command."""

from __future__ import annotations

import argparse

from .common import add_device_arg, plain
from .stress_test import DEFAULT_GRID

#: ``--quick``: one subject on a 3 x 3 grid (9 points + baseline: 10 inferences instead of 150).
QUICK_SUBJECTS = 1
QUICK_GRID = "TE=84:150:3,TI=2200:2900:3"
DEFAULT_SUBJECTS = 3

EPILOG = f"""\
What it does:
  1. writes 3 digital phantom subjects (SYNTHETIC; different lesion seeds) to OUTDIR/cases/;
  2. stress-tests the bundled demo WMH model 'wmh-demo' on FLAIR derivatives simulated over the
     7 x 7 TE x TI grid of paper 000 (TE 84-150 ms, TI 2200-2900 ms), plus each subject's baseline;
  3. fits the quadratic response surface of lesion F1 and writes OUTDIR/report.html.
Time: 150 model inferences, about 2 min on 2 idle cores, 5-10 min on a busy machine.
--quick: {QUICK_SUBJECTS} subject on the 3 x 3 grid {QUICK_GRID} (10 inferences, about 20 s idle).
Rerunning resumes where it stopped (use another OUTDIR for --quick and the full demo). Torch uses the
cores available to this process (--threads or NEUROSHIFT_THREADS to change it) with OMP_WAIT_POLICY=PASSIVE.
The demo model is trained on phantoms only: a demonstration of the workflow, not a clinical model.
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


def run(args) -> int:
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    from ..errors import InputError
    from ..progress import cli_progress
    from ..stress.report import write_report
    from ..stress.report_parts import provenance, report_examples
    from ..stress.runner import run_stress_test
    from ..stress.surface import SurfaceFit

    subjects, grid = demo_settings(args)
    if subjects < 1:
        raise InputError("--subjects must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    t0 = time.monotonic()
    started = datetime.now(timezone.utc)
    out = Path(args.outdir)
    print(f"1/3 making {subjects} phantom subject(s) in {out / 'cases'}")
    make_demo_cases(out, subjects)
    if args.workers <= 1 and args.device != "cuda":
        from ..threads import configure

        info = configure(args.threads)
        print(f"    torch: {info['torch_threads']} thread(s) of {info['available_cores']} available core(s), "
              f"OMP_WAIT_POLICY={info['omp_wait_policy']}")
    print(f"2/3 stress-testing '{args.model}' over {grid}")
    with cli_progress("stress test") as progress:
        result = run_stress_test(out / "cases", args.model, grid, out, sequence="flair",
                                 workers=args.workers, progress=progress, device=args.device)
    print("3/3 drawing example slices and writing the report")
    png, caption = report_examples(out / "cases", result, args.model, sequence="flair", device=args.device)
    if png is None:
        print(f"  note: {caption}")
    prov = provenance(args.model, started=started, duration_s=time.monotonic() - t0)
    rep = write_report(result, out, metric="lesion_f1", provenance=prov,
                       examples=(png, caption) if png is not None else None)
    fit = rep["surfaces"].get("lesion_f1")
    for f in result.failures:
        print(f"  failed: {f['case']} {f.get('point')}: {f.get('error')}")
    if isinstance(fit, SurfaceFit):
        r2 = "n/a" if fit.r2 is None else f"{fit.r2:.4f}"
        print(f"lesion F1 = quadratic in TE, TI (ms): R² = {r2}")
        for name, b, se in zip(fit.term_names, fit.coefficients, fit.std_errors):
            print(f"  {name:>6s} {b: .6g} ± {se:.3g}")
        print("  influence: " + ", ".join(f"{v} {100 * i['share']:.0f}%" for v, i in fit.influence.items()))
    base = result.baseline_records()
    if base:
        worst = max(b["baseline_check"]["max_abs_diff"] for b in base)
        print(f"baseline check: max |simulated - original| = {worst:.3g} over {len(base)} subject(s)")
    print(f"done in {time.monotonic() - t0:.0f} s; open {rep['paths']['html'].resolve()}")
    return 0 if result.records else 1
