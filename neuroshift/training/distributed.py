"""Distributed data parallel (torchrun) set-up, seeded epoch order and all-reduce; one process without torchrun.

Launched with ``torchrun --nproc_per_node N ...`` every process joins one group (NCCL on GPUs, Gloo on
CPUs) and trains the same models on its share of the items (:func:`epoch_order`); rank 0 validates,
logs and writes. Every random draw of epoch ``e`` is seeded by ``(seed, e, rank)`` only
(:func:`epoch_seed`), so an interrupted and resumed run repeats the draws of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Mapping

import torch


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the group (``world_size`` 1: no torchrun)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def close(self) -> None:
        """Leave the process group if this process joined it (:func:`init_distributed`)."""
        if self.initialised_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistInfo()
    td = torch.distributed
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and str(device) != "cpu"
    if td.is_initialized():
        return DistInfo(td.get_world_size(), td.get_rank(), local_rank, False)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    td.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(td.get_world_size(), td.get_rank(), local_rank, True)


def device_for(dist: DistInfo, name: str = "auto") -> torch.device:
    """The torch device of this process (``auto``: CUDA if available; under torchrun, GPU ``local_rank``).

    Raises:
        InputError: ``name`` is not a device this machine has (see :func:`neuroshift.torch_device.resolve_device`).
    """
    from ..torch_device import resolve_device

    dev = resolve_device(name)
    if dist.active and dev.type == "cuda":
        return torch.device("cuda", dist.local_rank)
    return dev


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 63-bit seed that depends on ``(seed, epoch, rank)`` only (``rank=-1``: the same on every rank)."""
    h = hashlib.sha256(f"{seed}:{epoch}:{rank}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def epoch_order(n: int, seed: int, epoch: int, dist: DistInfo) -> torch.Tensor:
    """This rank's shuffled item indices for ``epoch``: a seeded permutation of ``range(n)``; under DDP,
    ``DistributedSampler``'s share (padded to equal length, seeded by ``seed`` and the epoch)."""
    if not dist.active:
        return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch, -1)))
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return torch.as_tensor(list(iter(sampler)), dtype=torch.long)


def per_rank_batch(batch_size: int, dist: DistInfo) -> int:
    """Items per step on this rank when ``batch_size`` is the global batch."""
    return max(1, int(batch_size) // dist.world_size)


def all_reduce_sums(values: Mapping[str, float], dist: DistInfo) -> dict[str, float]:
    """The sums of ``values`` over all ranks (the values themselves in one process); float64 on the CPU
    for Gloo, on this rank's GPU for NCCL."""
    keys = sorted(values)
    if not dist.active or not keys:
        return {k: float(values[k]) for k in keys}
    device = torch.device("cuda", dist.local_rank) if torch.distributed.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return {k: float(v) for k, v in zip(keys, t.cpu().tolist())}


class ForwardMethod(torch.nn.Module):
    """Calls a named method of the wrapped module as its ``forward`` (default ``forward_logits``).

    What DDP wraps when training should see another output than inference (the U-Net's ``forward``
    returns probabilities, training needs logits); the parameters are the inner module's.
    """

    def __init__(self, inner: torch.nn.Module, method: str = "forward_logits"):
        super().__init__()
        self.inner = inner
        self.method = str(method)

    def forward(self, *args, **kwargs):
        return getattr(self.inner, self.method)(*args, **kwargs)


def wrap_ddp(module: torch.nn.Module, dist: DistInfo, device: torch.device) -> torch.nn.Module:
    """``module`` in ``DistributedDataParallel`` under torchrun; ``module`` itself otherwise."""
    if not dist.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[dist.local_rank] if device.type == "cuda" else None)


__all__ = ["DistInfo", "ForwardMethod", "all_reduce_sums", "device_for", "epoch_order", "epoch_seed",
           "init_distributed", "per_rank_batch", "wrap_ddp"]
