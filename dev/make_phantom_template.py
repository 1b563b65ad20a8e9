#!/usr/bin/env python
"""Build NeuroShift's compact phantom template from the MNI ICBM152 2009 maps shipped in the nilearn wheel.

Development tool, run once by maintainers (needs ``pip install nilearn``); the
package itself never imports nilearn. Output, in ``neuroshift/data/phantom/``:

* ``icbm152_2009a_2mm.npz`` — ``csf``, ``gm``, ``wm`` tissue probabilities at
  2 mm (uint8, probability x 255), ``brain`` (uint8, brain fraction x 255),
  ``affine`` (4x4 voxel-to-RAS, mm) and a few provenance strings;
* ``NOTICE-ICBM152.txt`` — the copyright/licence notice of the template.

Source files (nilearn/datasets/data/): ``mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``
(1 mm, 197x233x189, uint8 0..255, already skull-stripped). nilearn ships no CSF map, so CSF is the
remainder ``1 - GM - WM`` inside the template's own brain mask (the non-zero voxels of the skull-stripped
T1 template, which contains ventricles and sulcal CSF, united with GM + WM >= 0.5).

Downsampling to 2 mm averages 2x2x2 blocks of the 1 mm fractions, so partial volume at 2 mm is the true
mean of the 1 mm fractions (brain-boundary voxels keep a background share, stored in ``brain``).
The grid is cropped to the brain's bounding box plus a margin, and the affine is the template's real one,
shifted to the crop and to the centres of the 2 mm blocks.

Usage::

    python dev/make_phantom_template.py [--out neuroshift/data/phantom] [--margin-mm 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

# The copyright notice of the MNI ICBM152 2009 templates, as distributed by the McConnell Brain Imaging
# Centre with the template archives (mni_icbm152_nlin_sym_09a_nifti.zip) and on its ICBM 2009 page.
# nilearn's wheel ships the maps without this text (its description file says "License: unknown"),
# so it is reproduced here and kept with every copy of the derived maps.
MNI_NOTICE = (
    "Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
    "Institute, McGill University. Permission to use, copy, modify, and distribute this software and its "
    "documentation for any purpose and without fee is hereby granted, provided that the above copyright "
    "notice appear in all copies. The authors and McGill University make no representations about the "
    "suitability of this software for any purpose. It is provided \"as is\" without express or implied "
    "warranty. The authors are not responsible for any data loss, equipment damage, property loss, or "
    "injury to subjects or patients resulting from the use or misuse of this software package."
)

CITATION = (
    "VS Fonov, AC Evans, K Botteron, CR Almli, RC McKinstry, DL Collins and BDCG, Unbiased average "
    "age-appropriate atlases for pediatric studies, NeuroImage 54(1), 2011, doi:10.1016/j.neuroimage.2010.07.033\n"
    "VS Fonov, AC Evans, RC McKinstry, CR Almli and DL Collins, Unbiased nonlinear average age-appropriate "
    "brain templates from birth to adulthood, NeuroImage 47 Suppl 1, 2009, S102, doi:10.1016/S1053-8119(09)70884-5\n"
    "DL Collins, AP Zijdenbos, WFC Baare and AC Evans, ANIMAL+INSECT: Improved Cortical Structure "
    "Segmentation, IPMI 1999, LNCS 1613, 210-223"
)


def nilearn_data_dir() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data"


def load_1mm(data_dir: Path):
    import nibabel as nib

    imgs = {k: nib.load(str(data_dir / f)) for k, f in FILES.items()}
    affine = imgs["t1"].affine
    for k, img in imgs.items():
        if img.shape != imgs["t1"].shape or not np.allclose(img.affine, affine):
            raise SystemExit(f"{FILES[k]}: grid differs from the T1 template")
    arr = {k: np.asarray(img.dataobj, dtype=np.float64) / 255.0 for k, img in imgs.items()}
    return arr, affine


def block_mean(a: np.ndarray, start: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Mean over 2x2x2 blocks of ``a[start : start + 2*shape]`` (zero-padded where the crop leaves the array)."""
    padded = np.zeros(tuple(2 * shape), dtype=np.float64)
    src_lo = np.maximum(start, 0)
    src_hi = np.minimum(start + 2 * shape, a.shape)
    dst_lo = src_lo - start
    dst_hi = dst_lo + (src_hi - src_lo)
    padded[dst_lo[0]:dst_hi[0], dst_lo[1]:dst_hi[1], dst_lo[2]:dst_hi[2]] = \
        a[src_lo[0]:src_hi[0], src_lo[1]:src_hi[1], src_lo[2]:src_hi[2]]
    x, y, z = shape
    return padded.reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5))


