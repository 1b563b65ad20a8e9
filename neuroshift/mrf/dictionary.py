"""The MRF dictionary: signals of a schedule over the T1 x T2* x B1 grid of paper 001, stored compressed.

Grid (``mrf.md``): T1 300-3500 ms and T2* 10-2500 ms on multiplicative 5 % steps
(``T = T_min x 1.05^k`` up to ``T_max``: 51 T1 and 114 T2* values) and B1 0.6-1.4 in steps of 0.1
(9 values): 51 x 114 x 9 = 52,326 entries of ``n_frames`` signals each (PD 1).

Stored as ``.npz`` (``numpy.savez_compressed``): ``signals`` (float64, ``(n_T1, n_T2*, n_B1, n_frames)``),
the axes ``t1_ms``, ``t2star_ms``, ``b1``, and ``meta`` (JSON: schedule, its hash, grid, versions). float64
keeps neighbouring long-T2* atoms (whose normalised signals differ by ~1e-7) distinguishable, which the
exact-recovery guarantee of :mod:`neuroshift.mrf.match` needs. Loading re-checks the grid shape, finiteness
and, when a schedule is given, its hash.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IntegrityError, UnreadableFileError
from .schedule import Schedule, require_same_schedule, schedule_from_dict

FORMAT = "neuroshift-mrf-dictionary"
VERSION = 1
#: Paper 001's grid: (min, max, multiplicative step) for T1 and T2* in ms; B1 (min, max, additive step).
T1_RANGE_MS = (300.0, 3500.0, 1.05)
T2STAR_RANGE_MS = (10.0, 2500.0, 1.05)
B1_RANGE = (0.6, 1.4, 0.1)


def geometric_axis(lo: float, hi: float, ratio: float) -> np.ndarray:
    """``lo x ratio^k`` for k = 0, 1, ... while <= ``hi`` (1e-9 relative tolerance)."""
    n = int(np.floor(np.log(hi / lo) / np.log(ratio) + 1e-9)) + 1
    return lo * ratio ** np.arange(n, dtype=np.float64)


def linear_axis(lo: float, hi: float, step: float) -> np.ndarray:
    n = int(round((hi - lo) / step)) + 1
    return np.round(lo + step * np.arange(n, dtype=np.float64), 10)


def default_grid() -> dict[str, np.ndarray]:
    """The 51 x 114 x 9 grid of paper 001 (``t1_ms``, ``t2star_ms``, ``b1``)."""
    return {"t1_ms": geometric_axis(*T1_RANGE_MS), "t2star_ms": geometric_axis(*T2STAR_RANGE_MS),
            "b1": linear_axis(*B1_RANGE)}


@dataclass
class Dictionary:
    """Dictionary signals ``(n_T1, n_T2*, n_B1, n_frames)`` on the grid axes, for one schedule."""

    signals: np.ndarray
    t1_ms: np.ndarray
    t2star_ms: np.ndarray
    b1: np.ndarray
    schedule: Schedule
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return tuple(self.signals.shape[:3])

    @property
    def n_frames(self) -> int:
        return int(self.signals.shape[-1])

    def atoms(self) -> np.ndarray:
        """Signals flattened to ``(n_entries, n_frames)`` (C order: T1 slowest, B1 fastest)."""
        return self.signals.reshape(-1, self.n_frames)

    def parameters(self) -> np.ndarray:
        """``(n_entries, 3)`` T1 (ms), T2* (ms), B1 of every flattened atom."""
        t1, t2, b1 = np.meshgrid(self.t1_ms, self.t2star_ms, self.b1, indexing="ij")
        return np.stack([t1.ravel(), t2.ravel(), b1.ravel()], axis=1)


def build_dictionary(schedule: Schedule, grid: dict[str, np.ndarray] | None = None, *, device=None,
                     chunk: int = 65536) -> Dictionary:
    """Simulate ``schedule`` over ``grid`` (default :func:`default_grid`) in float64 torch, in chunks."""
    import torch

    from .simulate import simulate

    g = grid or default_grid()
    t0 = time.perf_counter()
    t1, t2, b1 = np.meshgrid(g["t1_ms"], g["t2star_ms"], g["b1"], indexing="ij")
    flat = np.stack([t1.ravel(), t2.ravel(), b1.ravel()], axis=1)
    out = np.empty((flat.shape[0], len(schedule)), dtype=np.float64)
    for i in range(0, flat.shape[0], chunk):
        p = torch.as_tensor(flat[i:i + chunk], dtype=torch.float64, device=device)
        out[i:i + chunk] = simulate(schedule, p[:, 0], p[:, 1], p[:, 2]).cpu().numpy()
    meta = {"build_seconds": round(time.perf_counter() - t0, 3), "device": str(device or "cpu")}
    return Dictionary(out.reshape(t1.shape + (len(schedule),)), g["t1_ms"], g["t2star_ms"], g["b1"], schedule, meta)


def save_dictionary(d: Dictionary, path: str | os.PathLike) -> Path:
    """Write ``d`` as compressed ``.npz`` atomically; the temporary is read back and compared before the rename."""
    from ..io.atomic import atomic_path

    p = Path(path)
    meta = {"format": FORMAT, "version": VERSION, "schedule": d.schedule.to_json(), "schedule_hash": d.schedule.hash,
            "grid_shape": list(d.grid_shape), "grid": {"t1_ms": list(T1_RANGE_MS), "t2star_ms": list(T2STAR_RANGE_MS),
                                                         "b1": list(B1_RANGE)}, **d.meta}

    def verify(tmp: Path) -> None:
        back = load_dictionary(tmp)
        if not np.array_equal(back.signals, d.signals):
            raise IntegrityError(f"{p}: dictionary read back differs")

    with atomic_path(p, verify=verify) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, signals=d.signals, t1_ms=d.t1_ms, t2star_ms=d.t2star_ms, b1=d.b1,
                                meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8))
    return p


def load_dictionary(path: str | os.PathLike, schedule: Schedule | None = None) -> Dictionary:
    """Read a dictionary; with ``schedule``, refuse one made for another schedule.

    Raises:
        UnreadableFileError: missing or not a dictionary file; IntegrityError: inconsistent content;
        InputError: schedule hash mismatch.
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("signals", "t1_ms", "t2star_ms", "b1", "meta")}
    except FileNotFoundError:
        raise UnreadableFileError(f"{p}: no such dictionary file") from None
    except (KeyError, ValueError, OSError) as exc:
        raise UnreadableFileError(f"{p}: not an MRF dictionary (.npz from 'neuroshift mrf dictionary'): "
                                  f"{exc}") from None
    try:
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UnreadableFileError(f"{p}: dictionary metadata is not readable") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise UnreadableFileError(f"{p}: not an MRF dictionary of format {FORMAT} v{VERSION}")
    sig = arrays["signals"]
    axes = tuple(arrays[k] for k in ("t1_ms", "t2star_ms", "b1"))
    sched = schedule_from_dict(meta["schedule"], f"{p} (schedule)")
    if sig.ndim != 4 or sig.shape[:3] != tuple(len(a) for a in axes) or sig.shape[3] != len(sched):
        raise IntegrityError(f"{p}: signals of shape {sig.shape} do not fit the grid axes and {len(sched)} frames")
    if sched.hash != meta.get("schedule_hash"):
        raise IntegrityError(f"{p}: the stored schedule does not match its recorded hash")
    if not np.all(np.isfinite(sig)):
        raise IntegrityError(f"{p}: the dictionary holds non-finite signals")
    if schedule is not None:
        require_same_schedule(meta["schedule_hash"], schedule, f"dictionary {p}")
    extra = {k: v for k, v in meta.items() if k in ("build_seconds", "device")}
    return Dictionary(sig, *axes, sched, extra)


__all__ = ["B1_RANGE", "Dictionary", "T1_RANGE_MS", "T2STAR_RANGE_MS", "build_dictionary", "default_grid",
           "geometric_axis", "linear_axis", "load_dictionary", "save_dictionary"]
