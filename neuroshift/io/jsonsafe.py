"""JSON-safe copies of engine results: NaN/inf become null, numpy values become Python values."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts.

    Dicts (keys as str), lists and tuples are copied recursively; numpy scalars and arrays become Python
    numbers and lists; NaN and infinities become ``None``; paths become strings.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalar or array
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
