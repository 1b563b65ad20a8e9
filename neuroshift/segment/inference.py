"""Multi-view ensemble inference: :func:`segment_volume`.

The pipeline of dissertation 003 (see ``docs/segmentation.md`` §2), driven by the package manifest:

1. :func:`~neuroshift.segment.preprocess.prepare_inputs`: canonical reorientation, resampling to the
   model spacing, brain mask(s), z-score;
2. for each view of the package: 2D slices, crop/pad to ``crop_hw``, every network of the view in
   batches (slices inside the view's own slab are skipped: they are removed anyway; bit-identical
   slices, e.g. all-background ones, are predicted once and the result reused), optional flip
   test-time augmentation (left-right flip of axial and coronal slices; each flipped pass counts as
   one more member of its view); slices back into the volume;
3. mean of the members of each view, equal-weight mean of the views
   (:mod:`~neuroshift.segment.fusion`); slab rule (``slab_fill``); ``probability > threshold``;
4. back to the input grid: nearest neighbour for the label, linear for probability and uncertainty;
   the outputs have the input's (first channel's) spacing, origin and direction;
5. volumes in mm³ (input grid), uncertainty (:mod:`~neuroshift.segment.uncertainty`), QC warnings
   (:mod:`~neuroshift.segment.qc`), run information.

Named steps: :func:`_plan` (settings), :func:`_predict_view` (one view's networks), :func:`_fuse`,
:func:`_volumes`, :func:`_run_info`. Speed: channels-last memory, ``torch.inference_mode`` (on the CPU the
U-Net then runs convolution + ReLU as one oneDNN call: :func:`~neuroshift.segment.unet.fused_inference`), reduced
precision where native (:mod:`~neuroshift.segment.precision`; its agreement with float32 is measured
in the run and recorded), CUDA batches sized to the free memory; CPU threads follow
:mod:`neuroshift.threads`. A CUDA out-of-memory error stops with a message suggesting ``--device cpu``
or a smaller ``--batch-size``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import InputError, NeuroShiftError
from ..heap import retained_heap
from ..io.volume import Volume
from ..progress import ProgressCallback, report
from . import fusion
from .precision import PRECISIONS, agreement, autocast_dtype, dtype_name
from .predict import cuda_batch_size, is_oom, predict_slices, prepare_models
from .preprocess import BrainMaskSpec, crop_overlap, prepare_inputs
from .qc import hemisphere_counts, is_bilateral, midline_x_ras, qc_warnings
from .uncertainty import KINDS, uncertainty_map
from .views import LR_FLIP_AXIS, SLICING_AXIS, VIEW_ORDER, check_view, identical_slices, view_slices

#: Slices per network call: CPU default (4 beat 16 by ~20 % in float32 on 180x180 claustrum slices: the
#: activations stay in cache); on CUDA the batch is sized to the free memory (:func:`~neuroshift.segment.predict.cuda_batch_size`).
DEFAULT_BATCH = {"cuda": 64, "cpu": 4}
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


def _view_of(volume_t, view: str):
    """The ``(N, H, W)`` view-ordered alias of a ``(K, J, I)`` tensor (writes go through)."""
    return volume_t.permute(*VIEW_ORDER[view])


@dataclass
class _Plan:
    """What one run does: views, slabs, threshold, batch, precision, slab rule, uncertainty."""

    views: list[str]
    fractions: dict[str, float]
    threshold: float
    batch_size: int
    precision: str
    amp_dtype: Any
    crop_hw: Any
    shape: tuple[int, int, int]
    slab_fill: str
    tta: bool
    uncertainty: str


def _plan(pkg, prepared, dev, *, tta, batch_size, threshold, slab_fraction, uncertainty, precision) -> _Plan:
    """Resolve the run's settings from the manifest and the caller's overrides (errors before any work)."""
    manifest = pkg.manifest
    pre = manifest.get("preprocessing", {}) or {}
    crop_hw = pre.get("crop_hw")
    if crop_hw is not None and min(int(v) for v in crop_hw) < 1:
        raise InputError(f"invalid crop size {crop_hw}")
    views = [check_view(v) for v in manifest["views"]]
    fractions = fusion.slab_fractions(views, manifest.get("slab_fraction") if slab_fraction is None else slab_fraction)
    slab_fill = str(manifest.get("slab_fill", "zero")).lower()
    if slab_fill not in fusion.SLAB_FILLS:
        raise InputError(f"unknown slab_fill '{slab_fill}' in the manifest; use {' or '.join(fusion.SLAB_FILLS)}")
    amp = autocast_dtype(precision, dev, int8=True)
    if batch_size:
        bs = int(batch_size)
    elif dev.type == "cuda":
        bs = cuda_batch_size(pkg, crop_hw or prepared.channels.shape[-2:], prepared.channels.shape[0], amp)
    else:
        bs = DEFAULT_BATCH["cpu"]
    thr = float(manifest.get("threshold", 0.5) if threshold is None else threshold)
    return _Plan(views, fractions, thr, bs, precision, amp, crop_hw, tuple(prepared.channels.shape[1:]), slab_fill,
                 bool(tta), uncertainty)


@dataclass
class _Accumulators:
    """Device tensors on the model grid: fused probability, and member sum / sum of squares for the variance."""

    fused: Any
    member_sum: Any = None
    member_sq: Any = None
    n_members: int = 0
    network_seconds: float = 0.0
    passes_done: int = 0
    precision_check: dict | None = None
    slices: dict = field(default_factory=dict)  # per view: slices kept, predicted, reused (bit-identical)


def _run_network(model, model_input, plan: _Plan, dev, flip, on_batch):
    """One network pass on a view's slices; a CUDA out-of-memory error becomes :class:`DeviceMemoryError`."""
    import torch

    try:
        return predict_slices(model, model_input, device=dev, batch_size=plan.batch_size, precision=plan.precision,
                              flip_axis=flip, on_batch=on_batch, as_tensor=True)
    except (RuntimeError, MemoryError) as exc:
        if dev.type == "cuda" and is_oom(exc):
            torch.cuda.empty_cache()
            raise DeviceMemoryError(
                f"the GPU ran out of memory with batches of {plan.batch_size} slices of "
                f"{model_input.shape[-2]}x{model_input.shape[-1]} pixels; use a smaller --batch-size "
                f"(e.g. {max(1, plan.batch_size // 4)}) or --device cpu") from None
        raise


