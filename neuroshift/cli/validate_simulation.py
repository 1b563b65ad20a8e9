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
is at least --purity.
"""


def register(sub) -> None:
    p = sub.add_parser("validate-simulation", help="compare simulated and really acquired images per tissue",
                       description=plain(__doc__), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, metavar="IMG", help="the image the simulation starts from")
    p.add_argument("--real", required=True, nargs="+", metavar="IMG",
                   help="images really acquired with other parameters (same subject, baseline grid)")
    p.add_argument("--tissues", required=True, metavar="TISSUES", help="PV maps folder, label map, or T=path,...")
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


def run(args) -> int:
    import csv
    import io
    import json
    from pathlib import Path

    from ..io.atomic import write_text_atomic
    from ..io.files import read_volume
    from ..io.params import AcquisitionParams
    from ..stress.validate import validate_simulation

    from .common import refuse_overwriting_inputs

    tissue_paths = [("--tissues", args.tissues)] + [
        ("--tissues", item.partition("=")[2]) for item in str(args.tissues).split(",") if "=" in item]
    refuse_overwriting_inputs([("--baseline", args.baseline), *(("--real", p) for p in args.real), *tissue_paths,
                               ("--brain-mask", args.brain_mask)], [("--out", args.out)])
    baseline = read_volume(args.baseline, dtype="float32")
    params = AcquisitionParams.for_image(args.baseline, baseline.meta)
    if args.baseline_params:
        params = params.merged(AcquisitionParams.parse(args.baseline_params))
    fractions = load_tissues(args.tissues, args.labels, reference=baseline)
    brain = read_volume(args.brain_mask) if args.brain_mask else None
    real = []
    for path in args.real:
        vol = read_volume(path, dtype="float32")
        real.append((Path(path).name, vol, AcquisitionParams.for_image(path, vol.meta)))
    result = validate_simulation(baseline, params, fractions, real, sequence=args.sequence, brain_mask=brain,
                                 purity=args.purity, field_T=args.field)
    print(result.table())
    for note in result.notes:
        print(f"note: {note}")
    if args.out:
        out = Path(args.out)
        rows = [r.to_dict() for r in result.rows]
        if out.suffix.lower() == ".json":
            write_text_atomic(out, json.dumps({"rows": rows, "notes": result.notes}, indent=2) + "\n")
        else:
            buf = io.StringIO()
            fields = ["image", "TE_ms", "TI_ms", "TR_ms", "tissue", "n_voxels", "mean_real", "mean_simulated",
                      "rel_error_pct", "signed_error_pct", "baseline"]
            w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({**r, **{k: r["params"].get(k) for k in ("TE_ms", "TI_ms", "TR_ms")}})
            write_text_atomic(out, buf.getvalue())
        print(f"rows written to {out}")
    return 0
