"""``neuroshift insert-lesions``: physics-based lesion insertion into every contrast of one subject."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  neuroshift insert-lesions out/ --image T1w.nii.gz:mprage --image FLAIR.nii.gz:flair --pv phantom/ --count 3 --seed 1
  neuroshift insert-lesions out/ --image FLAIR.nii.gz:flair --pv tissues/ --mask my_lesions.nii.gz

Each --image is PATH:SEQUENCE (se, ir, flair, dir, gre, mprage); its acquisition parameters come from the
BIDS sidecar beside it (PATH with .json) or its DICOM header, or --source applies to all images.
--pv is a folder with pv_CSF, pv_GM, pv_WM (and optionally pv_lesion) .nii.gz on the images' grid.
Lesions: --mask (binary, or a fraction map in [0, 1]) or generated ellipsoids (--count, --diameter MIN,MAX
in mm, --location wm|brain, --seed). Writes OUTDIR/<image name>_lesions.nii.gz per image,
lesion_mask.nii.gz (fraction >= 0.5), pv_lesion_inserted.nii.gz and insert_lesions.json. The output images
are SYNTHETIC: lesion signal from lesion relaxation values through the sequence equation scaled by the
image's fitted c, the host's texture kept; voxels without lesion are unchanged.
"""

OUTPUT_MASK = "lesion_mask.nii.gz"
OUTPUT_FRACTION = "pv_lesion_inserted.nii.gz"
OUTPUT_JSON = "insert_lesions.json"


def register(sub) -> None:
    from .common import params_arg

    p = sub.add_parser("insert-lesions", help="insert MS-like lesions into images through the tissue-wise model",
                       description="Physics-based lesion insertion (SYNTHETIC): the lesion's partial-volume "
                                   "fraction replaces host tissue in every given contrast.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", metavar="OUTDIR", help="folder for the outputs (created if needed)")
    p.add_argument("--image", action="append", required=True, metavar="PATH:SEQ",
                   help="an image and its sequence (repeat for every contrast)")
    p.add_argument("--pv", required=True, metavar="FOLDER", help="folder with pv_CSF/pv_GM/pv_WM[.nii.gz]")
    p.add_argument("--source", type=params_arg, metavar="PARAMS",
                   help="acquisition parameters for every image (TE=..,TR=..; ms), over the sidecars")
    p.add_argument("--brain-mask", metavar="MASK", help="brain mask (restricts the model fit)")
    p.add_argument("--mask", metavar="MASK", help="lesions to insert (binary mask or fraction map)")
    p.add_argument("--count", type=int, default=3, help="generated lesions (default 3)")
    p.add_argument("--diameter", default="4,10", metavar="MIN,MAX", help="diameter range in mm (default 4,10)")
    p.add_argument("--location", choices=("wm", "brain"), default="wm",
                   help="where generated lesions are centred: WM fraction >= 0.95, or the brain (default wm)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated lesions (default 0)")
    p.set_defaults(func=run)


def _parse_images(items: list[str]) -> list[tuple[str, str]]:
    from ..errors import InputError
    from ..sequences import SEQUENCES

    out = []
    for item in items:
        path, sep, seq = item.rpartition(":")
        if not sep or not path or seq.lower() not in SEQUENCES:
            raise InputError(f"--image {item!r}: give PATH:SEQUENCE with SEQUENCE one of {', '.join(SEQUENCES)}")
        out.append((path, seq.lower()))
    return out


def _name(path: str) -> str:
    from pathlib import Path

    n = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
        if n.lower().endswith(suffix):
            return n[: -len(suffix)]
    return n


