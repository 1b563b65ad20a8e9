"""Multi-view ensemble inference: :func:`segment_volume`.

The pipeline of dissertation 003 (see ``docs/segmentation.md`` §2), driven by the package manifest:

1. :func:`~neuroshift.segment.preprocess.prepare_inputs`: canonical reorientation, resampling to the
   model spacing, brain mask(s), z-score;
2. for each view of the package: 2D slices, crop/pad to ``crop_hw``, every network of the view in
   batches (slices inside the view's own slab are skipped: they are removed anyway), optional flip
   test-time augmentation (left-right flip of axial and coronal slices; each flipped pass counts as
   one more member of its view); slices back into the volume;
3. mean of the members of each view, equal-weight mean of the views
   (:mod:`~neuroshift.segment.fusion`); slab removal; ``probability > threshold``;
4. back to the input grid: nearest neighbour for the label, linear for probability and uncertainty;
   the outputs have the input's (first channel's) spacing, origin and direction;
5. volumes in mm³ (input grid), uncertainty (:mod:`~neuroshift.segment.uncertainty`), QC warnings
   (:mod:`~neuroshift.segment.qc`).

Devices: ``auto`` uses CUDA when available (slices in batches, ``torch.autocast`` float16 mixed
precision), else the CPU (float32). A CUDA out-of-memory error stops with a message suggesting
``--device cpu`` or a smaller ``--batch-size``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import InputError, NeuroShiftError
from ..io.volume import Volume
from ..progress import ProgressCallback, report
from . import fusion
from .preprocess import BrainMaskSpec, prepare_inputs
from .qc import hemisphere_counts, is_bilateral, midline_x_ras, qc_warnings
from .uncertainty import KINDS, uncertainty_map
from .views import LR_FLIP_AXIS, SLICING_AXIS, batches, check_view, view_slices

DEFAULT_BATCH = {"cuda": 64, "cpu": 16}
SEGMENT_NAMES = {"claustrum": "claustrum", "wmh": "WMH"}


class DeviceMemoryError(NeuroShiftError):
    """The GPU ran out of memory."""


@dataclass
class SegmentationResult:
    """Outputs of :func:`segment_volume`, all on the input (first channel's) grid."""

    label: Volume  # uint8 0/1
    probability: Volume  # float32 fused probability (0 in the removed slabs)
    uncertainty: Volume  # float32, see uncertainty_kind
    volumes_mm3: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    uncertainty_kind: str = "variance"
    segment_name: str = "segment"
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable summary (volumes, warnings, run information)."""
        return {"segment": self.segment_name, "volumes_mm3": self.volumes_mm3, "warnings": list(self.warnings),
                "uncertainty": self.uncertainty_kind, **self.info}


def segment_name(manifest: Mapping[str, Any]) -> str:
    """Name of the output segment: ``manifest["segment_name"]``, else ``claustrum`` / ``WMH`` / the task."""
    if manifest.get("segment_name"):
        return str(manifest["segment_name"])
    task = str(manifest.get("task", "segment"))
    base = task.lower().split("-")[0]
    return SEGMENT_NAMES.get(base, task)


def resolve_package(package: Any, device):
    """A loaded package from a :class:`LoadedPackage`, a package folder or a registered name."""
    if hasattr(package, "models") and hasattr(package, "manifest"):
        return package
    from .package import load_package
    from .registry import find_model

    return load_package(find_model(package), device)


def _module_device(model):
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(precision: str, device):
    """The autocast dtype for a precision choice, or None for float32.

    ``auto``: float16 on CUDA, float32 on the CPU; ``bf16`` works on both (on CPUs with AVX512-BF16/AMX it
    roughly halves CPU time, probabilities within ~2e-3 of float32); ``fp16`` needs CUDA.
    """
    import torch

    from ..errors import InputError

    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise InputError("--precision fp16 needs a CUDA device; on the CPU use bf16 or fp32")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def predict_slices(model, slices, *, device, batch_size: int, precision: str = "auto",
                   flip_axis: int | None = None, on_batch=None, as_tensor: bool = False):
    """Probabilities ``(N, H, W)`` of one network on ``(N, C, H, W)`` slices (optionally W-flipped).

    ``slices`` is a numpy array (copied batch by batch to ``device``) or a tensor already there.
    Returns a numpy array, or with ``as_tensor`` a float32 tensor on ``device``.
    """
    import torch

    amp_dtype = autocast_dtype(precision, device)
    out = torch.empty((slices.shape[0],) + tuple(slices.shape[2:]), dtype=torch.float32, device=device)
    n_batches = max(1, -(-slices.shape[0] // max(1, batch_size)))
    on_device = torch.is_tensor(slices)
    with torch.inference_mode():
        for b, sl in enumerate(batches(slices.shape[0], batch_size)):
            if on_device:
                x = slices[sl]
            else:
                x = torch.from_numpy(slices[sl])
                if device.type == "cuda":
                    x = x.pin_memory().to(device, non_blocking=True)
            if flip_axis is not None:
                x = torch.flip(x, dims=(flip_axis,))
            with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                if hasattr(model, "forward_logits"):
                    y = torch.sigmoid(model.forward_logits(x).float())
                else:
                    y = model(x).float()
            if flip_axis is not None:
                y = torch.flip(y, dims=(flip_axis,))
            out[sl] = y[:, 0]
            if on_batch is not None:
                on_batch((b + 1) / n_batches)
    return out if as_tensor else out.cpu().numpy()


def _overlap_slices(info):
    """``(src, dst)`` index pairs: original-slice pixels ``src`` correspond to model-input pixels ``dst``."""
    from .preprocess import _overlap

    src, dst = _overlap(info)
    return src, dst


def _view_of(volume_t, view: str):
    """The ``(N, H, W)`` view-ordered alias of a ``(K, J, I)`` tensor (writes go through)."""
    from .views import _ORDER

    return volume_t.permute(*_ORDER[view])


def segment_volume(inputs: Mapping[str, Volume] | Volume, package: Any, *, device: str = "auto",
                   tta: bool = False, progress: ProgressCallback | None = None, batch_size: int | None = None,
                   threshold: float | None = None, slab_fraction: float | Mapping[str, float] | None = None,
                   uncertainty: str = "variance", age_weeks: float | None = None,
                   brain_mask: Volume | None = None, mask_spec: BrainMaskSpec | None = None,
                   precision: str = "auto") -> SegmentationResult:
    """Segment a scan with a multi-view ensemble package.

    ``inputs``: ``{channel name: Volume}`` in any order (names as in ``manifest["input_channels"]``,
    case-insensitive; a single Volume is accepted for one-channel models); the first channel of the
    manifest is the reference grid of the outputs. ``package``: a
    :class:`~neuroshift.segment.package.LoadedPackage`, a package folder or a registered name.
    ``threshold``/``slab_fraction`` override the manifest; ``uncertainty`` is ``"variance"`` or
    ``"entropy"`` (see :mod:`neuroshift.segment.uncertainty`).
    """
    import torch

    from ..torch_device import resolve_device

    t0 = time.perf_counter()
    uncertainty = str(uncertainty).lower()
    if uncertainty not in KINDS:
        raise InputError(f"unknown uncertainty kind '{uncertainty}'; use {' or '.join(KINDS)}")
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    report(progress, 0.0, "loading model")
    pkg = resolve_package(package, dev)
    manifest = dict(pkg.manifest)
    for view_models in pkg.models.values():
        for i, m in enumerate(view_models):
            if _module_device(m) != dev:
                view_models[i] = m.to(dev)
            view_models[i].eval()
    if isinstance(inputs, Volume):
        inputs = {manifest["input_channels"][0]: inputs}
    report(progress, 0.02, "preprocessing")
    prepared = prepare_inputs(inputs, manifest, brain_mask_volume=brain_mask, mask_spec=mask_spec)
    pre = manifest.get("preprocessing", {}) or {}
    crop_hw = pre.get("crop_hw")
    views = [check_view(v) for v in manifest["views"]]
    fractions = fusion.slab_fractions(views, manifest.get("slab_fraction") if slab_fraction is None else slab_fraction)
    thr = float(manifest.get("threshold", 0.5) if threshold is None else threshold)
    bs = int(batch_size or DEFAULT_BATCH.get(dev.type, 16))
    shape = prepared.channels.shape[1:]

    passes = []
    for view in views:
        n_members = len(pkg.models[view]) * (2 if tta and LR_FLIP_AXIS[view] is not None else 1)
        passes.append(n_members)
    total_passes = max(1, sum(passes))
    done = 0
    t_model = 0.0
    # Accumulators live on the device (torch ops: multi-threaded on the CPU, no round trips on a GPU).
    fused_t = torch.zeros(shape, dtype=torch.float32, device=dev)
    want_var = uncertainty == "variance"
    sum_t = torch.zeros(shape, dtype=torch.float32, device=dev) if want_var else None
    sq_t = torch.zeros(shape, dtype=torch.float32, device=dev) if want_var else None
    n_all = 0
    if crop_hw is not None and min(int(v) for v in crop_hw) < 1:
        raise InputError(f"invalid crop size {crop_hw}")
    for view, n_members in zip(views, passes):
        axis = SLICING_AXIS[view]
        keep = fusion.kept_slices(shape[axis], fractions[view])
        if keep.size == 0:
            done += n_members
            continue
        lo, hi = int(keep[0]), int(keep[-1]) + 1
        slices, info = view_slices(prepared.channels, view, crop_hw, prepared.pad_value, indices=keep)
        view_sum = torch.zeros((hi - lo,) + tuple(info.original_hw), dtype=torch.float32, device=dev)
        model_input = slices
        if dev.type == "cuda":
            try:  # one copy per view, shared by all its networks
                model_input = torch.from_numpy(slices).to(dev)
            except (RuntimeError, MemoryError) as exc:
                if not _is_oom(exc):
                    raise
                torch.cuda.empty_cache()
        src, dst = _overlap_slices(info)
        flips = [None] + ([LR_FLIP_AXIS[view]] if tta and LR_FLIP_AXIS[view] is not None else [])
        for mi, model in enumerate(pkg.models[view]):
            for flip in flips:
                def on_batch(frac, _done=done, _mi=mi, _flip=flip):
                    report(progress, 0.05 + 0.85 * (_done + frac) / total_passes,
                           f"{view} network {_mi + 1}/{len(pkg.models[view])}" + (" (flipped)" if _flip else ""))
                ts = time.perf_counter()
                try:
                    pred = predict_slices(model, model_input, device=dev, batch_size=bs, precision=precision,
                                          flip_axis=flip, on_batch=on_batch, as_tensor=True)
                except (RuntimeError, MemoryError) as exc:
                    if dev.type == "cuda" and _is_oom(exc):
                        torch.cuda.empty_cache()
                        raise DeviceMemoryError(
                            f"the GPU ran out of memory with batches of {bs} slices of "
                            f"{slices.shape[-2]}x{slices.shape[-1]} pixels; use a smaller --batch-size "
                            f"(e.g. {max(1, bs // 4)}) or --device cpu") from None
                    raise
                t_model += time.perf_counter() - ts
                # undo crop/pad: the predicted pixels go back where they came from (cropped-away ones stay 0)
                full = torch.zeros_like(view_sum)
                full[:, src[0], src[1]] = pred[:, dst[0], dst[1]]
                view_sum += full
                if want_var:
                    _view_of(sum_t, view)[lo:hi] += full
                    _view_of(sq_t, view)[lo:hi] += full * full
                n_all += 1
                done += 1
        _view_of(fused_t, view)[lo:hi] += view_sum / float(n_members)
        del model_input, view_sum
    fused_t /= float(len(views))

    report(progress, 0.92, "fusing views")
    keep_mask = torch.from_numpy(fusion.slab_keep_mask(shape, views, fractions)).to(dev)
    fused_t = torch.where(keep_mask, fused_t, torch.zeros((), dtype=fused_t.dtype, device=dev))
    if want_var:
        mean_t = sum_t / max(n_all, 1)
        unc_t = torch.clamp(sq_t / max(n_all, 1) - mean_t * mean_t, min=0.0)
        del sum_t, sq_t, mean_t
    fused = fused_t.cpu().numpy()
    label_model = fusion.threshold(fused, thr)
    unc_model = unc_t.cpu().numpy() if want_var else uncertainty_map(uncertainty, probability=fused)

    report(progress, 0.95, "back to the input grid")
    label = prepared.to_input_grid(label_model, interpolation="nearest", dtype=np.uint8)
    probability = prepared.to_input_grid(fused, interpolation="linear")
    unc = prepared.to_input_grid(unc_model, interpolation="linear")
    label.meta = {}
    probability.meta = {}
    unc.meta = {}

    name = segment_name(manifest)
    voxel_mm3 = float(np.prod(label.spacing))
    volumes = {name: round(float(np.count_nonzero(label.data)) * voxel_mm3, 3)}
    if is_bilateral(manifest):
        left, right = hemisphere_counts(label, midline_x_ras(prepared))
        volumes[f"{name}_left"] = round(left * voxel_mm3, 3)
        volumes[f"{name}_right"] = round(right * voxel_mm3, 3)
    warnings = list(prepared.warnings) + qc_warnings(prepared, manifest, label, age_weeks=age_weeks)
    report(progress, 1.0, "done")
    info = {
        "model": str(getattr(pkg, "path", "") or manifest.get("description", "")),
        "task": manifest.get("task"), "views": views, "models_per_view": manifest.get("models_per_view"),
        "threshold": thr, "slab_fraction": fractions, "tta": bool(tta), "device": str(dev),
        "precision": str(autocast_dtype(precision, dev) or "float32").replace("torch.", ""), "batch_size": bs,
        "model_grid_shape_kji": list(shape), "model_spacing_mm": [round(float(s), 4) for s in prepared.grid.spacing],
        "resampled": prepared.resampled, "input_orientation": prepared.reorientation.original_code,
        "network_seconds": round(t_model, 3), "total_seconds": round(time.perf_counter() - t0, 3),
        "hemisphere_split": "left/right volumes split at the sagittal plane through the brain-mask centroid "
                            "(RAS x); not part of the papers" if f"{name}_left" in volumes else None,
    }
    return SegmentationResult(label, probability, unc, volumes, warnings, uncertainty, name,
                              {k: v for k, v in info.items() if v is not None})


def set_cpu_threads(n: int | None) -> None:
    """Limit torch's CPU threads (``NEUROSHIFT_THREADS`` or ``n``)."""
    import torch

    n = n or int(os.environ.get("NEUROSHIFT_THREADS", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)


__all__ = ["DeviceMemoryError", "SegmentationResult", "predict_slices", "resolve_package", "segment_name",
           "segment_volume"]
