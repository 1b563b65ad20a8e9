"""Validation of each section of ``STUDY.yaml`` (the schema is in :mod:`.definition`).

One function per section; each raises :class:`StudyDefinitionError` naming the offending key.
:func:`.definition.parse_study` calls them in order, since later sections refer to earlier ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .definition import (
    DEFAULT_LOCATION_CLASSES, DESIGN_TYPES, ID_PATTERN, TASK_TYPES, Case, Design, ImageSet, Phase, Reader,
    ReferenceReads, Task, resolve_inside,
)
from .errors import StudyDefinitionError


def need(mapping: Mapping, key: str, where: str):
    """``mapping[key]``, or an error naming ``where`` and the missing key."""
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise StudyDefinitionError(f"{where}: missing '{key}'")
    return mapping[key]


def check_id(value: Any, where: str) -> str:
    """``value`` as an id (letters, digits, ``._-``, up to 64 characters)."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or not ID_PATTERN.match(text):
        raise StudyDefinitionError(
            f"{where}: '{value}' is not a valid id (letters, digits, '.', '_', '-'; up to 64 characters)"
        )
    return text


def unique(ids: list[str], what: str) -> None:
    """Refuse the first id that appears twice."""
    seen = set()
    for i in ids:
        if i in seen:
            raise StudyDefinitionError(f"duplicate {what} id '{i}'")
        seen.add(i)


def number(value: Any, where: str, *, minimum: float | None = None) -> float:
    """``value`` as a float (booleans refused), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StudyDefinitionError(f"{where}: expected a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise StudyDefinitionError(f"{where}: must be >= {minimum}, got {value}")
    return float(value)


def parse_task(raw: Mapping, index: int) -> Task:
    """Entry ``index`` of ``tasks`` with its type's options (grades, anchors, classes, tolerances)."""
    where = f"tasks[{index}]"
    tid = check_id(need(raw, "id", where), f"{where}.id")
    ttype = need(raw, "type", where)
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
        classes = [check_id(c, f"{where}.classes") for c in classes]
        unique(classes, f"{where} location class")
        kw["classes"] = tuple(classes)
        kw["min_size_mm"] = number(raw.get("min_size_mm", 0.0), f"{where}.min_size_mm", minimum=0)
    if ttype == "lesion_axes":
        kw["orthogonality_tolerance_deg"] = number(
            raw.get("orthogonality_tolerance_deg", 10.0), f"{where}.orthogonality_tolerance_deg", minimum=0)
    return Task(**kw)


def parse_image_sets(raw: Mapping) -> dict[str, ImageSet]:
    raw_sets = need(raw, "image_sets", "study")
    if not isinstance(raw_sets, Mapping) or not raw_sets:
        raise StudyDefinitionError("study: 'image_sets' must be a non-empty mapping id -> {label, ...}")
    image_sets: dict[str, ImageSet] = {}
    for sid, spec in raw_sets.items():
        sid = check_id(sid, "image_sets")
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
    return image_sets


def parse_cases(raw: Mapping, folder: Path, image_sets: Mapping[str, ImageSet]) -> list[Case]:
    raw_cases = need(raw, "cases", "study")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise StudyDefinitionError("study: 'cases' must be a non-empty list")
    cases = []
    for i, c in enumerate(raw_cases):
        where = f"cases[{i}]"
        cid = check_id(need(c, "id", where), f"{where}.id")
        imgs = c.get("images", {}) or {}
        if not isinstance(imgs, Mapping):
            raise StudyDefinitionError(f"{where}.images: expected a mapping image set -> path")
        resolved = {}
        for sid, rel in imgs.items():
            if sid not in image_sets:
                raise StudyDefinitionError(f"{where}.images: unknown image set '{sid}' (declared: {', '.join(image_sets)})")
            resolved[sid] = resolve_inside(folder, str(rel), what=f"case {cid} image '{sid}'")
        cases.append(Case(cid, resolved))
    unique([c.id for c in cases], "case")
    return cases


def parse_readers(raw: Mapping) -> list[Reader]:
    raw_readers = need(raw, "readers", "study")
    if not isinstance(raw_readers, list) or not raw_readers:
        raise StudyDefinitionError("study: 'readers' must be a non-empty list")
    readers = []
    for i, r in enumerate(raw_readers):
        where = f"readers[{i}]"
        if isinstance(r, str):
            r = {"id": r}
        readers.append(Reader(check_id(need(r, "id", where), f"{where}.id"), str(r.get("role", "reader")),
                              bool(r.get("reference", False))))
    unique([r.id for r in readers], "reader")
    return readers


