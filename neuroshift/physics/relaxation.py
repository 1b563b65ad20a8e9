"""Relaxation tables per field strength: PD, T1, T2, T2* of CSF, GM, WM and MS lesion.

Times in **ms**, PD relative to free water (CSF = 1). Every value carries the
literature source it comes from; values marked ``[assumption]`` or
``[representative]`` have no single published measurement behind them (say so
in anything you publish with them) and are the first candidates for a user
override. :data:`PROVENANCE` (:mod:`.relaxation_sources`) gives, for every
value, the publication, where in it, the field strength and method of the
measurement, a status (verified / unverified / representative / ASSUMPTION)
and, for verified numbers, the public text they were found in.

Built in: 1.5 T and 3 T. Other field strengths raise a
:class:`~neuroshift.errors.ParameterRangeError` unless the override file gives
every parameter of every tissue (then the table is entirely the user's).

Override file (JSON), the same shape as the table; any subset of tissues and
fields may be given, the rest keeps the built-in values::

    {"GM": {"t1_ms": 1400, "t2_ms": 100, "source": "my relaxometry, 2025"},
     "lesion": {"T1": 1500, "PD": 0.85}}

Accepted field names: ``pd``/``PD``, ``t1_ms``/``T1``, ``t2_ms``/``T2``,
``t2star_ms``/``T2star``/``T2*`` (all ms), ``source`` (text). A top-level
``{"tissues": {...}}`` wrapper is accepted too. Values must be positive finite
numbers; tissue names must be one of :data:`TISSUES` (case-insensitive).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from ..errors import ParameterRangeError, UnreadableFileError

__all__ = ["TissueParameters", "TISSUES", "SUPPORTED_FIELDS", "relaxation_table", "table_as_dict", "SOURCES",
           "PROVENANCE", "Provenance", "provenance"]

TISSUES = ("CSF", "GM", "WM", "lesion")

#: Field strengths (tesla) with a built-in table.
SUPPORTED_FIELDS = (1.5, 3.0)


@dataclass(frozen=True)
class TissueParameters:
    """Relaxation parameters of one tissue: PD (relative), T1, T2, T2* in ms, and their source(s)."""

    pd: float
    t1_ms: float
    t2_ms: float
    t2star_ms: float
    source: str

    @property
    def r1_per_s(self) -> float:
        return 1000.0 / self.t1_ms

    @property
    def r2_per_s(self) -> float:
        return 1000.0 / self.t2_ms

    @property
    def r2star_per_s(self) -> float:
        return 1000.0 / self.t2star_ms


# --------------------------------------------------------------------- literature
from .relaxation_sources import PROVENANCE, SOURCES, Provenance, provenance  # noqa: E402  (re-exported)

_LESION_NOTE = ("[representative] MS white-matter lesion value, not a single measurement: between NAWM and CSF, "
                "inside the range reported for MS lesions (e.g. {refs}); verify for your cohort")


def _src(**parts: str) -> str:
    return "; ".join(f"{k}: {v}" for k, v in parts.items())


_BUILTIN: dict[float, dict[str, TissueParameters]] = {
    3.0: {
        "CSF": TissueParameters(
            pd=1.00, t1_ms=4163.0, t2_ms=379.0, t2star_ms=190.0,
            source=_src(PD="free water (reference, = 1)",
                        T1="Wansapura1999 (unverified; not Lu2005, which reports 3817 ms)",
                        T2="Paper000 Table 4 measured (literature lacks a 3 T CSF T2; pure CSF is longer, ~1-2 s)",
                        T2star="[assumption] no reliable in-vivo value; T2/2")),
        "GM": TissueParameters(
            pd=0.80, t1_ms=1331.0, t2_ms=110.0, t2star_ms=66.0,
            source=_src(PD="Neeb2006 (water content ~0.80)", T1="Wansapura1999", T2="Wansapura1999",
                        T2star="Peters2007 (cortical GM, 3 T)")),
        "WM": TissueParameters(
            pd=0.70, t1_ms=832.0, t2_ms=79.6, t2star_ms=53.2,
            source=_src(PD="Neeb2006 (water content ~0.70)", T1="Wansapura1999", T2="Wansapura1999",
                        T2star="Peters2007 (frontal WM, 3 T)")),
        "lesion": TissueParameters(
            pd=0.80, t1_ms=1350.0, t2_ms=130.0, t2star_ms=60.0,
            source=_src(PD="[representative] raised water content of MS lesions vs NAWM",
                        T1=_LESION_NOTE.format(refs="Gabr2017 at 3 T"),
                        T2=_LESION_NOTE.format(refs="Gabr2017 at 3 T"),
                        T2star="[assumption] slightly above NAWM T2* (Peters2007 WM value + demyelination)")),
    },
    1.5: {
        "CSF": TissueParameters(
            pd=1.00, t1_ms=4163.0, t2_ms=329.0, t2star_ms=165.0,
            source=_src(PD="free water (reference, = 1)",
                        T1="[assumption] the 3 T value (Wansapura1999) reused (free-water T1 is nearly field "
                           "independent; Rooney2007: 4329 ms at 1.5 T)",
                        T2="BrainWeb (CSF T2 329 ms, the only 1.5 T CSF T2 paper 000 found)",
                        T2star="[assumption] no reliable in-vivo value; T2/2")),
        "GM": TissueParameters(
            pd=0.80, t1_ms=1124.0, t2_ms=95.0, t2star_ms=84.0,
            source=_src(PD="Neeb2006 (water content ~0.80)", T1="Stanisz2005 (1.5 T)", T2="Stanisz2005 (1.5 T)",
                        T2star="Peters2007 (cortical GM, 1.5 T)")),
        "WM": TissueParameters(
            pd=0.70, t1_ms=884.0, t2_ms=72.0, t2star_ms=64.9,
            source=_src(PD="Neeb2006 (water content ~0.70)", T1="Stanisz2005 (1.5 T)", T2="Stanisz2005 (1.5 T)",
                        T2star="Peters2007 (frontal WM, 1.5 T)")),
        "lesion": TissueParameters(
            pd=0.80, t1_ms=1150.0, t2_ms=130.0, t2star_ms=75.0,
            source=_src(PD="[representative] raised water content of MS lesions vs NAWM",
                        T1=_LESION_NOTE.format(refs="Parry2002 at 1.5 T"),
                        T2=_LESION_NOTE.format(refs="Parry2002; T2 is nearly field independent"),
                        T2star="[assumption] slightly above NAWM T2* (Peters2007 WM value + demyelination)")),
    },
}

_FIELD_ALIASES = {
    "pd": "pd", "PD": "pd", "t1_ms": "t1_ms", "T1": "t1_ms", "T1_ms": "t1_ms", "t2_ms": "t2_ms", "T2": "t2_ms",
    "T2_ms": "t2_ms", "t2star_ms": "t2star_ms", "T2star": "t2star_ms", "T2*": "t2star_ms", "T2star_ms": "t2star_ms",
    "source": "source",
}
_NUMERIC = ("pd", "t1_ms", "t2_ms", "t2star_ms")


def _match_field(field_T: float) -> float | None:
    for f in SUPPORTED_FIELDS:
        if abs(float(field_T) - f) <= 0.05:
            return f
    return None


def relaxation_table(field_T: float = 3.0, override: str | os.PathLike | Mapping | None = None
                     ) -> dict[str, TissueParameters]:
    """The tissue table at ``field_T`` tesla (1.5 or 3; ±0.05 T), optionally overridden.

    ``override`` is a JSON file path or a mapping of tissue -> {field: value}
    (see the module docstring). Errors name the tissue, the field and the
    problem (:class:`ParameterRangeError`; an unreadable file is an
    :class:`UnreadableFileError`). The returned dict is a fresh copy.
    """
    try:
        field = float(field_T)
    except (TypeError, ValueError):
        raise ParameterRangeError(f"field strength must be a number in tesla, got {field_T!r}") from None
    if not math.isfinite(field) or field <= 0:
        raise ParameterRangeError(f"field strength must be positive and finite, got {field_T!r} T")
    updates = _load_override(override) if override is not None else {}
    key = _match_field(field)
    if key is None:
        complete = all(t in updates and all(f in updates[t] for f in _NUMERIC) for t in TISSUES)
        if not complete:
            raise ParameterRangeError(
                f"no built-in relaxation table at {field:g} T (built in: "
                f"{', '.join(f'{f:g} T' for f in SUPPORTED_FIELDS)}); give an override file with pd, t1_ms, t2_ms "
                f"and t2star_ms for every tissue ({', '.join(TISSUES)}) to use another field")
        return {t: TissueParameters(**{f: updates[t][f] for f in _NUMERIC},
                                    source=str(updates[t].get("source", "user override"))) for t in TISSUES}
    table = dict(_BUILTIN[key])
    for tissue, values in updates.items():
        base = table[tissue]
        changed = {f: v for f, v in values.items() if f != "source"}
        source = values.get("source")
        if source is None:
            source = f"user override ({', '.join(sorted(changed))}); built-in: {base.source}" if changed else base.source
        table[tissue] = replace(base, **changed, source=str(source))
    return table


def table_as_dict(table: Mapping[str, TissueParameters]) -> dict[str, dict[str, Any]]:
    """JSON-ready form of a table (the same shape the override file uses)."""
    return {name: asdict(tp) for name, tp in table.items()}


def _load_override(override) -> dict[str, dict[str, Any]]:
    where = "override"
    if isinstance(override, (str, os.PathLike)):
        p = Path(override)
        where = str(p)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UnreadableFileError(f"{p}: relaxation override file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UnreadableFileError(f"{p}: cannot read the relaxation override file ({exc})") from None
        except json.JSONDecodeError as exc:
            raise UnreadableFileError(f"{p}: not valid JSON ({exc})") from None
    elif isinstance(override, Mapping):
        doc = override
    else:
        raise ParameterRangeError(f"relaxation override must be a JSON file path or a mapping, got {type(override).__name__}")
    if isinstance(doc, Mapping) and "tissues" in doc and isinstance(doc["tissues"], Mapping):
        doc = doc["tissues"]
    if not isinstance(doc, Mapping):
        raise ParameterRangeError(f"{where}: must be a JSON object of tissue -> parameters")
    canonical = {t.lower(): t for t in TISSUES}
    out: dict[str, dict[str, Any]] = {}
    for raw_name, values in doc.items():
        name = canonical.get(str(raw_name).lower())
        if name is None:
            raise ParameterRangeError(
                f"{where}: unknown tissue '{raw_name}'; known tissues are {', '.join(TISSUES)}")
        if not isinstance(values, Mapping):
            raise ParameterRangeError(f"{where}: tissue '{raw_name}' must map to an object such as "
                                      '{"t1_ms": 1300, "t2_ms": 110}')
        entry: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = _FIELD_ALIASES.get(str(raw_key))
            if key is None:
                raise ParameterRangeError(
                    f"{where}: {name}: unknown field '{raw_key}'; use pd, t1_ms, t2_ms, t2star_ms or source")
            if key == "source":
                entry[key] = str(value)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterRangeError(f"{where}: {name}.{key} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value) or value <= 0:
                raise ParameterRangeError(f"{where}: {name}.{key} must be a positive finite number, got {value!r}")
            entry[key] = value
        out[name] = entry
    return out
