"""Seeded, balanced schedules: which reader reads which case and image set, in which phase and order.

* ``crossover`` (paper 004): the cases are shuffled once and split into as many
  equal groups as there are image sets; reader ``i`` reads group ``g`` in phase
  ``p`` with image set ``(g + i + p) mod m``. With 38 cases, 2 image sets and 2
  readers every reader reads 19 + 19 per phase, phase 2 mirrors phase 1 and the
  second reader mirrors the first, so every (reader, case, image set) occurs
  exactly once: 152 reads.
* ``full``: every reader reads every case x image set; image sets of one case
  are spread over the phases the same way.
* ``turing`` (dissertation 003): per reader, ``trials[s]`` trials of each image
  set ``s`` (cases drawn without replacement, recycled only when there are
  fewer cases than trials), shuffled; the source image is shown beside.
* Reference reads: designated readers read every case's reference image set
  in an extra last phase.

The order within a phase is shuffled per reader. Everything derives from the
study seed through ``numpy.random.default_rng([seed, ...])``: the same seed
gives the same schedule on every machine.

Phase ``k > 1`` opens for a reader once all of the reader's reads of phase
``k - 1`` are submitted and the phase's washout (days) has passed since the
last of them (:func:`check_phase_open`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .definition import StudyDefinition
from .errors import WashoutError


@dataclass(frozen=True)
class ScheduledRead:
    """One read in a reader's schedule (``phase`` and ``position`` are 1-based)."""

    reader: str
    phase: int
    position: int
    case: str
    image_set: str
    kind: str  # "read" | "reference" | "trial"
    shows: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.reader, self.case, self.image_set, self.phase)


def _balanced_groups(case_ids: Sequence[str], m: int, rng: np.random.Generator) -> list[list[str]]:
    order = rng.permutation(len(case_ids))
    shuffled = [case_ids[i] for i in order]
    return [shuffled[g::m] for g in range(m)]


def build_schedule(study: StudyDefinition) -> list[ScheduledRead]:
    """The study's complete schedule, ordered by reader, phase and position."""
    design = study.design
    case_ids = [c.id for c in study.cases]
    seed = int(study.seed)
    plan: dict[tuple[str, int], list[tuple[str, str, str]]] = {}

    def add(reader: str, phase: int, case: str, image_set: str, kind: str) -> None:
        plan.setdefault((reader, phase), []).append((case, image_set, kind))

    if design.type in ("crossover", "full"):
        sets = list(design.image_sets)
        m = len(sets)
        n_phases = len(study.phases)
        groups = _balanced_groups(case_ids, m, np.random.default_rng([seed, 0]))
        for i, reader in enumerate(study.readers):
            for g, group in enumerate(groups):
                for case in group:
                    if design.type == "crossover":
                        for p in range(n_phases):
                            add(reader.id, p + 1, case, sets[(g + i + p) % m], "read")
                    else:
                        for j, s in enumerate(sets):
                            add(reader.id, (g + i + j) % n_phases + 1, case, s, "read")
    elif design.type == "turing":
        for i, reader in enumerate(study.readers):
            rng = np.random.default_rng([seed, 1, i])
            for s, n in design.trials.items():
                eligible = [c.id for c in study.cases if not c.images or s in c.images]
                if not eligible:
                    continue
                drawn: list[str] = []
                while len(drawn) < n:
                    drawn += [eligible[k] for k in rng.permutation(len(eligible))]
                for case in drawn[:n]:
                    add(reader.id, 1, case, s, "trial")

    if study.reference_reads is not None:
        rphase = study.reference_phase
        for reader in study.reference_reads.readers:
            for case in case_ids:
                add(reader, rphase, case, study.reference_reads.image_set, "reference")

    reader_index = {r.id: i for i, r in enumerate(study.readers)}
    out: list[ScheduledRead] = []
    for (reader, phase) in sorted(plan, key=lambda k: (reader_index[k[0]], k[1])):
        items = plan[(reader, phase)]
        rng = np.random.default_rng([seed, 2, reader_index[reader], phase])
        for pos, k in enumerate(rng.permutation(len(items)), start=1):
            case, s, kind = items[k]
            shows = (s, study.design.source) if kind == "trial" else study.shows_for(s)
            out.append(ScheduledRead(reader, phase, pos, case, s, kind, tuple(dict.fromkeys(shows))))
    return out


#: Columns of the schedule export (one row per scheduled read).
SCHEDULE_COLUMNS = ("reader", "role", "phase", "phase_name", "position", "case", "image_set", "image_set_label",
                    "synthetic", "kind", "shows", "image")


