"""Choosing where torch runs: CUDA when available, else the CPU."""

from __future__ import annotations

from .errors import InputError


def resolve_device(name: str = "auto"):
    """Return a ``torch.device`` for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    ``auto`` picks CUDA when a GPU is visible and the CPU otherwise; asking for
    ``cuda`` on a machine without one is an error with a clear message.
    """
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda was requested but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device '{name}'; use auto, cpu or cuda")
