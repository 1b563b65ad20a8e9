#!/usr/bin/env python
"""Build ``neuroshift/data/qsynth/lesion_masks_lesjak2018_2mm.npz`` from the Lesjak 2018 consensus lesion masks.

Source: the MNI-space consensus masks of the 30 patients of Lesjak et al., "A Novel Public MR Image Dataset of
Multiple Sclerosis Patients With Lesion Segmentations Based on Multi-rater Consensus", Neuroinformatics
16:51-63 (2018), doi:10.1007/s12021-017-9348-7, released under CC BY, as mirrored in
github.com/muschellij2/open_ms_data (``cross_sectional/MNI/patientNN/GOLD_STANDARD_*_regtoMNI.nii.gz``, 1 mm).
Each mask (> 0.5) is resampled linearly onto the packaged ICBM152 template's 2 mm grid in physical space and
kept where the interpolated fraction is >= 0.5; ``--holdout`` cases (default 07, 19, 26: our real validation
FLAIRs) are left out. The SHA-256 of every source file goes into the provenance. Usage::

    python dev/make_lesion_bank.py /path/to/open_ms_data/cross_sectional/MNI      # or a folder of patientNN.nii.gz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCE = ("Lesjak Z, Pernus F, Likar B, Spiclin Z. A Novel Public MR Image Dataset of Multiple Sclerosis Patients "
          "With Lesion Segmentations Based on Multi-rater Consensus. Neuroinformatics 16:51-63 (2018), "
          "doi:10.1007/s12021-017-9348-7. Licence: Creative Commons Attribution (CC BY). Files: "
          "github.com/muschellij2/open_ms_data cross_sectional/MNI/patientNN/"
          "GOLD_STANDARD_N4_noneck_reduced_winsor_regtoFLAIR_regtoMNI.nii.gz")


def find_masks(folder: Path) -> dict[str, Path]:
    """case name -> mask file, from ``patientNN/GOLD_STANDARD*.nii.gz`` or ``patientNN.nii.gz``."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_dir():
            hits = sorted(p.glob("GOLD_STANDARD*.nii.gz"))
            if hits:
                out[p.name] = hits[0]
        elif p.name.endswith(".nii.gz") and p.name.startswith("patient"):
            out[p.name[:-7]] = p
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="folder of patientNN/GOLD_STANDARD*.nii.gz (or patientNN.nii.gz)")
    ap.add_argument("--holdout", default="patient07,patient19,patient26",
                    help="cases left out (comma-separated; default: the real validation FLAIRs)")
    ap.add_argument("--out", default=str(ROOT / "neuroshift" / "data" / "qsynth" / "lesion_masks_lesjak2018_2mm.npz"))
    args = ap.parse_args(argv)

    from neuroshift.io.atomic import atomic_path
    from neuroshift.io.files import read_volume
    from neuroshift.qsynth.anatomy import template_labels
    from neuroshift.qsynth.lesion_bank import load_lesion_bank
    from neuroshift.segment.package import sha256_file
    from neuroshift.segment.preprocess import resample_to_grid

    holdout = {h.strip() for h in args.holdout.split(",") if h.strip()}
    masks = find_masks(Path(args.source))
    if not masks:
        raise SystemExit(f"{args.source}: no lesion masks found")
    grid = template_labels()
    names, packed, cases = [], [], []
    for name, path in masks.items():
        if name in holdout:
            continue
        vol = read_volume(path)
        binary = np.asarray(vol.data) > 0.5
        frac = resample_to_grid(vol.with_data(binary.astype(np.float32)), grid)
        mask = np.asarray(frac.data) >= 0.5
        names.append(name)
        packed.append(np.packbits(mask.ravel()))
        cases.append({"case": name, "sha256": sha256_file(path),
                      "source_ml": round(float(binary.sum()) * float(np.prod(vol.spacing)) / 1000.0, 3),
                      "ml_2mm": round(float(mask.sum()) * 0.008, 3)})
        print(cases[-1])
    provenance = {"source": SOURCE, "script": "dev/make_lesion_bank.py", "left_out": sorted(holdout),
                  "grid": "packaged ICBM152 2009a template, 2 mm (neuroshift.phantom.template)",
                  "resampling": "linear in physical space (SimpleITK), fraction >= 0.5", "cases": cases}
    def verify(path: Path) -> None:  # the write counts only if the file reads back as the same masks
        bank = load_lesion_bank(path)
        if bank.names != tuple(names) or not np.allclose(bank.lesion_ml(), [c["ml_2mm"] for c in cases]):
            raise ValueError(f"{path}: the written lesion bank does not read back as written")

    out = Path(args.out)
    with atomic_path(out, verify=verify) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, names=np.array(names), packed=np.stack(packed),
                            shape_kji=np.array(grid.data.shape), provenance=np.array(json.dumps(provenance)))
    print(f"wrote {out}: {len(names)} masks, {out.stat().st_size / 1024:.1f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
