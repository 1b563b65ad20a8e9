"""Settings of a training run: deep update, strict dataclass-from-dict, YAML files, fingerprints, CLI flags.

A task declares its settings once, as a dataclass whose fields carry their command-line flags in the
field metadata (:func:`setting`, :class:`Flag`); :func:`add_arguments` builds the argparse options and
:func:`values_from_args` turns parsed arguments back into the dict :func:`from_dict` accepts. No
second list of option names exists anywhere.

* :func:`deep_update` merges nested mappings (later layers win; the layers of a run are task
  defaults < a package's manifest < a recipe < explicit settings);
* :func:`from_dict` builds a dataclass and refuses unknown keys (``-`` and ``_`` are the same);
* :func:`load_yaml` reads a mapping from YAML/JSON and resolves the path-valued keys relative to the file;
* :func:`fingerprint` hashes the resolved settings minus an explicit exclusion list (what may differ
  between an interrupted run and its resumption: the number of epochs, the device, the output folder...).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, TypeVar

from ..errors import InputError

T = TypeVar("T")


def deep_update(base: Mapping[str, Any], update: Mapping[str, Any] | None, *,
                replace: Collection[str] = ()) -> dict[str, Any]:
    """A deep copy of ``base`` with ``update`` merged in: nested mappings merge key by key, anything else
    (lists, scalars) is replaced. Keys in ``replace`` are replaced whole even when both sides are mappings."""
    out = copy.deepcopy(dict(base))
    for k, v in (update or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k not in replace:
            out[k] = deep_update(out[k], v, replace=replace)
        else:
            out[k] = copy.deepcopy(v)
    return out


def normalise_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """Setting names with ``-`` written as ``_`` (config files may use either)."""
    return {str(k).replace("-", "_"): v for k, v in dict(data).items()}


def from_dict(cls: type[T], data: Mapping[str, Any], *, what: str = "setting") -> T:
    """``cls(**data)`` for a dataclass ``cls``, refusing keys that are not its fields.

    Raises:
        InputError: a key is not a field of ``cls`` (the message lists the allowed ones).
    """
    d = normalise_keys(data)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(f"unknown {what}(s) {unknown}; allowed: {', '.join(sorted(known))}")
    return cls(**d)


def load_yaml(path: str | os.PathLike, *, path_keys: Collection[str] = (),
              optional_path_keys: Collection[str] = ()) -> dict[str, Any]:
    """Read a YAML (or JSON) mapping; keys with ``-`` are normalised to ``_``.

    Relative paths under ``path_keys`` (a string, a list of strings, or comma-joined lists of paths in
    either) are made relative to the file's folder. Under ``optional_path_keys`` a relative string is
    resolved only when that file exists there (so a bare registry name stays as it is).

    Raises:
        InputError: the file is missing, is not valid YAML or is not a mapping.
    """
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such config file") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{p}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{p}: the config must be a mapping of settings")
    data = normalise_keys(data)
    base = p.parent

    def rel(text: str) -> str:
        return ",".join(q if Path(q).is_absolute() else str(base / q) for q in text.split(","))

    for key in path_keys:
        v = data.get(key)
        if isinstance(v, str):
            data[key] = rel(v)
        elif isinstance(v, list):
            data[key] = [rel(x) if isinstance(x, str) else x for x in v]
    for key in optional_path_keys:
        v = data.get(key)
        if isinstance(v, str) and not Path(v).is_absolute() and (base / v).exists():
            data[key] = str(base / v)
    return data


def fingerprint(settings: Any, *, exclude: Collection[str] = (), extra: Mapping[str, Any] | None = None,
                length: int = 16) -> str:
    """Hex SHA-256 (first ``length`` digits) of ``settings`` (a dataclass or mapping) without the top-level
    keys in ``exclude``, plus ``extra`` (e.g. a member's seed and training subjects). Values that JSON cannot
    hold are hashed as ``str()``; key order does not matter.

    Raises:
        ValueError: an exclusion names no setting (a typo would silently widen the fingerprint).
    """
    data = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
    missing = sorted(set(exclude) - set(data))
    if missing:  # an exclusion that names nothing is a typo that would silently widen the fingerprint
        raise ValueError(f"fingerprint exclusions {missing} are not settings")
    key = {k: v for k, v in data.items() if k not in set(exclude)}
    if extra:
        key["__extra__"] = dict(extra)
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# ============================================================== CLI flags from field metadata
@dataclass(frozen=True)
class Flag:
    """One command-line option of a setting (kept in the dataclass field's ``metadata["flags"]``).

    ``name`` defaults to ``--field-name``. ``path`` puts the value inside a dict-valued setting
    (``--crop`` -> ``preprocessing["crop_hw"]``: ``path=("crop_hw",)``). ``convert`` maps the parsed
    value before it is stored (e.g. ``"native"`` -> ``None``). ``flag_value`` makes a switch
    (``store_const``): ``--amp`` stores ``True``, ``--quiet`` stores ``False`` into ``verbose``.
    """

    name: str | None = None
    help: str | None = None
    type: Callable[[str], Any] | None = None
    nargs: str | None = None
    choices: tuple | None = None
    metavar: str | None = None
    path: tuple[str, ...] = ()
    convert: Callable[[Any], Any] | None = None
    flag_value: Any = None

    def option(self, field_name: str) -> str:
        return self.name or "--" + field_name.replace("_", "-")


def setting(default: Any = None, *flags: Flag, help: str | None = None,
            default_factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its CLI flags; without ``flags``, one ``--field-name`` option described by
    ``help`` (type and nargs are then taken from nothing: give a :class:`Flag` for typed options).
    Use :func:`internal` for a setting that has no flag."""
    meta = {"flags": tuple(flags) if flags else (Flag(help=help),)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def internal(default: Any = None) -> Any:
    """A dataclass field that has no command-line flag (set from config files or Python only)."""
    return dataclasses.field(default=default, metadata={"flags": ()})


def _dest(field_name: str, i: int) -> str:
    return f"setting__{field_name}__{i}"


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add every flag declared in ``cls``'s field metadata to ``parser`` (all default to "not given")."""
    for f in dataclasses.fields(cls):
        for i, flag in enumerate(f.metadata.get("flags", ())):
            kw: dict[str, Any] = {"dest": _dest(f.name, i), "default": None, "help": flag.help}
            if flag.flag_value is not None:
                kw.update(action="store_const", const=flag.flag_value)
            else:
                for attr in ("type", "nargs", "choices", "metavar"):
                    if getattr(flag, attr) is not None:
                        kw[attr] = getattr(flag, attr)
                if flag.metavar is None and flag.choices is None:  # argparse's own default, not the dest
                    kw["metavar"] = flag.option(f.name).lstrip("-").upper().replace("-", "_")
            parser.add_argument(flag.option(f.name), **kw)


def values_from_args(args: argparse.Namespace, cls: type, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (e.g. a config file's settings) overridden by the flags given on the command line."""
    data = copy.deepcopy(dict(base or {}))
    for f in dataclasses.fields(cls):
        for i, flag in enumerate(f.metadata.get("flags", ())):
            v = getattr(args, _dest(f.name, i), None)
            if v is None:
                continue
            if flag.convert is not None:
                v = flag.convert(v)
            if not flag.path:
                data[f.name] = v
                continue
            top = data.get(f.name)
            node = top = dict(top) if isinstance(top, Mapping) else {}
            for key in flag.path[:-1]:
                child = node.get(key)
                node[key] = dict(child) if isinstance(child, Mapping) else {}
                node = node[key]
            node[flag.path[-1]] = v
            data[f.name] = top
    return data


def csv_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (an argparse type)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def int_list(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]`` (an argparse type)."""
    try:
        return [int(t) for t in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None


def height_width(text: str) -> list[int]:
    """``"200x180"`` or ``"200,180"`` -> ``[200, 180]``; one number means a square (an argparse type)."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not HxW (e.g. 200x200)") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not HxW (e.g. 200x200)")
    return values


def option_names(cls: type) -> list[str]:
    """Every ``--option`` the dataclass declares (for documentation and tests)."""
    return [flag.option(f.name) for f in dataclasses.fields(cls) for flag in f.metadata.get("flags", ())]


def iter_settings(cls: type) -> Iterable[str]:
    """The setting names of a dataclass (init fields)."""
    return (f.name for f in dataclasses.fields(cls) if f.init)


__all__ = ["Flag", "add_arguments", "csv_list", "deep_update", "fingerprint", "from_dict", "height_width", "int_list", "internal",
           "iter_settings",
           "load_yaml", "normalise_keys", "option_names", "setting", "values_from_args"]
