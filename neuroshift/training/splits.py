"""Subject-wise data splits (k-fold cross-validation and hold-out), saved in the work folder.

Like nnU-Net's ``splits_final.json``, the split a run used is written to ``<work>/splits.json``
(:func:`save_splits`); a resumed run checks that it would split the same way (:func:`check_splits`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError

SPLITS_FILE = "splits.json"
Split = tuple[list[int], list[int]]


def kfold_splits(groups: Sequence[str], k: int, seed: int = 0) -> list[Split]:
    """k-fold cross-validation by subject: ``[(train indices, validation indices), ...]``.

    ``groups`` holds one subject/group id per scan; all scans of a group land in the same fold, so
    the folds are disjoint by subject. Groups are shuffled with ``seed`` and dealt round-robin, so
    fold sizes differ by at most one group.

    Raises:
        InputError: fewer than 2 folds, or more folds than groups.
    """
    k = int(k)
    uniq = list(dict.fromkeys(str(g) for g in groups))
    if k < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {k}")
    if k > len(uniq):
        raise InputError(f"{k} folds need at least {k} subjects, got {len(uniq)}")
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[g]: n % k for n, g in enumerate(order)}
    out = []
    for f in range(k):
        val = [i for i, g in enumerate(groups) if fold_of[str(g)] == f]
        train_idx = [i for i, g in enumerate(groups) if fold_of[str(g)] != f]
        out.append((train_idx, val))
    return out


def holdout_split(groups: Sequence[str], fraction: float, seed: int = 0) -> Split:
    """A seeded validation split of ``fraction`` of the subjects (by group); ``([all], [])`` for 0.

    Raises:
        InputError: the fraction leaves no training subjects.
    """
    if fraction <= 0:
        return list(range(len(groups))), []
    uniq = list(dict.fromkeys(str(g) for g in groups))
    n_val = max(1, int(round(fraction * len(uniq))))
    if n_val >= len(uniq):
        raise InputError(f"a validation fraction of {fraction} leaves no training subjects ({len(uniq)} in all)")
    val_groups = set(np.asarray(uniq)[np.random.default_rng(seed).permutation(len(uniq))[:n_val]].tolist())
    return ([i for i, g in enumerate(groups) if str(g) not in val_groups],
            [i for i, g in enumerate(groups) if str(g) in val_groups])


def splits_record(ids: Sequence[str], splits: Sequence[Split]) -> list[dict[str, list[str]]]:
    """The splits by subject id: ``[{"train": [...], "validation": [...]}, ...]``."""
    return [{"train": [str(ids[i]) for i in tr], "validation": [str(ids[i]) for i in va]} for tr, va in splits]


def save_splits(work_dir: str | Path, ids: Sequence[str], splits: Sequence[Split]) -> Path:
    """Write the splits by subject id to ``work_dir/splits.json`` (atomic) and return the path."""
    from .checkpoint import write_json_atomic

    path = Path(work_dir) / SPLITS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, splits_record(ids, splits))
    return path


def load_splits(work_dir: str | Path) -> list[dict[str, list[str]]] | None:
    """The splits saved in ``work_dir`` (``None`` when there are none).

    Raises:
        InputError: ``splits.json`` is not valid JSON.
    """
    path = Path(work_dir) / SPLITS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def check_splits(work_dir: str | Path, ids: Sequence[str], splits: Sequence[Split]) -> None:
    """Refuse to continue a run whose saved splits differ from ``splits`` (nothing saved: nothing to check).

    Raises:
        InputError: the saved splits differ (other subjects, seed, folds or validation fraction).
    """
    saved = load_splits(work_dir)
    if saved is not None and saved != splits_record(ids, splits):
        raise InputError(f"{Path(work_dir) / SPLITS_FILE}: the saved data splits differ from this run's "
                         "(other subjects, seed, folds or validation fraction); restore them or remove the work "
                         "folder")


__all__ = ["SPLITS_FILE", "check_splits", "holdout_split", "kfold_splits", "load_splits", "save_splits",
           "splits_record"]
