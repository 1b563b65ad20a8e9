"""Training the MRF regression U-Net through the shared engine (:func:`neuroshift.training.loop.run_loop`).

:class:`MRFStep` is the task's :class:`~neuroshift.training.loop.TrainStep`: epoch ``e`` sets Adam's
learning rate to ``lr x 0.5^(e // lr_halve_epochs)`` (paper 001's code: 1e-4 halved every 20 epochs;
derived from the epoch so a resumed run is identical), takes the oversampled slice list (lesion slices x5)
in ``ctx.order``, draws ``patches_per_slice`` random 64 x 64 patches per slice from ``ctx.rank_seed`` and
steps on batches of ``batch_size`` patches with the chosen loss (MSE; MAE, Huber, log-cosh as options),
optionally weighting voxels of the reference lesion mask by ``lesion_weight`` (lesions are ~0.1 % of the
phantoms' brain voxels and their T1/T2* equal GM's, so the plain loss barely rewards finding them).
Validation: whole held-out phantoms; MSE of the scaled targets, T1/T2* relative deviation, lesion Dice and
LDR at 33 %.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import ParameterRangeError
from ..training.config import Flag, int_list, internal, setting
from .schedule import Schedule

LOSSES = ("mse", "mae", "huber", "logcosh")
LOG_FIELDS = ("epoch", "step", "train_loss", "val_loss", "val_T1_rel_dev", "val_T2star_rel_dev", "val_lesion_dice_33",
              "val_lesion_ldr_33", "lr", "seconds", "patches_per_s")


@dataclass
class MRFTrainConfig:
    """Settings of one training run (times in ms; lr per step). The CLI flags are declared here once
    (:func:`neuroshift.training.config.setting`); ``neuroshift mrf train`` generates its options from them."""

    train_seeds: Sequence[int] = setting((1, 2, 3, 4), Flag(type=int_list, help="phantom seeds for training"))
    val_seeds: Sequence[int] = setting((101,), Flag(type=int_list, help="phantom seeds for validation"))
    epochs: int = setting(100, Flag(type=int, help="epochs (paper: 100)"))
    batch_size: int = setting(64, Flag(type=int, help="patches per batch (paper: 64)"))
    patch_hw: int = setting(64, Flag(type=int, help="patch size in pixels (paper: 64)"))
    patches_per_slice: int = setting(64, Flag(type=int, help="random patches per slice and epoch (paper: 64)"))
    lesion_oversampling: int = setting(5, Flag(type=int, help="lesion slices repeated this often (paper: 5)"))
    lr: float = setting(1e-4, Flag(type=float, help="Adam learning rate (paper: 1e-4)"))
    lr_halve_epochs: int = setting(20, Flag(type=int, help="halve the learning rate every N epochs (paper code: 20)"))
    loss: str = setting("mse", Flag(choices=LOSSES, help="regression loss (paper: mse)"))
    huber_delta: float = setting(5.0, Flag(type=float, help="Huber delta in scaled target units"))
    lesion_weight: float = setting(1.0, Flag(type=float, help="loss weight of voxels whose reference lesion fraction "
                                                             "is > 0 (paper: 1, every voxel alike)"))
    steps_per_epoch: int | None = setting(None, Flag(type=int, help="cap the batches of an epoch"))
    noise_fraction: float = setting(0.01, Flag(type=float, help="Rician sigma / mean WM signal of the frames"))
    b1_strength: float = setting(0.25, Flag(type=float, help="B1 field strength (bias-field model)"))
    arch: dict[str, Any] = internal(None)
    seed: int = setting(0, Flag(type=int, help="seed of the network and the epochs"))

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise ParameterRangeError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("epochs", "batch_size", "patch_hw", "patches_per_slice", "lesion_oversampling", "lr_halve_epochs"):
            if int(getattr(self, name)) < 1:
                raise ParameterRangeError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lesion_weight >= 1.0 or not math.isfinite(self.lesion_weight):
            raise ParameterRangeError(f"lesion_weight must be a finite number >= 1, got {self.lesion_weight}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ParameterRangeError(f"lr must be > 0, got {self.lr}")
        if not self.train_seeds:
            raise ParameterRangeError("train_seeds must name at least one phantom seed")
        if set(self.train_seeds) & set(self.val_seeds):
            raise ParameterRangeError("training and validation phantoms must differ (seeds overlap)")


def loss_fn(name: str, pred, target, huber_delta: float = 5.0, weight=None):
    """Regression loss over all outputs (scaled targets): ``mse`` (paper), ``mae``, ``huber`` (delta in scaled
    units; the authors' 'lcl' is Huber with delta 5), ``logcosh``.

    ``weight`` (broadcastable to ``pred``, e.g. ``(B, 1, H, W)``): per-voxel weights; the loss is then the
    weighted mean ``sum(w x e) / sum(w x 1)`` (equal to the plain mean when every weight is 1).
    """
    import torch
    import torch.nn.functional as F

    if name == "mse":
        e = F.mse_loss(pred, target, reduction="none")
    elif name == "mae":
        e = F.l1_loss(pred, target, reduction="none")
    elif name == "huber":
        e = F.huber_loss(pred, target, delta=float(huber_delta), reduction="none")
    else:
        d = pred - target
        e = d + F.softplus(-2.0 * d) - math.log(2.0)  # log(cosh(d)), stable
    if weight is None:
        return torch.mean(e)
    w = torch.broadcast_to(weight, e.shape).to(e.dtype)
    return torch.sum(w * e) / torch.sum(w)


def lesion_weights(target, lesion_weight: float, lesion_channel: int = 4):
    """``(B, 1, H, W)`` weights: ``lesion_weight`` where the reference lesion channel is > 0, else 1
    (None when ``lesion_weight`` is 1: the plain loss)."""
    if float(lesion_weight) == 1.0:
        return None
    les = target[:, lesion_channel:lesion_channel + 1] > 0
    return 1.0 + (float(lesion_weight) - 1.0) * les.to(target.dtype)


class MRFStep:
    """The MRF regression U-Net step (see the module docstring)."""

    def __init__(self, cfg: MRFTrainConfig, train, val_subjects, device):
        import torch

        from .model import build_model

        self.cfg, self.train_set, self.val_subjects, self.device = cfg, train, list(val_subjects), device
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.arch).to(device)
        self.models = {"model": model}
        self.optimizers = {"optimizer": torch.optim.Adam(model.parameters(), lr=cfg.lr)}
        from .dataset import oversampled_indices

        self.items = oversampled_indices(train.has_lesion, cfg.lesion_oversampling)

    def lr_at(self, epoch: int) -> float:
        return float(self.cfg.lr * 0.5 ** (epoch // self.cfg.lr_halve_epochs))

    def batches(self, ctx) -> Iterator[tuple[Any, Any]]:
        import numpy as np
        import torch

        from .dataset import random_patches

        for g in self.optimizers["optimizer"].param_groups:
            g["lr"] = self.lr_at(ctx.epoch)
        rng = np.random.default_rng(ctx.rank_seed)
        order = ctx.order(len(self.items) * self.cfg.patches_per_slice).numpy()
        slices = self.items[order % len(self.items)]
        for i in range(0, len(slices), self.cfg.batch_size):
            x, y = random_patches(self.train_set, slices[i:i + self.cfg.batch_size], self.cfg.patch_hw, rng)
            yield torch.from_numpy(x), torch.from_numpy(y)

    def step(self, batch, ctx):
        from ..training.loop import StepOutput

        x, y = (t.to(self.device) for t in batch)
        model = self.models["model"]
        with ctx.autocast():
            pred = model.forward_logits(x)
        w = lesion_weights(y, self.cfg.lesion_weight)
        loss = loss_fn(self.cfg.loss, pred.float(), y, self.cfg.huber_delta, w)
        opt = self.optimizers["optimizer"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return StepOutput({"train_loss": float(loss.detach())}, int(x.shape[0]))

    def validate(self, ctx) -> dict[str, float]:
        import numpy as np

        rows = [evaluate_subject(self.models["model"], s, self.device) for s in self.val_subjects]
        if not rows:
            return {}
        keys = ("val_loss", "val_T1_rel_dev", "val_T2star_rel_dev", "val_lesion_dice_33", "val_lesion_ldr_33")
        return {k: float(np.nanmean([r[k] for r in rows])) for k in keys}


def evaluate_subject(model, subject, device=None) -> dict[str, Any]:
    """Predict one SYNTHETIC subject and compare with its reference maps (paper 001's metrics)."""
    import numpy as np

    from .metrics import summarise
    from .model import OUTPUT_NAMES, OUTPUT_SCALE, predict_volume

    was = model.training
    pred = predict_volume(model, subject.frames, device=device)
    if was:
        model.train()
    brain = subject.brain
    s = summarise(pred, {**subject.maps, "lesion": subject.maps["lesion"] >= 50.0}, brain)
    mse = float(np.mean([np.mean(((pred[n] - subject.maps[n]) / OUTPUT_SCALE[n])[brain] ** 2) for n in OUTPUT_NAMES]))
    return {"val_loss": mse, "val_T1_rel_dev": s["T1_rel_dev"], "val_T2star_rel_dev": s["T2star_rel_dev"],
            "val_lesion_dice_33": s.get("lesion_dice_33pct", float("nan")),
            "val_lesion_ldr_33": s.get("lesion_ldr_33pct", float("nan")), "summary": s, "pred": pred}


def train_model(cfg: MRFTrainConfig, schedule: Schedule, work: str | Path, *, device="cpu", resume: bool = False,
                verbose: bool = True):
    """Simulate the phantoms, train through :func:`run_loop`; returns ``(model, LoopResult)``.

    The model holds the last epoch's weights (no keep-best: validation is a report, not a selection).
    """
    import torch

    from ..training.config import fingerprint
    from ..training.loop import LoopSettings, run_loop
    from .dataset import simulate_subject, slices_of

    cfg.check()
    kw = dict(noise_fraction=cfg.noise_fraction, b1_strength=cfg.b1_strength)
    train = slices_of([simulate_subject(schedule, int(s), **kw) for s in cfg.train_seeds])
    val = [simulate_subject(schedule, int(s), **kw) for s in cfg.val_seeds]
    step = MRFStep(cfg, train, val, torch.device(device))
    fp = fingerprint(cfg, exclude=("epochs",), extra={"schedule": schedule.hash})
    settings = LoopSettings(epochs=int(cfg.epochs), directory=Path(work), seed=int(cfg.seed), fingerprint=fp,
                            resume=resume, steps_per_epoch=cfg.steps_per_epoch, log_fields=LOG_FIELDS,
                            items_name="patches", label="mrf", verbose=verbose)
    result = run_loop(step, settings, device=device)
    return step.models["model"], result


def config_dict(cfg: MRFTrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


__all__ = ["LOSSES", "LOG_FIELDS", "MRFStep", "MRFTrainConfig", "config_dict", "evaluate_subject", "lesion_weights", "loss_fn",
           "train_model"]
