"""Running one network on a stack of 2D slices: batches, channels-last memory, inference mode, precision.

Used by :mod:`neuroshift.segment.inference` (the product path of ``neuroshift segment``) for every network
of every view. On the CPU, bfloat16 runs a bfloat16 copy of the network (cached per network) instead of
autocast, which re-casts every weight on every call (~10 % faster, same arithmetic); on CUDA float16 or
bfloat16 autocast, and the batch is sized to the free memory (:func:`cuda_batch_size`). int8 (CPU) runs the
network's 8-bit forward pass (:mod:`~neuroshift.segment.int8`) calibrated on the stack's own slices (:func:`int8_model`).

CPU threads: with ``T >= 2`` torch threads the batches run as ``T`` independent single-threaded streams
(:func:`cpu_streams`; a pool of Python threads, each with one OpenMP thread; torch releases the GIL inside
its operators) instead of one batch at a time over ``T`` OpenMP threads: no barrier after every layer, and
on a busy machine a descheduled thread delays only its own batch. The slices are split into ``T x k`` chunks
of near-equal size so that no stream idles at the end.
"""

from __future__ import annotations

import copy
import os
import threading

from .precision import autocast_dtype
from .views import batches


def prepare_models(pkg, dev) -> None:
    """Move every network to ``dev`` in eval mode, channels-last memory (oneDNN/cuDNN's fast layout)."""
    import torch

    for view_models in pkg.models.values():
        for i, m in enumerate(view_models):
            view_models[i] = m.to(device=dev, memory_format=torch.channels_last).eval()


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error."""
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


def cpu_bf16_copy(model):
    """A bfloat16 copy of ``model`` (cached per network, renewed when its weights change: :mod:`.derived`): on the
    CPU ~10 % faster than autocast, which re-casts every weight on every call; same arithmetic."""
    import torch

    from .derived import derived

    return derived(model, "bf16-copy",
                   lambda: copy.deepcopy(model).to(torch.bfloat16).eval().requires_grad_(False))


_POOL_LOCK = threading.Lock()
_POOL: dict = {}


def _single_thread() -> None:
    """Pool-thread initialiser: this thread's operators use one OpenMP thread (the setting is per thread;
    ``get_num_threads`` makes torch take it now, before the caller restores the default for other threads)."""
    import torch

    torch.set_num_threads(1)
    torch.get_num_threads()


def cpu_streams(n: int):
    """A pool of ``n`` Python threads whose torch operators run single-threaded (kept for the process).

    ``torch.set_num_threads`` inside a pool thread sets that thread's OpenMP thread count and torch's
    default for threads started later, so the caller's count is restored once all ``n`` threads have started
    (they wait on a barrier), and threads started later (e.g. another background run) get it again.
    """
    import torch

    from concurrent.futures import ThreadPoolExecutor

    key = (os.getpid(), n)  # a forked child gets its own pool (the parent's threads do not exist there)
    with _POOL_LOCK:
        pool = _POOL.get(key)
        if pool is None:
            caller = torch.get_num_threads()
            pool = ThreadPoolExecutor(n, thread_name_prefix="neuroshift-stream", initializer=_single_thread)
            started = threading.Barrier(n + 1)
            waits = [pool.submit(started.wait) for _ in range(n)]  # n blocked tasks: n threads, all initialised
            started.wait()
            for w in waits:
                w.result()
            torch.set_num_threads(caller)
            _POOL[key] = pool
    return pool


def chunks(n: int, batch_size: int, streams: int) -> list[slice]:
    """``range(n)`` as consecutive slices of at most ``batch_size``, their count a multiple of ``streams``,
    sizes differing by at most one (``streams=1``: :func:`~neuroshift.segment.views.batches`)."""
    if streams <= 1:
        return list(batches(n, batch_size))
    per_round = max(1, streams) * max(1, int(batch_size))
    count = min(n, streams * -(-n // per_round))
    edges = [round(i * n / count) for i in range(count + 1)] if count else [0]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def predict_slices(model, slices, *, device, batch_size: int, precision: str = "auto",
                   flip_axis: int | None = None, on_batch=None, as_tensor: bool = False,
                   streams: int | None = None):
    """Probabilities ``(N, H, W)`` of one network on ``(N, C, H, W)`` slices (optionally W-flipped).

    ``slices`` is a numpy array (copied batch by batch to ``device``) or a tensor already there. Batches
    go in channels-last memory under ``torch.inference_mode``, with autocast for reduced precision
    (:func:`~neuroshift.segment.precision.autocast_dtype`). ``streams``: on the CPU, batches run
    concurrently as that many single-threaded streams (default :func:`neuroshift.threads.cpu_streams`: the
    torch threads; 1 = one batch at a time over all threads); ignored on other devices. Returns a numpy array, or with
    ``as_tensor`` a float32 tensor on ``device``.
    """
    import torch

    amp_dtype = autocast_dtype(precision, device, int8=True)
    out = torch.empty((slices.shape[0],) + tuple(slices.shape[2:]), dtype=torch.float32, device=device)
    on_device = torch.is_tensor(slices)
    cpu_bf16 = amp_dtype is torch.bfloat16 and device.type == "cpu"
    autocast_on = amp_dtype in (torch.float16, torch.bfloat16) and not cpu_bf16  # bf16 copy / int8: no autocast
    if cpu_bf16:
        model = cpu_bf16_copy(model)
    elif amp_dtype is torch.int8:
        model = int8_model(model, slices)
    if device.type != "cpu":
        n_streams = 1
    else:
        from ..threads import cpu_streams as stream_count

        n_streams = max(1, int(streams or stream_count()))
    parts = chunks(slices.shape[0], batch_size, n_streams)

    def run(sl):
        with torch.inference_mode():
            x = slices[sl] if on_device else torch.from_numpy(slices[sl])
            if not on_device and device.type == "cuda":
                x = x.pin_memory().to(device, non_blocking=True)
            if flip_axis is not None:
                x = torch.flip(x, dims=(flip_axis,))
            x = x.contiguous(memory_format=torch.channels_last)
            if cpu_bf16:
                x = x.to(torch.bfloat16)
            with torch.autocast(device_type=device.type, dtype=amp_dtype if autocast_on else torch.float32,
                                enabled=autocast_on):
                if hasattr(model, "forward_logits"):
                    y = torch.sigmoid(model.forward_logits(x).float())
                else:
                    y = model(x).float()
            if flip_axis is not None:
                y = torch.flip(y, dims=(flip_axis,))
            out[sl] = y[:, 0]

    results = cpu_streams(n_streams).map(run, parts) if n_streams > 1 and len(parts) > 1 else map(run, parts)
    for b, _ in enumerate(results):  # in order, in the caller's thread (progress callbacks stay there)
        if on_batch is not None:
            on_batch((b + 1) / len(parts))
    return out if as_tensor else out.cpu().numpy()


#: Slices of a view the int8 scales are calibrated on (evenly spaced inside the stack).
CALIBRATION_SLICES = 2
#: Calibrate with the network's bfloat16 copy where the CPU runs bf16 natively: half the float32 pass's time, and
#: on the 3 real FLAIRs x 3 bundled WMH models the int8 masks agree with float32 as well (Dice 0.952-0.980 vs
#: 0.959-0.984 with float32 calibration; one bf16 slice: down to 0.948).
CALIBRATE_IN_BF16 = True


def int8_model(model, slices):
    """``model``'s int8 forward pass calibrated on :data:`CALIBRATION_SLICES` interior slices of ``slices``
    (numpy or tensor ``(N, C, H, W)``), by its bfloat16 copy where native (:data:`CALIBRATE_IN_BF16`)."""
    import numpy as np
    import torch

    from ..errors import InputError
    from .int8 import calibrated_int8_unet, int8_weights
    from .unet import UNet2D

    if not isinstance(model, UNet2D):
        raise InputError(f"--precision int8 runs NeuroShift's U-Nets only, not {type(model).__name__}")
    n = int(slices.shape[0])
    idx = np.unique(np.floor(np.arange(1, CALIBRATION_SLICES + 1) * n / (CALIBRATION_SLICES + 1)).astype(int))
    t = slices if torch.is_tensor(slices) else torch.from_numpy(np.asarray(slices))
    from .precision import native_bf16

    calibration = cpu_bf16_copy(model) if native_bf16() and CALIBRATE_IN_BF16 else None
    return calibrated_int8_unet(int8_weights(model), t[torch.from_numpy(idx)].float(), calibration)


def cuda_batch_size(pkg, hw, n_channels: int, amp_dtype) -> int:
    """Slices per batch that fit in half the free GPU memory (rough activation estimate; 1-256)."""
    import torch

    free, _ = torch.cuda.mem_get_info()
    net = next(iter(pkg.models.values()))[0]
    width = int(net.config().get("encoder", [64])[0]) if hasattr(net, "config") else 64
    per_slice = 10 * int(hw[0]) * int(hw[1]) * max(width, n_channels) * (2 if amp_dtype is not None else 4)
    return int(min(256, max(1, free // 2 // max(per_slice, 1))))


__all__ = ["CALIBRATION_SLICES", "chunks", "cpu_bf16_copy", "cpu_streams", "cuda_batch_size", "int8_model", "is_oom",
           "predict_slices", "prepare_models"]