def run(args) -> int:
    import json
    from pathlib import Path

    import numpy as np
    from scipy import ndimage as ndi

    from ..errors import InputError
    from ..io.atomic import write_text_atomic
    from ..io.files import read_volume, write_volume
    from ..io.params import AcquisitionParams
    from ..synthesis.insertion import generate_lesions, insert_lesions
    from .common import refuse_overwriting_inputs

    images = _parse_images(args.image)
    names = [_name(p) for p, _ in images]
    if len(set(names)) != len(names):
        raise InputError("two --image files have the same name; outputs would collide")
    try:
        lo, hi = (float(v) for v in args.diameter.split(","))
    except ValueError:
        raise InputError(f"--diameter must be MIN,MAX in mm, got {args.diameter!r}") from None
    pv = Path(args.pv)
    fr_paths = {t: pv / f"pv_{t}.nii.gz" for t in ("CSF", "GM", "WM", "lesion")}
    for t in ("CSF", "GM", "WM"):
        if not fr_paths[t].is_file():
            raise InputError(f"--pv {pv}: {fr_paths[t].name} is missing")
    out = Path(args.outdir)
    outputs = [(f"OUTDIR/{n}_lesions.nii.gz", out / f"{n}_lesions.nii.gz") for n in names]
    outputs += [(f"OUTDIR/{f}", out / f) for f in (OUTPUT_MASK, OUTPUT_FRACTION, OUTPUT_JSON)]
    inputs = [("--image", p) for p, _ in images] + [("--mask", args.mask), ("--brain-mask", args.brain_mask)]
    inputs += [("--pv", fr_paths[t]) for t in fr_paths if fr_paths[t].is_file()]
    refuse_overwriting_inputs(inputs, outputs)

    vols = {}
    for (path, seq), name in zip(images, names):
        vol = read_volume(path, dtype=np.float32)
        params = AcquisitionParams.for_image(path, vol.meta)
        if args.source is not None:
            params = params.merged(args.source)
        params.require(seq, context=f"--image {path}")
        vols[name] = (vol, seq, params)
    ref = next(iter(vols.values()))[0]
    fractions = {}
    for t, p in fr_paths.items():
        if p.is_file():
            v = read_volume(p, dtype=np.float32)
            ref.require_same_grid(v, f"{p.name} and the first image")
            fractions[t] = v.data
    for name, (vol, _, _) in vols.items():
        ref.require_same_grid(vol, f"{name} and the first image")
    brain = None
    if args.brain_mask:
        b = read_volume(args.brain_mask)
        ref.require_same_grid(b, "--brain-mask and the images")
        brain = b.data > 0
    if args.mask:
        m = read_volume(args.mask, dtype=np.float32)
        ref.require_same_grid(m, "--mask and the images")
        fl = np.clip(m.data, 0, None)
        if fl.max() > 1:
            fl = (fl > 0).astype(np.float32)
        source = {"mask": str(args.mask)}
    else:
        wm = fractions["WM"]
        allowed = (wm >= 0.95) if args.location == "wm" else ((brain if brain is not None else
                                                               sum(fractions.values()) > 0.5))
        allowed = ndi.binary_erosion(allowed, iterations=1) & (fractions.get("lesion", 0 * wm) < 0.5)
        fl = generate_lesions(wm.shape, ref.ijk_to_ras(), allowed, count=args.count, diameter_range_mm=(lo, hi),
                              seed=args.seed)
        source = {"generated": {"count": args.count, "diameter_mm": [lo, hi], "location": args.location,
                                "seed": args.seed}}
    res = insert_lesions(vols, fractions, fl, brain_mask=brain)
    summary = {"description": "SYNTHETIC: lesions inserted by NeuroShift (physics-based, tissue-wise model)",
               "lesions": source, "lesion_voxels": int(res.mask.sum()),
               "images": {n: {"sequence": vols[n][1], "scale_c": r.scale_c, "lesion_signal_unscaled": r.lesion_signal,
                              "host_signal_unscaled": r.host_signals} for n, r in res.images.items()}}
    out.mkdir(parents=True, exist_ok=True)
    for name, r in res.images.items():
        print(write_volume(vols[name][0].with_data(r.image, description="SYNTHETIC"), out / f"{name}_lesions.nii.gz"))
    print(write_volume(ref.with_data(res.mask), out / OUTPUT_MASK))
    print(write_volume(ref.with_data(res.lesion_fraction), out / OUTPUT_FRACTION))
    write_text_atomic(out / OUTPUT_JSON, json.dumps(summary, indent=2) + "\n")
    print(f"inserted {summary['lesion_voxels']} lesion voxels into {len(res.images)} image(s) (SYNTHETIC)")
    return 0
