"""``neuroshift sample-data``: write the digital brain phantom (offline, known ground truth)."""

from __future__ import annotations

import argparse

EPILOG = """\
The phantom (SYNTHETIC) is built from the MNI ICBM152 2009a tissue maps packaged with NeuroShift (2 mm;
see NOTICE-ICBM152.txt, written beside the data) plus seeded MS-like lesions. Files:
  T1w.nii.gz + T1w.json        3 T MPRAGE (TR 2300, TI 900, TE 2.98 ms, FA 9°), BIDS sidecar in seconds
  FLAIR.nii.gz + FLAIR.json    3 T FLAIR (TE 112, TI 2500, TR 9000 ms)
  pv_CSF/GM/WM/lesion.nii.gz   partial-volume fractions (sum 1 in the brain)
  tissue_labels.nii.gz         CSF=1, GM=2, WM=3, lesion=4
  lesion_mask.nii.gz, brain_mask.nii.gz, ground_truth.json (relaxation values, parameters in ms, noise σ)
  maps/PD|T1|T2|T2star.nii.gz  ground-truth quantitative maps (times in ms) + .json each, maps/qmri.json
  qmri/e1,e2.nii.gz            multi-echo spin echo (TR 3000, TE 15 / 90 ms), BIDS sidecars
  qmri/fa4,fa25.nii.gz         variable flip angle spoiled GRE (TR 20, TE 4 ms, FA 4° / 25°)
  qmri/pd,t2,ir.nii.gz         SE TE 15 / SE TE 100 / IR TI 2500 (TR 6000 ms)
With --label-maps N it writes N SYNTHETIC qSynth training label maps instead (label_map_NNN.nii.gz, 2 mm,
CSF=1, GM=2, WM=3, lesion=4; the template randomly deformed), with lesions from the generative shape model or,
with --lesions lesjak2018, the real consensus lesion masks of 27 MS patients (Lesjak et al. 2018, CC BY;
NOTICE-Lesjak2018.txt is written beside them), plus label_maps.json.
examples:
  neuroshift sample-data phantom/
  neuroshift sample-data labels/ --label-maps 12 --lesions lesjak2018
  neuroshift train --synth qsynth --labels labels/label_map_*.nii.gz --channels FLAIR --out my-model/
  neuroshift simulate phantom/FLAIR.nii.gz FLAIR_TE150_TI2900.nii.gz --sequence flair --target TE=150,TI=2900 \\
      --pv CSF=phantom/pv_CSF.nii.gz,GM=phantom/pv_GM.nii.gz,WM=phantom/pv_WM.nii.gz,lesion=phantom/pv_lesion.nii.gz
  neuroshift qmri fit phantom/qmri/e1.nii.gz phantom/qmri/e2.nii.gz --sequence se fit_t2/
  neuroshift qmri synth phantom/maps/ flair.nii.gz --sequence flair --target TE=112,TI=2500,TR=9000
"""

def register(sub) -> None:
    p = sub.add_parser("sample-data",
                       help="write a digital brain phantom (T1w, FLAIR, PV maps, lesions, qMRI maps and image sets)",
                       description="Write NeuroShift's digital brain phantom with known ground truth into OUTDIR.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", metavar="OUTDIR", help="folder to write into (created if needed)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of lesions and noise (default 0)")
    p.add_argument("--no-quantitative", action="store_true",
                   help="skip maps/ and qmri/ (the quantitative maps and the image sets to fit them from)")
    p.add_argument("--label-maps", type=int, default=None, metavar="N",
                   help="write N qSynth training label maps instead of the phantom")
    p.add_argument("--lesions", choices=("generative", "lesjak2018"), default="generative",
                   help="lesions of the label maps: generative shape model (default) or real masks (Lesjak 2018)")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from ..errors import InputError
    from ..phantom import make_phantom

    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if args.label_maps is not None:
        from ..qsynth.label_maps import write_label_maps

        if args.label_maps < 1:
            raise InputError(f"--label-maps must be >= 1, got {args.label_maps}")
        for path in write_label_maps(args.outdir, args.label_maps, seed=args.seed, lesions=args.lesions):
            print(path)
        return 0
    paths = make_phantom(args.outdir, seed=args.seed, quantitative=not args.no_quantitative)
    gt = json.loads(paths["ground_truth"].read_text(encoding="utf-8"))
    for key, path in paths.items():
        print(path)
    print(f"phantom: {gt['grid']['shape_ijk']} voxels at {gt['grid']['spacing_mm'][0]:g} mm, "
          f"{gt['lesion_count']} lesions ({gt['lesion_volume_ml']:.2f} ml), seed {gt['seed']}")
    return 0
