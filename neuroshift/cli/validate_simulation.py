"""``neuroshift validate-simulation``: simulated vs really acquired images per tissue (paper 000, Table 5)."""

from __future__ import annotations

import argparse

from ..sequences import SEQUENCES
from .common import plain

EPILOG = """\
examples:
  neuroshift validate-simulation --baseline flair_112_2500.nii.gz \\
      --real flair_150_2900.nii.gz flair_84_2200.nii.gz --tissues pv_folder/ --brain-mask brain.nii.gz
  neuroshift validate-simulation --baseline base.nii.gz --real other.nii.gz --tissues aseg.nii.gz \\
      --labels CSF=4|43|24,GM=3|42,WM=2|41 --out validation.csv

Acquisition parameters come from each image's BIDS sidecar (name.json, seconds) or DICOM header;
--baseline-params overrides the baseline's (ms). Real images must be registered to the baseline grid.
--tissues: a folder with pv_CSF/pv_GM/pv_WM[/pv_lesion].nii.gz (or tissue_labels.nii.gz), a label map
file (CSF=1, GM=2, WM=3, lesion=4 unless --labels), or CSF=a.nii.gz,GM=b.nii.gz,WM=c.nii.gz.
The relative error is 100·|mean simulated − mean real| / mean real over voxels whose tissue fraction
is at least --purity. Every row also gives the error of the priors-only baseline (literature relaxation
values, only the scale fitted); --estimator chooses the method under test (fit, priors, posterior,
auto: per protocol and tissue the fit or the priors, whichever had the lower error on calibration
subjects drawn from the priors; its choice and calibration errors are in every row).

Several subjects (paper 000's Table 5: mean ±SD over subjects per tissue and protocol):
  neuroshift validate-simulation --subjects subjects.csv --out table5.json
subjects.csv has the columns subject, baseline, real (paths separated by ';'), tissues and optionally
brain_mask, labels, baseline_params; relative paths are relative to the CSV file.
"""


