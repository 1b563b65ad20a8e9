"""Tissue partial-volume fractions: from label maps, from PV probability maps, or from the built-in classifier.

* :mod:`neuroshift.tissues.maps` — label map + label->tissue mapping, or PV files, to float32 fractions
  (checked: same grid, range [0, 1], sum <= 1, finite).
* :mod:`neuroshift.tissues.classify` — built-in partial-volume classifier for brain-masked T1w (+ FLAIR).
"""

from .maps import (
    DEFAULT_LABELS,
    TISSUES,
    FractionError,
    fractions_from_labels,
    fractions_from_pv,
    labels_from_fractions,
    parse_label_mapping,
    validate_fractions,
)

__all__ = [
    "DEFAULT_LABELS",
    "TISSUES",
    "FractionError",
    "fractions_from_labels",
    "fractions_from_pv",
    "labels_from_fractions",
    "parse_label_mapping",
    "validate_fractions",
]
