"""``neuroshift sample-data``: write the digital brain phantom (offline, known ground truth)."""

from __future__ import annotations

import argparse

EPILOG = """\
The phantom is built from the MNI ICBM152 2009a tissue maps packaged with NeuroShift (2 mm; see
NOTICE-ICBM152.txt, written beside the data) plus seeded MS-like lesions. Files:
  T1w.nii.gz + T1w.json        3 T MPRAGE (TR 2300, TI 900, TE 2.98 ms, FA 9°), BIDS sidecar in seconds
  FLAIR.nii.gz + FLAIR.json    3 T FLAIR (TE 112, TI 2500, TR 9000 ms)
  pv_CSF/GM/WM/lesion.nii.gz   partial-volume fractions (sum 1 in the brain)
  tissue_labels.nii.gz         CSF=1, GM=2, WM=3, lesion=4
  lesion_mask.nii.gz, brain_mask.nii.gz, ground_truth.json (relaxation values, parameters in ms, noise σ)
example:
  neuroshift sample-data phantom/ && neuroshift simulate phantom/FLAIR.nii.gz phantom/FLAIR_TE150_TI2900.nii.gz \\
      --sequence flair --target TE=150,TI=2900 --tissues phantom/tissue_labels.nii.gz
"""


def register(sub) -> None:
    p = sub.add_parser("sample-data", help="write a digital brain phantom (T1w, FLAIR, PV maps, lesions, ground truth)",
                       description="Write NeuroShift's digital brain phantom with known ground truth into OUTDIR.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", metavar="OUTDIR", help="folder to write into (created if needed)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of lesions and noise (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from ..errors import InputError
    from ..phantom import make_phantom

    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    paths = make_phantom(args.outdir, seed=args.seed)
    gt = json.loads(paths["ground_truth"].read_text(encoding="utf-8"))
    for key, path in paths.items():
        print(path)
    print(f"phantom: {gt['grid']['shape_ijk']} voxels at {gt['grid']['spacing_mm'][0]:g} mm, "
          f"{gt['lesion_count']} lesions ({gt['lesion_volume_ml']:.2f} ml), seed {gt['seed']}")
    return 0
