"""Cases of a stress test: image, acquisition parameters, tissue maps and ground-truth lesion mask.

Two ways to list cases:

* a **folder** with one subfolder per subject (or a single subject folder)
  using conventional names — the phantom's layout is one valid case::

      sub-01/FLAIR.nii.gz  FLAIR.json        image + BIDS sidecar (TE/TI/TR in s)
             pv_CSF.nii.gz pv_GM.nii.gz ...  partial-volume maps, or
             tissue_labels.nii.gz            a label map (CSF=1, GM=2, WM=3, lesion=4)
             lesion_mask.nii.gz              ground truth (0/1; label 2 = ignore)
             brain_mask.nii.gz               optional
             T1w.nii.gz                      optional extra model input (unchanged by the simulation)

* a **CSV** with columns ``image``, ``mask``, acquisition parameters either as
  one ``params`` column (``TE=112,TI=2500,TR=9000``) or one column each
  (``TE``, ``TI``, ``TR``, ``FA``, ``field``... in ms / degrees / tesla;
  columns override the image's sidecar), tissues as ``labels`` (a label map)
  or ``pv_CSF``/``pv_GM``/``pv_WM``/``pv_lesion`` columns (or one ``tissues``
  column holding a label map path or ``CSF=a.nii.gz;GM=b.nii.gz``), optional
  ``case``, ``brain_mask``, and any other column naming an extra input channel
  (``T1w``). Relative paths are resolved against the CSV's folder and refused
  (:class:`~neuroshift.errors.PathEscapeError`) when they lead outside it;
  absolute paths are taken as written.

Listing never reads voxels. :meth:`Case.load` reads and checks everything and
raises an :class:`~neuroshift.errors.InputError` naming the problem (missing
mask, grids that differ, a parameter the sequence needs but nobody gave); the
stress-test runner records that per case and carries on with the others.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..errors import InputError, PathEscapeError, UnreadableFileError
from ..io.atomic import split_suffix
from ..io.params import ALIASES, AcquisitionParams
from ..io.volume import Volume

#: Image file stems tried per sequence (case-insensitive), then the generic ones.
IMAGE_STEMS: dict[str, tuple[str, ...]] = {
    "flair": ("FLAIR", "T2w_FLAIR", "T2FLAIR"),
    "se": ("T2w", "T2", "PDw"),
    "ir": ("IR", "T1w_IR"),
    "dir": ("DIR",),
    "gre": ("T2starw", "GRE", "T1w_GRE"),
    "mprage": ("T1w", "MPRAGE"),
}
GENERIC_STEMS = ("image",)
MASK_STEMS = ("lesion_mask", "lesions", "mask", "wmh", "ground_truth", "gt")
LABEL_STEMS = ("tissue_labels", "labels", "aseg", "seg")
BRAIN_STEMS = ("brain_mask", "brainmask")
SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
PV_PREFIX = "pv_"

CSV_RESERVED = {"case", "id", "subject", "image", "params", "mask", "labels", "tissues", "brain_mask", "field"}


@dataclass
class LoadedCase:
    """A case read from disk (or built in memory): everything on one grid."""

    case_id: str
    image: Volume
    params: AcquisitionParams
    fractions: dict[str, Volume]
    mask: Volume
    brain_mask: Volume | None = None
    inputs: dict[str, Volume] = field(default_factory=dict)  #: extra model inputs, e.g. {"T1w": vol}
    notes: list[str] = field(default_factory=list)

    def load(self, sequence: str, *, inputs: Iterable[str] | None = None) -> "LoadedCase":
        """An in-memory case is its own loaded form: checked (parameters, grids, inputs) and returned."""
        self.params.require(sequence, context=f"case {self.case_id}")
        _require_inputs(self.case_id, self.inputs, inputs)
        check_case_geometry(self)
        return self


@dataclass
class Case:
    """Paths of one case (nothing read yet)."""

    case_id: str
    image: Path | None
    mask: Path | None = None
    pv: dict[str, Path] = field(default_factory=dict)
    labels: Path | None = None
    brain_mask: Path | None = None
    inputs: dict[str, Path] = field(default_factory=dict)
    params: AcquisitionParams = field(default_factory=AcquisitionParams)  #: explicit values (override sidecar)
    problem: str | None = None  #: a problem found while listing (reported when loaded)

    def load(self, sequence: str, *, inputs: Iterable[str] | None = None) -> LoadedCase:
        """Read and check the case; raises an :class:`InputError` naming the first problem.

        ``inputs``: the extra channels to read (default: all the case has); a missing one is an error.
        """
        from ..io.files import read_volume
        from ..tissues.maps import fractions_from_labels, fractions_from_pv

        where = f"case {self.case_id}"
        if self.problem:
            raise InputError(f"{where}: {self.problem}")
        if self.image is None:
            raise UnreadableFileError(f"{where}: no image found for sequence {sequence.upper()}")
        if self.mask is None:
            raise UnreadableFileError(f"{where}: no ground-truth lesion mask (lesion_mask.nii.gz or a 'mask' column)")
        image = read_volume(self.image, dtype=np.float32)
        params = AcquisitionParams.for_image(self.image, image.meta).merged(self.params)
        params.require(sequence, context=where)
        mask = read_volume(self.mask)
        if self.pv:
            fractions = fractions_from_pv(dict(self.pv))
        elif self.labels is not None:
            fractions = fractions_from_labels(read_volume(self.labels))
        else:
            raise UnreadableFileError(
                f"{where}: no tissue maps (pv_CSF/pv_GM/pv_WM[/pv_lesion].nii.gz or tissue_labels.nii.gz)")
        brain = read_volume(self.brain_mask) if self.brain_mask is not None else None
        wanted = self.inputs if inputs is None else _require_inputs(self.case_id, self.inputs, inputs)
        extra = {name: read_volume(self.inputs[name], dtype=np.float32) for name in wanted}
        loaded = LoadedCase(self.case_id, image, params, fractions, mask, brain, extra)
        check_case_geometry(loaded)
        return loaded


def _require_inputs(case_id: str, have: Mapping, wanted: Iterable[str] | None) -> list[str]:
    wanted = list(have) if wanted is None else list(wanted)
    missing = [n for n in wanted if n not in have]
    if missing:
        raise InputError(f"case {case_id}: the model needs input(s) {', '.join(missing)} "
                         f"(e.g. {missing[0]}.nii.gz beside the image, or a '{missing[0]}' CSV column), "
                         "which the case does not have")
    return wanted


def check_case_geometry(case: LoadedCase) -> None:
    """Raise :class:`GeometryError` unless mask, tissue maps and extra inputs share the image grid."""
    where = f"case {case.case_id}"
    case.image.require_same_grid(case.mask, f"{where}: image and lesion mask")
    for name, frac in case.fractions.items():
        case.image.require_same_grid(frac, f"{where}: image and {name} map")
    if case.brain_mask is not None:
        case.image.require_same_grid(case.brain_mask, f"{where}: image and brain mask")
    for name, vol in case.inputs.items():
        case.image.require_same_grid(vol, f"{where}: image and input {name}")


# --------------------------------------------------------------------------- listing
def load_cases(source: str | os.PathLike, *, sequence: str = "flair") -> list[Case]:
    """List the cases of a folder or a CSV file (see the module docs); nothing is read yet."""
    p = Path(source)
    if not p.exists():
        raise UnreadableFileError(f"{p}: no such case folder or CSV file")
    if p.is_file():
        if p.suffix.lower() not in (".csv", ".tsv"):
            raise UnreadableFileError(f"{p}: cases must be a folder or a .csv/.tsv file")
        return cases_from_csv(p)
    return cases_from_folder(p, sequence=sequence)


def cases_from_folder(folder: str | os.PathLike, *, sequence: str = "flair") -> list[Case]:
    """One case per subfolder (sorted by name), or the folder itself when it holds the files directly."""
    folder = Path(folder)
    if _find(folder, _image_stems(sequence)) is not None:
        return [_case_from_dir(folder, folder.name, sequence)]
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    cases = [_case_from_dir(d, d.name, sequence) for d in subdirs if any(_volumes(d))]
    if not cases:
        raise UnreadableFileError(
            f"{folder}: no cases found; expected subfolders with {_image_stems(sequence)[0]}.nii.gz, "
            "lesion_mask.nii.gz and pv_*.nii.gz or tissue_labels.nii.gz (or a CSV file)")
    return cases


def _case_from_dir(d: Path, case_id: str, sequence: str) -> Case:
    image = _find(d, _image_stems(sequence))
    pv = {}
    for f in _volumes(d):
        stem = _stem(f)
        if stem.lower().startswith(PV_PREFIX):
            from ..tissues.maps import canonical_tissue

            try:
                pv[canonical_tissue(stem[len(PV_PREFIX):])] = f
            except InputError:
                continue
    used = {image, _find(d, MASK_STEMS), _find(d, LABEL_STEMS), _find(d, BRAIN_STEMS), *pv.values()}
    inputs = {_stem(f): f for f in _volumes(d) if f not in used and not _stem(f).lower().startswith(PV_PREFIX)}
    return Case(case_id=case_id, image=image, mask=_find(d, MASK_STEMS), pv=pv,
                labels=None if pv else _find(d, LABEL_STEMS), brain_mask=_find(d, BRAIN_STEMS), inputs=inputs)


def cases_from_csv(path: str | os.PathLike) -> list[Case]:
    """Cases from a CSV/TSV file (one row per case); see the module docs for the columns."""
    path = Path(path)
    root = path.parent.resolve()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"{path}: cannot read the case list ({exc})") from None
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    if not rows:
        raise UnreadableFileError(f"{path}: the case list has no rows")
    columns = {c.strip() for c in rows[0].keys() if c}
    lower = {c.lower(): c for c in columns}
    if "image" not in lower:
        raise UnreadableFileError(f"{path}: the case list needs an 'image' column (it has {sorted(columns)})")
    param_cols = [c for c in columns if c.strip().upper() in ALIASES or c in _param_fields()]
    pv_cols = {c: c[len(PV_PREFIX):] for c in columns if c.lower().startswith(PV_PREFIX)}
    input_cols = [c for c in columns if c.lower() not in CSV_RESERVED and c not in param_cols and c not in pv_cols]
    cases: list[Case] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=1):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        case_id = row.get(lower.get("case", ""), "") or row.get(lower.get("id", ""), "") \
            or row.get(lower.get("subject", ""), "") or f"row{n}"
        if case_id in seen:
            case_id = f"{case_id}_row{n}"
        seen.add(case_id)
        case = Case(case_id=case_id, image=None)
        try:
            case.image = _resolve(row[lower["image"]], root, path, "image") if row[lower["image"]] else None
            if row.get(lower.get("mask", ""), ""):
                case.mask = _resolve(row[lower["mask"]], root, path, "mask")
            if row.get(lower.get("brain_mask", ""), ""):
                case.brain_mask = _resolve(row[lower["brain_mask"]], root, path, "brain_mask")
            if row.get(lower.get("labels", ""), ""):
                case.labels = _resolve(row[lower["labels"]], root, path, "labels")
            tissues = row.get(lower.get("tissues", ""), "")
            if tissues:
                if "=" in tissues:
                    for item in filter(None, (s.strip() for s in tissues.replace(";", "|").split("|"))):
                        name, _, rel = item.partition("=")
                        case.pv[name.strip()] = _resolve(rel.strip(), root, path, "tissues")
                else:
                    case.labels = _resolve(tissues, root, path, "tissues")
            for col, tissue in pv_cols.items():
                if row.get(col):
                    case.pv[tissue] = _resolve(row[col], root, path, col)
            for col in input_cols:
                if row.get(col):
                    case.inputs[col] = _resolve(row[col], root, path, col)
            values: dict[str, str] = {}
            if row.get(lower.get("params", ""), ""):
                values.update(AcquisitionParams.parse(row[lower["params"]]).known())
            if row.get(lower.get("field", ""), ""):
                values["field_T"] = row[lower["field"]]
            for col in param_cols:
                if row.get(col):
                    values[col] = row[col]
            case.params = AcquisitionParams.from_mapping(values)
        except PathEscapeError:
            raise
        except InputError as exc:
            case.problem = f"row {n} of {path.name}: {exc}"
        cases.append(case)
    return cases


def _param_fields() -> set[str]:
    return set(AcquisitionParams.__dataclass_fields__)


def _resolve(raw: str, root: Path, csv_path: Path, column: str) -> Path:
    p = Path(raw).expanduser()
    if p.is_absolute():
        return p
    resolved = (root / p).resolve()
    try:
        resolved.relative_to(root)
    except ValueError:
        raise PathEscapeError(
            f"{csv_path}: column '{column}' path '{raw}' leads outside the CSV's folder {root}; "
            "keep case files beside the CSV or give an absolute path") from None
    return resolved


def _image_stems(sequence: str) -> tuple[str, ...]:
    return IMAGE_STEMS.get(sequence.lower(), ()) + GENERIC_STEMS


def _volumes(d: Path) -> list[Path]:
    return sorted(f for f in d.iterdir() if f.is_file() and f.name.lower().endswith(SUFFIXES)
                  and not f.name.startswith("."))


def _stem(f: Path) -> str:
    return split_suffix(f)[0]


def _find(d: Path, stems: tuple[str, ...]) -> Path | None:
    files = {_stem(f).lower(): f for f in _volumes(d)}
    for stem in stems:
        if stem.lower() in files:
            return files[stem.lower()]
    return None


def case_from_volumes(case_id: str, image: Volume, params: AcquisitionParams, mask: Volume, *,
                      fractions: Mapping[str, Volume] | None = None, labels: Volume | None = None,
                      brain_mask: Volume | None = None, inputs: Mapping[str, Volume] | None = None) -> LoadedCase:
    """An in-memory case (Slicer scene, notebooks): tissue fractions or a label map (default labels)."""
    from ..tissues.maps import fractions_from_labels, fractions_from_pv

    if fractions:
        fr = fractions_from_pv(dict(fractions))
    elif labels is not None:
        fr = fractions_from_labels(labels)
    else:
        raise InputError(f"case {case_id}: give tissue fractions or a tissue label map")
    return LoadedCase(case_id, image.with_data(np.asarray(image.data, dtype=np.float32)), params, fr, mask,
                      brain_mask, dict(inputs or {}))
