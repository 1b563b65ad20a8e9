"""Quantitative map folders: ``PD.nii.gz``, ``T1.nii.gz``, ``T2.nii.gz``, ``T2star.nii.gz`` (ms), ``B1.nii.gz``.

A map folder holds any subset of these (a fit writes only what its inputs
identify); every map must share one grid, contain no NaN/inf and no negative
values. Relaxation times are in **ms**; PD in arbitrary units; B1 is the
receive field (a dimensionless gain, 1 = none). Voxels with T = 0 are
background and give signal 0.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ..errors import MissingParameterError, NonFiniteError, ParameterRangeError, UnreadableFileError
from ..io.atomic import atomic_dir
from ..io.files import read_volume, write_volume
from ..io.jsonsafe import json_safe
from ..io.volume import Volume

__all__ = ["MAP_NAMES", "MAP_FILES", "QMRIMaps", "read_maps", "write_maps", "check_volume"]

MAP_NAMES = ("PD", "T1", "T2", "T2star", "B1")
MAP_FILES = {name: f"{name}.nii.gz" for name in MAP_NAMES}
UNITS = {"PD": "a.u.", "T1": "ms", "T2": "ms", "T2star": "ms", "B1": "receive gain (1 = none)"}


def check_volume(vol: Volume, what: str, *, nonnegative: bool = False) -> None:
    """Raise :class:`NonFiniteError` for NaN/inf voxels and, if asked, :class:`ParameterRangeError` for negatives."""
    data = np.asarray(vol.data)
    # one pass each without full-size temporaries: a float64 sum of finite float32/float64 voxels is finite
    # (float32 values cannot overflow it), and the minimum decides the sign; details only on failure
    if np.issubdtype(data.dtype, np.floating) and data.size and not (
            data.dtype.itemsize <= 4 and np.isfinite(np.add.reduce(data, axis=None, dtype=np.float64))):
        bad = ~np.isfinite(data)
        if bad.any():
            raise NonFiniteError(f"{what}: {int(bad.sum())} voxel(s) are NaN or infinite")
    if nonnegative and data.size and data.min() < 0:
        raise ParameterRangeError(f"{what}: {int(np.count_nonzero(data < 0))} voxel(s) are negative; "
                                  "quantitative maps must be >= 0 (use 0 for background)")


@dataclass
class QMRIMaps:
    """A set of quantitative maps on one grid (keys from :data:`MAP_NAMES`)."""

    maps: dict[str, Volume] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [k for k in self.maps if k not in MAP_NAMES]
        if unknown:
            raise ParameterRangeError(f"unknown map name(s) {unknown}; use {', '.join(MAP_NAMES)}")
        ref_name = next(iter(self.maps), None)
        for name, vol in self.maps.items():
            check_volume(vol, f"map {name}", nonnegative=True)
            if ref_name is not None and name != ref_name:
                self.maps[ref_name].require_same_grid(vol, f"maps {ref_name} and {name}")

    @classmethod
    def from_arrays(cls, like: Volume | None = None, **arrays) -> "QMRIMaps":
        """Build from plain arrays (``PD=..., T1=...``) on the grid of ``like`` (or a unit grid)."""
        maps = {}
        for name, arr in arrays.items():
            if arr is None:
                continue
            arr = np.asarray(arr, dtype=np.float32)
            maps[name] = like.with_data(arr) if like is not None else Volume(arr)
        return cls(maps)

    def __contains__(self, name: str) -> bool:
        return name in self.maps

    def __getitem__(self, name: str) -> Volume:
        return self.maps[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.maps)

    def get(self, name: str, default=None):
        return self.maps.get(name, default)

    @property
    def reference(self) -> Volume:
        if not self.maps:
            raise MissingParameterError("the map set is empty")
        return next(iter(self.maps.values()))

    def array(self, name: str) -> np.ndarray:
        """The map's voxels as floats (float64 maps stay float64, everything else becomes float32)."""
        data = np.asarray(self.maps[name].data)
        return data if data.dtype in (np.float32, np.float64) else data.astype(np.float32)

    def require(self, names, *, purpose: str) -> None:
        missing = [n for n in names if n not in self.maps]
        if missing:
            files = ", ".join(MAP_FILES[n] for n in missing)
            raise MissingParameterError(f"{purpose} needs the map(s) {', '.join(missing)} ({files}), which are missing")


def read_maps(folder: str | os.PathLike) -> QMRIMaps:
    """Read every map present in ``folder`` (at least PD.nii.gz); check grids, NaN and negatives."""
    d = Path(folder)
    if not d.is_dir():
        raise UnreadableFileError(f"{d}: map folder not found (expected a folder with PD.nii.gz, T1.nii.gz, ...)")
    maps = {}
    for name, fname in MAP_FILES.items():
        p = d / fname
        if p.exists():
            vol = read_volume(p, dtype=np.float32, allow_nonfinite=True)
            check_volume(vol, str(p), nonnegative=True)
            maps[name] = vol
    if not maps:
        raise UnreadableFileError(f"{d}: no maps found; expected {', '.join(MAP_FILES.values())}")
    ref = next(iter(maps))
    for name, vol in maps.items():
        maps[ref].require_same_grid(vol, f"{d / MAP_FILES[ref]} and {d / MAP_FILES[name]}")
    info = {}
    report = d / "qmri.json"
    if report.is_file():
        try:
            info = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
    return QMRIMaps(maps, info)


def write_maps(maps: QMRIMaps | Mapping[str, Volume], folder: str | os.PathLike, report: dict | None = None) -> Path:
    """Write the maps (and ``qmri.json`` when ``report`` is given) into ``folder`` atomically.

    The folder appears complete or not at all; an existing folder is replaced.
    """
    m = maps.maps if isinstance(maps, QMRIMaps) else dict(maps)
    out = Path(folder)
    with atomic_dir(out) as tmp:
        for name, vol in m.items():
            if name not in MAP_FILES:
                raise ParameterRangeError(f"unknown map name '{name}'")
            write_volume(vol.with_data(np.asarray(vol.data, dtype=np.float32)), tmp / MAP_FILES[name])
        if report is not None:
            (tmp / "qmri.json").write_text(json.dumps(json_safe(report), indent=2) + "\n", encoding="utf-8")
    return out


