"""``neuroshift simulate``: one acquisition-shift derivative of an image (paper 000, tissue-wise)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import key_value_arg, params_arg

SEQUENCE_CHOICES = ("se", "flair", "dir", "gre", "mprage")

EPILOG = """\
examples (partial-volume maps first: a hard label map leaves edge artefacts at tissue borders):
  neuroshift simulate FLAIR.nii.gz FLAIR_TE150_TI2900.nii.gz --sequence flair --target TE=150,TI=2900 \\
      --pv CSF=pv_CSF.nii.gz,GM=pv_GM.nii.gz,WM=pv_WM.nii.gz,lesion=pv_lesion.nii.gz
  neuroshift simulate FLAIR.nii.gz out.nii.gz --sequence flair --source TE=112,TI=2500,TR=9000 \\
      --target TE=84,TI=2200 --pv CSF=pv_CSF.nii.gz,GM=pv_GM.nii.gz,WM=pv_WM.nii.gz,lesion=pv_lesion.nii.gz \\
      --field 3 --noise 5 --seed 0
  # only a label map at hand (CSF=1, GM=2, WM=3, lesion=4): works, with edge artefacts
  neuroshift simulate FLAIR.nii.gz out.nii.gz --sequence flair --target TE=150,TI=2900 \\
      --tissues tissue_labels.nii.gz

Parameters are in ms and degrees (TE, TI, TR, TI1, TI2, FA, TX, N, Trec), field strength in tesla.
The source parameters come from INPUT's BIDS sidecar (INPUT with .json), its DICOM header, and
--source (which wins); a parameter the sequence needs but nobody gives is an error (exit 2).
Target parameters that --target leaves out keep the source's value. Beside OUTPUT a BIDS sidecar
(OUTPUT with .json, times in seconds) records the target parameters and the fitted model.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate an acquisition-shift derivative of an image (tissue-wise re-weighting, paper 000)",
        description="Estimate apparent tissue parameters, the global scale and the texture of INPUT "
                    "(acquired with known parameters), then write its derivative at the target parameters: "
                    "S_new = S + c·Σ_t f_t·[S_t(target) − S_t(source)].",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="image (NIfTI, NRRD, MINC, MetaImage or a DICOM folder)")
    p.add_argument("output", metavar="OUTPUT", help="derivative to write (volume file, or a folder for DICOM)")
    p.add_argument("--sequence", required=True, choices=SEQUENCE_CHOICES, help="sequence of INPUT")
    p.add_argument("--target", required=True, type=params_arg, metavar="TE=..,TI=..[,TR=..,FA=..]",
                   help="target parameters (ms, degrees); parameters not given default to the source's")
    p.add_argument("--source", type=params_arg, metavar="TE=..,TI=..,TR=..",
                   help="INPUT's parameters; may be omitted when its BIDS sidecar or DICOM header gives them")
    p.add_argument("--field", type=float, metavar="TESLA",
                   help="field strength of INPUT, selects the relaxation priors (default: sidecar/DICOM, else 3)")
    tissues = p.add_mutually_exclusive_group(required=True)
    tissues.add_argument("--tissues", metavar="LABELMAP", help="tissue label map on INPUT's grid")
    tissues.add_argument("--pv", type=key_value_arg, metavar="CSF=a.nii.gz,GM=b.nii.gz,WM=c.nii.gz[,lesion=d]",
                         help="partial-volume fraction maps, one per tissue, on INPUT's grid")
    p.add_argument("--labels", metavar="CSF=1,GM=2,WM=3,lesion=4",
                   help="label value(s) per tissue in LABELMAP, '|' for several (default: CSF=1,GM=2,WM=3,lesion=4)")
    p.add_argument("--brain-mask", metavar="MASK", help="restrict the estimation to this mask (optional)")
    p.add_argument("--relaxation", metavar="JSON", help="relaxation-table override (same shape as the built-in)")
    p.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                   help="add Rician noise of this σ (image intensity units) to the derivative (default 0)")
    p.add_argument("--slice-mm", type=float, metavar="MM",
                   help="also simulate this slice thickness (slice profile, resampled back to INPUT's grid)")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="random seed of the noise")
    from .simulate_estimation import add_estimation_options

    add_estimation_options(p)
    p.set_defaults(func=run)


