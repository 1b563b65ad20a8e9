"""The training loop every task shares: seeded epochs, AMP, resume, per-epoch checkpoints, keep-best.

A task is a :class:`TrainStep` (its models, optimisers, batches, one optimisation step and a validation)
plus :class:`LoopSettings`; :func:`run_loop` does the rest::

    class MyStep:                                   # segmentation, a GAN, MRF regression, ...
        models = {"generator": g, "discriminator": d}
        optimizers = {"generator": opt_g, "discriminator": opt_d}
        def batches(self, ctx):   ...yield batches for epoch ctx.epoch (draws from ctx.generator / ctx.order(n))
        def step(self, batch, ctx):  ...forward under ctx.autocast(), backward, optimiser steps
            return StepOutput({"loss_g": ..., "loss_d": ...}, items=len(batch))
        def validate(self, ctx):  return {"val_psnr": ...}      # rank 0 only; {} when nothing to validate

    result = run_loop(MyStep(...), LoopSettings(epochs=20, directory=work / "gan", seed=7,
                                                fingerprint=fp, keep_best="val_psnr"))

Epoch ``e`` (0-based) draws only from ``ctx.generator``/``ctx.seed`` (seeded by ``(seed, e, rank)``) and
``ctx.order(n)`` (seeded by ``(seed, e)``), so resuming after epoch ``k`` reproduces the uninterrupted run
bit for bit on the CPU: the checkpoint holds every model, every optimiser and the step's
``extra_state()`` (e.g. an :class:`~neuroshift.training.pool.ImagePool`). Losses are averaged over the
epoch's steps of all ranks (all-reduce); rank 0 validates, appends to ``log.csv``, keeps the best epoch's
weights (``keep_best``: the validation metric, ``best_mode`` "max"/"min") and writes the checkpoint.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Protocol, runtime_checkable

import torch

from ..errors import InputError
from .checkpoint import cpu_state_dict, has_checkpoint, load_best, load_checkpoint, load_extra, save_checkpoint
from .distributed import DistInfo, epoch_order, epoch_seed
from .history import LOG_FILE, BestTracker, append_epoch, format_row, log, now_utc


class StepOutput(NamedTuple):
    """What one optimisation step reports: its losses (floats, averaged per epoch) and the items it used."""

    losses: Mapping[str, float]
    items: int = 0


@dataclass
class EpochContext:
    """What a step may use in one epoch: its seeds, the device, AMP and the process group."""

    epoch: int  # 0-based
    seed: int  # the run's base seed
    dist: DistInfo
    device: torch.device
    amp: bool = False

    @property
    def rank_seed(self) -> int:
        """Seed of this epoch on this rank (augmentation, patch positions, ...)."""
        return epoch_seed(self.seed, self.epoch, self.dist.rank)

    @property
    def generator(self) -> torch.Generator:
        """A CPU generator seeded with :attr:`rank_seed` (created once per epoch)."""
        if not hasattr(self, "_generator"):
            self._generator = torch.Generator().manual_seed(self.rank_seed)
        return self._generator

    def order(self, n: int) -> torch.Tensor:
        """This rank's shuffled indices of ``n`` items for this epoch (see :func:`epoch_order`)."""
        return epoch_order(n, self.seed, self.epoch, self.dist)

    def order_batches(self, n: int, batch_size: int) -> list[torch.Tensor]:
        """:meth:`order` cut into consecutive index batches of ``batch_size`` (the last may be shorter)."""
        order = self.order(n)
        return [order[i:i + int(batch_size)] for i in range(0, len(order), int(batch_size))]

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on CUDA when AMP is on; a no-op otherwise."""
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                              enabled=bool(self.amp) and self.device.type == "cuda")


@runtime_checkable
class TrainStep(Protocol):
    """A task's part of training. ``extra_state``/``load_extra_state`` are optional (see :func:`run_loop`)."""

    models: Mapping[str, torch.nn.Module]
    optimizers: Mapping[str, torch.optim.Optimizer]

    def batches(self, ctx: EpochContext) -> Iterable[Any]: ...

    def step(self, batch: Any, ctx: EpochContext) -> StepOutput: ...

    def validate(self, ctx: EpochContext) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class LoopSettings:
    """How :func:`run_loop` runs one trained unit (an ensemble member, a GAN, ...).

    ``directory`` holds its checkpoint and ``log.csv``; ``fingerprint`` identifies the settings and data
    a checkpoint may be resumed with (:func:`neuroshift.training.config.fingerprint`); ``steps_per_epoch``
    caps the batches of an epoch; ``log_fields`` are the ``log.csv`` columns (default: the row's keys of
    the first epoch); ``items_name`` names the throughput column (``<items_name>_per_s``); ``state`` is
    recorded in ``state.json`` (e.g. view and member index); ``label`` prefixes messages.
    """

    epochs: int
    directory: Path
    seed: int = 0
    fingerprint: str = ""
    resume: bool = False
    amp: bool = False
    keep_best: str | None = None
    best_mode: str = "max"
    steps_per_epoch: int | None = None
    log_fields: tuple[str, ...] | None = None
    items_name: str = "items"
    state: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    verbose: bool = True
    settings_hint: str = "settings or data"


@dataclass
class LoopResult:
    """What :func:`run_loop` returns: per-epoch history, steps done, the epoch it resumed after, the best
    epoch and the weights to keep (the best epoch's with ``keep_best``, else the last)."""

    history: list[dict]
    steps: int
    resumed_from_epoch: int
    best: dict | None
    states: dict[str, dict[str, torch.Tensor]]

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's losses and validation metrics."""
        last = self.history[-1] if self.history else {}
        return {k: v for k, v in last.items() if k.startswith(("val_", "train_"))}


