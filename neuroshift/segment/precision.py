"""Network arithmetic for segmentation inference: float32, or reduced precision where the hardware runs it natively.

* ``auto``: on CUDA float16 autocast; on a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX,
  :func:`native_bf16`) bfloat16 autocast, else float32. Reduced precision is never chosen where it
  would be emulated (slower than float32).
* ``bf16``, ``fp16`` (CUDA only), ``fp32``: forced.
* ``int8`` (CPU, segmentation U-Nets only, never chosen by ``auto``): 8-bit integer convolutions calibrated on
  the scan itself (:mod:`~neuroshift.segment.int8`); about twice the bfloat16 speed on CPUs with native int8
  dot products (``avx512_vnni``, ``avx_vnni``, ``amx_int8``).

Whenever reduced precision runs, :func:`agreement` measures it against float32 on a few slices of
the same run, and the run information records the result (largest probability difference, and the
fraction of pixels whose side of the threshold changes), so each output says how close it is to float32.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
#: /proc/cpuinfo flags of native bfloat16 matrix arithmetic (oneDNN uses them for bf16 convolutions).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """True when the CPU runs bfloat16 natively (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo flags).

    Where /proc/cpuinfo is unreadable (not Linux), oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``)
    decides when torch offers it; otherwise False.
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return any(f in flags for f in BF16_FLAGS)
    except OSError:
        pass
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device, *, int8: bool = False):
    """The autocast dtype for a precision choice on ``device`` (a ``torch.device``), or None for float32;
    ``torch.int8`` for ``int8`` (no autocast: the int8 path of :mod:`~neuroshift.segment.int8`), which callers
    that run it say with ``int8=True`` (others refuse it)."""
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if precision == "int8":
        return _int8_dtype(device, int8)
    if precision == "fp16" and device.type != "cuda":
        raise InputError("--precision fp16 needs a CUDA device; on the CPU use bf16 or fp32")
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and native_bf16() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _int8_dtype(device, supported: bool):
    import torch

    from .int8 import int8_available

    if not supported:
        raise InputError("--precision int8 is available for segmentation networks only; use fp32, bf16 or fp16")
    if device.type != "cpu":
        raise InputError("--precision int8 runs on the CPU; on CUDA use fp16 or bf16")
    if not int8_available():
        raise InputError("this torch build lacks oneDNN's int8 convolutions; use --precision bf16 or fp32")
    return torch.int8


def dtype_name(dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``; None -> ``"float32"``."""
    return str(dtype or "float32").replace("torch.", "")


def agreement(reduced, reference, threshold: float) -> dict[str, Any]:
    """Reduced-precision probabilities vs float32 ones on the same slices (tensors of equal shape)."""
    import torch

    diff = (reduced.float() - reference.float()).abs()
    flips = ((reduced > threshold) != (reference > threshold)).sum().item()
    return {"reference": "float32", "pixels": int(reference.numel()),
            "max_abs_probability_difference": float(diff.max().item()) if diff.numel() else 0.0,
            "threshold_flip_fraction": float(flips) / max(1, int(reference.numel())),
            "threshold": float(threshold), "torch_version": torch.__version__}


__all__ = ["BF16_FLAGS", "PRECISIONS", "agreement", "autocast_dtype", "dtype_name", "native_bf16"]
