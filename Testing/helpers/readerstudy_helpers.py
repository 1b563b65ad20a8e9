"""Helpers of the reader-study tests: study folders with tiny images, reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "readerstudy"


def small_study_folder(tmp_path: Path, name: str = "small_study.yaml", *, images: bool = True) -> Path:
    """Copy a fixture study into tmp_path (with 8x8x4 NIfTI images); returns the YAML path."""
    import yaml

    folder = tmp_path / "study"
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / "STUDY.yaml"
    shutil.copy(HERE / name, dst)
    if images:
        from neuroshift.io import Volume, write_volume

        doc = yaml.safe_load(dst.read_text())
        for k, case in enumerate(doc["cases"]):
            for j, (s, rel) in enumerate((case.get("images") or {}).items()):
                data = np.full((4, 8, 8), 10.0 * k + j, np.float32)
                p = folder / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                vol = Volume(data, [1.0, 1.0, 2.0], [0.0, 0.0, 0.0])
                vol.meta["dicom:SeriesDescription"] = f"{s} series"
                write_volume(vol, p)
    return dst
