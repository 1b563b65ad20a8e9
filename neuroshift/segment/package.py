"""Model packages: a folder with ``manifest.json`` and one ``.safetensors`` file per network.

Layout::

    my-model/
      manifest.json
      axial_0.safetensors  axial_1.safetensors  axial_2.safetensors
      coronal_0.safetensors ...

Manifest keys (``format`` = :data:`FORMAT`):

* ``task`` (``"claustrum"``, ``"wmh"`` or a user task), ``description``, ``version`` (model version),
  ``demo`` (true for toy models that must not be used clinically);
* ``architecture``: ``{"name": "unet2d", "params": {...}}`` (the :func:`~neuroshift.segment.unet.build_unet`
  config); unknown names are refused;
* ``input_channels``: ordered channel names, e.g. ``["FLAIR", "T1"]``;
* ``views`` (e.g. ``["axial", "coronal"]``), ``models_per_view`` (int), ``weights``:
  ``{view: [file, ...]}`` (default ``<view>_<i>.safetensors``);
* ``preprocessing``: ``{"orientation", "spacing_mm", "crop_hw", "zscore", "pad_value", "brain_mask", ...}``
  (the orientation and preprocessing the networks' training data had: ``orientation`` ``"RAS"`` for our
  own packages, ``"LPS"`` or ``"stored"`` for the authors' releases, see
  :mod:`~neuroshift.segment.preprocess`); ``threshold``; ``slab_fraction`` (fraction of slices removed
  at each end of each slicing axis); ``slab_fill`` (``"zero"`` or ``"view-min"``, see
  :data:`~neuroshift.segment.fusion.SLAB_FILLS`); ``settings_source`` (imported packages: which
  release each setting follows);
* ``training``: provenance (data, recipe, seeds, software, date, source of imported weights);
* ``files``: ``{file name: SHA-256 hex}`` of every weight file (and any other file shipped).

Loading verifies every SHA-256 before reading a byte of weights (:class:`~neuroshift.errors.IntegrityError`
naming the file), refuses file names that leave the folder (:class:`~neuroshift.errors.PathEscapeError`)
and reads tensors with ``safetensors`` only: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from ..errors import InputError, IntegrityError, PathEscapeError, UnreadableFileError
from ..io.atomic import atomic_dir

FORMAT = "neuroshift-model/1"
MANIFEST = "manifest.json"
SUPPORTED_ARCHITECTURES = ("unet2d",)
REQUIRED_KEYS = ("task", "architecture", "input_channels", "views", "models_per_view", "files")


class UnknownArchitectureError(InputError):
    """A package names a network architecture this version cannot build."""


@dataclass
class ModelPackage:
    """A manifest plus the state dicts of its networks, ``{view: [state_dict, ...]}`` (not yet built)."""

    manifest: dict[str, Any]
    state_dicts: dict[str, list[dict]] = field(default_factory=dict)


@dataclass
class LoadedPackage:
    """A verified package with its networks built, on ``device`` and in eval mode."""

    manifest: dict[str, Any]
    models: dict[str, list]  # view -> [torch.nn.Module, ...]
    path: Path | None = None

    @property
    def task(self) -> str:
        return str(self.manifest.get("task", ""))

    @property
    def views(self) -> list[str]:
        return list(self.manifest["views"])

    @property
    def input_channels(self) -> list[str]:
        return list(self.manifest["input_channels"])

    @property
    def threshold(self) -> float:
        return float(self.manifest.get("threshold", 0.5))

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.manifest.get("preprocessing", {}))


# ---------------------------------------------------------------- hashing and paths
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def safe_member(root: str | os.PathLike, name: str) -> Path:
    """``root / name`` for a manifest file name, refusing names that leave ``root``.

    Absolute paths, drive letters, backslashes, ``..`` components and symlinks that resolve outside
    ``root`` raise :class:`PathEscapeError`.
    """
    root = Path(root)
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name or ":" in name:
        raise PathEscapeError(f"manifest file name {name!r} is not a plain relative path inside {root}")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts) or name.startswith("/"):
        raise PathEscapeError(f"manifest file name {name!r} points outside the package folder {root}")
    target = root.joinpath(*pure.parts)
    try:
        target.resolve().relative_to(root.resolve())
    except ValueError:
        raise PathEscapeError(f"manifest file {name!r} resolves outside the package folder {root}") from None
    return target


# ---------------------------------------------------------------- manifest
def weight_files(manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{view: [weight file names]}`` of a manifest (explicit ``weights`` or the default naming)."""
    views = list(manifest["views"])
    n = int(manifest["models_per_view"])
    weights = manifest.get("weights")
    if weights is None:
        return {v: [f"{v}_{i}.safetensors" for i in range(n)] for v in views}
    if not isinstance(weights, Mapping) or set(weights) != set(views):
        raise IntegrityError("manifest 'weights' must list the weight files of exactly the views in 'views'")
    out = {v: [str(f) for f in weights[v]] for v in views}
    for v, files in out.items():
        if len(files) != n:
            raise IntegrityError(f"manifest: view '{v}' lists {len(files)} weight files, models_per_view is {n}")
    return out


