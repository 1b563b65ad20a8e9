"""The segmentation step of :func:`neuroshift.training.loop.run_loop`: one ensemble member's U-Net, Adam,
slices (or patches) of one view, batch-global Dice (+ BCE) loss, validation by DSC and lesion F1.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..training.distributed import DistInfo, ForwardMethod, per_rank_batch, wrap_ddp
from ..training.loop import EpochContext, StepOutput
from .augment import RandomAffine2D
from .dataset import PreparedSubject, SliceDataset
from .train_config import Resolved

#: Columns of a member's ``log.csv``.
LOG_FIELDS = ("epoch", "step", "train_loss", "val_loss", "val_dsc", "val_f1", "val_recall", "val_precision",
              "lr", "seconds", "slices_per_s")


def predict_view(model, subject: PreparedSubject, view: str, crop_hw, device, batch_size: int = 32) -> np.ndarray:
    """Probabilities ``(K, J, I)`` of one network for every slice of ``view`` (model grid)."""
    from .views import assemble, batches, view_slices

    x, info = view_slices(subject.channels, view, crop_hw, subject.pad_value)
    out = np.zeros((x.shape[0],) + tuple(x.shape[-2:]), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for sl in batches(x.shape[0], batch_size):
            out[sl] = model(torch.from_numpy(x[sl]).to(device))[:, 0].float().cpu().numpy()
    if was_training:
        model.train()
    return assemble(out, view, info, subject.label.shape)


def soft_dice_loss(p: np.ndarray, g: np.ndarray, smooth: float = 1.0) -> float:
    """``1 - (2 sum(p g) + s) / (sum p + sum g + s)`` over the whole volume (numpy)."""
    return float(1.0 - (2.0 * np.sum(p * g) + smooth) / (np.sum(p) + np.sum(g) + smooth))


def validate(model, subjects: Sequence[PreparedSubject], view: str, crop_hw, threshold: float,
             device, batch_size: int = 32) -> dict[str, float]:
    """Mean over ``subjects`` of DSC, lesion recall/precision/F1 (26-connected) and the soft Dice loss of one
    network on its view (model grid; voxels of ``ignore`` labels removed from prediction and truth)."""
    from .metrics import dice, lesion_detection

    rows = []
    for s in subjects:
        prob = predict_view(model, s, view, crop_hw, device, batch_size)
        gt = s.label.astype(bool)
        pred = prob >= threshold
        if s.ignore is not None:
            pred = pred & ~s.ignore
            gt = gt & ~s.ignore
            prob = np.where(s.ignore, 0.0, prob)
        det = lesion_detection(pred, gt)
        rows.append(dict(val_dsc=float(dice(pred, gt)), val_f1=float(det["f1"]), val_recall=float(det["recall"]),
                         val_precision=float(det["precision"]), val_loss=soft_dice_loss(prob, gt)))
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]} if rows else {}


class SegmentationStep:
    """One ensemble member (a :class:`~neuroshift.training.loop.TrainStep`).

    The U-Net is built under ``torch.manual_seed(seed)`` (or loaded from ``init_state`` for fine-tuning,
    every layer trainable); DDP wraps a :class:`ForwardMethod` so training sees logits. Epoch ``e`` takes
    the slices in ``ctx.order`` (global batch ``batch_size`` split over the ranks), patch positions from
    ``ctx.rank_seed ^ 0x5EED`` and augmentation from ``ctx.generator``.
    """

    def __init__(self, r: Resolved, dataset: SliceDataset, val_subjects: Sequence[PreparedSubject], view: str,
                 seed: int, device: torch.device, dist: DistInfo, init_state: dict | None = None):
        from .unet import build_unet
        from .views import LR_FLIP_AXIS

        self.r, self.dataset, self.val_subjects, self.view, self.device = r, dataset, list(val_subjects), view, device
        torch.manual_seed(seed)
        model = build_unet(r.architecture)
        if init_state is not None:
            model.load_state_dict(init_state, strict=True)
        elif r.head_bias is not None:  # start near a small foreground prior: Dice loss then learns much faster
            with torch.no_grad():
                model.head.bias.fill_(float(r.head_bias))
        for p in model.parameters():  # fine-tuning trains every layer
            p.requires_grad_(True)
        model.to(device)
        self.models = {"model": model}
        if getattr(r, "optimizer", "adam") == "adamw":  # paper 002: AdamW, betas 0.9/0.999, weight decay 0.01
            opt = torch.optim.AdamW(model.parameters(), lr=r.lr, betas=(0.9, 0.999), weight_decay=r.weight_decay)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=r.lr)
        self.optimizers = {"optimizer": opt}
        self.net = wrap_ddp(ForwardMethod(model, "forward_logits"), dist, device)
        self.batch_size = per_rank_batch(r.batch_size, dist)
        flip = LR_FLIP_AXIS.get(view)
        aug = r.augmentation.without_flip() if flip is None else replace(r.augmentation, flip_axis=flip)
        self.augment = RandomAffine2D(aug) if aug.enabled else None

    def batches(self, ctx: EpochContext) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.net.train()
        order = ctx.order(len(self.dataset))
        patch_rng = np.random.default_rng(ctx.rank_seed ^ 0x5EED)
        n_batches = max(1, -(-len(order) // self.batch_size))
        if self.r.steps_per_epoch:
            n_batches = min(n_batches, int(self.r.steps_per_epoch))
        for i in range(0, len(order), self.batch_size):
            self._schedule(ctx, i // self.batch_size, n_batches)
            chunk = order[i:i + self.batch_size].numpy()
            if self.r.patch_hw:
                yield self.dataset.patch_batch(chunk, self.r.patch_hw, patch_rng, self.r.foreground_prob)
            else:
                yield self.dataset.batch(chunk)

    def _schedule(self, ctx: EpochContext, b: int, n_batches: int) -> None:
        """Poly learning rate (paper 002): ``lr (1 - n/N)^0.9``, n/N the fraction of all steps done."""
        if getattr(self.r, "lr_schedule", "constant") != "poly":
            return
        done = (ctx.epoch + min(b, n_batches) / n_batches) / max(1, self.r.epochs)
        for group in self.optimizers["optimizer"].param_groups:
            group["lr"] = self.r.lr * max(0.0, 1.0 - done) ** 0.9

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: EpochContext) -> StepOutput:
        from .loss import batch_dice_loss

        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        if self.augment is not None:
            x, y = self.augment(x, y, ctx.generator)
        with ctx.autocast():
            logits = self.net(x)
        logits = logits.float()
        loss = batch_dice_loss(torch.sigmoid(logits), y)
        if self.r.loss == "dice+bce":
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt = self.optimizers["optimizer"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.r.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.models["model"].parameters(), float(self.r.grad_clip))
        opt.step()
        return StepOutput({"train_loss": float(loss.detach())}, int(x.shape[0]))

    def validate(self, ctx: EpochContext) -> dict[str, Any]:
        if not self.val_subjects:
            return {}
        return validate(self.models["model"], self.val_subjects, self.view, self.dataset.crop_hw, self.r.threshold,
                        self.device)


__all__ = ["LOG_FIELDS", "SegmentationStep", "predict_view", "soft_dice_loss", "validate"]
