"""``neuroshift stress-test``: a segmentation model's performance over a grid of simulated acquisitions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..sequences import SEQUENCES
from .common import add_device_arg, plain

DEFAULT_GRID = "TE=84:150:7,TI=2200:2900:7"

#: Above this many pending inferences one is timed first to estimate the run's duration.
TIME_ABOVE_INFERENCES = 10
#: Default limit on the estimated duration (hours) before --yes or a larger --max-hours is needed.
DEFAULT_MAX_HOURS = 2.0

#: Files a stress test writes into OUTDIR (checked against the inputs before it starts).
OUTPUT_FILES = ("points.jsonl", "run.json", "results.csv", "surface.json", "report.html")

EPILOG = """\
examples:
  neuroshift stress-test out --cases cases/ --model wmh-demo
  neuroshift stress-test out --cases cases.csv --model my-wmh --grid TE=84:150:7,TI=2200:2900:7 --workers 4
  neuroshift stress-test out --cases cases/ --model 'cmd:"lst --flair {input} --output {output}"'
  neuroshift stress-test out --cases cases/ --model 'cmd:"nnUNetv2_predict -i {input_dir} -o {output_dir} -d 1"'
  neuroshift stress-test out --cases cases/ --model wmh-demo --grid TE=84:150:5,noise=0|10|20 --scheduler tcp://host:8786

