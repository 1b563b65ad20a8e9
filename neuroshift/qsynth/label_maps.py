"""Write SYNTHETIC qSynth training label maps to files (``neuroshift sample-data --label-maps N``).

Each map is the packaged ICBM152 template (2 mm, 1 CSF, 2 GM, 3 WM, 4 lesion) randomly deformed, with lesions
either from the generative shape model (:func:`neuroshift.qsynth.anatomy.random_label_maps`) or from the real
consensus masks of the lesion bank (:func:`neuroshift.qsynth.lesion_bank.bank_label_maps`). The notices of the
template and, for bank lesions, of the Lesjak 2018 database are written beside them: they must travel with
every copy. Feed the files to ``neuroshift train --synth qsynth --labels``.
"""

from __future__ import annotations

import json
from pathlib import Path

LESION_SOURCES = ("generative", "lesjak2018")


def write_label_maps(outdir: str | Path, count: int, *, seed: int = 0, lesions: str = "generative") -> list[Path]:
    """Write ``count`` label maps ``label_map_NNN.nii.gz`` (+ ``label_maps.json``, notices) into ``outdir``."""
    from ..errors import InputError
    from ..io.atomic import write_text_atomic
    from ..io.files import write_volume
    from ..phantom.template import NOTICE_FILE, notice_text

    if lesions not in LESION_SOURCES:
        raise InputError(f"unknown lesion source '{lesions}'; known: {', '.join(LESION_SOURCES)}")
    if count < 1:
        raise InputError(f"the number of label maps must be >= 1, got {count}")
    if seed < 0:
        raise InputError(f"the seed must be >= 0, got {seed}")
    out = Path(outdir)
    notices = {NOTICE_FILE: notice_text()}
    if lesions == "generative":
        from .anatomy import random_label_maps

        maps = random_label_maps(count, seed=seed)
    else:
        from .lesion_bank import NOTICE_FILE as BANK_NOTICE
        from .lesion_bank import bank_label_maps, data_dir

        maps = bank_label_maps(count, seed=seed)
        notices[BANK_NOTICE] = (data_dir() / BANK_NOTICE).read_text(encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    paths, records = [], []
    for k, lab in enumerate(maps):
        path = out / f"label_map_{k:03d}.nii.gz"
        write_volume(lab, path)
        paths.append(path)
        records.append({"file": path.name, **{key: lab.meta[key] for key in ("lesions", "lesion_case", "flipped",
                                                                                 "lesion_ml") if key in lab.meta}})
    for name, text in notices.items():
        write_text_atomic(out / name, text)
    summary = {"synthetic": "SYNTHETIC label maps (qSynth training labels)", "labels": {"CSF": 1, "GM": 2, "WM": 3,
               "lesion": 4}, "lesions": lesions, "seed": seed, "spacing_mm": 2.0, "maps": records,
               "notices": sorted(notices)}
    write_text_atomic(out / "label_maps.json", json.dumps(summary, indent=2) + "\n")
    return paths
