"""Training subjects: find the NIfTI image/label pairs of a training set (no loading, no preprocessing).

A *subject* is one scan: its channel images (``{"FLAIR": path, "T1": path}``), its label map and
optionally a brain mask. Subjects come from

* lists: ``subjects_from_lists(images, labels, channels)`` where each image entry is one path
  (single channel) or the comma-separated paths of all channels in the model's order;
* a CSV file (:func:`subjects_from_csv`) with a header: ``subject`` (optional), one column per
  channel name, ``label``, and optionally ``brain_mask`` and ``group`` (scans sharing a group,
  e.g. sessions of one person, always land in the same cross-validation fold). Relative paths are
  relative to the CSV file;
* a folder (:func:`subjects_from_folder`): one sub-folder per subject, searched recursively for
  ``<channel>.nii[.gz]`` (``T1``/``T1w`` alike, case-insensitive) and a label file (default names
  :data:`LABEL_NAMES`, e.g. ``wmh.nii.gz`` of the WMH challenge or ``lesion_mask.nii.gz`` of the
  phantom). A folder that itself holds the channel files is one subject.

:func:`discover_subjects` picks the right one from what the user gave. Loading and preprocessing
the subjects is :mod:`neuroshift.segment.dataset`'s job.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import InputError, UnreadableFileError

#: Label file names tried (in order) in subject folders.
LABEL_NAMES = ("label", "labels", "seg", "segmentation", "wmh", "lesion_mask", "mask", "claustrum")
_NII = re.compile(r"\.(nii|nii\.gz|nrrd|mha|mhd)$", re.IGNORECASE)


@dataclass
class Subject:
    """One training scan: channel images, label, optional brain mask (paths or Volumes)."""

    id: str
    images: dict[str, Any]
    label: Any
    brain_mask: Any = None
    group: str | None = None

    @property
    def group_id(self) -> str:
        return self.group or self.id


def _aliases(name: str) -> list[str]:
    from .preprocess import channel_aliases

    return channel_aliases(name)


def _stem(path: Path) -> str:
    return _NII.sub("", path.name)


def subjects_from_lists(images: Sequence[Any], labels: Sequence[Any], channels: Sequence[str],
                        brain_masks: Sequence[Any] | None = None) -> list[Subject]:
    """Subjects from parallel lists; an image entry is a path, a comma-separated list of paths (one per
    channel, in ``channels`` order), a list of paths, or a ``{channel: path/Volume}`` dict."""
    if len(images) != len(labels):
        raise InputError(f"{len(images)} image entries but {len(labels)} label files: give one label per subject")
    if brain_masks is not None and len(brain_masks) != len(images):
        raise InputError(f"{len(brain_masks)} brain masks for {len(images)} subjects")
    out = []
    for n, (img, lab) in enumerate(zip(images, labels)):
        if isinstance(img, Mapping):
            chans = dict(img)
        else:
            parts = [p.strip() for p in img.split(",")] if isinstance(img, str) else list(img) \
                if isinstance(img, (list, tuple)) else [img]
            if len(parts) != len(channels):
                raise InputError(f"subject {n + 1}: {len(parts)} image(s) given but the model takes "
                                 f"{len(channels)} channel(s) ({', '.join(channels)}); join the channel files "
                                 "of one subject with commas, in that order")
            chans = dict(zip(channels, parts))
        first = next(iter(chans.values()))
        sid = _stem(Path(first)) if isinstance(first, (str, os.PathLike)) else f"subject{n + 1}"
        if isinstance(first, (str, os.PathLike)) and sid.lower() in {a for c in channels for a in _aliases(c)}:
            sid = Path(first).parent.name or sid  # <subject>/FLAIR.nii.gz -> subject
        out.append(Subject(f"{sid}" if sid not in {s.id for s in out} else f"{sid}_{n + 1}", chans, lab,
                           None if brain_masks is None else brain_masks[n]))
    return out


def subjects_from_csv(path: str | os.PathLike, channels: Sequence[str]) -> list[Subject]:
    """Subjects from a CSV file (see the module docstring for the columns)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read ({exc})") from None
    if not rows:
        raise InputError(f"{path}: no rows")
    header = {h.lower().strip(): h for h in rows[0].keys() if h}
    col_for: dict[str, str] = {}
    for ch in channels:
        for alias in [ch.lower()] + _aliases(ch):
            if alias in header:
                col_for[ch] = header[alias]
                break
        else:
            raise InputError(f"{path}: no column for channel '{ch}' (columns: {', '.join(header.values())})")
    label_col = next((header[k] for k in ("label", "labels", "seg", "mask", "gt") if k in header), None)
    if label_col is None:
        raise InputError(f"{path}: no 'label' column")

    def resolve(v: str) -> Path:
        p = Path(v.strip()).expanduser()
        return p if p.is_absolute() else path.parent / p

    out = []
    for n, row in enumerate(rows):
        sid = (row.get(header.get("subject", ""), "") or row.get(header.get("id", ""), "") or f"row{n + 1}").strip()
        bm = row.get(header["brain_mask"], "") if "brain_mask" in header else ""
        grp = row.get(header["group"], "") if "group" in header else ""
        out.append(Subject(sid, {ch: resolve(row[col_for[ch]]) for ch in channels}, resolve(row[label_col]),
                           resolve(bm) if bm and bm.strip() else None, grp.strip() or None))
    return out


