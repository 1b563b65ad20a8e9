"""The packaged anatomical template of the phantom: MNI ICBM152 2009a tissue maps at 2 mm.

``neuroshift/data/phantom/icbm152_2009a_2mm.npz`` holds CSF/GM/WM probabilities
and the brain fraction (uint8, value/255), and the template's real 4x4
voxel-to-RAS affine (mm). It was made by ``dev/make_phantom_template.py`` from
the maps in the nilearn wheel; see ``NOTICE-ICBM152.txt`` beside it for the
template's copyright notice, which must accompany every copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import IntegrityError
from ..io.volume import Volume

TEMPLATE_FILE = "icbm152_2009a_2mm.npz"
NOTICE_FILE = "NOTICE-ICBM152.txt"


def data_dir() -> Path:
    """Folder of the packaged phantom resources."""
    return Path(str(resources.files("neuroshift") / "data" / "phantom"))


@dataclass
class Template:
    """Template fractions on the template grid (float32 Volumes, ``[k, j, i]``)."""

    csf: Volume
    gm: Volume
    wm: Volume
    brain: Volume
    provenance: dict


def load_template() -> Template:
    """Read the packaged template (no nilearn needed)."""
    path = data_dir() / TEMPLATE_FILE
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("csf", "gm", "wm", "brain")}
            affine = np.asarray(z["affine"], dtype=np.float64)
            provenance = json.loads(str(z["provenance"]))
    except (OSError, KeyError, ValueError) as exc:
        raise IntegrityError(f"{path}: the packaged phantom template is missing or damaged ({exc})") from None
    vols = {}
    for key, arr in arrays.items():
        # stored in NIfTI (i, j, k) order; Volume wants [k, j, i]
        data = np.ascontiguousarray(arr.transpose(2, 1, 0)).astype(np.float32) / np.float32(255.0)
        vols[key] = Volume.from_ijk_to_ras(data, affine, {"template": "ICBM152 2009a"})
    return Template(vols["csf"], vols["gm"], vols["wm"], vols["brain"], provenance)


def notice_text() -> str:
    """The template's copyright notice (to copy beside any output derived from it)."""
    return (data_dir() / NOTICE_FILE).read_text(encoding="utf-8")