def build(data_dir: Path, margin_mm: float = 8.0):
    arr, affine = load_1mm(data_dir)
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise SystemExit("expected a 1 mm axis-aligned template grid")
    gm, wm = arr["gm"], arr["wm"]
    gm_wm = np.clip(gm + wm, 0.0, 1.0)
    brain = (arr["t1"] > 0) | (gm_wm >= 0.5)
    scale = np.where(gm + wm > 1.0, 1.0 / np.maximum(gm + wm, 1e-12), 1.0)
    gm1 = np.where(brain, gm * scale, 0.0)
    wm1 = np.where(brain, wm * scale, 0.0)
    csf1 = np.where(brain, 1.0 - gm1 - wm1, 0.0)
    # crop box (1 mm voxels) = brain bounding box + margin, then 2 mm blocks
    idx = np.argwhere(brain)
    lo, hi = idx.min(0), idx.max(0) + 1
    m = int(round(margin_mm))
    lo = lo - m
    hi = hi + m
    shape2 = np.ceil((hi - lo) / 2.0).astype(int)
    start = lo
    maps = {
        "csf": block_mean(csf1, start, shape2),
        "gm": block_mean(gm1, start, shape2),
        "wm": block_mean(wm1, start, shape2),
        "brain": block_mean(brain.astype(np.float64), start, shape2),
    }
    # new affine: 2 mm voxels whose centres are the centres of the 2x2x2 blocks
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * 2.0
    new_affine[:3, 3] = affine[:3, :3] @ (start + 0.5) + affine[:3, 3]
    q = {k: np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8) for k, v in maps.items()}
    return q, new_affine


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "neuroshift" / "data" / "phantom")
    parser.add_argument("--margin-mm", type=float, default=8.0)
    args = parser.parse_args(argv)
    data_dir = nilearn_data_dir()
    q, affine = build(data_dir, args.margin_mm)
    args.out.mkdir(parents=True, exist_ok=True)
    import nilearn

    sources = {f: hashlib.sha256((data_dir / f).read_bytes()).hexdigest() for f in FILES.values()}
    provenance = {
        "template": "MNI ICBM152 2009a nonlinear symmetric (as shipped in nilearn %s)" % nilearn.__version__,
        "source_files_sha256": sources,
        "method": "1 mm GM/WM maps; CSF = 1 - GM - WM inside the skull-stripped T1 template mask; "
                  "2x2x2 block means; crop to brain bounding box + margin; quantised x255 to uint8",
        "voxel_mm": 2.0,
        "shape_ijk": list(q["gm"].shape),
    }
    out = args.out / "icbm152_2009a_2mm.npz"
    np.savez_compressed(out, csf=q["csf"], gm=q["gm"], wm=q["wm"], brain=q["brain"], affine=affine,
                        provenance=np.array(json.dumps(provenance)))
    description = (data_dir.parent / "description" / "icbm152_2009.rst").read_text(encoding="utf-8")
    notice = (
        "NeuroShift's digital phantom (neuroshift/data/phantom/icbm152_2009a_2mm.npz) is derived from the\n"
        "MNI ICBM152 2009a nonlinear symmetric tissue probability maps (grey matter, white matter) and the\n"
        "skull-stripped T1 template, as redistributed in the nilearn wheel (nilearn/datasets/data/):\n"
        + "".join(f"  {f}  sha256 {h}\n" for f, h in sources.items())
        + "They were resampled to 2 mm (block means), cropped and quantised to 8 bits; CSF was derived as\n"
        "1 - GM - WM inside the template's brain mask. Synthetic lesions and images are added at run time.\n\n"
        "Copyright notice of the MNI ICBM152 2009 templates (McConnell Brain Imaging Centre):\n\n"
        + MNI_NOTICE + "\n\n"
        "Please cite:\n" + CITATION + "\n\n"
        "----------------------------------------------------------------------------------------------\n"
        "nilearn's description of the template, copied verbatim from the nilearn %s wheel\n"
        "(nilearn/datasets/description/icbm152_2009.rst):\n\n" % nilearn.__version__
        + description
    )
    (args.out / "NOTICE-ICBM152.txt").write_text(notice, encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB), grid {q['gm'].shape} at 2 mm")
    print("affine:\n", affine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
