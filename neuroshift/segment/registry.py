"""Finding model packages: a path, or a name among the installed and bundled packages.

Search order for a name (first hit wins):

1. each folder in ``$NEUROSHIFT_MODELS`` (``os.pathsep``-separated), as ``<folder>/<name>/``;
2. ``~/.neuroshift/models/<name>/`` (user packages, e.g. written by ``neuroshift models import-keras``);
3. ``neuroshift/data/models/<name>/`` (bundled with the engine, e.g. ``wmh-demo``).

A package is a folder with ``manifest.json`` (see :mod:`neuroshift.segment.package`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import UnreadableFileError
from .package import MANIFEST, read_manifest

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
#: Tasks of synthesis packages (LesionSynth, ``neuroshift.synthesis.inference``); defined here, in a module without
#: torch, so that listing packages and the Slicer module can read it cheaply.
SYNTHESIS_TASKS = ("diamondgan", "synthdir", "vt1c")


class ModelNotFoundError(UnreadableFileError):
    """No model package of that name or path exists."""


def user_models_dir() -> Path:
    """``~/.neuroshift/models`` (where user packages are installed by default)."""
    return Path.home() / ".neuroshift" / "models"


def search_dirs() -> list[tuple[str, Path]]:
    """``[(source, folder), ...]`` searched for named packages, in priority order."""
    dirs: list[tuple[str, Path]] = []
    for entry in os.environ.get("NEUROSHIFT_MODELS", "").split(os.pathsep):
        if entry.strip():
            dirs.append(("env", Path(entry.strip()).expanduser()))
    dirs.append(("user", user_models_dir()))
    dirs.append(("bundled", BUNDLED_DIR))
    return dirs


def find_model(name_or_path: str | os.PathLike) -> Path:
    """The folder of a model package given by path (folder or its ``manifest.json``) or by name."""
    p = Path(name_or_path).expanduser()
    if p.is_file() and p.name == MANIFEST:
        return p.parent
    if (p / MANIFEST).is_file():
        return p
    name = str(name_or_path)
    if p.exists():
        raise ModelNotFoundError(f"{p}: not a model package (no {MANIFEST} in it)")
    if not any(sep in name for sep in ("/", "\\")) and name not in ("", ".", ".."):
        for _, folder in search_dirs():
            candidate = folder / name
            if (candidate / MANIFEST).is_file():
                return candidate
    known = ", ".join(m["name"] for m in list_models()) or "none installed"
    raise ModelNotFoundError(f"model '{name}' not found (known models: {known}); give a package folder, "
                             "or install one with 'neuroshift models import-keras' or 'neuroshift train'")


def list_models() -> list[dict[str, Any]]:
    """Every package found in :func:`search_dirs` (a name shadowed by an earlier folder is listed once).

    Each entry: ``name, path, source (env|user|bundled), kind (segmentation|synthesis), task, demo, description,
    version``; segmentation packages add ``views, models_per_view, input_channels``, synthesis packages ``target,
    inputs``; ``error`` (a message) replaces them for a folder whose manifest is unreadable.
    """
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for source, folder in search_dirs():
        if not folder.is_dir():
            continue
        for sub in sorted(folder.iterdir()):
            if not (sub / MANIFEST).is_file() or sub.name in seen:
                continue
            seen.add(sub.name)
            entry: dict[str, Any] = {"name": sub.name, "path": str(sub), "source": source}
            synthesis = synthesis_manifest(sub)
            if synthesis is not None:  # a LesionSynth package shares the folders (neuroshift.synthesis.inference)
                entry.update(kind="synthesis", task=synthesis["task"], target=synthesis["target"],
                             inputs=list(synthesis["inputs"]), demo=bool(synthesis.get("demo", False)),
                             description=synthesis.get("description", ""), version=synthesis.get("version", ""))
                out.append(entry)
                continue
            try:
                m = read_manifest(sub)
                entry.update(kind="segmentation", task=m.get("task"), views=m.get("views"),
                             models_per_view=m.get("models_per_view"), input_channels=m.get("input_channels"),
                             demo=bool(m.get("demo", False)), description=m.get("description", ""),
                             version=m.get("version", ""))
            except Exception as exc:  # noqa: BLE001 - listing must survive a broken package
                entry["error"] = str(exc)
            out.append(entry)
    return out


def synthesis_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a synthesis (LesionSynth) package in ``folder``, or None for any other folder.

    A synthesis manifest names ``task`` (diamondgan, synthdir, vt1c), ``target`` and ``inputs``
    (:func:`neuroshift.synthesis.inference.save_package`); read as plain JSON so listing imports no torch."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(manifest, dict) and manifest.get("task") in SYNTHESIS_TASKS and "target" in manifest \
            and isinstance(manifest.get("inputs"), list):
        return manifest
    return None
