"""``neuroshift qmri fit|synth``: fit PD/T1/T2/T2* maps from images, synthesise any contrast from maps."""

from __future__ import annotations

import argparse

from ..sequences import SIGNAL_SEQUENCES as SEQUENCES  # the one sequence table (no numpy on --help)

FIT_EPILOG = """\
examples:
  # two echoes at one TR -> T2 and an apparent PD (T1 is not identified, so T1.nii.gz is not written)
  neuroshift qmri fit e1.nii.gz e2.nii.gz --sequence se --params "TE=15,TR=3000;TE=90,TR=3000" maps/
  # variable flip angle (DESPOT1) -> T1 and PD (apparent: includes T2* decay)
  neuroshift qmri fit fa4.nii.gz fa25.nii.gz --sequence gre --params "TE=4,TR=20,FA=4;TE=4,TR=20,FA=25" maps/
  # mixed sequences (one name per image), parameters from BIDS sidecars / DICOM headers
  neuroshift qmri fit pd.nii.gz t2.nii.gz flair.nii.gz --sequence se,se,flair maps/

Times in ms, angles in degrees. --params gives one parameter set per image, separated by ';'
(in the order of the images); without it each image's BIDS sidecar (name.json, seconds) or
DICOM header is read, and a missing parameter is an error naming the image and the parameter.
OUTDIR receives PD.nii.gz and the maps the inputs identify (T1/T2/T2star.nii.gz, ms) plus
qmri.json saying which maps are apparent and why; it is written atomically (all or nothing).
"""

SYNTH_EPILOG = """\
examples:
  neuroshift qmri synth maps/ flair.nii.gz --sequence flair --target TE=112,TI=2500,TR=9000
  neuroshift qmri synth maps/ t1w.nii.gz --sequence mprage --target TE=3,TI=900,TR=2300,FA=9,TX=7,N=176
  neuroshift qmri synth maps/ gre.nii.gz --sequence gre --target TE=5,TR=20,FA=15 --noise 0.01 --seed 1

MAPDIR holds PD.nii.gz, T1.nii.gz, T2.nii.gz (spin echoes), T2star.nii.gz (gradient echoes), all
times in ms, and optionally B1.nii.gz (receive field). A BIDS sidecar (OUTPUT name .json,
seconds) with the target parameters and MagneticFieldStrength (--field, or the field_T recorded
in MAPDIR/qmri.json by 'qmri fit' or 'sample-data') is written next to OUTPUT.
"""



def _reordering(base: type) -> type:
    """A parser class that accepts options anywhere between positionals (``IMAGE... --opt X OUTDIR``).

    argparse consumes a run of positionals at once, so ``a b --sequence se out`` would leave ``out``
    unrecognised; moving every option (with its value) to the front keeps the positionals' order.
    """

    class ReorderingParser(base):
        def parse_known_args(self, args=None, namespace=None):
            import sys

            args = list(sys.argv[1:] if args is None else args)
            opts, pos = [], []
            i = 0
            while i < len(args):
                a = args[i]
                if a == "--":
                    pos.extend(args[i + 1:])
                    break
                action = self._option_string_actions.get(a.split("=", 1)[0]) if a.startswith("-") else None
                if action is None:
                    pos.append(a)
                elif "=" in a or action.nargs == 0:
                    opts.append(a)
                else:
                    opts.extend(args[i:i + 2])
                    i += 1
                i += 1
            return super().parse_known_args(opts + pos, namespace)

    return ReorderingParser


