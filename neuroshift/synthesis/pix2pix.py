"""synthDIR (Finck, Li et al., Front Neurosci 2022): pix2pix U-Net generator ``G(T1w, FLAIR) -> DIR`` with dropout
p = 0.3 before the last layer for Monte-Carlo sampling, and a conditional PatchGAN ``D(sources, DIR)``.

U-Net: ``depth`` down steps (4x4 stride-2 conv, instance norm, LeakyReLU 0.2), mirrored up steps (4x4
stride-2 transposed conv, instance norm, ReLU) with skip concatenation, then ``Dropout(p)`` and a 1x1 conv to
the output with tanh (range [-1, 1]). The first down step has no norm (pix2pix). Dropout sits only before the
last conv ("second-last layer" of the paper), so :func:`set_mc_dropout` turns sampling on without touching
any normalisation layer (instance norm here keeps no running statistics, and every norm layer stays in eval
mode anyway).

Why not MONAI ``UNet``/``BasicUNet``: their dropout applies in every block, not only before the last layer,
which is what the MC-sampling recipe specifies.
"""

from __future__ import annotations

import torch
from torch import nn


#: Clamp of the aleatoric head's log variance (model units, images in [-1, 1]): sigma from 0.0025 to 7.4.
LOG_VAR_RANGE = (-12.0, 4.0)
#: Which features the log-variance conv reads: each MC pass's dropped-out features (``dropped``, one draw for
#: mean and variance) or the deterministic eval-mode features (``deterministic``: the variance of the eval-mode
#: prediction's error, one value per voxel whatever the dropout draw).
ALEATORIC_FEATURES = ("dropped", "deterministic")
#: Initial bias of the log variance: sigma = exp(-2) = 0.135 (about the error scale of an untrained model).
LOG_VAR_INIT = -4.0


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.InstanceNorm2d(cout, affine=True),
                                   nn.ReLU(inplace=True)]
        if dropout > 0:  # appended last: parameter names of packages without it are unchanged
            layers.append(nn.Dropout(float(dropout)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UNetGenerator(nn.Module):
    """pix2pix U-Net; input ``(B, in_channels, H, W)`` with H, W divisible by ``2**depth``; output in [-1, 1].

    ``dropout`` (default 0.3, the paper's): before the last layer. ``decoder_dropout`` (default 0: off, the
    paper's network): an option that also drops out after every up block but the outermost (whose output already
    feeds the last-layer dropout), as pix2pix (Isola 2017) does in its inner decoder blocks. With dropout only
    before a 1x1 conv the MC SD of a voxel is a function of that voxel's feature magnitude (it follows the
    predicted intensity, not the error); decoder dropout makes the samples disagree where the decoder's
    spatial evidence is weak.

    ``aleatoric`` (default off: the paper's network, parameters and outputs unchanged) adds a heteroscedastic
    head (Kendall & Gal, NeurIPS 2017): a second 1x1 conv on the same dropped-out features giving
    ``log sigma^2`` per voxel (parameters ``log_var_head.*``; the mean's ``head.*`` keep their names and
    shapes). :meth:`forward` still returns the mean only; :meth:`forward_dist` returns both.
    ``aleatoric_features="deterministic"``: the conv reads the eval-mode features instead
    (:meth:`deterministic_log_var`; :data:`ALEATORIC_FEATURES`).
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 1, base: int = 64, depth: int = 5,
                 dropout: float = 0.3, decoder_dropout: float = 0.0, aleatoric: bool = False,
                 aleatoric_features: str = "dropped"):
        super().__init__()
        if aleatoric_features not in ALEATORIC_FEATURES:
            raise ValueError(f"aleatoric_features must be one of {ALEATORIC_FEATURES}, got {aleatoric_features!r}")
        self.aleatoric_features = aleatoric_features
        for name, p in (("dropout", dropout), ("decoder_dropout", decoder_dropout)):
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        self.depth = int(depth)
        self.decoder_dropout = float(decoder_dropout)
        widths = [min(base * 2 ** i, base * 8) for i in range(self.depth)]
        self.downs = nn.ModuleList([_Down(in_channels if i == 0 else widths[i - 1], widths[i], norm=i > 0)
                                    for i in range(self.depth)])
        ups = []
        for i in reversed(range(self.depth)):
            cin = widths[i] if i == self.depth - 1 else widths[i] * 2
            cout = widths[i - 1] if i > 0 else base
            ups.append(_Up(cin, cout, self.decoder_dropout if i > 0 else 0.0))
        self.ups = nn.ModuleList(ups)
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Sequential(nn.Conv2d(base, out_channels, 1), nn.Tanh())
        self.aleatoric = bool(aleatoric)
        if self.aleatoric:  # created last, RNG state restored: everything else initialises as without the head
            with torch.random.fork_rng(devices=[]):
                self.log_var_head = nn.Conv2d(base, out_channels, 1)
            nn.init.constant_(self.log_var_head.bias, LOG_VAR_INIT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The synthetic image (the mean channel only, with or without the aleatoric head)."""
        return self.head_from(self.backbone(x))

    def head_from(self, features: torch.Tensor) -> torch.Tensor:
        """The last layer: ``tanh(conv1x1(dropout(features)))`` (the only stochastic part)."""
        return self.head(self.dropout(features))

    def forward_dist(self, x: torch.Tensor, detach_features: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_var)`` of the per-voxel Gaussian (aleatoric head; :meth:`dist_from`)."""
        return self.dist_from(self.backbone(x), detach_features)

    def dist_from(self, features: torch.Tensor, detach_features: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``tanh(conv1x1(d))`` and ``log sigma^2 = clamp(conv1x1'(d), *LOG_VAR_RANGE)`` (model units,
        images in [-1, 1]) from ONE dropout draw ``d`` of the features: the two 1x1 convs are the two output
        channels of the paper's last layer. ``detach_features``: the log variance sees ``d`` without gradient
        (a loss on it then trains the log-variance conv only). Needs ``aleatoric=True``."""
        if not self.aleatoric:
            raise ValueError("this synthDIR network has no aleatoric (log-variance) head")
        d = self.dropout(features)
        return self.head(d), self.log_var_head(d.detach() if detach_features else d).clamp(*LOG_VAR_RANGE)

    def deterministic_log_var(self, x: torch.Tensor) -> torch.Tensor:
        """``log sigma^2`` from the eval-mode (dropout off) features, clamped; draws no random numbers; the
        module's train/eval state is restored."""
        if not self.aleatoric:
            raise ValueError("this synthDIR network has no aleatoric (log-variance) head")
        state = {m: m.training for m in self.modules()}
        self.eval()
        try:
            return self.log_var_head(self.backbone(x)).clamp(*LOG_VAR_RANGE)
        finally:
            for m, t in state.items():
                m.train(t)

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Every layer before the last-layer dropout: ``(B, base, H, W)`` features (deterministic in eval mode, and
        in MC mode too unless ``decoder_dropout`` > 0)."""
        m = 2 ** self.depth
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"H and W must be divisible by {m}, got {tuple(x.shape[-2:])}")
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()
        for up in self.ups:
            x = up(x)
            if skips:
                x = torch.cat([x, skips.pop()], 1)
        return x


class ConditionalPatchDiscriminator(nn.Module):
    """``D(sources, target)``: the PatchGAN of :mod:`.diamondgan` on the channel-wise concatenation, without the
    sigmoid (least-squares loss on raw scores, as LSGAN)."""

    def __init__(self, source_channels: int = 2, target_channels: int = 1, base: int = 64):
        super().__init__()
        from .diamondgan import PatchDiscriminator
        d = PatchDiscriminator(source_channels + target_channels, base)
        self.net = nn.Sequential(*list(d.net.children())[:-1])

    def forward(self, sources: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([sources, target], 1))


def set_mc_dropout(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Put ``model`` in eval mode, then (``enabled``) only its dropout layers back in train mode."""
    model.eval()
    if enabled:
        for m in model.modules():
            if isinstance(m, nn.Dropout | nn.Dropout2d | nn.Dropout3d):
                m.train()
    return model


@torch.no_grad()
def mc_sample(model: nn.Module, x: torch.Tensor, n_samples: int = 20, *,
              seed: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and voxel-wise standard deviation (population, ddof 0) of ``n_samples`` MC-dropout passes.

    The model's train/eval state is restored afterwards. ``seed`` seeds torch's global generator for the
    passes (same seed -> same output); ``None`` leaves it alone.

    For :class:`UNetGenerator` without decoder dropout the dropout sits only before the last layer, so the
    deterministic backbone runs once and only ``head_from`` (dropout + 1x1 conv + tanh) is sampled
    ``n_samples`` times: the same distribution as full passes (every norm layer is in eval mode either way) at a
    fraction of the cost. With ``decoder_dropout`` > 0 every sample is a full pass.
    """
    fast = isinstance(model, UNetGenerator) and model.decoder_dropout == 0

    def make_draw():
        feats = model.backbone(x) if fast else None
        return lambda: ((model.head_from(feats) if fast else model(x)), None)

    mean, var, _ = _mc_run(model, n_samples, seed, make_draw)
    return mean.to(x.dtype), var.sqrt().to(x.dtype)


def _mc_run(model: nn.Module, n_samples: int, seed: int | None, make_draw) -> tuple:
    """``n_samples`` MC-dropout draws (``make_draw()``, called once in MC mode after seeding, returns the draw:
    ``() -> (mu, sigma^2 or None)``): float64 Welford mean and population variance of ``mu`` (exact zero when
    every draw agrees) and the mean of ``sigma^2`` (None without it). Model train/eval state restored."""
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    was_training = {m: m.training for m in model.modules()}
    if seed is not None:
        torch.manual_seed(int(seed))
    set_mc_dropout(model, True)
    try:
        draw = make_draw()
        mean = m2 = var_sum = None
        for k in range(1, int(n_samples) + 1):
            mu, var = draw()
            mu = mu.double()
            if mean is None:
                mean, m2, var_sum = mu.clone(), torch.zeros_like(mu), var
                continue
            if var is not None:
                var_sum = var_sum + var
            delta = mu - mean
            mean += delta / k
            m2 += delta * (mu - mean)
    finally:
        for m, state in was_training.items():
            m.train(state)
    return mean, m2 / int(n_samples), (None if var_sum is None else var_sum / int(n_samples))


def has_aleatoric_head(model: nn.Module) -> bool:
    """Whether ``model`` is a synthDIR network with the heteroscedastic (log-variance) head."""
    return bool(getattr(model, "aleatoric", False))


@torch.no_grad()
def mc_predictive(model: nn.Module, x: torch.Tensor, n_samples: int = 20, *,
                  seed: int | None = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predictive distribution from ``n_samples`` MC-dropout passes of a network with the aleatoric head:
    ``(mean, sd_epistemic, sd_predictive)`` with

    * ``mean = mean_k mu_k`` and ``sd_epistemic = sqrt(var_k mu_k)`` (population variance, ddof 0): exactly
      what :func:`mc_sample` gives for the same seed;
    * ``sd_predictive = sqrt(mean_k sigma_k^2 + var_k mu_k)``: the standard deviation of the mixture of the
      passes' Gaussians ``N(mu_k, sigma_k^2)`` (Kendall & Gal 2017, Eq. 9), i.e. the MC standard deviation of
      samples drawn from the predictive distribution: epistemic + aleatoric.

    Each pass draws ONE dropout mask shared by the mean and log-variance outputs (with
    ``aleatoric_features="deterministic"`` sigma^2 comes from one eval-mode pass, the same for every pass). A
    network without the head gives ``sd_predictive = sd_epistemic`` (no aleatoric part). Model state is restored; ``seed`` as in
    :func:`mc_sample`. Accumulated in float64, returned in ``x``'s dtype.
    """
    if not has_aleatoric_head(model):
        mean, sd = mc_sample(model, x, n_samples, seed=seed)
        return mean, sd, sd.clone()
    fast = model.decoder_dropout == 0
    fixed = model.aleatoric_features == "deterministic"

    def make_draw():
        feats = model.backbone(x) if fast else None
        if fixed:
            var_fixed = model.deterministic_log_var(x).double().exp()  # draws nothing
            return lambda: ((model.head_from(feats) if fast else model(x)), var_fixed)

        def draw():
            mu, log_var = model.dist_from(feats) if fast else model.forward_dist(x)
            return mu, log_var.double().exp()
        return draw

    mean, var_mu, var_ale = _mc_run(model, n_samples, seed, make_draw)
    predictive = var_ale + var_mu
    return mean.to(x.dtype), var_mu.sqrt().to(x.dtype), predictive.sqrt().to(x.dtype)


__all__ = ["ALEATORIC_FEATURES", "LOG_VAR_INIT", "LOG_VAR_RANGE", "ConditionalPatchDiscriminator", "UNetGenerator",
           "has_aleatoric_head", "mc_predictive", "mc_sample", "set_mc_dropout"]
