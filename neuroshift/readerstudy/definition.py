"""The study definition: a YAML file read into frozen dataclasses and validated.

A study folder holds ``STUDY.yaml`` and the images; every image path is
resolved relative to that folder and must stay inside it (:class:`PathEscapeError`
otherwise, symbolic links included). Example (paper 004's protocol)::

    name: virtual-contrast
    seed: 2021
    blinding: true              # neutral ids and names for readers; recorded in the DB
    image_sets:
      reference: {label: ref-T1c, synthetic: false, reference: true}
      low:       {label: low-T1c, synthetic: false}
      virtual:   {label: vir-T1c, synthetic: true}
      t1:        {label: T1, kind: context, display_name: Pre-contrast T1}
    shows: [t1]                 # context images shown with every read (an image set may override: shows: [...])
    cases:
      - {id: P01, images: {reference: P01/ref.nii.gz, low: P01/low.nii.gz, virtual: P01/vir.nii.gz, t1: P01/t1.nii.gz}}
    readers:
      - {id: R1, role: neuroradiologist, reference: true}
      - {id: R2, role: resident}
    phases:
      - {name: phase 1}
      - {name: phase 2, washout_days: 14}
    design: {type: crossover, image_sets: [low, virtual]}
    reference_reads: {image_set: reference, readers: [R1], washout_days: 0}
    tasks:
      - {id: quality, type: likert, min: 1, max: 5, anchors: {1: poor, 5: excellent}}
      - {id: lesions, type: lesion_axes, orthogonality_tolerance_deg: 10}

Design types: ``crossover`` (paper 004: each reader reads every case once per
phase, the image sets rotating over phases), ``full`` (every reader reads every
case x image set, order randomised; e.g. synthDIR lesion counting) and
``turing`` (visual Turing test: per reader a list of trials, real or synthetic
target beside a real source, dissertation 003).

Task types: ``likert`` (integers ``min..max``, default 1-5, with anchors),
``stars`` (plausibility 1-6), ``real_or_synthetic``, ``lesion_axes`` (long and
short axis per lesion, RAS mm), ``lesion_counts`` (counts per location class),
``free_text``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import PathEscapeError, StudyDefinitionError

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TASK_TYPES = ("likert", "stars", "real_or_synthetic", "lesion_axes", "lesion_counts", "free_text")
DESIGN_TYPES = ("crossover", "full", "turing")
DEFAULT_LOCATION_CLASSES = ("juxtacortical", "periventricular", "infratentorial", "subcortical")


@dataclass(frozen=True)
class ImageSet:
    """A kind of image every case may have (``kind`` target: read and rated; context: shown beside)."""

    id: str
    label: str
    kind: str = "target"
    synthetic: bool | None = None
    reference: bool = False
    display_name: str = ""
    #: context image sets shown with a read of this set (None: the study's ``shows``)
    shows: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Case:
    """A patient/exam: image set id -> absolute path inside the study folder."""

    id: str
    images: Mapping[str, Path]


@dataclass(frozen=True)
class Reader:
    id: str
    role: str = "reader"
    reference: bool = False


@dataclass(frozen=True)
class Task:
    """One question of a read. ``min``/``max`` bound likert and stars answers."""

    id: str
    type: str
    min: int = 1
    max: int = 5
    anchors: Mapping[int, str] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    min_size_mm: float = 0.0
    orthogonality_tolerance_deg: float = 10.0
    required: bool = True
    prompt: str = ""


@dataclass(frozen=True)
class Phase:
    name: str
    washout_days: float = 0.0


@dataclass(frozen=True)
class Design:
    type: str
    image_sets: tuple[str, ...] = ()
    #: turing: image set shown on the left (a real source image)
    source: str = ""
    #: turing: image set id -> trials per reader
    trials: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceReads:
    image_set: str
    readers: tuple[str, ...]
    washout_days: float = 0.0


@dataclass(frozen=True)
class StudyDefinition:
    name: str
    folder: Path
    seed: int
    blinding: bool
    image_sets: Mapping[str, ImageSet]
    cases: tuple[Case, ...]
    readers: tuple[Reader, ...]
    tasks: tuple[Task, ...]
    phases: tuple[Phase, ...]
    design: Design
    shows: tuple[str, ...] = ()
    reference_reads: ReferenceReads | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ------------------------------------------------------------ look-ups
    def reader(self, reader_id: str) -> Reader:
        for r in self.readers:
            if r.id == reader_id:
                return r
        from .errors import UnknownReaderError

        raise UnknownReaderError(
            f"reader '{reader_id}' is not part of study '{self.name}' (readers: {', '.join(r.id for r in self.readers)})"
        )

    def case(self, case_id: str) -> Case:
        for c in self.cases:
            if c.id == case_id:
                return c
        raise StudyDefinitionError(f"case '{case_id}' is not part of study '{self.name}'")

    def task(self, task_id: str) -> Task:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise StudyDefinitionError(f"question '{task_id}' is not a task of study '{self.name}'")

    @property
    def all_phases(self) -> tuple[Phase, ...]:
        """Declared phases, then the reference phase when reference reads are defined."""
        if self.reference_reads is None:
            return self.phases
        return self.phases + (Phase("reference", self.reference_reads.washout_days),)

    @property
    def reference_phase(self) -> int | None:
        """1-based number of the reference-reading phase (None without reference reads)."""
        return len(self.phases) + 1 if self.reference_reads else None

    def phase_number(self, value: int | str, *, where: str = "phase") -> int:
        """1-based phase number of ``value``: a number (``2``, ``"2"``) or a phase name of the study file.

        Names compare case-insensitively with runs of spaces, ``_`` and ``-`` treated alike
        (``"phase 2"``, ``"Phase_2"``); the reference phase is called ``reference``.
        """
        phases = self.all_phases
        names = ", ".join(f"{i} '{ph.name}'" for i, ph in enumerate(phases, start=1))
        text = str(value).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            number = int(text)
            if 1 <= number <= len(phases):
                return number
            raise StudyDefinitionError(f"{where}: study '{self.name}' has no phase {number} (phases: {names})")
        key = _phase_key(text)
        hits = [i for i, ph in enumerate(phases, start=1) if _phase_key(ph.name) == key]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise StudyDefinitionError(f"{where}: phase name '{text}' is ambiguous in study '{self.name}' ({names})")
        raise StudyDefinitionError(f"{where}: '{text}' is not a phase of study '{self.name}' (phases: {names})")

    def shows_for(self, image_set: str) -> tuple[str, ...]:
        """Image sets loaded for a read of ``image_set``: the target first, then the context.

        The context is the image set's own ``shows`` when declared, else the study's ``shows``.
        """
        own = self.image_sets[image_set].shows
        context = self.shows if own is None else own
        return (image_set,) + tuple(s for s in context if s != image_set)


def _phase_key(name: str) -> str:
    return re.sub(r"[\s_-]+", " ", name.strip().lower())


# ---------------------------------------------------------------- parsing
def load_study(path: str | os.PathLike) -> StudyDefinition:
    """Read and validate ``STUDY.yaml``; image paths are resolved inside its folder."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise StudyDefinitionError(f"cannot read study definition {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise StudyDefinitionError(f"{p} is not UTF-8 text (byte offset {exc.start}); save it as UTF-8") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyDefinitionError(f"{p} is not valid YAML: {exc}") from None
    return parse_study(raw, p.resolve().parent)


def resolve_inside(folder: Path, relpath: str | os.PathLike, *, what: str = "path") -> Path:
    """Resolve ``relpath`` against ``folder``; refuse anything that ends up outside it."""
    folder = Path(folder).resolve()
    if not str(relpath).strip():
        raise StudyDefinitionError(f"{what}: empty path")
    candidate = (folder / Path(relpath)).resolve()
    try:
        candidate.relative_to(folder)
    except ValueError:
        raise PathEscapeError(
            f"{what} '{relpath}' resolves to {candidate}, outside the study folder {folder}; "
            "keep every image inside the study folder"
        ) from None
    return candidate


def parse_study(raw: Any, folder: str | os.PathLike) -> StudyDefinition:
    """Validate the YAML content ``raw`` of a study whose folder is ``folder``."""
    from . import sections as s

    folder = Path(folder).resolve()
    if not isinstance(raw, Mapping):
        raise StudyDefinitionError("the study definition must be a YAML mapping")
    name = str(s.need(raw, "name", "study"))
    seed = raw.get("seed", None)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise StudyDefinitionError(f"study: 'seed' must be a non-negative integer (schedules are built from it), got {seed!r}")
    blinding = raw.get("blinding", True)
    if not isinstance(blinding, bool):
        raise StudyDefinitionError(f"study: 'blinding' must be true or false, got {blinding!r}")
    image_sets = s.parse_image_sets(raw)
    cases = s.parse_cases(raw, folder, image_sets)
    readers = s.parse_readers(raw)
    tasks = s.parse_tasks(raw)
    phases = s.parse_phases(raw)
    shows = s.parse_shows(raw, image_sets)
    design, shows = s.parse_design(raw, image_sets, phases, shows)
    reference_reads, readers = s.parse_reference_reads(raw, image_sets, readers)
    s.check_case_images(cases, design, shows, image_sets, reference_reads)
    return StudyDefinition(
        name=name, folder=folder, seed=seed, blinding=blinding, image_sets=image_sets, cases=tuple(cases),
        readers=tuple(readers), tasks=tasks, phases=tuple(phases), design=design, shows=tuple(shows),
        reference_reads=reference_reads, raw=dict(raw),
    )


def missing_images(study: StudyDefinition) -> list[Path]:
    """Image files named by the study that do not exist (yet)."""
    return [p for c in study.cases for p in c.images.values() if not p.exists()]
