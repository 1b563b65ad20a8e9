"""``neuroshift reader-study``: create a study database, exchange reads, analyse, and follow progress.

    neuroshift reader-study create STUDY.yaml --db STUDY.sqlite
    neuroshift reader-study import-reads --db STUDY.sqlite READS.csv [ANSWERS.csv ...]
    neuroshift reader-study export-reads --db STUDY.sqlite OUT.csv [--lesions-out OUT_lesions.csv]
    neuroshift reader-study analyze --db STUDY.sqlite --out DIR [--thresholds 0,2.5,5,7.5,10]
    neuroshift reader-study status --db STUDY.sqlite
    neuroshift reader-study schedule --db STUDY.sqlite OUT.csv [--reader R] [--phase "phase 2"]
    neuroshift reader-study example DIR     # a ready-to-run study of phantom images

Phases are given by number or by their name in the study file ("phase 2",
"reference"), in CSV files and on the command line.

Exit codes: 0 success, 2 bad input (invalid answers, unknown reader, a path
outside the study folder, a closed phase...): the message names the problem and
nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import plain


def register(sub) -> None:
    p = sub.add_parser("reader-study", help="blinded, randomised reader studies (create, import/export reads, analyze)",
                       description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    rs = p.add_subparsers(dest="reader_study_command", metavar="SUBCOMMAND", parser_class=type(p))
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    c = rs.add_parser("create", help="validate STUDY.yaml, build the seeded schedule, write the study database")
    c.add_argument("study", type=Path, help="study definition (YAML); image paths relative to its folder")
    c.add_argument("--db", type=Path, required=True, help="database to create (never overwritten)")
    c.add_argument("--allow-missing-images", action="store_true",
                   help="create even if image files do not exist yet (e.g. a study read elsewhere, imported as CSV)")
    c.set_defaults(func=_create)

    i = rs.add_parser("import-reads", help="import reads from CSV (lesion rows and/or answer rows), all or nothing")
    i.add_argument("--db", type=Path, required=True)
    i.add_argument("csv", type=Path, nargs="+", help="CSV files in the lesion or answer layout")
    i.add_argument("--no-washout-check", action="store_true",
                   help="do not check the phases' washout against the reads' timestamps")
    i.set_defaults(func=_import)

    e = rs.add_parser("export-reads", help="export every submitted read as answer rows and lesion rows")
    e.add_argument("--db", type=Path, required=True)
    e.add_argument("out", type=Path, help="answer rows (CSV); lesion rows go to OUT_lesions.csv unless --lesions-out")
    e.add_argument("--lesions-out", type=Path, default=None)
    e.set_defaults(func=_export)

    a = rs.add_parser("analyze", help="detection, comparisons, agreement, Turing test, quality, times -> CSV/JSON/MD/HTML")
    a.add_argument("--db", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True, help="output folder")
    a.add_argument("--thresholds", default="0,2.5,5,7.5,10", help="lesion size thresholds, long axis mm (default: %(default)s)")
    a.add_argument("--match-axes", choices=("reference", "detection", "mean", "max", "min"), default="reference",
                   help="whose axes set the matching radius (half the mean of long and short axes; default: %(default)s)")
    a.add_argument("--match-assignment", choices=("hungarian", "greedy", "none"), default="hungarian",
                   help="one-to-one assignment of detections to reference lesions (default: %(default)s)")
    a.add_argument("--match-inclusive", action="store_true", help="pair at distance <= radius (default: strictly <)")
    a.add_argument("--reference-reader", default=None, help="reference reader (default: the first one)")
    a.set_defaults(func=_analyze)

    s = rs.add_parser("status", help="progress per reader and phase, and when closed phases open")
    s.add_argument("--db", type=Path, required=True)
    s.set_defaults(func=_status)

    sc = rs.add_parser("schedule", help="export the schedule: who reads which case and image set, in which phase",
                       description="One CSV row per scheduled read: reader, role, phase (number and name), "
                                   "position, case, image set (id, label, synthetic), kind, the image sets shown "
                                   "and the target image path. It names the real image sets: for the study owner, "
                                   "not for blinded readers.")
    sc.add_argument("--db", type=Path, required=True)
    sc.add_argument("out", type=Path, help="CSV file to write ('-': print to standard output)")
    sc.add_argument("--reader", default=None, help="only this reader's reads")
    sc.add_argument("--phase", default=None, help='only this phase: a number or its name in the study file ("phase 2")')
    sc.set_defaults(func=_schedule)

    x = rs.add_parser("example", help="write a ready-to-run example study (SYNTHETIC phantom images + study.yaml)",
                      description="Write a small blinded crossover study into DIR: FLAIR acquired at TE 150 / "
                                  "TI 2900 ms (the phantom's signal equation) vs simulated there from TE 112 / "
                                  "TI 2500 ms, a T1w beside every read, reference reads of the baseline; "
                                  "DIR/study.yaml is accepted by 'reader-study create' as it is.",
                      epilog="example:\n  neuroshift reader-study example study/\n"
                             "  neuroshift reader-study create study/study.yaml --db study/study.sqlite\n"
                             "  neuroshift reader-study schedule --db study/study.sqlite study/schedule.csv",
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    x.add_argument("folder", type=Path, metavar="DIR", help="folder to write (must not hold a study.yaml yet)")
    x.add_argument("--cases", type=int, default=4, metavar="N", help="phantom cases (default 4, at least 2)")
    x.set_defaults(func=_example)


def _create(args) -> int:
    from neuroshift.readerstudy.definition import load_study, missing_images
    from neuroshift.readerstudy.errors import StudyDefinitionError
    from neuroshift.readerstudy.store import StudyStore

    from .common import refuse_overwriting_inputs

    refuse_overwriting_inputs([("STUDY", args.study)], [("--db", args.db)])
    study = load_study(args.study)
    missing = missing_images(study)
    if missing and not args.allow_missing_images:
        raise StudyDefinitionError(
            f"{len(missing)} image file(s) do not exist, e.g. {missing[0]} "
            "(use --allow-missing-images for a study whose reads are imported)")
    with StudyStore.create(args.db, study) as store:
        n = len(store.schedule())
        print(f"created {args.db}: study '{study.name}', {len(study.cases)} cases, {len(study.readers)} readers, "
              f"{len(study.all_phases)} phases, {n} scheduled reads, seed {study.seed}, "
              f"blinding {'on' if study.blinding else 'off'}")
        if missing:
            print(f"warning: {len(missing)} image file(s) do not exist yet", file=sys.stderr)
    return 0


def _import(args) -> int:
    from neuroshift.readerstudy.exchange import import_reads
    from neuroshift.readerstudy.store import StudyStore

    with StudyStore(args.db) as store:
        n = import_reads(store, args.csv, check_washout=not args.no_washout_check)
    print(f"imported {n} reads into {args.db}")
    return 0


def _export(args) -> int:
    from neuroshift.readerstudy.exchange import export_reads
    from neuroshift.readerstudy.store import StudyStore

    from .common import refuse_overwriting_inputs

    lesions = args.lesions_out or args.out.with_name(args.out.stem + "_lesions.csv")
    refuse_overwriting_inputs(_db_files(args.db), [("OUT", args.out), ("--lesions-out", lesions)])
    with StudyStore(args.db) as store:
        n = export_reads(store, args.out, lesions)
    print(f"exported {n} reads: answers {args.out}, lesions {lesions}")
    return 0


def _db_files(db: Path) -> list[tuple[str, Path]]:
    """The database and its SQLite companions (write-ahead log, shared memory): inputs never to write over."""
    return [("--db", db), ("--db's WAL", Path(f"{db}-wal")), ("--db's shared memory", Path(f"{db}-shm"))]


def _thresholds(text: str) -> tuple[float, ...]:
    from neuroshift.errors import InputError

    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--thresholds: comma-separated numbers in mm, got '{text}'") from None
    if not vals or any(v < 0 for v in vals):
        raise InputError(f"--thresholds: non-negative numbers in mm, got '{text}'")
    return vals


def _analyze(args) -> int:
    from neuroshift.readerstudy.analysis import AnalysisOptions, analyze_store
    from neuroshift.readerstudy.matching import MatchRule
    from neuroshift.readerstudy.report import write_report
    from neuroshift.readerstudy.store import StudyStore

    opts = AnalysisOptions(thresholds_mm=_thresholds(args.thresholds),
                           match=MatchRule(args.match_axes, not args.match_inclusive, args.match_assignment),
                           reference_reader=args.reference_reader)
    from .common import refuse_overwriting_inputs

    refuse_overwriting_inputs(_db_files(args.db), [("--out", args.out)])
    with StudyStore(args.db) as store:
        result = analyze_store(store, opts)
    files = write_report(result, args.out)
    print(f"analysed {result['study']['n_reads']} reads; wrote {len(files)} files to {args.out}")
    return 0


def _status(args) -> int:
    from neuroshift.readerstudy.schedule import phase_opens_at
    from neuroshift.readerstudy.store import StudyStore

    with StudyStore(args.db) as store:
        meta = store.meta()
        rows = store.progress()
        submitted = store.submitted()
        print(f"study '{meta['study_name']}' (seed {meta['seed']}, blinding {meta['blinding']}, "
              f"schedule {meta['schedule_sha256'][:12]})")
        print(f"{'reader':<10} {'phase':<18} {'done':>9} {'in progress':>12}  state")
        for r in rows:
            if r["submitted"] == r["scheduled"]:
                state = "complete"
            else:
                opens, why = phase_opens_at(store.study, store.schedule(), submitted, r["reader"], r["phase"])
                state = "waiting: " + why if opens is None else f"opens {opens.isoformat(timespec='minutes')}" \
                    if opens.year > 1 else "open"
            print(f"{r['reader']:<10} {str(r['phase']) + ' ' + r['phase_name']:<18} "
                  f"{r['submitted']:>4}/{r['scheduled']:<4} {r['in_progress']:>12}  {state}")
        total = sum(r["scheduled"] for r in rows)
        done = sum(r["submitted"] for r in rows)
        print(f"total: {done}/{total} reads submitted ({100.0 * done / total if total else 0:.0f}%)")
    return 0


def _schedule(args) -> int:
    from neuroshift.io.atomic import write_text_atomic
    from neuroshift.readerstudy.schedule import schedule_csv, schedule_rows
    from neuroshift.readerstudy.store import StudyStore

    with StudyStore(args.db) as store:
        rows = schedule_rows(store.study, store.schedule(), reader=args.reader, phase=args.phase)
    text = schedule_csv(rows)
    if str(args.out) == "-":
        sys.stdout.write(text)
    else:
        write_text_atomic(args.out, text)
        readers = len({r["reader"] for r in rows})
        phases = len({r["phase"] for r in rows})
        print(f"wrote {args.out}: {len(rows)} scheduled reads, {readers} reader(s), {phases} phase(s)")
    return 0


def _example(args) -> int:
    from neuroshift.readerstudy.example import write_example_study

    study = write_example_study(args.folder, cases=args.cases)
    print(f"wrote {study} and {args.cases} cases of SYNTHETIC phantom images; next:")
    print(f"  neuroshift reader-study create {study} --db {args.folder / 'study.sqlite'}")
    return 0
