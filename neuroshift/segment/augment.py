"""The papers' geometric augmentation of 2D training slices, seeded and label-consistent.

Dissertation 003 augments every training slice with a random affine map [R]:

* rotation ±15°, shear (WMH: ±0.1 rad ≈ ±5.7°; neonatal claustrum: ±4°), scale 0.9-1.1
  (independently along both in-plane axes, as the released ``zoom`` matrix), translation ±10 %
  of the slice size (neonatal recipe), and a left-right flip.

One random map is drawn per slice and applied to all its channels and to its label: images are
resampled bilinearly (edge values repeated outside the slice, like Keras ``fill_mode='nearest'``),
labels with nearest neighbour (zeros outside), so a binary label stays binary and the label never
drifts from the image.

Everything runs in torch on the batch's device (``affine_grid`` + ``grid_sample``); randomness
comes only from the ``torch.Generator`` passed in (CPU generator, so the same seed gives the same
maps on CPU and GPU). numpy arrays are accepted and returned as numpy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

#: Named parameter sets (``AugmentConfig.preset(name)``).
PRESETS: dict[str, dict[str, Any]] = {
    # Li et al. 2018 (WMH, released train script): rotation ±15°, shear ±0.1 rad, zoom 0.9-1.1, flip.
    "wmh": dict(rotation_deg=15.0, shear_deg=5.73, scale=(0.9, 1.1), translate=0.0, flip_prob=0.5),
    # Li et al. 2021 (adult claustrum) and Neubauer et al. 2022 (neonatal transfer learning).
    "claustrum": dict(rotation_deg=15.0, shear_deg=4.0, scale=(0.9, 1.1), translate=0.1, flip_prob=0.5),
    "neonatal": dict(rotation_deg=15.0, shear_deg=4.0, scale=(0.9, 1.1), translate=0.1, flip_prob=0.0),
    "none": dict(rotation_deg=0.0, shear_deg=0.0, scale=(1.0, 1.0), translate=0.0, flip_prob=0.0),
}


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random affine map (angles in degrees, translation as a fraction of the size).

    ``flip_axis`` is the slice axis that runs left-right (-1 = columns, the convention of the
    axial and coronal slices that :mod:`neuroshift.segment.dataset` produces); sagittal slices have
    no left-right axis, so training turns flipping off for them.
    """

    rotation_deg: float = 15.0
    shear_deg: float = 4.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.1
    flip_prob: float = 0.5
    flip_axis: int = -1
    enabled: bool = True

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "AugmentConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown augmentation preset '{name}'; known: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "AugmentConfig":
        """Build from a (YAML) dict; ``{"preset": "wmh", ...}`` starts from a preset."""
        d = dict(d or {})
        preset = d.pop("preset", None)
        if "scale" in d:
            d["scale"] = tuple(float(v) for v in d["scale"])
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown augmentation key(s) {unknown}; allowed: {', '.join(cls.__dataclass_fields__)}")
        return cls.preset(preset, **d) if preset else cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scale"] = list(self.scale)
        return d

    def without_flip(self) -> "AugmentConfig":
        return replace(self, flip_prob=0.0)


def _uniform(n: int, lo: float, hi: float, generator) -> "torch.Tensor":
    import torch

    return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)


def sample_params(n: int, config: AugmentConfig, generator) -> dict[str, "torch.Tensor"]:
    """Draw ``n`` random maps: ``rotation``, ``shear`` (radians), ``scale_x``, ``scale_y``,
    ``translate_x``, ``translate_y`` (fractions), ``flip`` (bool). Always draws the same number of
    random numbers, so the stream does not depend on which ranges are zero."""
    import torch

    rot = math.radians(config.rotation_deg)
    sh = math.radians(config.shear_deg)
    lo, hi = (float(v) for v in config.scale)
    return dict(
        rotation=_uniform(n, -rot, rot, generator),
        shear=_uniform(n, -sh, sh, generator),
        scale_x=_uniform(n, lo, hi, generator),
        scale_y=_uniform(n, lo, hi, generator),
        translate_x=_uniform(n, -config.translate, config.translate, generator),
        translate_y=_uniform(n, -config.translate, config.translate, generator),
        flip=torch.rand(n, generator=generator, dtype=torch.float64) < config.flip_prob,
    )


def forward_matrices(params: dict[str, "torch.Tensor"], hw: tuple[int, int]) -> "torch.Tensor":
    """``(n, 3, 3)`` forward maps in pixel coordinates centred on the slice (x = column, y = row):
    ``T · R · Sh · Z`` (zoom, then shear, rotation, translation), as in the released code."""
    import torch

    h, w = hw
    n = params["rotation"].shape[0]
    c, s = torch.cos(params["rotation"]), torch.sin(params["rotation"])
    eye = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    rot = eye.clone()
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = c, -s, s, c
    shear = eye.clone()
    shear[:, 0, 1] = -torch.sin(params["shear"])
    shear[:, 1, 1] = torch.cos(params["shear"])
    zoom = eye.clone()
    zoom[:, 0, 0], zoom[:, 1, 1] = params["scale_x"], params["scale_y"]
    trans = eye.clone()
    trans[:, 0, 2] = params["translate_x"] * w
    trans[:, 1, 2] = params["translate_y"] * h
    return trans @ rot @ shear @ zoom