def _resume_state(step: TrainStep, s: LoopSettings, dist: DistInfo, device: torch.device) -> dict | None:
    state = None
    if s.resume:
        state = load_checkpoint(s.directory, step.models, step.optimizers, device)
        if state is not None and state.get("fingerprint") != s.fingerprint:
            raise InputError(f"{s.directory}: the checkpoint was made with other settings or data "
                             f"({s.settings_hint} differ); remove the work folder or restore the settings "
                             "to resume")
        if state is not None and hasattr(step, "load_extra_state"):
            step.load_extra_state(load_extra(s.directory))
    elif dist.is_main and has_checkpoint(s.directory):
        raise InputError(f"{s.directory}: a checkpoint from an earlier run exists; pass --resume to continue "
                         "it, or remove the work folder to start again")
    dist.barrier()
    return state


def _run_epoch(step: TrainStep, ctx: EpochContext, cap: int | None) -> tuple[dict[str, float], int, int]:
    """Sums of the step losses, number of steps and items of this rank's epoch."""
    sums: dict[str, float] = defaultdict(float)
    n_steps = items = 0
    batches: Iterator[Any] = iter(step.batches(ctx))
    if cap:  # stop before the step builds a batch that would not be used (0 or None: no cap)
        batches = itertools.islice(batches, int(cap))
    for batch in batches:
        out = step.step(batch, ctx)
        if not isinstance(out, StepOutput):
            out = StepOutput(dict(out))
        for k, v in out.losses.items():
            sums[k] += float(v)
        n_steps += 1
        items += int(out.items)
    return dict(sums), n_steps, items


def run_loop(step: TrainStep, s: LoopSettings, *, dist: DistInfo | None = None, device: Any = "cpu",
             progress: Callable[[float, str], None] | None = None) -> LoopResult:
    """Train ``step`` for ``s.epochs`` epochs (continuing a checkpoint with ``s.resume``); see the module doc.

    Raises:
        InputError: a checkpoint exists without ``resume``, or was made with another fingerprint.
        IntegrityError: the checkpoint cannot be read.
    """
    from .distributed import all_reduce_sums

    dist = dist or DistInfo()
    device = torch.device(device)
    directory = Path(s.directory)
    state = _resume_state(step, s, dist, device)
    start = int(state["epoch"]) if state else 0
    n_step = int(state["step"]) if state else 0
    history = list(state.get("history", [])) if state else []
    tracker = BestTracker(s.keep_best or "", s.best_mode).load(state.get("best") if state and s.keep_best else None)
    best_states = load_best(directory, sorted(step.models)) if state and s.keep_best else None
    if start:
        log(f"[{s.label}] resuming after epoch {start} (step {n_step})", verbose=s.verbose, is_main=dist.is_main)
    first_opt = next(iter(step.optimizers.values()), None)
    for epoch in range(start, s.epochs):
        t0 = time.monotonic()
        ctx = EpochContext(epoch, s.seed, dist, device, s.amp)
        for m in step.models.values():
            m.train()
        sums, n, items = _run_epoch(step, ctx, s.steps_per_epoch)
        n_step += n
        total = all_reduce_sums({**sums, "__steps": n, "__items": items}, dist)
        steps_all, items_all = total.pop("__steps"), total.pop("__items")
        row: dict[str, Any] = {"epoch": epoch + 1, "step": n_step}
        row.update({k: (v / steps_all if steps_all > 0 else math.nan) for k, v in total.items()})
        if first_opt is not None:
            row["lr"] = float(first_opt.param_groups[0]["lr"])
        if dist.is_main:
            with torch.no_grad():
                row.update(step.validate(ctx))
        elapsed = time.monotonic() - t0
        row.update({"seconds": round(elapsed, 3), f"{s.items_name}_per_s": round(items_all / max(elapsed, 1e-9), 2)})
        history.append(row)
        new_best = bool(s.keep_best) and tracker.update(epoch + 1, row)
        if new_best:
            best_states = {name: cpu_state_dict(m) for name, m in step.models.items()}
        if dist.is_main:
            append_epoch(directory / LOG_FILE, row, s.log_fields or tuple(row))
            extra = step.extra_state() if hasattr(step, "extra_state") else None
            save_checkpoint(directory, step.models, step.optimizers, {
                **dict(s.state), "epoch": epoch + 1, "step": n_step, "seed": s.seed, "fingerprint": s.fingerprint,
                "complete": epoch + 1 >= s.epochs, "epochs_planned": s.epochs, "history": history,
                "best": tracker.to_dict() if s.keep_best else None, "saved": now_utc()},
                best=best_states if new_best else None, extra=extra)
            log(f"[{s.label}] {format_row(row)}", verbose=s.verbose)
        dist.barrier()
        if progress is not None:
            progress((epoch + 1) / max(s.epochs, 1), f"{s.label}: epoch {epoch + 1}/{s.epochs}")
    states = {name: cpu_state_dict(m) for name, m in step.models.items()}
    if s.keep_best and best_states is not None:
        states = {name: dict(sd) for name, sd in best_states.items()}
    return LoopResult(history, n_step, start, tracker.to_dict() if s.keep_best else None, states)


__all__ = ["EpochContext", "LoopResult", "LoopSettings", "StepOutput", "TrainStep", "run_loop"]
