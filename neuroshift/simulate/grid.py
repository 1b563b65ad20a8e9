"""Grids of acquisition parameters for stress tests and derivative series.

Syntax (ms, degrees, tesla; items separated by commas)::

    TE=84:150:7,TI=2200:2900:7        7 values from 84 to 150 inclusive (linspace) × 7 TI values
    FA=10|20|30                       an explicit list
    TR=9000                           one value
    noise=0:20:3                      Rician noise σ in image intensity units
    slice_mm=1|3|5                    slice thickness in mm

Keys: any :class:`~neuroshift.io.params.AcquisitionParams` parameter by its short name (TE, TI, TR, TI1,
TI2, FA, TX, N, field, Trec) or field name (TE_ms...), plus ``noise`` and ``slice_mm``. Returned keys are
the canonical short names (``TE``, ``TI``, ``TR``, ``TI1``, ``TI2``, ``FA``, ``TX``, ``N``, ``field``,
``Trec``, ``noise``, ``slice_mm``) in the order given.
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping

import numpy as np

from ..errors import ParameterRangeError
from ..io.params import ALIASES, RANGES, AcquisitionParams

#: Field name -> canonical short grid key.
_SHORT = {"TE_ms": "TE", "TI_ms": "TI", "TR_ms": "TR", "TI1_ms": "TI1", "TI2_ms": "TI2", "TX_ms": "TX",
          "FA_deg": "FA", "field_T": "field", "N": "N", "Trec_ms": "Trec"}
#: Extra (non-sequence) grid keys and their accepted spellings.
EXTRA_KEYS = {"noise": "noise", "sigma": "noise", "slice_mm": "slice_mm", "slice": "slice_mm",
              "thickness": "slice_mm", "slice_thickness": "slice_mm"}
_EXTRA_RANGES = {"noise": (0.0, 1e9), "slice_mm": (1e-3, 100.0)}


def canonical_key(key: str) -> str:
    """``'te'`` -> ``'TE'``, ``'TE_ms'`` -> ``'TE'``, ``'flip'`` -> ``'FA'``, ``'sigma'`` -> ``'noise'``."""
    k = key.strip()
    if k.lower() in EXTRA_KEYS:
        return EXTRA_KEYS[k.lower()]
    name = ALIASES.get(k.upper(), k)
    if name in _SHORT:
        return _SHORT[name]
    raise ParameterRangeError(
        f"unknown grid parameter '{key}'; use TE, TI, TR, TI1, TI2, FA, TX, N, field, Trec, noise or slice_mm")


def _field_name(short: str) -> str | None:
    for name, s in _SHORT.items():
        if s == short:
            return name
    return None


def _number(raw: str, item: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ParameterRangeError(f"grid item '{item}': '{raw}' is not a number") from None
    if not math.isfinite(value):
        raise ParameterRangeError(f"grid item '{item}': '{raw}' is not a finite number")
    return value


def _check_range(key: str, values: np.ndarray, item: str) -> None:
    name = _field_name(key)
    lo, hi = RANGES[name] if name else _EXTRA_RANGES[key]
    bad = values[(values < lo) | (values > hi)]
    if bad.size:
        raise ParameterRangeError(f"grid item '{item}': {key} = {bad[0]:g} is outside [{lo:g}, {hi:g}]")


def parse_grid(text: str | Mapping) -> dict[str, np.ndarray]:
    """Parse a grid specification into ``{key: float64 array}`` (see the module doc for the syntax)."""
    if isinstance(text, Mapping):
        return {canonical_key(k): np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in text.items()}
    grid: dict[str, np.ndarray] = {}
    items = [s.strip() for s in str(text).replace(";", ",").split(",") if s.strip()]
    if not items:
        raise ParameterRangeError("empty grid; give for example TE=84:150:7,TI=2200:2900:7")
    for item in items:
        key, sep, spec = item.partition("=")
        if not sep or not spec.strip():
            raise ParameterRangeError(f"grid item '{item}' is not KEY=start:stop:count or KEY=a|b|c")
        short = canonical_key(key)
        if short in grid:
            raise ParameterRangeError(f"grid parameter {short} is given twice")
        spec = spec.strip()
        if ":" in spec:
            parts = spec.split(":")
            if len(parts) != 3:
                raise ParameterRangeError(f"grid item '{item}': a range is start:stop:count (for example 84:150:7)")
            start, stop = _number(parts[0], item), _number(parts[1], item)
            count = _number(parts[2], item)
            if count != int(count) or count < 1:
                raise ParameterRangeError(f"grid item '{item}': count must be a positive integer, got {parts[2]}")
            if int(count) == 1 and start != stop:
                raise ParameterRangeError(f"grid item '{item}': one value cannot span {start:g}..{stop:g}")
            values = np.linspace(start, stop, int(count))
        else:
            values = np.array([_number(v, item) for v in spec.split("|")], dtype=np.float64)
        _check_range(short, values, item)
        grid[short] = values
    return grid


def grid_shape(grid: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    """Number of values per key, in key order."""
    return tuple(len(v) for v in grid.values())


def grid_points(grid: Mapping[str, np.ndarray] | str) -> list[dict[str, float]]:
    """All combinations (first key varies slowest) as ``[{"TE": 84.0, "TI": 2200.0}, ...]``."""
    if not isinstance(grid, Mapping):
        grid = parse_grid(grid)
    keys = list(grid)
    return [dict(zip(keys, (float(v) for v in combo)))
            for combo in itertools.product(*(np.asarray(grid[k], dtype=np.float64) for k in keys))]


def split_point(point: Mapping[str, float], base: AcquisitionParams | None = None
                ) -> tuple[AcquisitionParams, dict[str, float]]:
    """Split a grid point into acquisition parameters (merged over ``base``) and extras (noise, slice_mm)."""
    acq = {}
    extras = {}
    for key, value in point.items():
        short = canonical_key(key)
        if short in _EXTRA_RANGES:
            extras[short] = float(value)
        else:
            acq[short] = float(value)
    params = AcquisitionParams.from_mapping(acq)
    if base is not None:
        params = base.merged(params)
    return params, extras


__all__ = ["parse_grid", "grid_points", "grid_shape", "split_point", "canonical_key", "EXTRA_KEYS"]
