"""Visual Turing-test builder (dissertation 003 / Finck 2020 layout) for ``neuroshift reader-study create``.

Input: per case a real source image (shown left), the real target and one or more synthetic targets (one
right at random per trial, rated 1-6 stars for plausibility and real/synthetic). Output: a study folder with
the images copied under ``cases/<case>/`` (byte-identical; the originals are never touched) and
``study.yaml`` with a ``turing`` design (``seed``, blinding on) that :func:`neuroshift.readerstudy.definition.
parse_study` validates before the file is written. Paper 003 used 210 synthetic + 70 real trials per reader
(3:1); the default here is one trial per case for every image set.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import InputError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _suffix(p: Path) -> str:
    n = p.name.lower()
    return ".nii.gz" if n.endswith(".nii.gz") else p.suffix


def build_turing_study(outdir: str | Path, cases: Sequence[Mapping[str, object]], readers: Sequence[str], *,
                       source_label: str = "Source", target_label: str = "DIR", seed: int = 0,
                       trials: Mapping[str, int] | None = None, name: str = "turing-test") -> Path:
    """Write the study; ``cases``: ``{"id", "source", "real", "synthetic": {set_id: path}}``. Returns the YAML path.

    Raises:
        InputError: a missing image, a bad id, no readers, inconsistent synthetic sets, or an existing study.
    """
    import yaml

    from ..io.atomic import write_text_atomic
    from ..readerstudy.definition import parse_study

    out = Path(outdir)
    study_file = out / "study.yaml"
    if study_file.exists():
        raise InputError(f"{study_file} exists; choose a new folder (a study is never overwritten)")
    if not cases:
        raise InputError("no cases given")
    if not readers:
        raise InputError("give at least one reader id")
    sets = sorted(dict(cases[0]["synthetic"]))
    if not sets:
        raise InputError("each case needs at least one synthetic target")
    for c in cases:
        if not _ID.match(str(c["id"])):
            raise InputError(f"case id {c['id']!r}: letters, digits, '.', '_' or '-' only")
        if sorted(dict(c["synthetic"])) != sets:
            raise InputError(f"case {c['id']}: synthetic sets {sorted(dict(c['synthetic']))} differ from {sets}")
        for p in [c["source"], c["real"], *dict(c["synthetic"]).values()]:
            if not Path(str(p)).is_file():
                raise InputError(f"case {c['id']}: image {p} does not exist")
    for s in sets:
        if not _ID.match(s) or s in ("source", "real"):
            raise InputError(f"synthetic set name {s!r} is not usable as an image-set id")
    n = len(cases)
    trials = dict(trials or {"real": n, **{s: n for s in sets}})
    raw = {
        "name": name, "seed": int(seed), "blinding": True,
        "image_sets": {"source": {"label": source_label, "kind": "context", "display_name": "Source"},
                       "real": {"label": f"{target_label} (acquired)", "synthetic": False},
                       **{s: {"label": f"{target_label} ({s})", "synthetic": True} for s in sets}},
        "cases": [], "readers": list(readers), "phases": [{"name": "session"}],
        "design": {"type": "turing", "source": "source", "trials": trials},
        "tasks": [{"id": "plausibility", "type": "stars"},
                  {"id": "real_or_synthetic", "type": "real_or_synthetic"}],
    }
    copies = []
    for c in cases:
        images = {}
        for key, p in [("source", c["source"]), ("real", c["real"]), *dict(c["synthetic"]).items()]:
            src = Path(str(p))
            rel = f"cases/{c['id']}/{key}{_suffix(src)}"
            images[key] = rel
            copies.append((src, out / rel))
        raw["cases"].append({"id": str(c["id"]), "images": images})
    parse_study(raw, out)  # validate before writing anything
    for src, dst in copies:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    write_text_atomic(study_file, "# SYNTHETIC images inside: visual Turing test built by NeuroShift\n"
                      + yaml.safe_dump(raw, sort_keys=False))
    return study_file


__all__ = ["build_turing_study"]
