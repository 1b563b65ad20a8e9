"""Acquisition parameters: from BIDS sidecars (s), DICOM tags (ms) or explicit values (ms).

Inside NeuroShift every time is in **milliseconds**, flip angles in **degrees**
and field strength in **tesla**. A parameter that a sequence needs but nobody
gave is an error that names it; nothing is ever guessed silently.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Mapping

from ..errors import MissingParameterError, ParameterRangeError, UnreadableFileError

#: Parameters each sequence needs (the one table, :mod:`neuroshift.sequences`; re-exported here).
from ..sequences import SEQUENCE_PARAMETERS, SEQUENCES  # noqa: E402,F401

#: Short names accepted on the command line and in CSV columns -> field names.
ALIASES = {
    "TE": "TE_ms", "TI": "TI_ms", "TR": "TR_ms", "TI1": "TI1_ms", "TI2": "TI2_ms",
    "TX": "TX_ms", "ESP": "TX_ms", "FA": "FA_deg", "ALPHA": "FA_deg", "FLIP": "FA_deg",
    "B0": "field_T", "FIELD": "field_T", "N": "N", "ETL": "N", "TREC": "Trec_ms",
}

#: Sane physical ranges (inclusive) used to refuse typos such as TE=15000.
RANGES = {
    "TE_ms": (0.0, 5000.0), "TI_ms": (0.0, 20000.0), "TR_ms": (0.0, 100000.0),
    "TI1_ms": (0.0, 20000.0), "TI2_ms": (0.0, 20000.0), "TX_ms": (0.0, 1000.0),
    "FA_deg": (0.0, 180.0), "field_T": (0.0, 21.0), "N": (1.0, 4096.0), "Trec_ms": (0.0, 100000.0),
}

#: BIDS sidecar keys (seconds, degrees, tesla) -> (field, factor to NeuroShift units).
BIDS_KEYS = {
    "EchoTime": ("TE_ms", 1000.0), "InversionTime": ("TI_ms", 1000.0),
    "RepetitionTime": ("TR_ms", 1000.0), "FlipAngle": ("FA_deg", 1.0),
    "MagneticFieldStrength": ("field_T", 1.0), "EchoTrainLength": ("N", 1.0),
    "RepetitionTimeExcitation": ("TX_ms", 1000.0),
}

#: DICOM keywords (ms, degrees, tesla) -> field; see ``neuroshift.io.files.DICOM_TAGS``.
DICOM_KEYS = {
    "EchoTime": "TE_ms", "InversionTime": "TI_ms", "RepetitionTime": "TR_ms",
    "FlipAngle": "FA_deg", "MagneticFieldStrength": "field_T", "EchoTrainLength": "N",
}


@dataclass(frozen=True)
class AcquisitionParams:
    """Acquisition parameters; ``None`` means unknown.

    TE/TI/TR/TI1/TI2/TX/Trec in ms, FA in degrees, field in tesla, N the number of
    excitations per MPRAGE shot (or the echo-train length of an FSE).
    ``TI1_ms``/``TI2_ms`` are the DIR inversion times measured back from the
    excitation (TI1 > TI2). ``Trec_ms`` overrides the FLAIR recovery time (default: TR).
    """

    TE_ms: float | None = None
    TI_ms: float | None = None
    TR_ms: float | None = None
    FA_deg: float | None = None
    field_T: float | None = None
    TI1_ms: float | None = None
    TI2_ms: float | None = None
    TX_ms: float | None = None
    N: float | None = None
    Trec_ms: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ParameterRangeError(f"{f.name} must be a finite number, got {value!r}")
            lo, hi = RANGES[f.name]
            if not lo <= value <= hi:
                raise ParameterRangeError(f"{f.name} = {value:g} is outside the physical range [{lo:g}, {hi:g}]")

    # ----------------------------------------------------------- construction
    @classmethod
    def parse(cls, text: str) -> "AcquisitionParams":
        """Parse ``"TE=150,TI=2900,TR=9000"`` (ms, degrees, tesla)."""
        values: dict[str, float] = {}
        seen: dict[str, str] = {}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, sep, raw = item.partition("=")
            if not sep:
                raise ParameterRangeError(f"'{item}' is not KEY=VALUE (for example TE=150)")
            name = ALIASES.get(key.strip().upper(), key.strip())
            if name in seen:
                raise ParameterRangeError(
                    f"{short_name(name)} is given twice in '{text}' ({seen[name]} and {item}); give each parameter once")
            seen[name] = item
            values[key.strip()] = _to_float(raw, key)
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, float | str | None]) -> "AcquisitionParams":
        """Build from a mapping of short (TE, TI, FA...) or field names (TE_ms...)."""
        known = {f.name for f in fields(cls)}
        out: dict[str, float] = {}
        for key, raw in values.items():
            name = ALIASES.get(key.strip().upper(), key.strip())
            if name not in known:
                raise ParameterRangeError(
                    f"unknown acquisition parameter '{key}'; use TE, TI, TR, TI1, TI2, FA, TX, N, field or Trec"
                )
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            out[name] = _to_float(raw, key)
        return cls(**out)

    @classmethod
    def from_sidecar(cls, path: str | os.PathLike) -> "AcquisitionParams":
        """Read a BIDS JSON sidecar (times in seconds) into ms."""
        p = Path(path)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UnreadableFileError(f"{p}: cannot read the JSON sidecar ({exc})") from None
        if not isinstance(doc, dict):
            raise UnreadableFileError(f"{p}: a BIDS sidecar must be a JSON object")
        out: dict[str, float] = {}
        for key, (name, factor) in BIDS_KEYS.items():
            value = doc.get(key)
            if isinstance(value, list):  # multi-echo sidecars list several values
                value = value[0] if value else None
            if value is not None:
                out[name] = round(_to_float(value, f"{p.name}:{key}") * factor, 9)  # s -> ms without 1e-16 noise
        return cls(**out)

    @classmethod
    def from_dicom_meta(cls, meta: Mapping[str, str]) -> "AcquisitionParams":
        """Read the ``dicom:<Keyword>`` entries that :func:`read_volume` puts in ``Volume.meta``."""
        out: dict[str, float] = {}
        for keyword, name in DICOM_KEYS.items():
            raw = meta.get(f"dicom:{keyword}")
            if raw is not None and str(raw).strip():
                out[name] = _to_float(str(raw).split("\\")[0], keyword)
        return cls(**out)

    @classmethod
    def for_image(cls, image_path: str | os.PathLike, meta: Mapping[str, str] | None = None) -> "AcquisitionParams":
        """Parameters of an image: its sidecar (``name.json`` beside it) merged over its DICOM header."""
        params = cls.from_dicom_meta(meta or {})
        sidecar = sidecar_path(image_path)
        if sidecar is not None:
            params = params.merged(cls.from_sidecar(sidecar))
        return params

    # ----------------------------------------------------------------- access
    def merged(self, override: "AcquisitionParams") -> "AcquisitionParams":
        """These parameters with every known value of ``override`` taking precedence."""
        if type(self) is AcquisitionParams and type(override) is AcquisitionParams:
            # Fast path (a derivative per grid point merges its target, issue 9): both are already validated
            # instances, so every merged value is too; same result as the general path below (tested).
            out = object.__new__(AcquisitionParams)
            values = out.__dict__
            values.update(self.__dict__)
            for k, v in override.__dict__.items():
                if v is not None:
                    values[k] = v
            return out
        return replace(self, **{k: v for k, v in asdict(override).items() if v is not None})

    def require(self, sequence: str, *, context: str = "") -> "AcquisitionParams":
        """Return self if every parameter ``sequence`` needs is known, else raise naming the missing ones."""
        seq = sequence.lower()
        if seq not in SEQUENCE_PARAMETERS:
            raise ParameterRangeError(f"unknown sequence '{sequence}'; choose one of {', '.join(SEQUENCE_PARAMETERS)}")
        if self._meets(seq):  # fast path: every check below passes (the usual case; same checks, tested)
            return self
        missing = [name for name in SEQUENCE_PARAMETERS[seq] if getattr(self, name) is None]
        if missing:
            where = f" for {context}" if context else ""
            short = ", ".join(short_name(m) for m in missing)
            raise MissingParameterError(
                f"{seq.upper()} needs {short}{where}, which is not known; give it explicitly "
                f"(for example --source {short_name(missing[0])}=...) or provide a BIDS sidecar / DICOM header"
            )
        for name in SEQUENCE_PARAMETERS[seq]:
            lo, hi, lo_open, why = _sequence_range(seq, name)
            value = getattr(self, name)
            if value < lo or (lo_open and value == lo) or value > hi:
                where = f" for {context}" if context else ""
                interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
                raise ParameterRangeError(
                    f"{seq.upper()}: {short_name(name)} = {value:g}{where} is outside its meaningful range {interval} "
                    f"{_UNITS.get(name, '')}: {why}")
        if self.TE_ms >= self.TR_ms:
            raise ParameterRangeError(f"TE ({self.TE_ms:g} ms) must be shorter than TR ({self.TR_ms:g} ms)")
        if seq == "dir" and self.TI1_ms <= self.TI2_ms:
            raise ParameterRangeError(f"DIR needs TI1 > TI2, got TI1={self.TI1_ms:g} ms, TI2={self.TI2_ms:g} ms")
        if seq in ("ir", "flair") and self.TI_ms > self.TR_ms:
            raise ParameterRangeError(f"TI ({self.TI_ms:g} ms) cannot exceed TR ({self.TR_ms:g} ms)")
        return self

    def _meets(self, seq: str) -> bool:
        """True when :meth:`require` would pass for ``seq`` (known sequence): the same checks, without messages."""
        v = self.__dict__
        for name, lo, hi, lo_open in range_checks(seq):
            x = v[name]
            if x is None or x < lo or (lo_open and x == lo) or x > hi:
                return False
        if v["TE_ms"] >= v["TR_ms"]:
            return False
        if seq == "dir" and v["TI1_ms"] <= v["TI2_ms"]:
            return False
        return not (seq in ("ir", "flair") and v["TI_ms"] > v["TR_ms"])

    def to_sidecar(self) -> dict[str, float | int]:
        """The known parameters as BIDS sidecar entries (times in seconds; inverse of :meth:`from_sidecar`)."""
        doc: dict[str, float | int] = {}
        for key, (name, factor) in BIDS_KEYS.items():
            value = getattr(self, name)
            if value is not None:
                doc[key] = int(value) if name == "N" else round(value / factor, 9)
        return doc

    def to_dicom_meta(self) -> dict[str, str]:
        """The known parameters as ``dicom:<Keyword>`` entries of ``Volume.meta`` (ms, degrees, tesla)."""
        return {f"dicom:{keyword}": f"{getattr(self, name):.10g}"
                for keyword, name in DICOM_KEYS.items() if getattr(self, name) is not None}

    def known(self) -> dict[str, float]:
        """The known parameters as a dict of field name -> value."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def label(self) -> str:
        """Compact text such as ``TE=112,TI=2500,TR=9000`` (ms, degrees, tesla)."""
        return ",".join(f"{short_name(k)}={v:g}" for k, v in self.known().items())


