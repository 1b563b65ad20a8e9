#!/usr/bin/env python
"""Write one SYNTHETIC MRF phantom as files, so the CLI can be run on it end to end.

    python dev/mrf_export_phantom.py --seed 201 --out /tmp/mrf201
    neuroshift mrf predict /tmp/mrf201/frames.nii.gz --out /tmp/mrf201/pred
    neuroshift mrf evaluate --pred /tmp/mrf201/pred --ref /tmp/mrf201/ref --mask /tmp/mrf201/brain.nii.gz \
        --out /tmp/mrf201/eval

Writes into ``--out`` (refused when it exists): ``frames.nii.gz`` (4D, the 35 frames last, 1 % Rician noise,
B1 field; REPRESENTATIVE schedule), ``frames.schedule.json`` beside it, ``brain.nii.gz``, ``b1.nii.gz`` (the
simulated B1+ scale, for ``mrf match --b1-map``) and ``ref/`` with the ground-truth maps T1, T2star (ms) and
NAWM, GM, lesion (tissue fractions in %), on the phantom's 2 mm grid.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=201)
    ap.add_argument("--out", required=True)
    ap.add_argument("--noise", type=float, default=0.01, help="Rician sigma / mean WM signal")
    args = ap.parse_args()

    import numpy as np

    from neuroshift.io.files import write_volume
    from neuroshift.mrf.dataset import simulate_subject
    from neuroshift.mrf.frames_io import write_frames_nifti, write_maps
    from neuroshift.mrf.model import OUTPUT_NAMES
    from neuroshift.mrf.schedule import data_dir, representative_schedule

    out = Path(args.out)
    if out.exists():
        print(f"error: {out} exists; choose a new folder", file=sys.stderr)
        return 2
    s = representative_schedule()
    sub = simulate_subject(s, args.seed, noise_fraction=args.noise)
    ref = sub.volume
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_frames_nifti(sub.frames, ref, tmp / "frames.nii.gz")
    shutil.copy(data_dir() / "schedule_representative.json", tmp / "frames.schedule.json")
    write_volume(ref.with_data(sub.brain.astype(np.uint8)), tmp / "brain.nii.gz")
    write_volume(ref.with_data(sub.b1.astype(np.float32)), tmp / "b1.nii.gz")
    write_maps({n: sub.maps[n] for n in OUTPUT_NAMES}, ref, tmp / "ref")
    tmp.rename(out)
    print(f"SYNTHETIC phantom seed {args.seed}: {sub.frames.shape} frames, {int(sub.brain.sum())} brain voxels -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
