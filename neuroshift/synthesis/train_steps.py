"""Training steps of the three synthesis tasks for the shared engine (:func:`neuroshift.training.run_loop`).

* :class:`DiamondGANStep` — G1: sources -> target, G2: target -> sources, D1 (sources) and D2 (target),
  least-squares GAN, ``L_G = L_adv + lambda_rec * L_rec`` (lambda_rec default **10** as in the paper's text;
  [R]'s code uses 8 — the paper is the published recipe, the code value is a tuning the authors did not
  report), discriminators fed from an :class:`~neuroshift.training.ImagePool` of **25**, real label 1.0
  (``real_label=0.95`` gives [R]'s smoothing). **Every non-empty subset per epoch**: each mini-batch is
  used once per availability code (7 updates per batch with 3 sources), codes in a seeded order.
* :class:`SynthDIRStep` — pix2pix: ``lambda2 * (1 - SSIM + lambda1 * masked L1) + L_adv`` (λ1 = 1, λ2 = 10;
  masked L1 per lesion voxel by default, ``reduction="all"`` the earlier mean over all voxels,
  :func:`.losses.masked_l1`; ``lambda1 = 0`` is the ablation without the lesion-focused term), conditional
  PatchGAN, LSGAN; ``decoder_dropout`` > 0 adds dropout to the inner decoder blocks (:class:`.UNetGenerator`);
  ``aleatoric=True`` adds the log-variance head and ``nll_weight * aleatoric_nll`` to the generator loss
  (:func:`.losses.aleatoric_nll`: detached mean by default, ``nll_beta`` for beta-NLL); with
  ``nll_detach_features`` the NLL trains the log-variance conv only, so the image network trains exactly as
  without the head (same initialisation, same dropout draws, same updates); ``aleatoric_features=
  "deterministic"``: the NLL is of the eval-mode (dropout off) prediction under the variance read from the
  eval-mode features (an extra no-grad pass per step; the image network again trains as without the head).
* :class:`VirtualT1cStep` — 3D U-Net, L2 loss.

Adam with β1 = 0.5 (GANs) as in the papers; learning rates are settings of the caller (2e-4 DiamondGAN,
1e-3 synthDIR). Validation: mean PSNR (dB, data range 2 for [-1, 1] images, 1 for [0, 1]) on held-out data.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..training.loop import EpochContext, StepOutput
from ..training.pool import ImagePool
from . import losses
from .diamondgan import DiamondGenerator, PatchDiscriminator, all_subsets, apply_availability, availability_tensor
from .pix2pix import LOG_VAR_RANGE, ConditionalPatchDiscriminator, UNetGenerator

#: Discriminator history pool size of DiamondGAN ([R], Shrivastava 2017).
POOL_SIZE = 25


def _psnr(a: torch.Tensor, b: torch.Tensor, data_range: float) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(data_range ** 2 / mse)


class DiamondGANStep:
    """DiamondGAN training on 2D slices: ``sources`` (N, n, H, W) and ``target`` (N, 1, H, W) in [-1, 1]."""

    def __init__(self, sources: torch.Tensor, target: torch.Tensor, *, val: tuple[torch.Tensor, torch.Tensor] | None = None,
                 n_blocks: int = 9, lambda_rec: float = 10.0, real_label: float = 1.0, lr: float = 2e-4,
                 batch_size: int = 5, pool_size: int = POOL_SIZE, seed: int = 0, base: int = 48, d_base: int = 64,
                 domain_encoding: str = "patterns"):
        n = sources.shape[1]
        self.sources, self.target, self.val = sources, target, val
        self.codes = all_subsets(n)
        self.lambda_rec, self.real_label, self.batch_size = float(lambda_rec), float(real_label), int(batch_size)
        torch.manual_seed(seed)
        enc = {"code_width": n, "base": base, "domain_encoding": domain_encoding}  # both see the same matrix ([R])
        self.models = {"g1": DiamondGenerator(n, target.shape[1], n_blocks, **enc),
                       "g2": DiamondGenerator(target.shape[1], n, n_blocks, **enc),
                       # [R]'s Keras 'same' discriminator (train.py:235, 306; neuroshift.synthesis.diamond_padding)
                       "d1": PatchDiscriminator(n, d_base, padding="keras_same"),
                       "d2": PatchDiscriminator(target.shape[1], d_base, padding="keras_same")}
        betas = (0.5, 0.999)
        self.optimizers = {
            "g": torch.optim.Adam(list(self.models["g1"].parameters()) + list(self.models["g2"].parameters()),
                                  lr=lr, betas=betas),
            "d": torch.optim.Adam(list(self.models["d1"].parameters()) + list(self.models["d2"].parameters()),
                                  lr=lr, betas=betas)}
        self.pools = {"x": ImagePool(pool_size, seed=seed), "t": ImagePool(pool_size, seed=seed + 1)}

    def batches(self, ctx: EpochContext):
        perm = torch.randperm(len(self.codes), generator=ctx.generator).tolist()
        for idx in ctx.order_batches(len(self.sources), self.batch_size):
            for k in perm:
                yield idx, self.codes[k]

    def step(self, batch, ctx: EpochContext) -> StepOutput:
        idx, code = batch
        g1, g2, d1, d2 = (self.models[k] for k in ("g1", "g2", "d1", "d2"))
        x = self.sources[idx].to(ctx.device)
        t = self.target[idx].to(ctx.device)
        c = availability_tensor(code, len(idx)).to(ctx.device)
        x = apply_availability(x, c)
        with ctx.autocast():
            fake_t = g1(x, c)
            fake_x = apply_availability(g2(t, c), c)
            rec_x = apply_availability(g2(fake_t, c), c)
            rec_t = g1(fake_x, c)
            adv = losses.lsgan_loss(d2(fake_t), 1.0) + losses.lsgan_loss(d1(fake_x), 1.0)
            rec = losses.cycle_loss(x, rec_x, t, rec_t)
            loss_g = adv + self.lambda_rec * rec
        self.optimizers["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["g"].step()
        pool_t = self.pools["t"].query(fake_t.detach())
        pool_x = self.pools["x"].query(fake_x.detach())
        with ctx.autocast():
            loss_d = 0.5 * (losses.lsgan_loss(d2(t), self.real_label) + losses.lsgan_loss(d2(pool_t), 0.0)
                            + losses.lsgan_loss(d1(x), self.real_label) + losses.lsgan_loss(d1(pool_x), 0.0))
        self.optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["d"].step()
        return StepOutput({"loss_g": loss_g.item(), "loss_rec": rec.item(), "loss_d": loss_d.item()}, len(idx))

    @torch.no_grad()
    def validate(self, ctx: EpochContext) -> dict[str, float]:
        if self.val is None:
            return {}
        g1 = self.models["g1"].eval()
        xs, ts = self.val
        out = {}
        for code in self.codes:
            c = availability_tensor(code, len(xs)).to(ctx.device)
            out["val_psnr_" + "".join(map(str, code))] = _psnr(g1(xs.to(ctx.device), c), ts.to(ctx.device), 2.0)
        g1.train()
        out["val_psnr"] = sum(out.values()) / len(out)
        return out

    def extra_state(self) -> dict[str, Any]:
        return {k: p.state_dict() for k, p in self.pools.items()}

    def load_extra_state(self, state: dict[str, Any] | None) -> None:
        for k, p in self.pools.items():
            if state and k in state:
                p.load_state_dict(state[k])


class SynthDIRStep:
    """synthDIR: ``sources`` (N, 2, H, W), ``target`` (N, 1, H, W) in [-1, 1], ``lesion`` (N, 1, H, W) 0/1."""

    def __init__(self, sources: torch.Tensor, target: torch.Tensor, lesion: torch.Tensor, *,
                 val: tuple[torch.Tensor, torch.Tensor] | None = None, lambda1: float = 1.0, lambda2: float = 10.0,
                 lr: float = 1e-3, batch_size: int = 1, base: int = 64, depth: int = 5, dropout: float = 0.3,
                 seed: int = 0, d_base: int = 64, decoder_dropout: float = 0.0, reduction: str = "lesion",
                 aleatoric: bool = False, nll_weight: float = 1.0, nll_beta: float | None = None,
                 nll_detach_features: bool = False, aleatoric_features: str = "dropped"):
        self.sources, self.target, self.lesion, self.val = sources, target, lesion, val
        self.aleatoric, self.nll_weight, self.nll_beta = bool(aleatoric), float(nll_weight), nll_beta
        self.nll_detach_features = bool(nll_detach_features)
        self.lambda1, self.lambda2, self.batch_size = float(lambda1), float(lambda2), int(batch_size)
        if reduction not in losses.MASKED_L1_REDUCTIONS:
            raise ValueError(f"masked L1 reduction must be one of {losses.MASKED_L1_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        torch.manual_seed(seed)
        self.models = {"generator": UNetGenerator(sources.shape[1], target.shape[1], base, depth, dropout,
                                                  decoder_dropout, aleatoric=self.aleatoric,
                                                  aleatoric_features=aleatoric_features),
                       "discriminator": ConditionalPatchDiscriminator(sources.shape[1], target.shape[1], d_base)}
        self.optimizers = {k: torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.999))
                           for k, m in self.models.items()}

    def batches(self, ctx: EpochContext):
        yield from ctx.order_batches(len(self.sources), self.batch_size)

    def step(self, idx, ctx: EpochContext) -> StepOutput:
        g, d = self.models["generator"], self.models["discriminator"]
        x, y, s = (v[idx].to(ctx.device) for v in (self.sources, self.target, self.lesion))
        deterministic = self.aleatoric and g.aleatoric_features == "deterministic"
        with ctx.autocast():
            if deterministic:  # the eval-mode prediction's error, from eval-mode features (no grad into them)
                with torch.no_grad():
                    g.eval()
                    feats0 = g.backbone(x)
                    mu0 = g.head(feats0)
                    g.train()
                fake = g(x)
                log_var = g.log_var_head(feats0).clamp(*LOG_VAR_RANGE)
            else:
                fake, log_var = g.forward_dist(x, self.nll_detach_features) if self.aleatoric else (g(x), None)
                mu0 = fake
            loss_g = losses.synthdir_generator_loss(y, fake, s, d(x, fake), lambda1=self.lambda1,
                                                    lambda2=self.lambda2, reduction=self.reduction)
            if log_var is not None:
                nll = losses.aleatoric_nll(y, mu0, log_var.float(), beta=self.nll_beta)
                loss_g = loss_g + self.nll_weight * nll
        self.optimizers["generator"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["generator"].step()
        with ctx.autocast():
            loss_d = 0.5 * (losses.lsgan_loss(d(x, y), 1.0) + losses.lsgan_loss(d(x, fake.detach()), 0.0))
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["discriminator"].step()
        logs = {"loss_g": loss_g.item(), "loss_d": loss_d.item()}
        if log_var is not None:
            logs["loss_nll"] = nll.item()
        return StepOutput(logs, len(idx))

    @torch.no_grad()
    def validate(self, ctx: EpochContext) -> dict[str, float]:
        if self.val is None:
            return {}
        g = self.models["generator"].eval()
        pred = g(self.val[0].to(ctx.device))
        g.train()
        return {"val_psnr": _psnr(pred, self.val[1].to(ctx.device), 2.0)}


class VirtualT1cStep:
    """Virtual T1c: ``inputs`` (N, 4, D, H, W) and ``target`` (N, 1, D, H, W) in [0, 1]; L2 loss."""

    def __init__(self, inputs: torch.Tensor, target: torch.Tensor, *, val: tuple[torch.Tensor, torch.Tensor] | None = None,
                 features: tuple[int, ...] = (32, 32, 64, 128, 256, 32), lr: float = 1e-3, batch_size: int = 1,
                 seed: int = 0, crop: int | None = None, steps_per_epoch: int | None = None):
        from .vt1c import VirtualT1cNet

        self.inputs, self.target, self.val, self.batch_size = inputs, target, val, int(batch_size)
        self.crop, self.steps_per_epoch = (int(crop) if crop else None), steps_per_epoch
        torch.manual_seed(seed)
        self.models = {"unet": VirtualT1cNet(features, inputs.shape[1])}
        self.optimizers = {"unet": torch.optim.Adam(self.models["unet"].parameters(), lr=lr)}

    def batches(self, ctx: EpochContext):
        """Whole volumes; with ``crop``, ``steps_per_epoch`` batches of random ``crop``-cubes (one corner per
        batch, seeded by the epoch's generator) from randomly drawn volumes."""
        if not self.crop:
            yield from ctx.order_batches(len(self.inputs), self.batch_size)
            return
        n, spatial = len(self.inputs), self.inputs.shape[2:]
        if any(self.crop > s or self.crop % 16 for s in spatial):
            raise ValueError(f"crop {self.crop} must be a multiple of 16 and fit in {tuple(spatial)}")
        for _ in range(int(self.steps_per_epoch or n)):
            idx = torch.randint(n, (self.batch_size,), generator=ctx.generator)
            corner = tuple(int(torch.randint(s - self.crop + 1, (1,), generator=ctx.generator)) for s in spatial)
            yield idx, corner

    def step(self, batch, ctx: EpochContext) -> StepOutput:
        net = self.models["unet"]
        idx, corner = batch if self.crop else (batch, None)
        x, y = self.inputs[idx], self.target[idx]
        if corner is not None:
            window = (Ellipsis,) + tuple(slice(c, c + self.crop) for c in corner)
            x, y = x[window], y[window]
        with ctx.autocast():
            loss = losses.l2_loss(y.to(ctx.device), net(x.to(ctx.device)))
        self.optimizers["unet"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["unet"].step()
        return StepOutput({"loss_l2": loss.item()}, len(idx))

    @torch.no_grad()
    def validate(self, ctx: EpochContext) -> dict[str, float]:
        if self.val is None:
            return {}
        net = self.models["unet"].eval()
        pred = net(self.val[0].to(ctx.device))
        net.train()
        return {"val_psnr": _psnr(pred, self.val[1].to(ctx.device), 1.0)}


__all__ = ["POOL_SIZE", "DiamondGANStep", "SynthDIRStep", "VirtualT1cStep"]