Cases: a folder with one subfolder per subject (FLAIR.nii.gz + FLAIR.json sidecar, pv_*.nii.gz or
tissue_labels.nii.gz, lesion_mask.nii.gz; the phantom of 'neuroshift sample-data' is one) or a CSV
(columns image, mask, params or TE/TI/TR..., labels or pv_CSF/pv_GM/pv_WM/pv_lesion, optional case,
brain_mask and extra input channels such as T1w). Grid: KEY=start:stop:count or KEY=a|b|c for any
parameter of the sequence (TE, TI, TR, FA, ...; ms, degrees), field (T), noise (sigma, image units)
and slice_mm. Rerunning into the same OUTDIR resumes: finished points are kept and skipped.
Outputs: results.csv, surface.json, heatmap/surface PNGs, report.html, points.jsonl.
"""


def register(sub) -> None:
    p = sub.add_parser("stress-test", help="stress-test a segmentation model over simulated acquisition shifts",
                       description=plain(__doc__), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", metavar="OUTDIR", help="output folder (rerun the same command to resume)")
    p.add_argument("--cases", required=True, metavar="CASES", help="case folder or CSV file")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="model package name or folder (e.g. wmh-demo), or cmd:\"TOOL ... {input} ... {output}\"")
    p.add_argument("--grid", default=DEFAULT_GRID, metavar="GRID",
                   help=f"grid of parameters (default {DEFAULT_GRID}, the 3 T grid of paper 000)")
    p.add_argument("--sequence", default="flair", choices=SEQUENCES,
                   help="sequence of the case images (default flair)")
    p.add_argument("--metric", default="lesion_f1",
                   help="metric of the headline response surface: lesion_f1 (default), dice, lesion_recall, "
                        "lesion_precision, pred_volume_ml")
    p.add_argument("--surface", default="quadratic", choices=("quadratic", "linear", "interaction", "cubic", "auto"),
                   help="response-surface form (default quadratic, Eq. 10 of paper 000; auto: cubic if the "
                        "quadratic fits badly)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="local worker processes (default 1)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask cluster (e.g. tcp://host:8786); workers need NeuroShift and the case files")
    p.add_argument("--field", type=float, metavar="T",
                   help="field strength (T) of cases whose header does not give it (default 3 T, noted)")
    p.add_argument("--estimator", choices=("fit", "priors", "posterior", "auto"), default="fit",
                   help="tissue-parameter estimator of the simulation (default fit, paper 000; auto: per grid "
                        "point and tissue the fit or the priors, whichever had the lower calibration error)")
    p.add_argument("--uncertainty", action="store_true",
                   help="store the per-tissue 90 %% interval of every derivative (posterior over the relaxation "
                        "values consistent with the image) in the records")
    p.add_argument("--inputs", default="", metavar="CH1,CH2",
                   help="extra input channels an external tool needs besides the image (e.g. T1w)")
    p.add_argument("--timeout", type=float, default=3600.0, metavar="S",
                   help="time limit per image for an external tool (default 3600 s)")
    p.add_argument("--restart", action="store_true", help="discard the results already in OUTDIR")
    p.add_argument("--no-baseline", action="store_true", help="skip the baseline point of each case")
    p.add_argument("--no-examples", action="store_true",
                   help="leave out the report's example slices (they cost one fit and 5 model runs of the first case)")
    p.add_argument("--max-hours", type=float, default=DEFAULT_MAX_HOURS, metavar="H",
                   help="refuse to start when the estimated duration (points x cases x the measured time of one "
                        f"inference) exceeds H hours (default {DEFAULT_MAX_HOURS:g})")
    p.add_argument("--yes", action="store_true", help="start whatever the estimated duration")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import InputError, OutputPathError
    from ..progress import cli_progress
    from ..stress.models import resolve_model
    from ..stress.report import LABELS, write_report
    from ..stress.runner import METRICS, run_stress_test
    from ..stress.simulator import PhysicsSimulator
    from ..stress.surface import SurfaceFit

    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    if not args.max_hours > 0:
        raise InputError(f"--max-hours must be positive, got {args.max_hours:g}")
    if args.metric not in METRICS:
        raise InputError(f"unknown metric '{args.metric}'; choose one of {', '.join(METRICS)}")
    from .common import refuse_overwriting_inputs

    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputPathError(f"OUTDIR {outdir} exists and is not a folder; give a folder (created if needed)")
    refuse_overwriting_inputs(
        [("--cases", args.cases), ("--model", args.model if Path(args.model).exists() else None)],
        [("OUTDIR", outdir), *((f"OUTDIR/{n}", outdir / n) for n in OUTPUT_FILES)])
    inputs = tuple(s.strip() for s in args.inputs.split(",") if s.strip())
    model = resolve_model(args.model, device=args.device, sequence=args.sequence, timeout_s=args.timeout,
                          inputs=inputs)
    import time
    from datetime import datetime, timezone

    from ..stress.report_parts import provenance, report_examples

    started, t0 = datetime.now(timezone.utc), time.monotonic()
    with cli_progress("stress test") as progress:
        result = run_stress_test(args.cases, model, args.grid, args.outdir, sequence=args.sequence,
                                 simulator=PhysicsSimulator(field_T=args.field, estimator=args.estimator,
                                                            uncertainty=args.uncertainty), workers=args.workers,
                                 scheduler=args.scheduler, progress=progress, restart=args.restart,
                                 baseline=not args.no_baseline, device=args.device,
                                 confirm=lambda n, m, case: _confirm_cost(args, n, m, case))
    examples = None
    if not args.no_examples:
        png, caption = report_examples(args.cases, result, model, sequence=args.sequence,
                                       simulator=PhysicsSimulator(field_T=args.field, estimator=args.estimator),
                                       device=args.device)
        examples = (png, caption) if png is not None else None
        if png is None:
            print(f"note: {caption}", file=sys.stderr)
    prov = provenance(args.model, started=started, duration_s=time.monotonic() - t0)
    out = write_report(result, args.outdir, metric=args.metric, form=args.surface, provenance=prov,
                       examples=examples)
    n_points = len(result.records)
    reused = n_points - result.computed
    print(f"{len(result.case_ids)} case(s), {n_points} point(s) finished ({result.computed} computed now, "
          f"{reused} from an earlier run)")
    for f in result.failures:
        where = "case" if f.get("point") == "*" else f"point {f.get('point')}"
        print(f"  failed: {f['case']} {where}: {f.get('error')}", file=sys.stderr)
    fit = out["surfaces"].get(args.metric)
    if isinstance(fit, SurfaceFit):
        print(f"{fit.form} surface of {LABELS.get(args.metric, args.metric)}: R² = {_fmt(fit.r2)}, "
              f"adjusted R² = {_fmt(fit.adj_r2)}")
        for name, b, se in zip(fit.term_names, fit.coefficients, fit.std_errors):
            print(f"  {name:>10s} {b: .6g} ± {se:.3g}")
        shares = ", ".join(f"{v} {100 * i['share']:.0f}%" for v, i in
                           sorted(fit.influence.items(), key=lambda kv: -kv[1]["share"]))
        print(f"  influence: {shares}")
    elif fit is not None:
        print(f"no response surface: {fit}", file=sys.stderr)
    print(f"report: {out['paths']['html']}")
    ok_cases = {r["case"] for r in result.records}
    return 0 if ok_cases else 1


def _confirm_cost(args, n_pending: int, model, case) -> None:
    """Print the run's cost (inferences x one measured inference) and refuse above --max-hours without --yes."""
    import time

    from ..errors import InputError

    if n_pending == 0:
        return
    if n_pending <= TIME_ABOVE_INFERENCES:
        print(f"{n_pending} inference(s) to run", file=sys.stderr)
        return
    loaded = case.load(args.sequence, inputs=tuple(model.extra_inputs))
    inputs = {model.image_channel: loaded.image, **{k: loaded.inputs[k] for k in model.extra_inputs}}
    t0 = time.perf_counter()
    model.predict(inputs, case_id=loaded.case_id)
    per_s = time.perf_counter() - t0
    hours = n_pending * per_s / 3600.0
    print(f"estimated time: {n_pending} inferences x {per_s:.3g} s (one inference on case {loaded.case_id}, "
          f"measured now) = {_duration(hours)}, plus the simulations", file=sys.stderr)
    if hours > args.max_hours and not args.yes:
        raise InputError(
            f"the stress test would run about {_duration(hours)} ({n_pending} inferences x {per_s:.3g} s), more than "
            f"--max-hours {args.max_hours:g}; use a coarser --grid, fewer cases, or confirm with --yes "
            "(or a larger --max-hours). Nothing was started.")


def _duration(hours: float) -> str:
    if hours < 1.0 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1.0:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"