def validate_manifest(manifest: Mapping[str, Any], where: str = "manifest") -> None:
    """Check the keys and types that loading relies on; raise :class:`IntegrityError` on the first problem."""
    if not isinstance(manifest, Mapping):
        raise IntegrityError(f"{where}: expected a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise IntegrityError(f"{where}: missing key(s) {', '.join(missing)}")
    fmt = manifest.get("format", FORMAT)
    if fmt != FORMAT:
        raise IntegrityError(f"{where}: unsupported package format '{fmt}' (this version reads {FORMAT})")
    arch = manifest["architecture"]
    if not isinstance(arch, Mapping) or "name" not in arch:
        raise IntegrityError(f"{where}: 'architecture' must be an object with a 'name'")
    if arch["name"] not in SUPPORTED_ARCHITECTURES:
        raise UnknownArchitectureError(
            f"{where}: unknown architecture '{arch['name']}'; this version builds {', '.join(SUPPORTED_ARCHITECTURES)}")
    if not isinstance(arch.get("params", {}), Mapping):
        raise IntegrityError(f"{where}: 'architecture.params' must be an object")
    views = manifest["views"]
    if not isinstance(views, list) or not views or not all(isinstance(v, str) and v for v in views):
        raise IntegrityError(f"{where}: 'views' must be a non-empty list of names")
    if len(set(views)) != len(views):
        raise IntegrityError(f"{where}: 'views' repeats a name")
    n = manifest["models_per_view"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise IntegrityError(f"{where}: 'models_per_view' must be a positive integer")
    channels = manifest["input_channels"]
    if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
        raise IntegrityError(f"{where}: 'input_channels' must be a non-empty list of names")
    params_in = arch.get("params", {}).get("in_channels")
    if params_in is not None and params_in != len(channels):
        raise IntegrityError(f"{where}: {len(channels)} input channel name(s) but the network takes {params_in}")
    files = manifest["files"]
    if not isinstance(files, Mapping) or not all(
            isinstance(h, str) and len(h) == 64 and all(c in "0123456789abcdef" for c in h.lower())
            for h in files.values()):
        raise IntegrityError(f"{where}: 'files' must map file names to SHA-256 hex digests")
    for view, names in weight_files(manifest).items():
        for name in names:
            if name not in files:
                raise IntegrityError(f"{where}: weight file '{name}' of view '{view}' has no SHA-256 in 'files'")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``manifest.json`` of a package folder (or the manifest file itself)."""
    root = _package_root(path)
    mpath = root / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnreadableFileError(f"{root}: not a model package (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{mpath}: cannot read the manifest ({exc})") from None
    validate_manifest(manifest, str(mpath))
    return manifest


def _package_root(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.parent if p.name == MANIFEST and p.is_file() else p


def verify_package(path: str | os.PathLike) -> dict[str, Any]:
    """Validate the manifest and every file's SHA-256; return the manifest.

    Raises :class:`PathEscapeError` for a file name outside the folder, :class:`IntegrityError`
    naming the first file that is missing or whose hash differs.
    """
    root = _package_root(path)
    manifest = read_manifest(root)
    for name, expected in manifest["files"].items():
        target = safe_member(root, name)
        if not target.is_file():
            raise IntegrityError(f"{root}: file '{name}' listed in the manifest is missing")
        actual = sha256_file(target)
        if actual.lower() != expected.lower():
            raise IntegrityError(
                f"{target}: SHA-256 mismatch (manifest {expected[:12]}..., file {actual[:12]}...); "
                "the file is corrupt or was changed after packaging")
    return manifest


# ---------------------------------------------------------------- build, save, load
def build_model(manifest: Mapping[str, Any]):
    """Build one (untrained) network of the package's architecture."""
    arch = manifest["architecture"]
    if arch.get("name") not in SUPPORTED_ARCHITECTURES:
        raise UnknownArchitectureError(f"unknown architecture '{arch.get('name')}'")
    from .unet import build_unet

    try:
        return build_unet(dict(arch.get("params", {})))
    except (TypeError, ValueError) as exc:
        raise IntegrityError(f"manifest architecture parameters are invalid: {exc}") from None


def _state_dict(model_or_sd) -> dict:
    import torch

    sd = model_or_sd.state_dict() if hasattr(model_or_sd, "state_dict") else dict(model_or_sd)
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sd.items()}


def save_package(path_dir: str | os.PathLike, manifest: Mapping[str, Any],
                 models: Mapping[str, list]) -> Path:
    """Write a package atomically (the folder appears complete or not at all); return its path.

    ``models`` maps each view to its networks (``nn.Module`` or state dicts), in ensemble order.
    ``architecture`` is taken from the first network's ``config()`` (modules) or must be given (state
    dicts). Filled in when absent: ``views``,
    ``models_per_view``, ``format``, ``version`` ("1"), ``demo`` (false); ``files`` and ``weights``
    are always (re)computed. Every state dict must load into the manifest's architecture.
    """
    from safetensors.torch import save_file

    if not models:
        raise InputError("save_package: no networks given")
    counts = {v: len(ms) for v, ms in models.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise InputError(f"save_package: every view needs the same positive number of networks, got {counts}")
    manifest = json.loads(json.dumps(dict(manifest)))  # deep copy, and proves it is JSON
    first = next(iter(models.values()))[0]
    if hasattr(first, "config"):  # record the network's full configuration (not just a preset name)
        manifest["architecture"] = {"name": "unet2d", "params": first.config()}
    elif "architecture" not in manifest:
        raise InputError("save_package: give manifest['architecture'] when passing state dicts")
    manifest.setdefault("format", FORMAT)
    manifest.setdefault("version", "1")
    manifest.setdefault("demo", False)
    manifest.setdefault("description", "")
    manifest.setdefault("training", {})
    manifest["views"] = list(models)
    manifest["models_per_view"] = next(iter(counts.values()))
    if "input_channels" not in manifest:
        n_in = manifest["architecture"].get("params", {}).get("in_channels", 1)
        manifest["input_channels"] = [f"channel{i}" for i in range(int(n_in))]
    manifest["weights"] = {v: [f"{v}_{i}.safetensors" for i in range(len(ms))] for v, ms in models.items()}
    for v in models:
        safe_member(Path("."), f"{v}_0.safetensors")  # view names become file names
    reference = build_model(manifest)
    expected_keys = {k: tuple(t.shape) for k, t in reference.state_dict().items()}
    target = Path(path_dir)
    with atomic_dir(target) as tmp:
        files: dict[str, str] = {}
        for view, networks in models.items():
            for i, net in enumerate(networks):
                sd = _state_dict(net)
                got = {k: tuple(t.shape) for k, t in sd.items()}
                if got != expected_keys:
                    raise InputError(f"save_package: network {i} of view '{view}' does not match the architecture "
                                     f"{manifest['architecture']}")
                name = manifest["weights"][view][i]
                save_file(sd, str(tmp / name), metadata={"format": "pt", "view": view, "index": str(i),
                                                         "task": str(manifest.get("task", ""))})
                files[name] = sha256_file(tmp / name)
        manifest["files"] = files
        validate_manifest(manifest, "save_package")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return target


def load_state_dicts(path: str | os.PathLike) -> ModelPackage:
    """Verify a package and read its state dicts (CPU tensors) without building networks."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = _package_root(path)
    manifest = verify_package(root)
    state_dicts: dict[str, list[dict]] = {}
    for view, names in weight_files(manifest).items():
        state_dicts[view] = []
        for name in names:
            try:
                state_dicts[view].append(load_file(str(safe_member(root, name)), device="cpu"))
            except (SafetensorError, OSError, ValueError) as exc:
                raise IntegrityError(f"{root / name}: not a readable safetensors file ({exc})") from None
    return ModelPackage(manifest, state_dicts)


def load_package(path_dir: str | os.PathLike, device: Any = "cpu") -> LoadedPackage:
    """Verify (hashes, names, architecture) and load a package; networks are in eval mode on ``device``.

    ``device`` may be a ``torch.device`` or ``"cpu"``, ``"cuda"``, ``"auto"``.
    """
    import torch

    from ..torch_device import resolve_device

    dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    package = load_state_dicts(path_dir)
    models: dict[str, list] = {}
    for view, sds in package.state_dicts.items():
        models[view] = []
        for i, sd in enumerate(sds):
            net = build_model(package.manifest)
            try:
                net.load_state_dict(sd, strict=True)
            except RuntimeError as exc:
                raise IntegrityError(f"{path_dir}: weights {i} of view '{view}' do not fit the architecture: "
                                     f"{str(exc).splitlines()[0]}") from None
            models[view].append(net.to(dev).eval())
    return LoadedPackage(package.manifest, models, _package_root(path_dir))