def register(sub) -> None:
    p = sub.add_parser("validate-simulation", help="compare simulated and really acquired images per tissue",
                       description=plain(__doc__), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", metavar="IMG", help="the image the simulation starts from")
    p.add_argument("--real", nargs="+", metavar="IMG",
                   help="images really acquired with other parameters (same subject, baseline grid)")
    p.add_argument("--tissues", metavar="TISSUES", help="PV maps folder, label map, or T=path,...")
    p.add_argument("--subjects", metavar="CSV", help="several subjects at once (instead of --baseline/--real/"
                                                      "--tissues): mean ±SD per tissue and protocol")
    p.add_argument("--estimator", choices=("fit", "priors", "posterior", "auto"), default="fit",
                   help="tissue-parameter estimator under test (default fit; the priors-only baseline is "
                        "always reported next to it)")
    p.add_argument("--labels", metavar="MAP", help="label values of a label map, e.g. CSF=1,GM=2,WM=3,lesion=4")
    p.add_argument("--brain-mask", metavar="IMG", help="restrict the ROIs to this mask")
    p.add_argument("--sequence", default="flair", choices=SEQUENCES)
    p.add_argument("--baseline-params", metavar="TE=..,TI=..", help="baseline parameters (ms), over its sidecar")
    p.add_argument("--field", type=float, metavar="T", help="field strength when the header does not give it")
    p.add_argument("--purity", type=float, default=0.9, help="minimum tissue fraction of ROI voxels (default 0.9)")
    p.add_argument("--out", metavar="FILE", help="write the rows to a .csv or .json file")
    p.set_defaults(func=run)


def load_tissues(spec: str, labels: str | None = None, reference=None) -> dict:
    """Tissue fractions from a PV folder, a label map file, or ``T=path,...``."""
    from pathlib import Path

    from ..errors import UnreadableFileError
    from ..io.files import read_volume
    from ..tissues.maps import fractions_from_labels, fractions_from_pv, parse_label_mapping

    mapping = parse_label_mapping(labels) if labels else None
    p = Path(spec)
    if "=" in spec and not p.exists():
        paths = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            name, _, path = item.partition("=")
            paths[name.strip()] = path.strip()
        return fractions_from_pv(paths, reference=reference)
    if p.is_dir():
        pv = sorted(p.glob("pv_*.nii*"))
        if pv:
            from ..tissues.maps import canonical_tissue

            return fractions_from_pv({canonical_tissue(f.name[3:].split(".")[0]): f for f in pv}, reference=reference)
        found = [f for f in p.iterdir() if f.name.lower().startswith(("tissue_labels", "labels"))]
        if not found:
            raise UnreadableFileError(f"{p}: no pv_*.nii.gz maps and no tissue_labels.nii.gz in this folder")
        p = found[0]
    fr = fractions_from_labels(read_volume(p), mapping)
    if reference is not None:
        for t, v in fr.items():
            reference.require_same_grid(v, f"baseline and {t} map")
    return fr


def _subjects_from_csv(path, args) -> list[dict]:
    """Subjects of a CSV (subject, baseline, real, tissues[, brain_mask, labels, baseline_params])."""
    import csv
    from pathlib import Path

    from ..errors import InputError, UnreadableFileError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UnreadableFileError(f"{p}: cannot read the subjects file ({exc})") from None
    rows = list(csv.DictReader(text.splitlines()))
    need = ("baseline", "real", "tissues")
    if not rows:
        raise InputError(f"{p}: no subject rows")
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise InputError(f"{p}: missing column(s) {', '.join(missing)} (need subject, baseline, real, tissues)")

    def resolve(v: str) -> str:
        q = Path(v.strip())
        return str(q if q.is_absolute() else p.parent / q)

    out = []
    for i, r in enumerate(rows):
        for c in need:
            if not (r.get(c) or "").strip():
                raise InputError(f"{p}: row {i + 2}: empty '{c}'")
        tissues = r["tissues"].strip()
        if "=" in tissues and not Path(resolve(tissues)).exists():
            tissues = ",".join(f"{k}={resolve(v)}" for k, _, v in
                               (item.partition("=") for item in tissues.split(",") if item.strip()))
        else:
            tissues = resolve(tissues)
        out.append({"subject": (r.get("subject") or f"subject{i + 1}").strip(), "baseline": resolve(r["baseline"]),
                    "real": [resolve(x) for x in r["real"].split(";") if x.strip()], "tissues": tissues,
                    "brain_mask": resolve(r["brain_mask"]) if (r.get("brain_mask") or "").strip() else None,
                    "labels": (r.get("labels") or "").strip() or args.labels,
                    "baseline_params": (r.get("baseline_params") or "").strip() or None})
    return out


def _load_subject(spec: dict) -> dict:
    from pathlib import Path

    from ..io.files import read_volume
    from ..io.params import AcquisitionParams

    baseline = read_volume(spec["baseline"], dtype="float32")
    params = AcquisitionParams.for_image(spec["baseline"], baseline.meta)
    if spec.get("baseline_params"):
        params = params.merged(AcquisitionParams.parse(spec["baseline_params"]))
    fractions = load_tissues(spec["tissues"], spec.get("labels"), reference=baseline)
    brain = read_volume(spec["brain_mask"]) if spec.get("brain_mask") else None
    real = []
    for path in spec["real"]:
        vol = read_volume(path, dtype="float32")
        real.append((Path(path).name, vol, AcquisitionParams.for_image(path, vol.meta)))
    return {"subject": spec.get("subject", ""), "baseline": baseline, "params": params, "fractions": fractions,
            "real": real, "brain_mask": brain}


def run(args) -> int:
    import csv
    import io
    import json
    from pathlib import Path

    from ..errors import InputError
    from ..io.atomic import write_text_atomic
    from ..stress.validate import validate_subjects

    from .common import refuse_overwriting_inputs

    if args.subjects:
        if args.baseline or args.real or args.tissues:
            raise InputError("give either --subjects CSV or --baseline/--real/--tissues, not both")
        specs = _subjects_from_csv(args.subjects, args)
    else:
        missing = [o for o, v in (("--baseline", args.baseline), ("--real", args.real), ("--tissues", args.tissues))
                   if not v]
        if missing:
            raise InputError(f"missing {', '.join(missing)} (or give --subjects CSV)")
        specs = [{"subject": Path(args.baseline).name, "baseline": args.baseline, "real": list(args.real),
                  "tissues": args.tissues, "brain_mask": args.brain_mask, "labels": args.labels,
                  "baseline_params": args.baseline_params}]
    inputs = [("--subjects", args.subjects)]
    for sp in specs:
        inputs += [("baseline", sp["baseline"]), *(("real", p) for p in sp["real"]), ("tissues", sp["tissues"]),
                   ("brain mask", sp["brain_mask"])]
        inputs += [("tissues", item.partition("=")[2]) for item in str(sp["tissues"]).split(",") if "=" in item]
    refuse_overwriting_inputs(inputs, [("--out", args.out)])
    subjects = [_load_subject(sp) for sp in specs]
    result = validate_subjects(subjects, sequence=args.sequence, purity=args.purity, field_T=args.field,
                               estimator=args.estimator)
    print(result.table())
    print(result.table(baseline=True))
    if result.choices_table():
        print(result.choices_table())
    for note in result.notes:
        print(f"note: {note}")
    if args.out:
        out = Path(args.out)
        rows = [r.to_dict() for r in result.rows]
        if out.suffix.lower() == ".json":
            doc = {"rows": rows, "table5": result.summary(), "estimator": args.estimator,
                   "auto_choices": result.choices_table(),
                   "baseline_estimator": "priors", "notes": result.notes}
            write_text_atomic(out, json.dumps(doc, indent=2) + "\n")
        else:
            buf = io.StringIO()
            fields = ["subject", "image", "TE_ms", "TI_ms", "TR_ms", "tissue", "n_voxels", "mean_real",
                      "mean_simulated", "rel_error_pct", "signed_error_pct", "baseline", "estimator",
                      "mean_simulated_baseline", "rel_error_baseline_pct", "estimator_choice",
                      "calibration_error_fit_pct", "calibration_error_priors_pct"]
            w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({**r, **{k: r["params"].get(k) for k in ("TE_ms", "TI_ms", "TR_ms")}})
            write_text_atomic(out, buf.getvalue())
        print(f"rows written to {out}")
    return 0