#: Slices of the first network re-run in float32 to measure a reduced precision's agreement (at 1/3 and 2/3
#: of the view's kept slices, where there is tissue; 2 float32 slices cost ~2 % of a bf16 3+3 claustrum run).
CHECK_SLICES = 2


def _check_precision(model, model_input, pred, plan: _Plan, dev, dst) -> dict:
    """Reduced precision vs float32 on :data:`CHECK_SLICES` interior slices of the first network (same run),
    over the pixels that go back into the volume (``dst``: not the padding)."""
    n = int(model_input.shape[0])
    idx = np.unique(np.floor(np.arange(1, CHECK_SLICES + 1) * n / (CHECK_SLICES + 1)).astype(int)).tolist()
    ref = predict_slices(model, model_input[idx], device=dev, batch_size=len(idx), precision="fp32", as_tensor=True)
    low = pred[idx]
    return {**agreement(low[:, dst[0], dst[1]], ref[:, dst[0], dst[1]], plan.threshold), "slices": len(idx),
            "of_slices": n}


def _predict_view(view: str, models, prepared, plan: _Plan, acc: _Accumulators, dev, progress,
                  total_passes: int) -> None:
    """Every network (and flipped pass) of one view on its kept slices; its mean goes into ``acc.fused``.

    Pixels the view did not predict (its removed slabs, cropped-away borders) get 0, or with
    ``slab_fill="view-min"`` the minimum of the view's mean probability over its predicted slices,
    as the authors' claustrum release does (``crop_or_pad`` in ``test_two_views.py`` fills with
    ``np.min`` of the prediction).
    """
    import torch

    flips = [None] + ([LR_FLIP_AXIS[view]] if plan.tta and LR_FLIP_AXIS[view] is not None else [])
    n_members = len(models) * len(flips)
    keep = fusion.kept_slices(plan.shape[SLICING_AXIS[view]], plan.fractions[view])
    if keep.size == 0:
        acc.passes_done += n_members
        return
    lo, hi = int(keep[0]), int(keep[-1]) + 1
    slices, info = view_slices(prepared.channels, view, plan.crop_hw, prepared.pad_value, indices=keep)
    first, inverse = identical_slices(slices)  # bit-identical slices: predicted once (exact)
    acc.slices[view] = {"kept": int(len(slices)), "predicted": int(len(first)),
                        "reused_identical": int(len(slices) - len(first))}
    model_input = slices if len(first) == len(slices) else slices[first]
    if dev.type == "cuda":
        try:  # one copy per view, shared by all its networks
            model_input = torch.from_numpy(slices).to(dev)
        except (RuntimeError, MemoryError) as exc:
            if not is_oom(exc):
                raise
            torch.cuda.empty_cache()
    src, dst = crop_overlap(info)
    crop_sum = torch.zeros((hi - lo,) + tuple(slices.shape[-2:]), dtype=torch.float32, device=dev)
    for mi, model in enumerate(models):
        for flip in flips:
            def on_batch(frac, _done=acc.passes_done, _mi=mi, _flip=flip):
                report(progress, 0.05 + 0.85 * (_done + frac) / total_passes,
                       f"{view} network {_mi + 1}/{len(models)}" + (" (flipped)" if _flip else ""))
            ts = time.perf_counter()
            pred = _run_network(model, model_input, plan, dev, flip, on_batch)
            acc.network_seconds += time.perf_counter() - ts
            if plan.amp_dtype is not None and acc.precision_check is None:
                acc.precision_check = _check_precision(model, model_input, pred, plan, dev, dst)
            if len(first) != len(slices):
                pred = pred[torch.from_numpy(inverse).to(pred.device)]
            crop_sum += pred
            if acc.member_sum is not None:  # undo crop/pad: predicted pixels back where they came from
                _view_of(acc.member_sum, view)[lo:hi, src[0], src[1]] += pred[:, dst[0], dst[1]]
                _view_of(acc.member_sq, view)[lo:hi, src[0], src[1]] += pred[:, dst[0], dst[1]] ** 2
            acc.n_members += 1
            acc.passes_done += 1
    view_mean = crop_sum / float(n_members)
    base = float(view_mean.min().item()) if plan.slab_fill == "view-min" else 0.0
    target = _view_of(acc.fused, view)
    if base:
        target += base
    target[lo:hi, src[0], src[1]] += view_mean[:, dst[0], dst[1]] - base


