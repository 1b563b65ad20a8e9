"""What a run reports: the per-epoch log (``log.csv``) that rewinds on resume, best-epoch tracking,
rank-0 messages and the provenance every trained package records.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

LOG_FILE = "log.csv"


def append_epoch(path: str | Path, row: Mapping[str, Any], fields: Sequence[str]) -> None:
    """Append one epoch's ``row`` to the CSV log at ``path`` with columns ``fields``.

    Lines of epochs ``>= row["epoch"]`` are dropped first, so a resumed run never duplicates the epochs
    an interrupted run logged after its last checkpoint. The file is rewritten atomically.
    """
    from ..io.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("epoch") and int(r["epoch"]) < int(row["epoch"])]
    rows.append({k: row.get(k, "") for k in fields})
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(fields))
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k, "") for k in fields})


def read_log(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ``log.csv`` (strings, as written)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@dataclass
class BestTracker:
    """The best epoch by ``metric`` (``mode`` "max" or "min"); NaN never counts as better."""

    metric: str
    mode: str = "max"
    epoch: int | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")

    def update(self, epoch: int, row: Mapping[str, Any]) -> bool:
        """Record ``row`` of ``epoch``; ``True`` when it is the new best."""
        v = row.get(self.metric)
        if v is None or not math.isfinite(float(v)):
            return False
        v = float(v)
        better = self.value is None or (v > self.value if self.mode == "max" else v < self.value)
        if better:
            self.epoch, self.value = int(epoch), v
        return better

    def to_dict(self) -> dict[str, Any] | None:
        return None if self.epoch is None else {"epoch": self.epoch, self.metric: self.value}

    def load(self, saved: Mapping[str, Any] | None) -> "BestTracker":
        if saved:
            self.epoch, self.value = int(saved["epoch"]), float(saved[self.metric])
        return self


def log(message: str, *, verbose: bool = True, is_main: bool = True) -> None:
    """A progress line on stderr, printed by rank 0 only (and only when ``verbose``)."""
    if verbose and is_main:
        print(message, file=sys.stderr, flush=True)


def format_row(row: Mapping[str, Any], skip: Sequence[str] = ("lr",)) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k not in skip)


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def software_provenance() -> dict[str, Any]:
    """The provenance every trained package records: software versions and the date (UTC)."""
    import torch

    from .. import __version__

    return {"software": {"neuroshift": __version__, "torch": torch.__version__,
                         "python": platform.python_version()},
            "date": now_utc()}


__all__ = ["BestTracker", "LOG_FILE", "append_epoch", "format_row", "log", "now_utc", "read_log",
           "software_provenance"]
