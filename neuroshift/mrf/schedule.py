"""MRF schedules: one row per frame (flip angle in degrees, TE, TR and an optional inversion time TI in ms).

File format (JSON, UTF-8)::

    {"format": "neuroshift-mrf-schedule", "version": 1,
     "description": "...", "representative": true,
     "frames": [{"fa_deg": 34.0, "te_ms": 16.0, "tr_ms": 3530.0, "ti_ms": 40.0}, ...]}

Timing of one frame (see :mod:`neuroshift.mrf.simulate`): the frame starts with the (optional) inversion,
the excitation follows ``ti_ms`` later (at the frame start without inversion), the echo is read ``te_ms``
after the excitation, and the next frame starts ``tr_ms`` after this frame's start. Slice interleaving is
not modelled (every slice sees the same schedule; the inversion is assumed slice-selective).

The schedule's :func:`schedule_hash` (SHA-256 of the canonical frame list and the signal-model version)
is recorded in every dictionary and model; data with another hash is refused
(:func:`require_same_schedule`).

The scanner schedule of paper 001 (Rieger et al. 2017) is not published: ``neuroshift/data/mrf/
schedule_representative.json`` is a REPRESENTATIVE 35-frame schedule inside the published ranges
(FA 34-86 deg, TE 16-76.5 ms, TR 3530-6370 ms), not the scanner's.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import InputError, ParameterRangeError, UnreadableFileError

FORMAT = "neuroshift-mrf-schedule"
VERSION = 1
#: Version of the signal model in :mod:`neuroshift.mrf.simulate`; part of the hash.
SIGNAL_MODEL = "bloch-spoiled-v1"
#: Published ranges of paper 001 (for the representative schedule check; other schedules may differ).
PAPER_RANGES = {"fa_deg": (34.0, 86.0), "te_ms": (16.0, 76.5), "tr_ms": (3530.0, 6370.0)}
#: The representative schedule shipped with NeuroShift.
REPRESENTATIVE_FILE = "schedule_representative.json"


def data_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "mrf"


@dataclass(frozen=True)
class Frame:
    """One frame: flip angle (degrees), echo time, repetition time and inversion time (ms; None: none)."""

    fa_deg: float
    te_ms: float
    tr_ms: float
    ti_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"fa_deg": self.fa_deg, "te_ms": self.te_ms, "tr_ms": self.tr_ms, "ti_ms": self.ti_ms}


@dataclass(frozen=True)
class Schedule:
    """A validated MRF schedule (see the module docstring)."""

    frames: tuple[Frame, ...]
    description: str = ""
    representative: bool = False

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def hash(self) -> str:
        return schedule_hash(self)

    def column(self, name: str) -> list[float]:
        """One field of every frame (``ti_ms`` None -> 0)."""
        return [float(getattr(f, name) or 0.0) for f in self.frames]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "description": self.description,
                "representative": self.representative, "signal_model": SIGNAL_MODEL,
                "frames": [f.to_json() for f in self.frames]}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterRangeError(f"{where} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ParameterRangeError(f"{where} must be finite, got {value!r}")
    return v


def validate_frames(frames: Sequence[Mapping[str, Any]], source: str = "schedule") -> tuple[Frame, ...]:
    """Frames from mappings, checked: 0 < FA <= 180 deg, 0 < TE, 0 < TR, TI >= 0 and TI + TE < TR.

    Raises:
        ParameterRangeError: naming the frame (1-based) and the field.
    """
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ParameterRangeError(f"{source}: 'frames' must be a non-empty list of frames")
    out = []
    for n, f in enumerate(frames, start=1):
        where = f"{source}: frame {n}"
        if not isinstance(f, Mapping):
            raise ParameterRangeError(f"{where} must be a mapping with fa_deg, te_ms, tr_ms (and ti_ms)")
        unknown = sorted(set(f) - {"fa_deg", "te_ms", "tr_ms", "ti_ms"})
        if unknown:
            raise ParameterRangeError(f"{where}: unknown field(s) {unknown}; allowed: fa_deg, te_ms, tr_ms, ti_ms")
        for key in ("fa_deg", "te_ms", "tr_ms"):
            if key not in f:
                raise ParameterRangeError(f"{where}: missing {key}")
        fa, te, tr = (_number(f[k], f"{where} {k}") for k in ("fa_deg", "te_ms", "tr_ms"))
        ti = None if f.get("ti_ms") is None else _number(f["ti_ms"], f"{where} ti_ms")
        if not 0.0 < fa <= 180.0:
            raise ParameterRangeError(f"{where}: fa_deg must be in (0, 180] degrees, got {fa:g}")
        if te <= 0 or tr <= 0:
            raise ParameterRangeError(f"{where}: te_ms and tr_ms must be > 0 ms, got TE {te:g}, TR {tr:g}")
        if ti is not None and ti < 0:
            raise ParameterRangeError(f"{where}: ti_ms must be >= 0 ms, got {ti:g}")
        if (ti or 0.0) + te >= tr:
            raise ParameterRangeError(f"{where}: TI + TE ({(ti or 0.0) + te:g} ms) must be shorter than TR ({tr:g} ms)")
        out.append(Frame(fa, te, tr, ti))
    return tuple(out)


def schedule_from_dict(data: Mapping[str, Any], source: str = "schedule") -> Schedule:
    """A :class:`Schedule` from the JSON mapping (format and version checked)."""
    if not isinstance(data, Mapping):
        raise ParameterRangeError(f"{source}: a schedule must be a JSON object")
    if data.get("format") != FORMAT:
        raise ParameterRangeError(f"{source}: not an MRF schedule (format must be '{FORMAT}')")
    if data.get("version") != VERSION:
        raise ParameterRangeError(f"{source}: schedule version {data.get('version')!r} is not supported "
                                  f"(expected {VERSION})")
    model = data.get("signal_model", SIGNAL_MODEL)
    if model != SIGNAL_MODEL:
        raise ParameterRangeError(f"{source}: signal model {model!r} is not this version's ({SIGNAL_MODEL})")
    return Schedule(validate_frames(data.get("frames"), source), str(data.get("description", "")),
                    bool(data.get("representative", False)))


def load_schedule(path: str | os.PathLike) -> Schedule:
    """Read and validate a schedule file.

    Raises:
        UnreadableFileError: missing file or not JSON; ParameterRangeError: invalid content.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnreadableFileError(f"{p}: no such schedule file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"{p}: not a JSON schedule ({exc})") from None
    return schedule_from_dict(data, str(p))


def save_schedule(schedule: Schedule, path: str | os.PathLike) -> Path:
    """Write ``schedule`` atomically (read back and compared)."""
    from ..io.atomic import atomic_path

    p = Path(path)
    text = json.dumps(schedule.to_json(), indent=1) + "\n"

    def verify(tmp: Path) -> None:
        if load_schedule(tmp).hash != schedule.hash:
            raise InputError(f"{p}: schedule read back differs")

    with atomic_path(p, verify=verify) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return p


def representative_schedule() -> Schedule:
    """The shipped REPRESENTATIVE 35-frame schedule (not the scanner's; see the module docstring)."""
    return load_schedule(data_dir() / REPRESENTATIVE_FILE)


def schedule_hash(schedule: Schedule) -> str:
    """Hex SHA-256 of the canonical frame list (values rounded to 1e-6) and the signal-model version."""
    rows = [[round(f.fa_deg, 6), round(f.te_ms, 6), round(f.tr_ms, 6), None if f.ti_ms is None else round(f.ti_ms, 6)]
            for f in schedule.frames]
    text = json.dumps({"model": SIGNAL_MODEL, "frames": rows}, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def require_same_schedule(expected_hash: str, schedule: Schedule | str, what: str) -> None:
    """Refuse ``what`` (a dictionary, a model) made for another schedule than ``schedule``.

    Raises:
        InputError: the hashes differ.
    """
    got = schedule if isinstance(schedule, str) else schedule.hash
    if str(expected_hash) != got:
        raise InputError(f"{what} was made for schedule {str(expected_hash)[:12]}..., but the data were acquired "
                         f"with schedule {got[:12]}...; use the dictionary/model of this schedule")


def representative_frames(n: int = 35) -> list[dict[str, float | None]]:
    """Generate the REPRESENTATIVE schedule's frames (how the shipped file was made; deterministic).

    Flip angles follow a half-sine from 34 to 86 deg and back, TE a triangle between 16 and 76.5 ms
    (two periods), TR rises linearly 3530 -> 6370 ms with a small alternation; inversions before frames
    1, 12 and 24 with TI 40, 400 and 1200 ms give T1 encoding. Values are rounded to 0.1.
    """
    frames = []
    for i in range(n):
        u = i / (n - 1)
        fa = 34.0 + 52.0 * math.sin(math.pi * u)
        tri = abs(((2.0 * u * 2.0) % 2.0) - 1.0)  # 1 -> 0 -> 1, two periods
        te = 16.0 + 60.5 * (1.0 - tri)
        tr = 3530.0 + 2840.0 * u if i % 2 == 0 else 3530.0 + 2840.0 * (1.0 - u)
        ti = {0: 40.0, 11: 400.0, 23: 1200.0}.get(i)
        frames.append({"fa_deg": round(fa, 1), "te_ms": round(te, 1), "tr_ms": round(tr, 1), "ti_ms": ti})
    return frames


__all__ = ["FORMAT", "Frame", "PAPER_RANGES", "SIGNAL_MODEL", "Schedule", "load_schedule", "representative_frames",
           "representative_schedule", "require_same_schedule", "save_schedule", "schedule_from_dict",
           "schedule_hash", "validate_frames"]
