"""The regression U-Net of paper 001 and its model package.

Network: :class:`neuroshift.segment.unet.UNet2D` (one U-Net family in the house) with 35 input channels
(the frames), encoder depth 3 (``len(encoder) - 1`` poolings) and 5 linear outputs (``forward_logits``):
T1, T2*, NAWM, GM and lesion probability. Targets are scaled for training (:data:`OUTPUT_SCALE`):
T1 / 1000 ms, T2* / 100 ms, probabilities / 100 %; :func:`to_maps` undoes it, clips T1/T2* at 0 and the
probabilities to [0, 100] %.

Input normalisation (:func:`normalise_frames`): the frames are divided by the 99th percentile of the
voxel-wise frame norm over non-zero voxels of the volume, so the network sees PD- and gain-free signals.

Package: a folder with ``manifest.json`` (architecture, schedule and its hash, normalisation, training
record, honest notes) and ``model.safetensors``; written atomically, read with safetensors only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, IntegrityError, UnreadableFileError
from .schedule import Schedule, require_same_schedule, schedule_from_dict

FORMAT = "neuroshift-mrf-unet"
VERSION = 1
OUTPUT_NAMES = ("T1", "T2star", "NAWM", "GM", "lesion")
OUTPUT_UNITS = {"T1": "ms", "T2star": "ms", "NAWM": "%", "GM": "%", "lesion": "%"}
#: Training target = map / scale.
OUTPUT_SCALE = {"T1": 1000.0, "T2star": 100.0, "NAWM": 100.0, "GM": 100.0, "lesion": 100.0}
#: Encoder depth 3: four encoder widths, three decoder widths.
DEFAULT_ARCH = {"in_channels": 35, "encoder": [16, 32, 64, 128], "decoder": [64, 32, 16], "first_kernel": 3,
                "kernel": 3, "bottleneck_kernel": 3, "out_channels": 5}
MODEL_FILE = "model.safetensors"
MANIFEST = "manifest.json"


def build_model(arch: dict[str, Any] | None = None):
    from ..segment.unet import build_unet

    cfg = {**DEFAULT_ARCH, **(arch or {})}
    cfg["encoder"], cfg["decoder"] = tuple(cfg["encoder"]), tuple(cfg["decoder"])
    return build_unet(cfg)


def normalisation_scale(frames: np.ndarray) -> float:
    """99th percentile of the voxel-wise frame norm over non-zero voxels (frames last); 1 if all zero."""
    n = np.linalg.norm(np.asarray(frames, dtype=np.float32), axis=-1)
    nz = n[n > 0]
    return float(np.percentile(nz, 99)) if nz.size else 1.0


def normalise_frames(frames: np.ndarray, scale: float | None = None) -> np.ndarray:
    f = np.asarray(frames, dtype=np.float32)
    return f / np.float32(scale if scale is not None else normalisation_scale(f))


def to_maps(raw: np.ndarray) -> dict[str, np.ndarray]:
    """Network outputs ``(..., 5, H, W)`` (channel axis -3) to maps in ms and percent."""
    out = {}
    for c, name in enumerate(OUTPUT_NAMES):
        v = np.asarray(raw[..., c, :, :], dtype=np.float32) * np.float32(OUTPUT_SCALE[name])
        out[name] = np.clip(v, 0.0, 100.0) if OUTPUT_UNITS[name] == "%" else np.maximum(v, 0.0)
    return out


def predict_slices(model, x: np.ndarray, *, device=None, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Maps of a stack of normalised slices ``(n, 35, H, W)``; a slice with all frames 0 is 0 everywhere."""
    import torch

    model.eval()
    dev = next(model.parameters()).device if device is None else torch.device(device)
    raw = np.zeros((x.shape[0], 5) + tuple(x.shape[-2:]), dtype=np.float32)
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            raw[i:i + batch_size] = model.forward_logits(torch.from_numpy(np.ascontiguousarray(
                x[i:i + batch_size], dtype=np.float32)).to(dev)).float().cpu().numpy()
    maps = to_maps(raw)
    background = ~np.any(x != 0, axis=1)
    return {k: np.where(background, 0.0, v).astype(np.float32) for k, v in maps.items()}


def predict_volume(model, frames: np.ndarray, *, device=None, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Maps ``(K, J, I)`` of a frame volume ``(K, J, I, 35)`` (frames last), slice by slice along K."""
    x = np.moveaxis(normalise_frames(frames), -1, 1)  # (K, 35, J, I)
    return predict_slices(model, x, device=device, batch_size=batch_size)


def save_package(model, target: str | os.PathLike, schedule: Schedule, manifest_extra: dict[str, Any]) -> Path:
    """Write ``manifest.json`` + ``model.safetensors`` into the folder ``target`` atomically (verified)."""
    import torch
    from safetensors.torch import save_file

    from ..io.atomic import atomic_dir

    arch = dict(model.config())
    arch = {k: list(v) if isinstance(v, tuple) else v for k, v in arch.items()}
    manifest = {"format": FORMAT, "version": VERSION, "architecture": arch, "outputs": list(OUTPUT_NAMES),
                "output_units": OUTPUT_UNITS, "output_scale": OUTPUT_SCALE, "schedule": schedule.to_json(),
                "schedule_hash": schedule.hash,
                "input_normalisation": "frames / 99th percentile of the voxel-wise frame norm over non-zero voxels",
                **manifest_extra}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}

    def verify(tmp: Path) -> None:
        _, back = load_package(tmp)
        for k, v in back.state_dict().items():
            if not torch.equal(v, state[k]):
                raise IntegrityError(f"{target}: weights read back differ ({k})")

    with atomic_dir(target, verify=verify) as tmp:
        save_file(state, str(tmp / MODEL_FILE))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return Path(target)


def load_package(folder: str | os.PathLike, schedule: Schedule | None = None, *, device=None):
    """``(manifest, model)`` of a package; with ``schedule``, refuse a model made for another schedule."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(folder)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnreadableFileError(f"{root}: no {MANIFEST}; not an MRF model package") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UnreadableFileError(f"{root / MANIFEST}: not valid JSON") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise UnreadableFileError(f"{root}: not an MRF U-Net package ({FORMAT} v{VERSION})")
    sched = schedule_from_dict(manifest["schedule"], f"{root} (schedule)")
    if sched.hash != manifest.get("schedule_hash"):
        raise IntegrityError(f"{root}: the stored schedule does not match its recorded hash")
    if schedule is not None:
        require_same_schedule(manifest["schedule_hash"], schedule, f"model {root}")
    model = build_model(manifest["architecture"])
    if model.config().get("in_channels") != len(sched):
        raise IntegrityError(f"{root}: the network takes {model.config().get('in_channels')} frames, the schedule has "
                             f"{len(sched)}")
    try:
        state = load_file(str(root / MODEL_FILE))
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise IntegrityError(f"{root / MODEL_FILE}: not a readable safetensors file ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise IntegrityError(f"{root}: weights do not fit the architecture ({str(exc)[:200]})") from None
    if device is not None:
        model.to(device)
    model.eval()
    return manifest, model


def check_frames(frames: np.ndarray, schedule: Schedule) -> None:
    if frames.ndim != 4 or frames.shape[-1] != len(schedule):
        raise InputError(f"frames of shape {frames.shape} do not have the schedule's {len(schedule)} frames last")


__all__ = ["DEFAULT_ARCH", "OUTPUT_NAMES", "OUTPUT_SCALE", "OUTPUT_UNITS", "build_model", "check_frames",
           "load_package", "normalisation_scale", "normalise_frames", "predict_slices", "predict_volume",
           "save_package", "to_maps"]