#: Units of the parameters, for messages.
_UNITS = {"TE_ms": "ms", "TI_ms": "ms", "TR_ms": "ms", "TI1_ms": "ms", "TI2_ms": "ms", "TX_ms": "ms",
          "FA_deg": "degrees", "field_T": "T", "Trec_ms": "ms", "N": ""}


def _sequence_range(seq: str, name: str) -> tuple[float, float, bool, str]:
    """(low, high, low bound excluded, why) of a parameter a sequence needs; tighter than :data:`RANGES`.

    A flip angle of 0 gives no signal at all (the derivative is then the negative of the modelled
    source signal); spoiled-GRE and MPRAGE read-out angles beyond 90 degrees are not used and the
    signal models are not validated there. Times that the signal equations divide by or that set
    a recovery (TR, TE, TI, the MPRAGE echo spacing) must be positive.
    """
    lo, hi = RANGES[name]
    if name == "FA_deg" and seq in ("gre", "mprage"):
        return 0.0, 90.0, True, "a flip angle of 0 excites no signal; read-out angles above 90 degrees are not modelled"
    if name in ("TE_ms", "TR_ms", "TI_ms", "TI1_ms", "TI2_ms", "TX_ms"):
        return 0.0, hi, True, "this time must be positive"
    return lo, hi, False, "outside the physical range"


