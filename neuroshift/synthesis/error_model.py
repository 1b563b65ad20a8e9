"""Residual-trained error model: a learned per-voxel SD of a synthetic image's error.

Why a second network. On held-out phantoms most of synthDIR's per-voxel error is *systematic*: rendered again
with new noise, the same subject's error keeps ~70-77 % of its square (the mean over noise draws), and the
expected error ranks the actual one at Spearman 0.52 (``dev/synthesis_uncertainty.py --noise-draws``). MC
dropout before the last layer (the paper's placement) measures how much the last features vary, not where the
generator is wrong, and ranks the error at only ~0.15. A small network that sees the sources and the synthetic
image, trained by the Gaussian negative log-likelihood (the heteroscedastic loss of Kendall & Gal 2017; mean fixed)
on the frozen generator's residuals on subjects the generator never saw, learns where it errs. This is a
post-hoc model: the generator's weights and outputs do not change.

Units. ``sigma`` is in units of the *target's robust brain range*: the reference and the synthetic image are
each clipped to their 0.5-99.5 brain percentiles and mapped to [0, 1] (:func:`.metrics.normalise`, as every
synthesis metric). :func:`neuroshift.synthesis.inference.synthesize` multiplies it by the synthetic image's
own 0.5-99.5 percentile range to give a.u.

Network: MONAI's ``UNet`` (2D, axial slices as the generator; :class:`ErrorNet`), inputs = the generator's
normalised sources in [-1, 1] + the synthetic image normalised as above and mapped to [-1, 1]; output
``log sigma^2`` clamped to :data:`LOG_VAR_RANGE`. A package carries it as :data:`WEIGHTS` (safetensors) and
the manifest section :data:`MANIFEST_KEY` (architecture, SHA-256 of the weights, training record).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import InputError
from ..segment.package import sha256_file
from ..training.loop import EpochContext, StepOutput
from .losses import masked_gaussian_nll

MANIFEST_KEY = "error_model"
WEIGHTS = "error_model.safetensors"
#: Default architecture: MONAI ``UNet`` arguments (2D). ``num_res_units`` 0 keeps the top up-sampling a plain
#: transposed conv; with residual units MONAI ends in a 1-channel instance norm, which limits the range of a
#: regression output (on a toy problem with a known SD: Spearman 0.45 vs 0.20 after the same 96 steps).
#: ``{"network": "BasicUNet", "features": [...]}`` selects MONAI's ``BasicUNet`` instead.
ARCHITECTURE = {"network": "UNet", "channels": [24, 48, 96, 96], "strides": [2, 2, 2], "num_res_units": 0}
#: Clamp of log sigma^2 (sigma from 0.0009 to 2.7 target ranges).
LOG_VAR_RANGE = (-14.0, 2.0)


class ErrorNet(torch.nn.Module):
    """A MONAI U-Net whose output plus ``log_var_offset`` (a buffer, set at the start of training to the log of
    the mean squared residual, so training starts from the right scale) is ``log sigma^2``."""

    def __init__(self, n_sources: int, architecture: Mapping[str, Any]):
        super().__init__()
        from monai.networks.nets import BasicUNet, UNet
        arch = {**architecture}
        kind = arch.pop("network", "UNet")
        if kind == "UNet":
            self.net = UNet(spatial_dims=2, in_channels=int(n_sources) + 1, out_channels=1,
                            channels=tuple(int(c) for c in arch["channels"]),
                            strides=tuple(int(s) for s in arch["strides"]),
                            num_res_units=int(arch.get("num_res_units", 0)))
        elif kind == "BasicUNet":
            self.net = BasicUNet(spatial_dims=2, in_channels=int(n_sources) + 1, out_channels=1,
                                 features=tuple(int(f) for f in arch["features"]))
        else:
            raise InputError(f"error model network must be UNet or BasicUNet, not {kind!r}")
        self.register_buffer("log_var_offset", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + self.log_var_offset


def build_error_net(n_sources: int, architecture: Mapping[str, Any] = ARCHITECTURE) -> ErrorNet:
    """The error network for a generator with ``n_sources`` input channels (+1: the synthetic image)."""
    return ErrorNet(n_sources, architecture)


def size_multiple(architecture: Mapping[str, Any]) -> int:
    if architecture.get("network", "UNet") == "BasicUNet":
        return 16
    return int(np.prod([int(s) for s in architecture["strides"]]))


def network_input(sources: np.ndarray, synthetic: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``(n + 1, k, j, i)`` float32: the generator's normalised ``sources`` (n, k, j, i) in [-1, 1] and the
    ``synthetic`` image (any units) normalised as the metrics, mapped to [-1, 1]."""
    from .metrics import normalise
    syn = normalise(synthetic, brain) * 2.0 - 1.0
    return np.concatenate([np.asarray(sources, np.float32), syn[None].astype(np.float32)])