def _fuse(acc: _Accumulators, plan: _Plan, dev):
    """Equal-weight mean of the views, slab rule, threshold; numpy ``(fused, label, uncertainty)`` on the model grid."""
    import torch

    fused_t = acc.fused / float(len(plan.views))
    if plan.slab_fill == "zero":
        keep_mask = torch.from_numpy(fusion.slab_keep_mask(plan.shape, plan.views, plan.fractions)).to(dev)
        fused_t = torch.where(keep_mask, fused_t, torch.zeros((), dtype=fused_t.dtype, device=dev))
    fused = fused_t.cpu().numpy()
    if acc.member_sum is not None:
        mean_t = acc.member_sum / max(acc.n_members, 1)
        unc = torch.clamp(acc.member_sq / max(acc.n_members, 1) - mean_t * mean_t, min=0.0).cpu().numpy()
    else:
        unc = uncertainty_map(plan.uncertainty, probability=fused)
    return fused, fusion.threshold(fused, plan.threshold), unc


def _volumes(label: Volume, prepared, manifest, name: str) -> dict[str, float]:
    """Segment volumes in mm³ on the input grid (and left/right for bilateral structures)."""
    voxel_mm3 = float(np.prod(label.spacing))
    volumes = {name: round(float(np.count_nonzero(label.data)) * voxel_mm3, 3)}
    if is_bilateral(manifest):
        left, right = hemisphere_counts(label, midline_x_ras(prepared))
        volumes[f"{name}_left"] = round(left * voxel_mm3, 3)
        volumes[f"{name}_right"] = round(right * voxel_mm3, 3)
    return volumes