_RANGE_CHECKS: dict[str, tuple] = {}


def range_checks(seq: str) -> tuple:
    """``(name, low, high, low excluded)`` of every parameter ``seq`` needs (:func:`_sequence_range`), cached."""
    checks = _RANGE_CHECKS.get(seq)
    if checks is None:
        checks = _RANGE_CHECKS[seq] = tuple((name, *_sequence_range(seq, name)[:3])
                                            for name in SEQUENCE_PARAMETERS[seq])
    return checks


def sidecar_path(image_path: str | os.PathLike) -> Path | None:
    """The BIDS sidecar beside an image (``x.nii.gz`` -> ``x.json``), if it exists."""
    from .atomic import split_suffix

    p = Path(image_path)
    if p.is_dir():
        return None
    stem, _ = split_suffix(p)
    candidate = p.with_name(stem + ".json")
    return candidate if candidate.is_file() else None


def short_name(name: str) -> str:
    """The short name of a parameter field (``TE_ms`` -> ``TE``, ``FA_deg`` -> ``FA``, ``field_T`` -> ``field``)."""
    inverse = {"TE_ms": "TE", "TI_ms": "TI", "TR_ms": "TR", "TI1_ms": "TI1", "TI2_ms": "TI2",
               "TX_ms": "TX", "FA_deg": "FA", "field_T": "field", "N": "N", "Trec_ms": "Trec"}
    return inverse.get(name, name)


def _to_float(raw, key: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ParameterRangeError(f"{key}: '{raw}' is not a number") from None
    if not math.isfinite(value):
        raise ParameterRangeError(f"{key}: '{raw}' is not a finite number")
    return value