def _sidecar_for(output: Path) -> Path:
    from ..io.atomic import split_suffix

    stem, suffix = split_suffix(output)
    return output.with_name((stem if suffix else output.name) + ".json")


def _load_inputs(args):
    """Read INPUT, its parameters, the tissue fractions and the mask; tissue-map warnings go to stderr."""
    import warnings

    from ..tissues.maps import FractionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FractionWarning)
        loaded = _read_inputs(args)
    for w in caught:
        if issubclass(w.category, FractionWarning):
            print(f"neuroshift: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return loaded


def _read_inputs(args):
    from ..errors import InputError
    from ..io.files import read_volume
    from ..io.params import AcquisitionParams
    from ..tissues.maps import fractions_from_labels, fractions_from_pv, parse_label_mapping

    image = read_volume(args.input, dtype="float32")
    source = AcquisitionParams.for_image(args.input, image.meta)
    if args.source is not None:
        source = source.merged(args.source)
    mask = None
    if args.brain_mask:
        mask = read_volume(args.brain_mask)
        image.require_same_grid(mask, f"INPUT and --brain-mask {args.brain_mask}")
    if args.tissues:
        labels = read_volume(args.tissues)
        image.require_same_grid(labels, f"INPUT and --tissues {args.tissues}")
        mapping = parse_label_mapping(args.labels) if args.labels else None
        fractions = fractions_from_labels(labels, mapping)
    else:
        if args.labels:
            raise InputError("--labels applies to --tissues LABELMAP, not to --pv")
        fractions = fractions_from_pv(args.pv, reference=image, brain_mask=mask)
    return image, source, fractions, mask


def _sidecar_doc(args, model, target, source) -> dict:
    from ..io.params import sidecar_path

    doc: dict = {}
    src_sidecar = sidecar_path(args.input)
    if src_sidecar is not None:
        try:
            loaded = json.loads(src_sidecar.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                doc.update(loaded)
        except (OSError, ValueError):
            pass
    from ..io.params import BIDS_KEYS

    for key in BIDS_KEYS:  # the source's acquisition entries are replaced by the target's
        doc.pop(key, None)
    doc.update(target.to_sidecar())
    report = model.report.as_dict() if model.report is not None else {}
    doc["NeuroShift"] = {
        "method": "tissue-wise acquisition-shift derivative (Posselt et al., paper 000)",
        "sequence": args.sequence,
        "source_ms": source.known(),
        "target_ms": target.known(),
        "scale_c": model.scale_c,
        "apparent_tissue_parameters": {t: {"pd": p.pd, "t1_ms": p.t1_ms, "t2_ms": p.t2_ms,
                                           "t2star_ms": p.t2star_ms, "source": p.source}
                                       for t, p in model.tissues.items()},
        "noise_sigma": args.noise,
        "slice_mm": args.slice_mm,
        "seed": args.seed,
        "fit": {k: report.get(k) for k in ("method", "reference", "measured", "ratios_measured",
                                           "ratios_fitted", "fitted_parameters", "notes")},
    }
    return doc


def run(args) -> int:
    import numpy as np

    from ..errors import InputError
    from ..io.atomic import atomic_path, expect_bytes
    from ..io.files import write_volume
    from ..progress import cli_progress
    from ..simulate.shifts import add_noise, change_slice_thickness
    from ..simulate.tissuewise import fit_tissue_model

    output = Path(args.output)
    if args.noise is not None and (not np.isfinite(args.noise) or args.noise < 0):
        raise InputError(f"--noise must be a finite σ >= 0, got {args.noise:g}")
    if args.slice_mm is not None and (not np.isfinite(args.slice_mm) or args.slice_mm <= 0):
        raise InputError(f"--slice-mm must be positive, got {args.slice_mm:g}")
    if args.field is not None and not (0 < args.field <= 21):
        raise InputError(f"--field must be a field strength in tesla in (0, 21], got {args.field:g}")
    _refuse_overwrite(args, output)

    image, source, fractions, mask = _load_inputs(args)
    source.require(args.sequence, context=f"INPUT {args.input}")
    source.merged(args.target).require(args.sequence, context="the target")
    with cli_progress("simulate") as progress:
        from .simulate_estimation import (estimation_kwargs, estimator_choice, uncertainty_path,
                                          uncertainty_volume)

        model = fit_tissue_model(image, fractions, args.sequence, source, field_T=args.field,
                                 brain_mask=mask, relaxation=args.relaxation,
                                 progress=lambda f, m: progress(0.8 * f, m), **estimation_kwargs(args, image))
        target = model.resolve_target(args.target)
        vol = model.simulate_volume(target)
        unc_vol, intervals = uncertainty_volume(args, model, target)
        rng = np.random.default_rng(args.seed)
        if args.slice_mm:
            vol = change_slice_thickness(vol, args.slice_mm)
        if args.noise:
            vol = add_noise(vol, args.noise, rng=rng)
        progress(0.9, "writing")
        sidecar = _sidecar_for(output)
        doc = _sidecar_doc(args, model, target, model.source)
        doc["NeuroShift"]["estimator"] = model.estimator
        if estimator_choice(model, target) is not None:
            doc["NeuroShift"]["estimator_choice"] = estimator_choice(model, target)
        if intervals is not None:
            doc["NeuroShift"]["uncertainty"] = {"file": str(uncertainty_path(args)), "level": 0.9,
                                                "tissue_intervals": intervals}
        text = json.dumps(doc, indent=2)
        # Both files or neither: the sidecar is staged first and renamed only after the image is in place.
        written = unc_written = False
        try:
            with atomic_path(sidecar, verify=expect_bytes(text + "\n")) as tmp_sidecar:
                tmp_sidecar.write_bytes((text + "\n").encode("utf-8"))
                if unc_vol is not None:  # the ± map first; removed again if anything after it fails
                    write_volume(unc_vol, uncertainty_path(args))
                    unc_written = True
                write_volume(vol, output)
                written = True
        except BaseException:
            if written:
                _remove(output)
            if unc_written:
                _remove(uncertainty_path(args))
            raise
        progress(1.0, "done")
    for note in (model.report.notes if model.report else []):
        print(f"neuroshift: note: {note}", file=sys.stderr)
    print(f"wrote {output} and {sidecar} ({args.sequence.upper()} {target.label()}, "
          f"c = {model.scale_c:.6g})")
    return 0


def _refuse_overwrite(args, output: Path) -> None:
    from ..io.params import sidecar_path
    from .common import is_folder_output, refuse_overwriting_inputs

    inputs = [("INPUT", args.input), ("INPUT's sidecar", sidecar_path(args.input)), ("--tissues", args.tissues),
              ("--brain-mask", args.brain_mask), ("--relaxation", args.relaxation)]
    inputs += [(f"--pv {t}", p) for t, p in (args.pv or {}).items()]
    outputs = [("OUTPUT's sidecar", _sidecar_for(output))]
    from .simulate_estimation import joint_inputs, uncertainty_path

    inputs += joint_inputs(args)
    if uncertainty_path(args) is not None:
        outputs.append(("--uncertainty", uncertainty_path(args)))
    if is_folder_output(output):
        refuse_overwriting_inputs(inputs, outputs, replaced_folders=[("OUTPUT", output)])
    else:
        refuse_overwriting_inputs(inputs, [("OUTPUT", output), *outputs])


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
