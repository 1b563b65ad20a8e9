"""Checkpoints of any number of named models and optimisers, written so a crash never leaves a broken one.

One folder per trained unit (an ensemble member, a GAN, ...)::

    model-<name>.safetensors       weights of each model (safetensors: nothing is unpickled on reading)
    optimizer-<name>.pt            each optimiser's state (tensors and numbers only; read back with
                                   ``torch.load(weights_only=True)``)
    best-<name>.safetensors        weights at the best validation epoch (when kept)
    extra.pt                       other state of the step, e.g. a GAN's image pool (tensors, numbers, lists)
    state.json                     epoch, step, fingerprint, history, ... - written LAST

Every file is written atomically (:mod:`neuroshift.io.atomic`), ``state.json`` after all others, so a
state always points at complete weights. Names are the keys the task's step gives its models and
optimisers (``{"model": unet}``, ``{"generator": g, "discriminator": d}``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import InputError, IntegrityError

STATE_FILE = "state.json"
EXTRA_FILE = "extra.pt"
#: Version of the folder layout above (recorded in ``state.json``).
CHECKPOINT_FORMAT = 2
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def model_file(name: str) -> str:
    """File name of a model's weights (names: letters, digits, ``_``, ``-``, ``.``; else ValueError)."""
    return f"model-{_check_name(name)}.safetensors"


def optimizer_file(name: str) -> str:
    return f"optimizer-{_check_name(name)}.pt"


def best_file(name: str) -> str:
    return f"best-{_check_name(name)}.safetensors"


def _check_name(name: str) -> str:
    if not _NAME.match(str(name)) or str(name) in (".", ".."):
        raise ValueError(f"checkpoint names use letters, digits, '_', '-' and '.', got {name!r}")
    return str(name)


def cpu_state_dict(module_or_sd: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy of a module's (or a state dict's) tensors."""
    sd = module_or_sd.state_dict() if isinstance(module_or_sd, torch.nn.Module) else module_or_sd
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu")
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written atomically."""
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def save_checkpoint(directory: str | Path, models: Mapping[str, torch.nn.Module],
                    optimizers: Mapping[str, torch.optim.Optimizer], state: Mapping[str, Any], *,
                    best: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
                    extra: Mapping[str, Any] | None = None) -> None:
    """Write the models' weights, the optimisers' states, optional best weights and extra state, then
    ``state.json``."""
    from safetensors.torch import save_file

    from ..io.atomic import atomic_path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        with atomic_path(directory / model_file(name)) as tmp:
            save_file(cpu_state_dict(model), str(tmp))
    for name, sd in (best or {}).items():
        with atomic_path(directory / best_file(name)) as tmp:
            save_file(cpu_state_dict(sd), str(tmp))
    for name, opt in optimizers.items():
        with atomic_path(directory / optimizer_file(name)) as tmp:
            torch.save(_to_cpu(opt.state_dict()), str(tmp))
    if extra is not None:
        with atomic_path(directory / EXTRA_FILE) as tmp:
            torch.save(_to_cpu(dict(extra)), str(tmp))
    write_json_atomic(directory / STATE_FILE, {**dict(state), "format": CHECKPOINT_FORMAT,
                                               "models": sorted(models), "optimizers": sorted(optimizers)})


def has_checkpoint(directory: str | Path) -> bool:
    return (Path(directory) / STATE_FILE).is_file()


def load_checkpoint(directory: str | Path, models: Mapping[str, torch.nn.Module],
                    optimizers: Mapping[str, torch.optim.Optimizer], device: Any = "cpu") -> dict[str, Any] | None:
    """Load a checkpoint into ``models``/``optimizers`` (same names as saved); ``None`` when there is none.

    Raises:
        InputError: the checkpoint has another layout or other model/optimiser names than this run.
        IntegrityError: a file of the checkpoint is missing or unreadable.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if not has_checkpoint(directory):
        return None
    try:
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{directory}: cannot read {STATE_FILE} ({exc}); remove the folder to start again") \
            from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{directory}: the checkpoint was written by an older neuroshift (layout "
                         f"{state.get('format', 1)}, this one reads {CHECKPOINT_FORMAT}); remove the work folder "
                         "to start again")
    if sorted(state.get("models", [])) != sorted(models) or sorted(state.get("optimizers", [])) != sorted(optimizers):
        raise InputError(f"{directory}: the checkpoint holds models {state.get('models')} and optimisers "
                         f"{state.get('optimizers')}, this run has {sorted(models)} and {sorted(optimizers)}")
    try:
        for name, model in models.items():
            model.load_state_dict(load_file(str(directory / model_file(name)), device="cpu"), strict=True)
        for name, opt in optimizers.items():
            path = str(directory / optimizer_file(name))
            opt.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise IntegrityError(f"{directory}: cannot read the checkpoint ({exc}); remove the folder to start "
                             "again") from None
    return state


def load_extra(directory: str | Path) -> dict[str, Any] | None:
    """The step's extra state saved with the checkpoint (``None`` when there is none).

    Raises:
        IntegrityError: the file exists but cannot be read.
    """
    path = Path(directory) / EXTRA_FILE
    if not path.is_file():
        return None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise IntegrityError(f"{path}: cannot read the extra state ({exc})") from None


def load_best(directory: str | Path, names: list[str] | tuple[str, ...]) -> dict[str, dict[str, torch.Tensor]] | None:
    """The best-epoch weights saved beside a checkpoint (``None`` when any is missing).

    Raises:
        IntegrityError: a best-weights file exists but cannot be read.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    paths = {n: directory / best_file(n) for n in names}
    if not all(p.is_file() for p in paths.values()):
        return None
    try:
        return {n: load_file(str(p), device="cpu") for n, p in paths.items()}
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise IntegrityError(f"{directory}: cannot read the best weights ({exc})") from None


__all__ = ["CHECKPOINT_FORMAT", "EXTRA_FILE", "STATE_FILE", "best_file", "cpu_state_dict", "has_checkpoint", "load_best",
           "load_checkpoint", "load_extra", "model_file", "optimizer_file", "save_checkpoint", "write_json_atomic"]
