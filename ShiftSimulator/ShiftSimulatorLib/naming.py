"""Names in the ShiftSimulator module (Qt-free): output node names, case ids, and the tissue a segment name means."""

from __future__ import annotations

import re

from neuroshift.io.params import AcquisitionParams

#: Order and short names of parameters in output node names (``FLAIR_TE150_TI2900``).
NAME_ORDER = (("TE_ms", "TE"), ("TI_ms", "TI"), ("TI1_ms", "TI1"), ("TI2_ms", "TI2"), ("TR_ms", "TR"),
              ("FA_deg", "FA"), ("TX_ms", "TX"), ("N", "N"), ("field_T", "B0"))


def derived_name(input_name: str, target: AcquisitionParams) -> str:
    """``FLAIR`` + TE=150, TI=2900 -> ``FLAIR_TE150_TI2900``."""
    parts = []
    known = target.known()
    for fname, short in NAME_ORDER:
        if fname in known:
            parts.append(f"{short}{known[fname]:g}".replace(".", "p"))
    return f"{input_name}_{'_'.join(parts)}" if parts else f"{input_name}_derivative"


def case_id(name: str) -> str:
    """A file-name-safe case id from a node name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "case"


_SEGMENT_ALIASES = {
    "csf": "CSF", "cerebrospinal fluid": "CSF", "cerebrospinal_fluid": "CSF",
    "gm": "GM", "gray matter": "GM", "grey matter": "GM", "gray_matter": "GM", "grey_matter": "GM",
    "wm": "WM", "white matter": "WM", "white_matter": "WM",
    "lesion": "lesion", "lesions": "lesion", "wmh": "lesion", "ms lesion": "lesion", "ms lesions": "lesion",
}


def segment_tissue(name: str) -> str | None:
    """Tissue of a segment name (CSF, GM, WM, lesion and common spellings), else None."""
    return _SEGMENT_ALIASES.get(str(name).strip().lower())