def residual(reference: np.ndarray, synthetic: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """reference - synthetic, both normalised as the metrics (target-range units): what the model learns."""
    from .metrics import normalise_pair
    r, p = normalise_pair(reference, synthetic, brain)
    return (r - p).astype(np.float32)


def pad_slices(t: torch.Tensor, m: int) -> torch.Tensor:
    """Zero-pad (N, C, H, W) slices at the bottom and right to multiples of ``m``: THE padding of the error
    model, in training and inference alike. It matters: the network's instance norms see the padded border, and
    the model trained with zeros ranks the error at 0.43 with zeros but 0.31 with edge replication (validation
    subject of the shipped model)."""
    h, w = t.shape[-2:]
    return torch.nn.functional.pad(t, (0, (-w) % m, 0, (-h) % m)) if (h % m or w % m) else t


def log_variance(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net(x).float().clamp(*LOG_VAR_RANGE)


@torch.no_grad()
def predict_sd(net: torch.nn.Module, x: np.ndarray, brain: np.ndarray, architecture: Mapping[str, Any], *,
               batch_slices: int = 16, device: str | torch.device = "cpu") -> np.ndarray:
    """Per-voxel SD (target-range units, float32; 0 outside ``brain``) from :func:`network_input` ``x``."""
    brain = np.asarray(brain, bool)
    out = np.zeros(brain.shape, np.float32)
    m = size_multiple(architecture)
    net = net.to(device).eval()
    for start in range(0, brain.shape[0], int(batch_slices)):
        ks = [k for k in range(start, min(start + int(batch_slices), brain.shape[0])) if brain[k].any()]
        if not ks:
            continue
        t = torch.from_numpy(np.ascontiguousarray(x[:, ks].transpose(1, 0, 2, 3))).to(device)
        h, w = t.shape[-2:]
        out[ks] = torch.exp(0.5 * log_variance(net, pad_slices(t, m)))[:, 0, :h, :w].cpu().numpy()
    return out * brain


def attach(folder: str | Path, net: torch.nn.Module, architecture: Mapping[str, Any],
           record: Mapping[str, Any]) -> Path:
    """Add the error model to the synthesis package in ``folder``: weights (atomic, verified by reading them
    back), then the manifest section with their SHA-256 and ``record`` (how it was trained and scored)."""
    from safetensors.torch import load_file, save_file

    from ..io.atomic import atomic_path, write_text_atomic
    from .inference import MANIFEST
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}

    def verify(tmp: Path) -> None:
        back = load_file(str(tmp))
        if back.keys() != state.keys() or not all(torch.equal(back[k], state[k]) for k in state):
            raise InputError(f"{folder / WEIGHTS}: written weights do not read back identically")

    with atomic_path(folder / WEIGHTS, verify=verify) as tmp:
        save_file(state, str(tmp))
    manifest[MANIFEST_KEY] = {"architecture": dict(architecture), "weights": WEIGHTS,
                              "sha256": sha256_file(folder / WEIGHTS), "units": "target robust brain range "
                              "(0.5-99.5 percentiles -> [0, 1])", **dict(record)}
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return folder


def load(folder: str | Path, manifest: Mapping[str, Any], n_sources: int,
         device: str | torch.device = "cpu") -> torch.nn.Module | None:
    """The package's error network (eval mode), or None when its manifest has none; refuses weights whose
    SHA-256 differs from the manifest's or that do not fit the recorded architecture."""
    from safetensors.torch import load_file
    section = manifest.get(MANIFEST_KEY)
    if section is None:
        return None
    path = Path(folder) / section.get("weights", WEIGHTS)
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise InputError(f"{path}: error model weights cannot be read ({exc})") from None
    if digest != section.get("sha256"):
        raise InputError(f"{path}: SHA-256 {digest[:12]}... differs from the manifest's; the file was changed")
    net = build_error_net(n_sources, section["architecture"])
    try:
        net.load_state_dict(load_file(str(path), device="cpu"))
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit the manifest's error model ({exc})") from None
    return net.to(device).eval()


class ErrorModelStep:
    """Train the error network (a :class:`~neuroshift.training.loop.TrainStep`): ``inputs`` (N, C, H, W) from
    :func:`network_input`, ``res`` (N, 1, H, W) from :func:`residual`, ``brain`` (N, 1, H, W) 0/1; AdamW,
    random left-right flips; validation: per-voxel Spearman of the SD with |residual| over brain voxels."""

    def __init__(self, inputs: torch.Tensor, res: torch.Tensor, brain: torch.Tensor, *,
                 val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                 architecture: Mapping[str, Any] = ARCHITECTURE, lr: float = 2e-3, weight_decay: float = 1e-4,
                 batch_size: int = 16, seed: int = 0):
        m = size_multiple(architecture)
        if inputs.shape[-2] % m or inputs.shape[-1] % m:
            raise ValueError(f"slice size {tuple(inputs.shape[-2:])} must be a multiple of {m}")
        self.inputs, self.res, self.brain, self.val = inputs, res, brain.float(), val
        self.batch_size = int(batch_size)
        torch.manual_seed(seed)
        net = build_error_net(inputs.shape[1] - 1, architecture)
        keep = self.brain.bool()
        net.log_var_offset.fill_(float(torch.log((res[keep] ** 2).mean().clamp_min(1e-12))) if keep.any() else 0.0)
        self.models = {"error_net": net}
        self.optimizers = {"error_net": torch.optim.AdamW(self.models["error_net"].parameters(), lr=lr,
                                                          weight_decay=weight_decay)}

    def batches(self, ctx: EpochContext):
        return ctx.order_batches(len(self.inputs), self.batch_size)

    def step(self, idx, ctx: EpochContext) -> StepOutput:
        x, r, b = (v[idx].to(ctx.device) for v in (self.inputs, self.res, self.brain))
        if bool(torch.rand((), generator=ctx.generator) < 0.5):
            x, r, b = x.flip(-1), r.flip(-1), b.flip(-1)
        with ctx.autocast():
            loss = masked_gaussian_nll(log_variance(self.models["error_net"], x), r, b)
        opt = self.optimizers["error_net"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return StepOutput({"loss_nll": loss.item()}, len(idx))

    @torch.no_grad()
    def validate(self, ctx: EpochContext) -> dict[str, float]:
        if self.val is None:
            return {}
        from .metrics import spearman
        net = self.models["error_net"].eval()
        x, r, b = self.val
        sd = torch.cat([log_variance(net, x[i:i + 16].to(ctx.device)).cpu() for i in range(0, len(x), 16)])
        net.train()
        keep = b.bool()
        return {"val_spearman": spearman(sd[keep].numpy(), r.abs()[keep].numpy())}


__all__ = ["ARCHITECTURE", "ErrorModelStep", "ErrorNet", "LOG_VAR_RANGE", "MANIFEST_KEY", "WEIGHTS", "attach",
           "build_error_net", "load", "network_input", "pad_slices", "predict_sd", "residual"]