def _run_info(pkg, manifest, plan: _Plan, acc: _Accumulators, prepared, dev, name, volumes, t0) -> dict[str, Any]:
    """Run information for the JSON summary (settings, precision and its measured agreement, threads, times)."""
    from ..threads import policy_info

    pre = manifest.get("preprocessing", {}) or {}
    info = {
        "model": str(getattr(pkg, "path", "") or manifest.get("description", "")),
        "task": manifest.get("task"), "views": plan.views, "models_per_view": manifest.get("models_per_view"),
        "threshold": plan.threshold, "slab_fraction": plan.fractions, "slab_fill": plan.slab_fill,
        "tta": plan.tta, "device": str(dev), "precision": dtype_name(plan.amp_dtype),
        "precision_check": acc.precision_check, "batch_size": plan.batch_size, "slices": acc.slices,
        "threads": policy_info() if dev.type == "cpu" else None,
        "orientation": pre.get("orientation", "RAS"), "settings_source": manifest.get("settings_source"),
        "model_grid_shape_kji": list(plan.shape), "model_spacing_mm": [round(float(s), 4) for s in prepared.grid.spacing],
        "resampled": prepared.resampled, "input_orientation": prepared.reorientation.original_code,
        "network_seconds": round(acc.network_seconds, 3), "total_seconds": round(time.perf_counter() - t0, 3),
        "hemisphere_split": "left/right volumes split at the sagittal plane through the brain-mask centroid "
                            "(RAS x); not part of the papers" if f"{name}_left" in volumes else None,
    }
    return {k: v for k, v in info.items() if v is not None}


@retained_heap()  # activations are not page-faulted back in for every batch (see neuroshift.heap)
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
    ``"entropy"`` (see :mod:`neuroshift.segment.uncertainty`); ``precision`` see
    :mod:`neuroshift.segment.precision`. Threads: as set by the caller (the CLI applies
    :func:`neuroshift.threads.configure`).

    Raises:
        InputError: unknown options, missing channels, an empty brain mask.
        DeviceMemoryError: the GPU ran out of memory.
    """
    import torch

    from ..torch_device import resolve_device

    t0 = time.perf_counter()
    uncertainty = str(uncertainty).lower()
    if uncertainty not in KINDS:
        raise InputError(f"unknown uncertainty kind '{uncertainty}'; use {' or '.join(KINDS)}")
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    autocast_dtype(precision, dev, int8=True)  # a bad precision fails before loading anything
    report(progress, 0.0, "loading model")
    pkg = resolve_package(package, dev)
    manifest = dict(pkg.manifest)
    prepare_models(pkg, dev)
    if isinstance(inputs, Volume):
        inputs = {manifest["input_channels"][0]: inputs}
    report(progress, 0.02, "preprocessing")
    prepared = prepare_inputs(inputs, manifest, brain_mask_volume=brain_mask, mask_spec=mask_spec)
    plan = _plan(pkg, prepared, dev, tta=tta, batch_size=batch_size, threshold=threshold,
                 slab_fraction=slab_fraction, uncertainty=uncertainty, precision=precision)

    zeros = lambda: torch.zeros(plan.shape, dtype=torch.float32, device=dev)  # noqa: E731
    want_var = uncertainty == "variance"
    acc = _Accumulators(zeros(), zeros() if want_var else None, zeros() if want_var else None)
    flips = {v: 2 if tta and LR_FLIP_AXIS[v] is not None else 1 for v in plan.views}
    total_passes = max(1, sum(len(pkg.models[v]) * flips[v] for v in plan.views))
    for view in plan.views:
        _predict_view(view, pkg.models[view], prepared, plan, acc, dev, progress, total_passes)

    report(progress, 0.92, "fusing views")
    fused, label_model, unc_model = _fuse(acc, plan, dev)
    del acc.fused, acc.member_sum, acc.member_sq

    report(progress, 0.95, "back to the input grid")
    label = prepared.to_input_grid(label_model, interpolation="nearest", dtype=np.uint8)
    probability = prepared.to_input_grid(fused, interpolation="linear")
    unc = prepared.to_input_grid(unc_model, interpolation="linear")
    for v in (label, probability, unc):
        v.meta = {}
    name = segment_name(manifest)
    volumes = _volumes(label, prepared, manifest, name)
    warnings = list(prepared.warnings) + qc_warnings(prepared, manifest, label, age_weeks=age_weeks)
    report(progress, 1.0, "done")
    info = _run_info(pkg, manifest, plan, acc, prepared, dev, name, volumes, t0)
    return SegmentationResult(label, probability, unc, volumes, warnings, uncertainty, name, info)


def set_cpu_threads(n: int | None) -> None:
    """Apply the thread policy (:func:`neuroshift.threads.configure`): ``n``, ``NEUROSHIFT_THREADS`` or all cores."""
    from ..threads import configure

    configure(n)


__all__ = ["PRECISIONS", "DeviceMemoryError", "SegmentationResult", "autocast_dtype", "predict_slices",
           "resolve_package", "segment_name", "segment_volume", "set_cpu_threads"]