def parse_tasks(raw: Mapping) -> tuple[Task, ...]:
    raw_tasks = need(raw, "tasks", "study")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise StudyDefinitionError("study: 'tasks' must be a non-empty list")
    tasks = tuple(parse_task(t, i) for i, t in enumerate(raw_tasks))
    unique([t.id for t in tasks], "task")
    reserved = [t.id for t in tasks if t.id.startswith("_")]
    if reserved:
        raise StudyDefinitionError(f"task ids starting with '_' are reserved: {reserved}")
    return tasks


def parse_phases(raw: Mapping) -> list[Phase]:
    raw_phases = raw.get("phases", [{"name": "phase 1"}])
    if not isinstance(raw_phases, list) or not raw_phases:
        raise StudyDefinitionError("study: 'phases' must be a non-empty list")
    phases = []
    for i, ph in enumerate(raw_phases):
        ph = ph or {}
        wd = number(ph.get("washout_days", 0), f"phases[{i}].washout_days", minimum=0)
        if i == 0 and wd:
            raise StudyDefinitionError("phases[0].washout_days: the first phase has no washout")
        phases.append(Phase(str(ph.get("name", f"phase {i + 1}")), wd))
    return phases


def parse_shows(raw: Mapping, image_sets: Mapping[str, ImageSet]) -> list[str]:
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
    return shows


def parse_design(raw: Mapping, image_sets: Mapping[str, ImageSet], phases: list[Phase],
                 shows: list[str]) -> tuple[Design, list[str]]:
    """The design, and the study's context images (a Turing test always shows its source)."""
    raw_design = need(raw, "design", "study")
    dtype = need(raw_design, "type", "design")
    if dtype not in DESIGN_TYPES:
        raise StudyDefinitionError(f"design.type: '{dtype}' is not one of {', '.join(DESIGN_TYPES)}")
    if dtype in ("crossover", "full"):
        sets = tuple(need(raw_design, "image_sets", "design"))
        if not sets:
            raise StudyDefinitionError("design.image_sets: at least one image set to read")
        for s in sets:
            if s not in image_sets or image_sets[s].kind != "target":
                raise StudyDefinitionError(f"design.image_sets: '{s}' is not a declared target image set")
        unique(list(sets), "design image set")
        if dtype == "crossover" and len(phases) != len(sets):
            raise StudyDefinitionError(
                f"design: a crossover of {len(sets)} image sets needs {len(sets)} phases, {len(phases)} declared "
                "(each phase each reader reads every case once, the image set rotating)")
        design = Design(dtype, sets)
    else:
        source = str(need(raw_design, "source", "design"))
        if source not in image_sets:
            raise StudyDefinitionError(f"design.source: unknown image set '{source}'")
        trials = need(raw_design, "trials", "design")
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
    return design, shows


def parse_reference_reads(raw: Mapping, image_sets: Mapping[str, ImageSet],
                          readers: list[Reader]) -> tuple[ReferenceReads | None, list[Reader]]:
    """Reference reads, and the readers with ``reference`` set for those who make them."""
    reference_reads = None
    rr = raw.get("reference_reads")
    if rr:
        rset = str(need(rr, "image_set", "reference_reads"))
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
                                         number(rr.get("washout_days", 0), "reference_reads.washout_days", minimum=0))
        readers = [Reader(r.id, r.role, r.reference or r.id in rreaders) for r in readers]
    return reference_reads, readers


def check_case_images(cases: list[Case], design: Design, shows: list[str], image_sets: Mapping[str, ImageSet],
                      reference_reads: ReferenceReads | None) -> None:
    """Every case has an image for every image set its reads show (Turing tests pick per trial)."""
    dtype = design.type
    needed = set(design.image_sets) | set(shows) | {x for sp in image_sets.values() for x in (sp.shows or ())}
    if reference_reads:
        needed.add(reference_reads.image_set)
    if dtype != "turing":
        for c in cases:
            missing = sorted(needed - set(c.images))
            if missing and c.images:
                raise StudyDefinitionError(f"case {c.id}: no image for {', '.join(missing)}")
