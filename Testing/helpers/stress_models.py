"""Test helpers moved out of test_stress_models.py, which other tests imported them from (issue 16).

Names: TOOL.
"""

from __future__ import annotations

import textwrap


TOOL = textwrap.dedent('''
    """A stand-in for an external lesion segmentation tool: FLAIR above a threshold is lesion."""
    import argparse, pathlib, sys, time
    import nibabel as nib
    import numpy as np

    p = argparse.ArgumentParser()
    p.add_argument("--flair")
    p.add_argument("--input-dir")
    p.add_argument("--output")
    p.add_argument("--output-dir")
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--fail", action="store_true")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--extra", nargs="*")
    a = p.parse_args()
    time.sleep(a.sleep)
    if a.fail:
        print("loading weights...", file=sys.stderr)
        print("CUDA error: out of memory (tool message)", file=sys.stderr)
        sys.exit(3)
    src = a.flair or str(pathlib.Path(a.input_dir) / "case_0000.nii.gz")
    img = nib.load(src)
    data = np.asarray(img.dataobj, dtype=np.float32)
    thr = a.threshold or np.percentile(data[data > 0], 99) if (data > 0).any() else 1.0
    out = a.output or str(pathlib.Path(a.output_dir) / "case.nii.gz")
    nib.save(nib.Nifti1Image((data > thr).astype(np.uint8), img.affine), out)
''')