def schedule_rows(study: StudyDefinition, schedule: Iterable[ScheduledRead], *, reader: str | None = None,
                  phase: int | str | None = None) -> list[dict]:
    """Who reads what, in which phase and order: one dict per read (:data:`SCHEDULE_COLUMNS`).

    ``reader`` and ``phase`` (a number or a phase name of the study file) select a part. ``image`` is the
    target image's path relative to the study folder (empty when the case has none); ``shows`` lists
    the image sets loaded with the read, separated by ``;``. For the study owner: the export names the
    real image sets, so do not hand it to blinded readers.
    """
    if reader is not None:
        study.reader(reader)  # unknown reader -> error naming the readers
    number = study.phase_number(phase, where="--phase") if phase is not None else None
    roles = {r.id: r.role for r in study.readers}
    rows = []
    for r in schedule:
        if (reader is not None and r.reader != reader) or (number is not None and r.phase != number):
            continue
        iset = study.image_sets[r.image_set]
        path = study.case(r.case).images.get(r.image_set)
        rows.append({
            "reader": r.reader, "role": roles.get(r.reader, ""), "phase": r.phase,
            "phase_name": study.all_phases[r.phase - 1].name, "position": r.position, "case": r.case,
            "image_set": r.image_set, "image_set_label": iset.label,
            "synthetic": "" if iset.synthetic is None else str(bool(iset.synthetic)).lower(), "kind": r.kind,
            "shows": ";".join(r.shows),
            "image": "" if path is None else Path(path).relative_to(study.folder).as_posix()
            if Path(path).is_relative_to(study.folder) else str(path),
        })
    return rows


def schedule_csv(rows: Sequence[dict]) -> str:
    """The rows of :func:`schedule_rows` as CSV text (header :data:`SCHEDULE_COLUMNS`)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SCHEDULE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def schedule_digest(schedule: Iterable[ScheduledRead]) -> str:
    """SHA-256 of the schedule's canonical JSON (reproducibility check)."""
    payload = json.dumps([asdict(r) for r in schedule], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _parse_time(value: str | datetime) -> datetime:
    t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def phase_opens_at(
    study: StudyDefinition,
    schedule: Sequence[ScheduledRead],
    submitted: dict[tuple[str, str, str, int], str | datetime | None],
    reader: str,
    phase: int,
) -> tuple[datetime | None, str]:
    """When ``phase`` opens for ``reader`` (None: not yet determinable) and why.

    ``submitted`` maps read keys (reader, case, image set, phase) to their
    submission time (ISO 8601, UTC when no zone); a time of None (an imported
    read without timestamps) counts as submitted at an unknown time.
    """
    if phase <= 1:
        return datetime.min.replace(tzinfo=timezone.utc), "the first phase is always open"
    previous = [r for r in schedule if r.reader == reader and r.phase < phase]
    if not previous:
        return datetime.min.replace(tzinfo=timezone.utc), "no earlier phase for this reader"
    prev_phase = max(r.phase for r in previous)
    prev = [r for r in previous if r.phase == prev_phase]
    pending = [r for r in prev if r.key not in submitted]
    if pending:
        return None, (f"{len(pending)} of {len(prev)} reads of phase {prev_phase} "
                      f"('{study.all_phases[prev_phase - 1].name}') are not submitted yet")
    times = [_parse_time(submitted[r.key]) for r in prev if submitted[r.key] is not None]
    washout = study.all_phases[phase - 1].washout_days
    if not times:
        return datetime.min.replace(tzinfo=timezone.utc), "previous phase imported without timestamps"
    opens = max(times) + timedelta(days=washout)
    return opens, f"{washout:g}-day washout after the last read of phase {prev_phase} ({max(times).isoformat()})"


def check_phase_open(
    study: StudyDefinition,
    schedule: Sequence[ScheduledRead],
    submitted: dict[tuple[str, str, str, int], str | datetime | None],
    reader: str,
    phase: int,
    now: datetime | str | None = None,
) -> None:
    """Raise :class:`WashoutError` unless ``phase`` is open for ``reader`` at ``now`` (default: now, UTC)."""
    now = _parse_time(now) if now is not None else datetime.now(timezone.utc)
    opens, why = phase_opens_at(study, schedule, submitted, reader, phase)
    if opens is None:
        raise WashoutError(f"phase {phase} is not open for reader {reader}: {why}")
    if now < opens:
        left = opens - now
        raise WashoutError(
            f"phase {phase} opens for reader {reader} on {opens.isoformat(timespec='minutes')} "
            f"({why}); {left.days} d {left.seconds // 3600} h to go"
        )
