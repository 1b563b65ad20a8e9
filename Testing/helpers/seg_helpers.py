"""Small deterministic models, packages and phantoms shared by the segmentation inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from neuroshift.io.volume import Volume
from neuroshift.segment.package import LoadedPackage, save_package
from neuroshift.segment.unet import build_unet

TINY_UNET = dict(encoder=(4, 4, 4, 4, 4), decoder=(4, 4, 4, 4))


class ShiftThreshold(nn.Module):
    """A fixed 'network': p = sigmoid(gain * (x[c0](h, w + shift) - level)).

    The in-plane shift makes it sensitive to how slices are oriented (a wrong reorientation would move
    the mask), the threshold makes a clean mask of bright structures (z-score > level).
    """

    def __init__(self, in_channels: int = 1, level: float = 0.5, gain: float = 8.0, shift: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1 + shift] = 1.0
        self.level, self.gain = level, gain

    def forward_logits(self, x):
        return self.gain * (self.conv(x) - self.level)

    def forward(self, x):
        return torch.sigmoid(self.forward_logits(x))


def threshold_package(task="claustrum", views=("axial", "coronal"), members=2, channels=("T1",),
                      spacing_mm=1.0, crop_hw=(64, 64), slab_fraction=0.2, threshold=0.5, **extra) -> LoadedPackage:
    manifest = {
        "task": task, "input_channels": list(channels), "views": list(views), "models_per_view": members,
        "preprocessing": {"spacing_mm": spacing_mm, "crop_hw": list(crop_hw) if crop_hw else None, "zscore": True,
                          "brain_mask": {"mode": "relative", "thresholds": {"*": 0.2}}},
        "threshold": threshold, "slab_fraction": slab_fraction, "architecture": {"name": "test-threshold"},
    }
    manifest.update(extra)
    models = {v: [ShiftThreshold(len(channels)).eval() for _ in range(members)] for v in views}
    return LoadedPackage(manifest, models)


def tiny_unet_package(path: Path, task="claustrum", channels=("T1",), views=("axial", "coronal"), members=2,
                      seed=0, **pre) -> Path:
    torch.manual_seed(seed)
    cfg = dict(TINY_UNET, in_channels=len(channels))
    manifest = {"task": task, "input_channels": list(channels), "threshold": 0.5, "slab_fraction": 0.2,
                "preprocessing": {"spacing_mm": 1.0, "crop_hw": [48, 48], "zscore": True,
                                  "brain_mask": {"mode": "relative"}, **pre},
                "description": "tiny random test model", "demo": False}
    return save_package(path, manifest, {v: [build_unet(cfg) for _ in range(members)] for v in views})


def phantom_ras(spacing=(1.0, 1.0, 1.0), fov_mm=(48.0, 52.0, 44.0), origin_shift=(0.0, 0.0, 0.0)) -> Volume:
    """A head-like phantom sampled analytically on an RAS-stored grid (LPS direction diag(-1, -1, 1)).

    Brain: ellipsoid of intensity 100 centred at the physical origin; two bright sheets (200) left
    and right of the midline (claustrum-like, bilateral) and one bright blob (200) right-anterior-
    superior (asymmetric, so a wrong flip would show).
    """
    spacing = np.asarray(spacing, dtype=float)
    n = np.maximum(4, np.round(np.asarray(fov_mm) / spacing)).astype(int)
    direction = np.diag([-1.0, -1.0, 1.0])
    centre_idx = (n - 1) / 2.0
    origin = -direction @ (spacing * centre_idx) + np.asarray(origin_shift)
    vol = Volume(np.zeros((n[2], n[1], n[0]), np.float32), spacing, origin, direction)
    return vol.with_data(phantom_values(physical_ras(vol)).astype(np.float32))


def physical_ras(vol: Volume) -> np.ndarray:
    """RAS coordinates (mm) of every voxel centre, shape ``(K, J, I, 3)``."""
    k, j, i = np.indices(vol.data.shape)
    ijk = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(float)
    return (ijk @ vol.ijk_to_ras().T)[..., :3]


def phantom_values(ras: np.ndarray) -> np.ndarray:
    x, y, z = ras[..., 0], ras[..., 1], ras[..., 2]
    brain = (x / 20.0) ** 2 + (y / 22.0) ** 2 + (z / 18.0) ** 2 <= 1.0
    sheets = (np.abs(np.abs(x) - 9.0) <= 1.6) & (np.abs(y) <= 10) & (np.abs(z) <= 7)
    blob = (x - 6) ** 2 + (y - 9) ** 2 + (z - 6) ** 2 <= 3.5 ** 2
    out = np.where(brain, 100.0, 0.0)
    out = np.where(brain & (sheets | blob), 200.0, out)
    return out


def truth_mask(vol: Volume) -> np.ndarray:
    return phantom_values(physical_ras(vol)) > 150


def stored_as(vol: Volume, code: str) -> Volume:
    """The same scan stored with another axis order/orientation (independent of neuroshift: SimpleITK)."""
    import SimpleITK as sitk

    img = sitk.DICOMOrient(vol.to_sitk(), code)
    return Volume.from_sitk(img)


def dice_physical(a: Volume, b: Volume) -> float:
    """Dice of two masks in physical space: ``b`` is brought onto ``a``'s grid by nearest neighbour."""
    import SimpleITK as sitk

    bb = sitk.Resample(b.with_data(b.data.astype(np.uint8)).to_sitk(), a.with_data(a.data.astype(np.uint8)).to_sitk(),
                       sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    x = np.asarray(a.data) != 0
    y = sitk.GetArrayFromImage(bb) != 0
    s = x.sum() + y.sum()
    return 1.0 if s == 0 else float(2 * (x & y).sum() / s)


def dice(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x) != 0, np.asarray(y) != 0
    s = x.sum() + y.sum()
    return 1.0 if s == 0 else float(2 * (x & y).sum() / s)
