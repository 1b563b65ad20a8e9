"""Durable, append-only store of finished stress-test points: one JSON line each, fsync'ed.

``OUTDIR/points.jsonl`` holds one record per finished case × grid point (and one
per failed case); ``OUTDIR/run.json`` records what the run is (sequence, grid,
model, simulator), so a rerun into the same folder skips every finished point
and never mixes the results of two different runs. A line cut short by a crash
or a kill is ignored and trimmed before the next append, so nothing finished is
ever lost and nothing unfinished is mistaken for a result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from ..io.atomic import write_text_atomic
from ..io.jsonsafe import json_safe

POINTS_FILE = "points.jsonl"
RUN_FILE = "run.json"


class RunMismatchError(InputError):
    """The output folder holds the results of a different stress test."""


class ResultStore:
    """``points.jsonl`` + ``run.json`` in an output folder."""

    def __init__(self, outdir: str | os.PathLike):
        self.outdir = Path(outdir)
        self.path = self.outdir / POINTS_FILE
        self.run_path = self.outdir / RUN_FILE

    # ------------------------------------------------------------------ run identity
    def open(self, fingerprint: dict, *, restart: bool = False) -> None:
        """Create the folder; refuse (or with ``restart`` discard) results of a different run."""
        self.outdir.mkdir(parents=True, exist_ok=True)
        fingerprint = json_safe(fingerprint)
        if restart:
            self.path.unlink(missing_ok=True)
        elif self.run_path.is_file():
            try:
                old = json.loads(self.run_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = None
            if old is not None and old != fingerprint and self.path.is_file() and self.path.stat().st_size:
                diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
                raise RunMismatchError(
                    f"{self.outdir} holds the results of a different stress test ({', '.join(diff)} differ); "
                    "choose another output folder, or pass --restart to discard them")
        write_text_atomic(self.run_path, json.dumps(fingerprint, indent=2) + "\n")
        self._trim_partial_line()

    # ------------------------------------------------------------------ records
    def _trim_partial_line(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)

    def load(self) -> dict[str, dict]:
        """Records by key; a finished ("ok") record is never replaced by a later failure."""
        out: dict[str, dict] = {}
        if not self.path.is_file():
            return out
        with open(self.path, "r", encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # cut short by a crash: not a result
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                key = rec.get("key") if isinstance(rec, dict) else None
                if key is None:
                    continue
                if out.get(key, {}).get("status") == "ok" and rec.get("status") != "ok":
                    continue
                out[key] = rec
        return out

    def append(self, records: Iterable[dict]) -> None:
        """Append records, one line each, and fsync before returning."""
        lines = "".join(json.dumps(json_safe(r), separators=(",", ":")) + "\n" for r in records)
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())