def sampling_theta(params: dict[str, "torch.Tensor"], hw: tuple[int, int]) -> "torch.Tensor":
    """``(n, 2, 3)`` matrices for ``affine_grid`` (normalised output -> input coordinates)."""
    import torch

    h, w = hw
    inv = torch.linalg.inv(forward_matrices(params, hw))
    # pixel (centred) = S · normalised, with align_corners=False: S = diag(w/2, h/2)
    S = torch.diag(torch.tensor([w / 2.0, h / 2.0, 1.0], dtype=torch.float64))
    S_inv = torch.diag(torch.tensor([2.0 / w, 2.0 / h, 1.0], dtype=torch.float64))
    theta = S_inv @ inv @ S
    return theta[:, :2, :]


def apply_params(images, labels, params: dict[str, "torch.Tensor"], *, flip_axis: int = -1):
    """Warp ``images`` (B, C, H, W) bilinearly and ``labels`` (B, L, H, W) with nearest neighbour
    by the maps in ``params``; flip the flagged samples along ``flip_axis`` afterwards."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = images.shape
    theta = sampling_theta(params, (h, w)).to(device=images.device, dtype=torch.float32)
    identity = torch.allclose(theta.cpu(), torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(b, 2, 3), atol=1e-7)
    if not identity:
        grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
        images = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        if labels is not None:
            ldtype = labels.dtype
            labels = F.grid_sample(labels.float(), grid, mode="nearest", padding_mode="zeros",
                                   align_corners=False).to(ldtype)
    flip = params["flip"].to(images.device)
    if bool(flip.any()):
        axis = flip_axis if flip_axis < 0 else flip_axis - 4  # an axis of the (H, W) slice
        images = torch.where(flip.view(b, 1, 1, 1), torch.flip(images, dims=[axis]), images)
        if labels is not None:
            labels = torch.where(flip.view(b, 1, 1, 1), torch.flip(labels, dims=[axis]), labels)
    return images, labels


class RandomAffine2D:
    """Callable batch augmenter: ``aug(images, labels, generator) -> (images, labels)``.

    ``images`` (B, C, H, W) and ``labels`` (B, 1, H, W) (or (B, H, W)) as torch tensors or numpy
    arrays; the output has the input's type. ``generator`` is a ``torch.Generator`` (or an int
    seed); the same seed gives the same maps.
    """

    def __init__(self, config: AugmentConfig | None = None):
        self.config = config or AugmentConfig()

    def __call__(self, images, labels=None, generator=None):
        import torch

        if generator is None or isinstance(generator, (int, np.integer)):
            generator = torch.Generator().manual_seed(int(generator or 0))
        as_numpy = isinstance(images, np.ndarray)
        img = torch.as_tensor(images)
        lab = None if labels is None else torch.as_tensor(labels)
        squeeze = lab is not None and lab.ndim == 3
        if squeeze:
            lab = lab[:, None]
        if img.ndim != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(img.shape)}")
        if not self.config.enabled:
            return images, labels
        params = sample_params(img.shape[0], self.config, generator)
        out_img, out_lab = apply_params(img, lab, params, flip_axis=self.config.flip_axis)
        if squeeze:
            out_lab = out_lab[:, 0]
        if as_numpy:
            out_img = out_img.cpu().numpy().astype(np.asarray(images).dtype, copy=False)
            out_lab = None if out_lab is None else out_lab.cpu().numpy()
        return out_img, out_lab


def augment_slice(image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator | int,
                  config: AugmentConfig | None = None):
    """numpy convenience for one slice: ``image`` (C, H, W) or (H, W), ``label`` (H, W).

    ``rng`` is a numpy Generator (one integer is drawn from it to seed torch) or an int seed.
    """
    seed = int(rng) if isinstance(rng, (int, np.integer)) else int(rng.integers(0, 2**63 - 1))
    img = np.asarray(image)
    two_d = img.ndim == 2
    batch = (img[None, None] if two_d else img[None]).astype(np.float32)
    lab = None if label is None else np.asarray(label)[None, None]
    out_img, out_lab = RandomAffine2D(config)(batch, lab, seed)
    out_img = out_img[0, 0] if two_d else out_img[0]
    return out_img, (None if out_lab is None else out_lab[0, 0].astype(np.asarray(label).dtype))
