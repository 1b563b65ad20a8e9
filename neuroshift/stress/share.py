"""Handing a loaded case and its fitted model to worker processes without pickle.

One ``.npz`` file (``numpy.savez``, read back with ``allow_pickle=False``): every array is stored once,
and the object structure is a JSON document kept in the same file (entry ``__structure__``, UTF-8
bytes). Nothing in the file can run code when read:

* JSON values (``None``, bool, int, float, str), lists, tuples, dicts (any JSON-encodable keys),
  ``slice``, :class:`pathlib.Path`, numpy scalars and numpy arrays (no object dtype);
* instances of **dataclasses defined in NeuroShift** (``neuroshift.*`` modules), rebuilt like pickle
  does (``cls.__new__`` + the instance ``__dict__``, no ``__init__`` call); any other class is refused
  with :class:`NotShareable` (the caller then lets each worker read and fit the case itself).

Views keep sharing their memory: an array that is a view of another stored array (e.g. a tissue
model's fraction stack inside its ``[image; fractions]`` block) is stored as (root array, byte offset,
shape, strides), so a worker holds one copy, as the parent does. Shared and self-referencing objects
(a model whose ``uncertainty_model`` is itself) are stored once and referenced.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path, PurePath
from typing import Any

import numpy as np

#: Format tag stored in every file.
FORMAT = "neuroshift-stress-share/1"
_STRUCTURE = "__structure__"


class NotShareable(TypeError):
    """The object holds something this format does not store (a class outside NeuroShift's dataclasses)."""


# ----------------------------------------------------------------------------- encoding
class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._roots: dict[int, str] = {}   # id(root array) -> npz key
        self._memo: dict[int, int] = {}    # id(object) -> reference number
        self._keep: list[Any] = []         # keeps encoded objects alive (their ids stay unique)

    def _ref(self, obj) -> dict | None:
        ref = self._memo.get(id(obj))
        return {"t": "ref", "id": ref} if ref is not None else None

    def _new_ref(self, obj) -> int:
        self._memo[id(obj)] = n = len(self._memo)
        self._keep.append(obj)
        return n

    def array(self, a: np.ndarray) -> dict:
        if a.dtype.hasobject:
            raise NotShareable("arrays of Python objects cannot be shared without pickle")
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        if not (root.flags.c_contiguous and min(a.strides, default=0) >= 0):
            root = a = np.ascontiguousarray(a)  # stored as a copy of its own (values kept, sharing not)
        key = self._roots.get(id(root))
        if key is None:
            key = f"a{len(self.arrays)}"
            self._roots[id(root)] = key
            self.arrays[key] = root
            self._keep.append(root)
        offset = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
        return {"t": "nd", "root": key, "dtype": a.dtype.str, "shape": list(a.shape), "strides": list(a.strides),
                "offset": int(offset), "readonly": not a.flags.writeable}

    def encode(self, obj) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, (int, float)) and type(obj) in (int, float):
            return obj if isinstance(obj, int) or np.isfinite(obj) else {"t": "float", "v": repr(obj)}
        if isinstance(obj, np.ndarray):
            return self.array(obj)
        if isinstance(obj, np.generic):
            if obj.dtype.hasobject or obj.dtype.kind in "cSUV":
                raise NotShareable(f"numpy scalar of dtype {obj.dtype} is not shareable")
            return {"t": "np", "dtype": obj.dtype.str, "v": self.encode(obj.item())}
        if isinstance(obj, slice):
            return {"t": "slice", "v": [self.encode(obj.start), self.encode(obj.stop), self.encode(obj.step)]}
        if isinstance(obj, PurePath):
            return {"t": "path", "v": str(obj)}
        if isinstance(obj, tuple) and type(obj) is tuple:
            return {"t": "tuple", "v": [self.encode(x) for x in obj]}
        ref = self._ref(obj)
        if ref is not None:
            return ref
        if type(obj) is list:
            n = self._new_ref(obj)
            return {"t": "list", "id": n, "v": [self.encode(x) for x in obj]}
        if type(obj) is dict:
            n = self._new_ref(obj)
            return {"t": "dict", "id": n, "v": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        cls = type(obj)
        if dataclasses.is_dataclass(cls) and cls.__module__.startswith("neuroshift.") and hasattr(obj, "__dict__"):
            n = self._new_ref(obj)
            state = {str(k): self.encode(v) for k, v in vars(obj).items()}
            return {"t": "obj", "id": n, "cls": f"{cls.__module__}:{cls.__qualname__}", "v": state}
        raise NotShareable(f"{cls.__module__}.{cls.__qualname__} is not a NeuroShift dataclass; "
                           "it cannot be shared without pickle")


# ----------------------------------------------------------------------------- decoding
def _class(name: str):
    module, _, qual = name.partition(":")
    if not module.startswith("neuroshift."):
        raise NotShareable(f"refusing to rebuild {name}: not a NeuroShift class")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise NotShareable(f"refusing to rebuild {name}: not a dataclass")
    return obj


class _Decoder:
    def __init__(self, arrays) -> None:
        self.arrays = arrays
        self._roots: dict[str, np.ndarray] = {}
        self._memo: dict[int, Any] = {}

    def array(self, d: dict) -> np.ndarray:
        root = self._roots.get(d["root"])
        if root is None:
            root = self._roots[d["root"]] = np.ascontiguousarray(self.arrays[d["root"]])
        dtype = np.dtype(d["dtype"])
        if d["offset"] == 0 and list(root.shape) == d["shape"] and root.dtype == dtype \
                and list(root.strides) == d["strides"]:
            out = root
        else:
            out = np.ndarray(tuple(d["shape"]), dtype=dtype, buffer=root, offset=d["offset"],
                             strides=tuple(d["strides"]))
        if d["readonly"] and out is not root:
            out.flags.writeable = False
        return out

    def decode(self, x) -> Any:
        if not isinstance(x, (dict, list)):
            return x
        t = x["t"]
        if t == "ref":
            return self._memo[x["id"]]
        if t == "nd":
            return self.array(x)
        if t == "float":
            return float(x["v"])
        if t == "np":
            return np.dtype(x["dtype"]).type(self.decode(x["v"]))
        if t == "slice":
            return slice(*(self.decode(v) for v in x["v"]))
        if t == "path":
            return Path(x["v"])
        if t == "tuple":
            return tuple(self.decode(v) for v in x["v"])
        if t == "list":
            out: list = []
            self._memo[x["id"]] = out
            out.extend(self.decode(v) for v in x["v"])
            return out
        if t == "dict":
            dct: dict = {}
            self._memo[x["id"]] = dct
            for k, v in x["v"]:
                dct[self.decode(k)] = self.decode(v)
            return dct
        if t == "obj":
            cls = _class(x["cls"])
            obj = cls.__new__(cls)
            self._memo[x["id"]] = obj
            obj.__dict__.update({k: self.decode(v) for k, v in x["v"].items()})
            return obj
        raise ValueError(f"unknown entry type '{t}' in a shared-case file")


# ----------------------------------------------------------------------------- files
def save_shared(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` to ``path`` (``.npz``); raises :class:`NotShareable` before writing anything it cannot store."""
    enc = _Encoder()
    structure = {"format": FORMAT, "root": enc.encode(obj)}
    payload = np.frombuffer(json.dumps(structure, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        np.savez(fh, **{_STRUCTURE: payload}, **enc.arrays)
    os.replace(tmp, path)
    return path


def load_shared(path: str | os.PathLike) -> Any:
    """Read an object written by :func:`save_shared` (``allow_pickle=False``: no code runs while reading)."""
    with np.load(path, allow_pickle=False) as npz:
        structure = json.loads(bytes(npz[_STRUCTURE]).decode("utf-8"))
        if structure.get("format") != FORMAT:
            raise ValueError(f"{path}: not a NeuroShift shared-case file ({structure.get('format')!r})")
        arrays = {k: npz[k] for k in npz.files if k != _STRUCTURE}
    return _Decoder(arrays).decode(structure["root"])


__all__ = ["FORMAT", "NotShareable", "load_shared", "save_shared"]
