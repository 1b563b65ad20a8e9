"""What a reader sees: neutral case and image names, no metadata that reveals the source.

With blinding on, a case is shown as ``Case 017`` (a seeded permutation, not
the study's case order), the read image as ``Image A`` and context images by
their declared neutral ``display_name`` (e.g. "Pre-contrast T1"). File names,
series descriptions, protocol names and any other metadata are dropped
(:func:`strip_metadata` keeps only an explicit allow-list). With blinding off
the image set's label (e.g. "vir-T1c") is shown. Whether blinding was on is
recorded in the study database and in every report.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .definition import StudyDefinition

#: Metadata keys that may be shown to a reader (nothing that names a file, series or method).
SAFE_METADATA_KEYS: frozenset[str] = frozenset()

#: Keys known to reveal the source; listed for documentation and tests (all keys not allowed are dropped anyway).
REVEALING_METADATA_KEYS = (
    "source_path", "dicom:SeriesDescription", "dicom:ProtocolName", "dicom:SequenceName",
    "dicom:ImageType", "dicom:Manufacturer", "dicom:StudyDescription", "descrip", "aux_file",
    "intent_name", "db_name", "mrml_node",
)

TARGET_NAME = "Image A"


def blind_case_ids(study: StudyDefinition) -> dict[str, str]:
    """Case id -> neutral id (``Case 001`` ...), a seeded permutation of the case order."""
    n = len(study.cases)
    width = max(3, len(str(n)))
    order = np.random.default_rng([int(study.seed), 3]).permutation(n)
    return {c.id: f"Case {int(order[k]) + 1:0{width}d}" for k, c in enumerate(study.cases)}


def display_names(study: StudyDefinition, image_set: str, shows: tuple[str, ...], kind: str = "read") -> dict[str, str]:
    """Image set id -> the name shown to the reader for one read.

    The read (target) image is ``Image A`` under blinding; in a Turing trial the
    source is shown by its display name (it is real and known to be) and the
    target as ``Image A``. Context images use ``display_name`` (falling back to
    ``Context 1, 2...``). Without blinding the image set labels are shown.
    """
    names: dict[str, str] = {}
    n_context = 0
    for s in shows:
        spec = study.image_sets[s]
        if not study.blinding:
            names[s] = spec.label
        elif s == image_set:
            names[s] = TARGET_NAME
        else:
            n_context += 1
            names[s] = spec.display_name or f"Context {n_context}"
    return names


def strip_metadata(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """Only the allow-listed keys of ``meta`` (by default none): what a blinded reader may see."""
    return {k: v for k, v in (meta or {}).items() if k in SAFE_METADATA_KEYS}
