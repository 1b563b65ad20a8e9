"""Objects derived from a network's weights (its bfloat16 copy, its int8 weights, folded decoder kernels), built once
per network and kind, and rebuilt when a weight changes in place (training bumps each parameter's version) or is
replaced. Held weakly: a network that is dropped takes its derived objects with it."""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Hashable

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def derived(module, kind: Hashable, build: Callable[[], Any]) -> Any:
    """``build()`` for ``module`` and ``kind``, cached until one of ``module``'s parameters changes. Concurrent
    first calls may both build (the result is the same); the lock only guards the table."""
    stamp = tuple((p.data_ptr(), p._version) for p in module.parameters())
    with _LOCK:
        entry = _CACHE.get(module, {}).get(kind)
    if entry is None or entry[0] != stamp:
        entry = (stamp, build())
        with _LOCK:
            _CACHE.setdefault(module, {})[kind] = entry
    return entry[1]


__all__ = ["derived"]