def register(sub) -> None:
    p = sub.add_parser("qmri", help="quantitative maps: fit from images, synthesise any contrast (paper 002)",
                       description="The quantitative route of paper 002: PD/T1/T2/T2* maps <-> images.")
    qsub = p.add_subparsers(dest="qmri_command", metavar="{fit,synth}", parser_class=type(p))
    qsub._parser_class = _reordering(type(p))
    f = qsub.add_parser("fit", help="fit maps voxel-wise from two or more images with known parameters",
                        usage="neuroshift qmri fit IMAGE IMAGE... --sequence SEQ [--params P1;P2;...] "
                              "[--mask MASK] [--b1 B1] [--method {auto,closed,nlls}] OUTDIR",
                        epilog=FIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("paths", nargs="+", metavar="PATH",
                   help="two or more images (volume files or DICOM folders), then the output folder")
    f.add_argument("--sequence", required=True, metavar="SEQ",
                   help=f"sequence of all images, or one per image separated by ',' ({', '.join(SEQUENCES)})")
    f.add_argument("--params", metavar="P1;P2;...",
                   help='parameters per image, e.g. "TE=15,TR=3000;TE=90,TR=3000" (ms, degrees); '
                        "default: each image's sidecar or DICOM header")
    f.add_argument("--mask", metavar="MASK", help="fit only voxels where MASK > 0 (others are 0)")
    f.add_argument("--b1", metavar="B1", help="receive-field map; PD is divided by it")
    f.add_argument("--method", choices=("auto", "closed", "nlls"), default="auto",
                   help="auto: closed form when one applies, else least squares (default)")
    f.set_defaults(func=run_fit)

    qsub._parser_class = type(p)
    s = qsub.add_parser("synth", help="synthesise an image of any sequence from a map folder",
                        epilog=SYNTH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("mapdir", metavar="MAPDIR", help="folder with PD/T1/T2/T2star(.nii.gz) maps (ms)")
    s.add_argument("output", metavar="OUTPUT", help="output volume (.nii.gz, .nrrd, ... or a folder for DICOM)")
    s.add_argument("--sequence", required=True, choices=SEQUENCES, help="sequence to simulate")
    s.add_argument("--target", required=True, metavar="TE=..,TR=..[,TI=..,FA=..]",
                   help="acquisition parameters (ms, degrees)")
    s.add_argument("--field", type=float, default=None, metavar="T",
                   help="field strength (tesla) for the sidecar's MagneticFieldStrength (default: the maps' "
                        "qmri.json, i.e. the field of the images they were fitted from)")
    s.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                   help="Rician noise standard deviation in signal units (default 0: none)")
    s.add_argument("--seed", type=int, default=None, metavar="N", help="seed of the noise (reproducible output)")
    s.add_argument("--t2star-for-t2", action="store_true",
                   help="spin echoes without a T2 map: use T2* as a stand-in (paper 002 has no T2; flagged)")
    s.set_defaults(func=run_synth)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser) -> int:
    parser.print_help()
    return 2


def _parse_param_list(text: str, n: int, names: list[str]):
    from ..errors import MissingParameterError
    from ..io.params import AcquisitionParams

    parts = [t.strip() for t in text.split(";")]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if len(parts) != n:
        raise MissingParameterError(
            f"--params has {len(parts)} parameter set(s) for {n} image(s); give one per image separated by ';' "
            f"(missing for {', '.join(names[len(parts):]) or 'none'})")
    return [AcquisitionParams.parse(t) for t in parts]