def _find_file(folder: Path, names: Iterable[str]) -> Path | None:
    wanted = [n.lower() for n in names]
    files = sorted(p for p in folder.rglob("*") if p.is_file() and _NII.search(p.name))
    for name in wanted:
        for p in files:
            if _stem(p).lower() == name:
                return p
    return None


def subjects_from_folder(folder: str | os.PathLike, channels: Sequence[str],
                         label_name: str | None = None) -> list[Subject]:
    """Subjects from a folder of subject folders (or one subject folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UnreadableFileError(f"{folder}: no such folder")
    label_names = [label_name] if label_name else list(LABEL_NAMES)

    def one(sub: Path) -> Subject | None:
        chans = {}
        for ch in channels:
            f = _find_file(sub, [ch] + _aliases(ch))
            if f is None:
                return None
            chans[ch] = f
        lab = _find_file(sub, [_stem(Path(n)) for n in label_names])
        if lab is None:
            raise InputError(f"{sub}: found the images but no label file (tried {', '.join(label_names)})")
        bm = _find_file(sub, ["brain_mask", "brainmask"])
        return Subject(sub.name, chans, lab, bm)

    direct = one(folder) if any(_find_file(folder, [ch] + _aliases(ch)) for ch in channels[:1]) and \
        all(_find_file(folder, [ch] + _aliases(ch)) for ch in channels) else None
    if direct is not None and not any(p.is_dir() for p in folder.iterdir()):
        return [direct]
    out = [s for s in (one(sub) for sub in sorted(p for p in folder.iterdir() if p.is_dir())) if s is not None]
    if not out and direct is not None:
        return [direct]
    if not out:
        raise InputError(f"{folder}: no subject folder holds all channels ({', '.join(channels)})")
    return out


def discover_subjects(images: Any, labels: Any = None, channels: Sequence[str] = ("FLAIR",),
                      brain_masks: Any = None) -> list[Subject]:
    """Subjects from whatever the user gave: a CSV file, a folder, lists of files, or :class:`Subject` objects."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    images = list(images or [])
    if not images:
        raise InputError("no training images given")
    if all(isinstance(s, Subject) for s in images):
        return list(images)
    if len(images) == 1 and isinstance(images[0], (str, os.PathLike)) and not labels:
        p = Path(images[0])
        if p.suffix.lower() == ".csv":
            return subjects_from_csv(p, channels)
        if p.is_dir():
            return subjects_from_folder(p, channels)
    if isinstance(labels, (str, os.PathLike)):
        labels = [labels]
    if len(images) == 1 and isinstance(images[0], (str, os.PathLike)) and Path(images[0]).is_dir():
        label_name = Path(labels[0]).name if labels and len(labels) == 1 else None
        return subjects_from_folder(images[0], channels, label_name)
    if not labels:
        raise InputError("give --labels (one per image entry), or a CSV file / subject folder as --images")
    return subjects_from_lists(images, list(labels), channels, brain_masks)


__all__ = ["LABEL_NAMES", "Subject", "discover_subjects", "subjects_from_csv", "subjects_from_folder",
           "subjects_from_lists"]
