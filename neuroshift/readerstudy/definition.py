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


def _need(mapping: Mapping, key: str, where: str):
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise StudyDefinitionError(f"{where}: missing '{key}'")
    return mapping[key]


def _check_id(value: Any, where: str) -> str:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or not ID_PATTERN.match(text):
        raise StudyDefinitionError(
            f"{where}: '{value}' is not a valid id (letters, digits, '.', '_', '-'; up to 64 characters)"
        )
    return text


def _unique(ids: list[str], what: str) -> None:
    seen = set()
    for i in ids:
        if i in seen:
            raise StudyDefinitionError(f"duplicate {what} id '{i}'")
        seen.add(i)


def _number(value: Any, where: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StudyDefinitionError(f"{where}: expected a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise StudyDefinitionError(f"{where}: must be >= {minimum}, got {value}")
    return float(value)


def _parse_task(raw: Mapping, index: int) -> Task:
    where = f"tasks[{index}]"
    tid = _check_id(_need(raw, "id", where), f"{where}.id")
    ttype = _need(raw, "type", where)
    if ttype not in TASK_TYPES:
        raise StudyDefinitionError(f"{where}.type: '{ttype}' is not one of {', '.join(TASK_TYPES)}")
    kw: dict[str, Any] = {"id": tid, "type": ttype, "prompt": str(raw.get("prompt", "")),
                          "required": bool(raw.get("required", True))}
    if ttype in ("likert", "stars"):
        lo_default, hi_default = (1, 5) if ttype == "likert" else (1, 6)
        lo, hi = raw.get("min", lo_default), raw.get("max", hi_default)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) or lo >= hi:
            raise StudyDefinitionError(f"{where}: min/max must be integers with min < max, got {lo!r}/{hi!r}")
        anchors = raw.get("anchors", {}) or {}
        if not isinstance(anchors, Mapping):
            raise StudyDefinitionError(f"{where}.anchors: expected a mapping grade -> text")
        clean = {}
        for k, v in anchors.items():
            try:
                grade = int(k)
            except (TypeError, ValueError):
                raise StudyDefinitionError(f"{where}.anchors: '{k}' is not an integer grade") from None
            if not lo <= grade <= hi:
                raise StudyDefinitionError(f"{where}.anchors: grade {grade} outside {lo}..{hi}")
            clean[grade] = str(v)
        kw.update(min=lo, max=hi, anchors=clean)
    if ttype == "lesion_counts":
        classes = raw.get("classes", list(DEFAULT_LOCATION_CLASSES))
        if not isinstance(classes, list) or not classes:
            raise StudyDefinitionError(f"{where}.classes: expected a non-empty list of location classes")
        classes = [_check_id(c, f"{where}.classes") for c in classes]
        _unique(classes, f"{where} location class")
        kw["classes"] = tuple(classes)
        kw["min_size_mm"] = _number(raw.get("min_size_mm", 0.0), f"{where}.min_size_mm", minimum=0)
    if ttype == "lesion_axes":
        kw["orthogonality_tolerance_deg"] = _number(
            raw.get("orthogonality_tolerance_deg", 10.0), f"{where}.orthogonality_tolerance_deg", minimum=0)
    return Task(**kw)


def parse_study(raw: Any, folder: str | os.PathLike) -> StudyDefinition:
    """Validate the YAML content ``raw`` of a study whose folder is ``folder``."""
    folder = Path(folder).resolve()
    if not isinstance(raw, Mapping):
        raise StudyDefinitionError("the study definition must be a YAML mapping")
    name = str(_need(raw, "name", "study"))
    seed = raw.get("seed", None)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise StudyDefinitionError(f"study: 'seed' must be a non-negative integer (schedules are built from it), got {seed!r}")
    blinding = raw.get("blinding", True)
    if not isinstance(blinding, bool):
        raise StudyDefinitionError(f"study: 'blinding' must be true or false, got {blinding!r}")

    # image sets
    raw_sets = _need(raw, "image_sets", "study")
    if not isinstance(raw_sets, Mapping) or not raw_sets:
        raise StudyDefinitionError("study: 'image_sets' must be a non-empty mapping id -> {label, ...}")
    image_sets: dict[str, ImageSet] = {}
    for sid, spec in raw_sets.items():
        sid = _check_id(sid, "image_sets")
        spec = spec or {}
        if not isinstance(spec, Mapping):
            raise StudyDefinitionError(f"image_sets.{sid}: expected a mapping")
        kind = spec.get("kind", "target")
        if kind not in ("target", "context"):
            raise StudyDefinitionError(f"image_sets.{sid}.kind: 'target' or 'context', got {kind!r}")
        synthetic = spec.get("synthetic", None)
        if synthetic is not None and not isinstance(synthetic, bool):
            raise StudyDefinitionError(f"image_sets.{sid}.synthetic: true/false, got {synthetic!r}")
        own_shows = spec.get("shows", None)
        if own_shows is not None and not isinstance(own_shows, list):
            raise StudyDefinitionError(f"image_sets.{sid}.shows: a list of context image sets")
        image_sets[sid] = ImageSet(
            id=sid, label=str(spec.get("label", sid)), kind=kind, synthetic=synthetic,
            reference=bool(spec.get("reference", False)),
            display_name=str(spec.get("display_name", "")),
            shows=None if own_shows is None else tuple(str(x) for x in own_shows),
        )

    # cases
    raw_cases = _need(raw, "cases", "study")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise StudyDefinitionError("study: 'cases' must be a non-empty list")
    cases = []
    for i, c in enumerate(raw_cases):
        where = f"cases[{i}]"
        cid = _check_id(_need(c, "id", where), f"{where}.id")
        imgs = c.get("images", {}) or {}
        if not isinstance(imgs, Mapping):
            raise StudyDefinitionError(f"{where}.images: expected a mapping image set -> path")
        resolved = {}
        for sid, rel in imgs.items():
            if sid not in image_sets:
                raise StudyDefinitionError(f"{where}.images: unknown image set '{sid}' (declared: {', '.join(image_sets)})")
            resolved[sid] = resolve_inside(folder, str(rel), what=f"case {cid} image '{sid}'")
        cases.append(Case(cid, resolved))
    _unique([c.id for c in cases], "case")

    # readers
    raw_readers = _need(raw, "readers", "study")
    if not isinstance(raw_readers, list) or not raw_readers:
        raise StudyDefinitionError("study: 'readers' must be a non-empty list")
    readers = []
    for i, r in enumerate(raw_readers):
        where = f"readers[{i}]"
        if isinstance(r, str):
            r = {"id": r}
        readers.append(Reader(_check_id(_need(r, "id", where), f"{where}.id"), str(r.get("role", "reader")),
                              bool(r.get("reference", False))))
    _unique([r.id for r in readers], "reader")

    # tasks
    raw_tasks = _need(raw, "tasks", "study")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise StudyDefinitionError("study: 'tasks' must be a non-empty list")
    tasks = tuple(_parse_task(t, i) for i, t in enumerate(raw_tasks))
    _unique([t.id for t in tasks], "task")
    reserved = [t.id for t in tasks if t.id.startswith("_")]
    if reserved:
        raise StudyDefinitionError(f"task ids starting with '_' are reserved: {reserved}")

    # phases
    raw_phases = raw.get("phases", [{"name": "phase 1"}])
    if not isinstance(raw_phases, list) or not raw_phases:
        raise StudyDefinitionError("study: 'phases' must be a non-empty list")
    phases = []
    for i, ph in enumerate(raw_phases):
        ph = ph or {}
        wd = _number(ph.get("washout_days", 0), f"phases[{i}].washout_days", minimum=0)
        if i == 0 and wd:
            raise StudyDefinitionError("phases[0].washout_days: the first phase has no washout")
        phases.append(Phase(str(ph.get("name", f"phase {i + 1}")), wd))

    # shows
    shows = raw.get("shows", []) or []
    if not isinstance(shows, list):
        raise StudyDefinitionError("study: 'shows' must be a list of context image sets")
    for s in shows:
        if s not in image_sets:
            raise StudyDefinitionError(f"shows: unknown image set '{s}'")
    for spec in image_sets.values():
        for s in spec.shows or ():
            if s not in image_sets:
                raise StudyDefinitionError(f"image_sets.{spec.id}.shows: unknown image set '{s}'")

    # design
    raw_design = _need(raw, "design", "study")
    dtype = _need(raw_design, "type", "design")
    if dtype not in DESIGN_TYPES:
        raise StudyDefinitionError(f"design.type: '{dtype}' is not one of {', '.join(DESIGN_TYPES)}")
    if dtype in ("crossover", "full"):
        sets = tuple(_need(raw_design, "image_sets", "design"))
        if not sets:
            raise StudyDefinitionError("design.image_sets: at least one image set to read")
        for s in sets:
            if s not in image_sets or image_sets[s].kind != "target":
                raise StudyDefinitionError(f"design.image_sets: '{s}' is not a declared target image set")
        _unique(list(sets), "design image set")
        if dtype == "crossover" and len(phases) != len(sets):
            raise StudyDefinitionError(
                f"design: a crossover of {len(sets)} image sets needs {len(sets)} phases, {len(phases)} declared "
                "(each phase each reader reads every case once, the image set rotating)")
        design = Design(dtype, sets)
    else:
        source = str(_need(raw_design, "source", "design"))
        if source not in image_sets:
            raise StudyDefinitionError(f"design.source: unknown image set '{source}'")
        trials = _need(raw_design, "trials", "design")
        if not isinstance(trials, Mapping) or not trials:
            raise StudyDefinitionError("design.trials: expected a mapping image set -> trials per reader")
        clean = {}
        for s, n in trials.items():
            if s not in image_sets or image_sets[s].kind != "target":
                raise StudyDefinitionError(f"design.trials: '{s}' is not a declared target image set")
            if image_sets[s].synthetic is None:
                raise StudyDefinitionError(
                    f"image_sets.{s}.synthetic: a Turing-test image set must say whether it is synthetic")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise StudyDefinitionError(f"design.trials.{s}: a positive integer, got {n!r}")
            clean[s] = n
        if len(phases) != 1:
            raise StudyDefinitionError("design: a Turing test has exactly one phase")
        design = Design(dtype, tuple(clean), source=source, trials=clean)
        if source not in shows:
            shows = [source] + list(shows)

    # reference reads
    reference_reads = None
    rr = raw.get("reference_reads")
    if rr:
        rset = str(_need(rr, "image_set", "reference_reads"))
        if rset not in image_sets:
            raise StudyDefinitionError(f"reference_reads.image_set: unknown image set '{rset}'")
        rreaders = rr.get("readers") or [r.id for r in readers if r.reference]
        ids = {r.id for r in readers}
        for r in rreaders:
            if r not in ids:
                raise StudyDefinitionError(f"reference_reads.readers: '{r}' is not a reader of the study")
        if not rreaders:
            raise StudyDefinitionError("reference_reads: name the readers (or mark readers 'reference: true')")
        reference_reads = ReferenceReads(rset, tuple(rreaders),
                                         _number(rr.get("washout_days", 0), "reference_reads.washout_days", minimum=0))
        readers = [Reader(r.id, r.role, r.reference or r.id in rreaders) for r in readers]

    # every case needs the images its reads show
    needed = set(design.image_sets) | set(shows) | {x for sp in image_sets.values() for x in (sp.shows or ())}
    if reference_reads:
        needed.add(reference_reads.image_set)
    if dtype != "turing":
        for c in cases:
            missing = sorted(needed - set(c.images))
            if missing and c.images:
                raise StudyDefinitionError(f"case {c.id}: no image for {', '.join(missing)}")

    return StudyDefinition(
        name=name, folder=folder, seed=seed, blinding=blinding, image_sets=image_sets, cases=tuple(cases),
        readers=tuple(readers), tasks=tasks, phases=tuple(phases), design=design, shows=tuple(shows),
        reference_reads=reference_reads, raw=dict(raw),
    )


def missing_images(study: StudyDefinition) -> list[Path]:
    """Image files named by the study that do not exist (yet)."""
    return [p for c in study.cases for p in c.images.values() if not p.exists()]