def run_fit(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..errors import InputError
    from ..io.files import read_volume
    from ..io.params import AcquisitionParams
    from ..qmri.fit import fit
    from ..qmri.maps import write_maps

    if len(args.paths) < 3:
        raise InputError("qmri fit needs two or more images and an output folder (IMAGE IMAGE... OUTDIR)")
    *image_paths, outdir = args.paths
    n = len(image_paths)
    names = [str(p) for p in image_paths]
    seqs = [s.strip().lower() for s in args.sequence.split(",") if s.strip()]
    if len(seqs) == 1:
        seqs = seqs * n
    if len(seqs) != n:
        raise InputError(f"--sequence lists {len(seqs)} sequences for {n} images; give one, or one per image")
    for s in seqs:
        if s not in SEQUENCES:
            raise InputError(f"unknown sequence '{s}'; choose one of {', '.join(SEQUENCES)}")
    if Path(outdir).exists() and not Path(outdir).is_dir():
        raise InputError(f"{outdir}: exists and is not a folder")
    from .common import refuse_overwriting_inputs

    refuse_overwriting_inputs([*((f"IMAGE {i + 1}", p) for i, p in enumerate(image_paths)), ("--mask", args.mask),
                               ("--b1", args.b1)], [], replaced_folders=[("OUTDIR", outdir)])
    images = [read_volume(p, dtype=np.float32) for p in image_paths]
    if args.params:
        params = _parse_param_list(args.params, n, names)
    else:
        params = [AcquisitionParams.for_image(p, meta=vol.meta) for p, vol in zip(image_paths, images)]
    from ..errors import MissingParameterError
    from ..io.params import SEQUENCE_PARAMETERS, short_name

    for s, p, name in zip(seqs, params, names):
        seq = "se" if s == "fse" else s
        missing = [short_name(k) for k in SEQUENCE_PARAMETERS[seq] if getattr(p, k) is None]
        if missing:
            where = "--params" if args.params else "its BIDS sidecar or DICOM header"
            raise MissingParameterError(
                f"{name}: {seq.upper()} needs {', '.join(missing)}, which {where} does not give; "
                f"add it to --params (for example {missing[0]}=...)")
        p.require(seq, context=name)
    mask = read_volume(args.mask) if args.mask else None
    b1 = read_volume(args.b1, dtype=np.float32) if args.b1 else None
    result = fit(images, seqs, params, mask=mask, b1=b1, method=args.method, names=names)
    report = {
        "inputs": [{"image": name, "sequence": s, "params_ms_deg": p.known()}
                   for name, s, p in zip(names, seqs, params)],
        **result.report(),
        "units": {"PD": "a.u.", "T1": "ms", "T2": "ms", "T2star": "ms"},
    }
    fields = {p.field_T for p in params}
    if len(fields) == 1 and None not in fields:
        report["field_T"] = fields.pop()
    write_maps(result.maps, outdir, report=report)
    print(f"wrote {', '.join(k + '.nii.gz' for k in result.maps)} to {outdir} ({result.method})")
    print(f"identified: {', '.join(result.identified)}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def maps_field_T(info) -> float | None:
    """Field strength (T) recorded in a map folder's qmri.json: ``field_T``, or the one all fit inputs share."""
    if not isinstance(info, dict):
        return None
    if isinstance(info.get("field_T"), (int, float)):
        return float(info["field_T"])
    fields = {i.get("params_ms_deg", {}).get("field_T") for i in info.get("inputs", []) if isinstance(i, dict)}
    return float(fields.pop()) if len(fields) == 1 and isinstance(next(iter(fields)), (int, float)) else None


def run_synth(args) -> int:
    import json
    import sys
    from pathlib import Path

    from ..errors import InputError
    from ..io.atomic import split_suffix, write_text_atomic
    from ..io.files import write_volume
    from ..io.params import AcquisitionParams
    from ..qmri.synth import synthesize

    if args.noise < 0 or args.noise != args.noise:
        raise InputError(f"--noise must be >= 0, got {args.noise}")
    from .common import is_folder_output, refuse_overwriting_inputs

    out = Path(args.output)
    stem, _ = split_suffix(out)
    maps = Path(args.mapdir)
    inputs = [("MAPDIR", maps), *((f"MAPDIR/{p.name}", p) for p in (maps.iterdir() if maps.is_dir() else ()))]
    sidecar_out = [("OUTPUT's sidecar", out.with_name(stem + ".json"))]
    if is_folder_output(out):
        refuse_overwriting_inputs(inputs, sidecar_out, replaced_folders=[("OUTPUT", out)])
    else:
        refuse_overwriting_inputs(inputs, [("OUTPUT", out), *sidecar_out])
    target = AcquisitionParams.parse(args.target)
    seq = "se" if args.sequence == "fse" else args.sequence
    target.require(seq, context="--target")
    from ..qmri.maps import read_maps

    maps = read_maps(args.mapdir)
    field_T = args.field if args.field is not None else target.field_T
    if field_T is None:
        field_T = maps_field_T(maps.info)
    if field_T is not None:
        target = target.merged(AcquisitionParams(field_T=field_T))
    vol = synthesize(maps, seq, target, noise_sigma=args.noise, rng=args.seed,
                     t2star_for_t2=args.t2star_for_t2)
    sidecar = {"NeuroShiftSequence": seq, "GeneratedBy": "neuroshift qmri synth", "SourceMaps": str(args.mapdir)}
    sidecar.update(target.to_sidecar())
    if args.noise:
        sidecar["NeuroShiftRicianSigma"] = args.noise
        sidecar["NeuroShiftSeed"] = args.seed
    if "t2_stand_in" in vol.meta:
        sidecar["NeuroShiftWarning"] = vol.meta["t2_stand_in"]
        print(f"warning: {vol.meta['t2_stand_in']}")
    if field_T is None:
        print("note: field strength unknown (no --field, no field_T in the maps' qmri.json): the sidecar has no "
              "MagneticFieldStrength", file=sys.stderr)
    write_volume(vol, out)
    write_text_atomic(out.with_name(stem + ".json"), json.dumps(sidecar, indent=2) + "\n")
    print(f"wrote {out} ({seq.upper()} {target.label()})")
    return 0
