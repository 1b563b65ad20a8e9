"""Import the authors' Keras ``.h5`` U-Nets into model packages, with h5py only (no TensorFlow, no Keras).

Supported file layouts (all read without executing anything stored in the file):

* Keras 2 / tf.keras full model (``model.save('m.h5')``): ``model_weights/<layer>/<layer>/kernel:0``,
  layer order from the ``layer_names`` attribute, weight order from each layer's ``weight_names``;
* Keras 2 weights only (``model.save_weights('m.h5')``): the same below the file's root;
* Keras 3 legacy HDF5 (``model.save('m.h5')``): as Keras 2 without the ``:0`` suffix;
* Keras 1 with TensorFlow dimension ordering (``<layer>_W``, ``<layer>_b``): the same groups; the kernel
  is a layer's 4D weight, the bias its 1D weight (Theano-ordered kernels fail the shape check);
* Keras 3 weights (``model.save_weights('m.weights.h5')``): ``layers/<layer>/vars/0`` (kernel) and
  ``vars/1`` (bias); layers in natural name order (``conv2d, conv2d_1, ..., conv2d_10``), which is
  creation order for Keras' automatic names; the shapes are checked against the architecture.

Every ``Conv2D`` (a layer with a 4D kernel) is taken in order and mapped onto
:meth:`UNet2D.conv_layers() <neuroshift.segment.unet.UNet2D.conv_layers>`; kernels are transposed
from Keras' ``(kh, kw, in, out)`` to torch's ``(out, in, kh, kw)``. The U-Net configuration (widths,
depth, kernel sizes, input channels) is inferred from the kernel shapes, so the released networks
and reduced-width variants of the same layout import alike.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError, IntegrityError, UnreadableFileError

#: The authors' released inference scripts the imported packages follow (read, not copied).
WMH_RELEASE = "hongweilibran/wmh_ibbmTum test_tf2.py (commit f87d0fb, 2025-11-04)"
CLAUSTRUM_RELEASE = "hongweilibran/claustrum_multi_view test_two_views.py (commit 99e85a3)"

#: Manifest defaults per task: what the authors' released inference does (``settings_source`` in the
#: manifest says which release each setting follows); the preprocessing keys are those
#: :mod:`neuroshift.segment.preprocess` reads. Both releases feed the networks the stored array order of
#: the file (``sitk.GetArrayFromImage``, no reorientation): the WMH networks were trained on the
#: challenge files, stored LPS (``orientation: "LPS"`` reorients any input to that order, identical to
#: the release on LPS-stored files); the claustrum training data's orientation is not published, so the
#: package keeps the stored order as the release does (``"stored"``; ``--orientation`` overrides).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "claustrum": {
        "task": "claustrum",
        "input_channels": ["T1w"],
        "views": ["axial", "coronal"],
        "threshold": 0.40,
        "slab_fraction": 0.20,
        "slab_fill": "view-min",
        "preprocessing": {"orientation": "stored", "spacing_mm": [1.0, 1.0, 1.0], "crop_hw": [180, 180],
                          "zscore": True, "pad_value": "min",
                          "brain_mask": {"mode": "absolute", "thresholds": {"*": 10}, "largest_component": False,
                                         "fill_holes": True},
                          "input": "skull-stripped, ANLM-denoised T1w MPRAGE resampled to 1 mm"},
        "settings_source": {
            "release": CLAUSTRUM_RELEASE,
            "orientation": "stored array order (sitk.GetArrayFromImage, no reorientation); axial = array[k], "
                           "coronal = transpose(1, 0, 2)",
            "brain_mask": "T1 >= 10, binary_fill_holes per axial slice, no largest component; z-score inside",
            "crop_hw": "centre crop/pad to 180x180, pad value = minimum of the z-scored volume",
            "slab_fraction": "per = 0.2: first/last int(0.2 n) slices of each view not predicted",
            "slab_fill": "crop_or_pad fills each view's unpredicted voxels with the minimum of its mean "
                         "probability; no clearing after the view average",
            "threshold": "(axial mean + coronal mean) / 2 > 0.40",
            "spacing_mm": "README step a: resample to 1 mm before inference (the script itself does not)",
        },
        "description": "Adult claustrum, multi-view 2D U-Net ensemble (Li et al., Hum Brain Mapp 2021)",
    },
    "claustrum-neonatal": {
        "task": "claustrum",
        "input_channels": ["T2w"],
        "views": ["axial", "coronal"],
        "threshold": 0.40,
        "slab_fraction": 0.25,
        "slab_fill": "view-min",
        "preprocessing": {"orientation": "stored", "spacing_mm": [0.5, 0.5, 0.5], "crop_hw": [200, 200],
                          "zscore": True, "pad_value": "min",
                          "brain_mask": {"mode": "absolute", "thresholds": {"*": 10}, "largest_component": False,
                                         "fill_holes": True},
                          "input": "dHCP T2w, 0.5 mm", "min_age_weeks": 35.0},
        "settings_source": {
            "release": CLAUSTRUM_RELEASE + " (the README runs the neonatal models with it)",
            "orientation": "stored array order, as the release", "slab_fill": "as the release",
            "crop_hw": "200x200 and 25 % slabs from the paper (Neubauer et al. 2022); the release script "
                       "hard-codes 180x180 and 20 %",
        },
        "description": "Neonatal claustrum, transfer-learned multi-view 2D U-Net ensemble (Neubauer, Li et al., "
                       "Clin Neuroradiol 2022)",
    },
    "wmh": {
        "task": "wmh",
        "input_channels": ["FLAIR", "T1"],
        "views": ["axial"],
        "threshold": 0.45,
        "slab_fraction": 0.125,
        "slab_fill": "zero",
        "preprocessing": {"orientation": "LPS", "spacing_mm": None, "crop_hw": [200, 200], "zscore": True,
                          "pad_value": 0.0,
                          "brain_mask": {"mode": "absolute", "thresholds": {"FLAIR": 30}, "channel": "FLAIR",
                                         "largest_component": False, "fill_holes": True},
                          "input": "FLAIR with T1 registered to it, both bias-corrected"},
        "settings_source": {
            "release": WMH_RELEASE,
            "orientation": "stored array order of the LPS-stored challenge files the networks were trained on "
                           "(sitk.GetArrayFromImage, no reorientation)",
            "brain_mask": "FLAIR >= 30 (thresh = 30), binary_fill_holes per axial slice, no largest component; "
                          "FLAIR and T1 z-scored inside this one mask",
            "crop_hw": "centre crop/pad to 200x200 after the z-score, pad value 0",
            "slab_fraction": "per = 0.125: first/last int(0.125 n) axial slices cleared",
            "threshold": "mean of the 3 networks > 0.45",
            "spacing_mm": "native resolution, no resampling",
            "older_release": "submission_sysu_.py (2017-2020): FLAIR >= 70 and T1 >= 30 masks per channel, "
                             "threshold 0.5",
        },
        "description": "White-matter hyperintensities, 2D U-Net ensemble (Li et al., NeuroImage 2018; MICCAI 2017 "
                       "WMH challenge winner)",
    },
}


@dataclass
class KerasConv:
    """One Keras ``Conv2D``: layer name, kernel ``(kh, kw, in, out)`` and bias ``(out,)``."""

    name: str
    kernel: np.ndarray
    bias: np.ndarray | None


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _decode(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]


def _short(weight_name: str) -> str:
    """``conv2d_3/kernel:0`` -> ``kernel``."""
    return weight_name.split("/")[-1].split(":")[0]


def read_keras_convs(path: str | os.PathLike) -> list[KerasConv]:
    """The ``Conv2D`` layers of a Keras ``.h5`` file, in model order (see the module docstring)."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise UnreadableFileError(f"{p}: no such file")
    try:
        fh = h5py.File(p, "r")
    except OSError as exc:
        raise UnreadableFileError(f"{p}: not an HDF5 file ({exc})") from None
    with fh:
        if "model_weights" in fh and "layer_names" in fh["model_weights"].attrs:
            convs = _read_layer_names_layout(fh["model_weights"])
        elif "layer_names" in fh.attrs:
            convs = _read_layer_names_layout(fh)
        elif "layers" in fh and isinstance(fh["layers"], h5py.Group):
            convs = _read_keras3_weights_layout(fh["layers"])
        else:
            raise UnreadableFileError(f"{p}: not a Keras HDF5 model or weights file (no layer_names, no layers/)")
    if not convs:
        raise UnreadableFileError(f"{p}: no Conv2D layers found")
    return convs


def _read_layer_names_layout(group) -> list[KerasConv]:
    convs = []
    for lname in _decode(group.attrs["layer_names"]):
        if lname not in group:
            continue
        lg = group[lname]
        names = _decode(lg.attrs.get("weight_names", []))
        arrays = []
        for wname in names:
            if wname not in lg:
                raise IntegrityError(f"layer '{lname}': weight '{wname}' listed but missing")
            arrays.append((_short(wname), np.asarray(lg[wname][()])))
        # Keras 2/3 name them kernel/bias, Keras 1 <layer>_W/<layer>_b: go by rank, names only break ties.
        kernels = [a for n, a in arrays if a.ndim == 4]
        biases = [a for n, a in arrays if a.ndim == 1]
        if len(kernels) == 1:
            convs.append(KerasConv(lname, kernels[0], biases[0] if len(biases) == 1 else None))
        elif len(kernels) > 1:
            named = [a for n, a in arrays if n == "kernel"]
            if len(named) != 1:
                raise IntegrityError(f"layer '{lname}' holds {len(kernels)} 4D weights; cannot tell the kernel")
            convs.append(KerasConv(lname, named[0], next((a for n, a in arrays if n == "bias"), None)))
    return convs


def _read_keras3_weights_layout(layers) -> list[KerasConv]:
    convs = []
    for lname in sorted(layers.keys(), key=_natural_key):
        vars_group = layers[lname].get("vars")
        if vars_group is None or "0" not in vars_group:
            continue
        kernel = np.asarray(vars_group["0"][()])
        if kernel.ndim != 4:
            continue
        bias = np.asarray(vars_group["1"][()]) if "1" in vars_group else None
        convs.append(KerasConv(lname, kernel, bias))
    return convs


def infer_unet_config(convs: Sequence[KerasConv]) -> dict[str, Any]:
    """The :func:`~neuroshift.segment.unet.build_unet` config whose convolutions have these kernel shapes."""
    n = len(convs)
    if n < 7 or (n - 3) % 4:
        raise IntegrityError(f"{n} Conv2D layers do not form a U-Net of the released layout "
                             "(expected 4*depth + 3, e.g. 19)")
    depth = (n - 3) // 4
    shapes = [c.kernel.shape for c in convs]
    for c in convs:
        if c.kernel.shape[0] != c.kernel.shape[1]:
            raise IntegrityError(f"layer '{c.name}': non-square kernel {c.kernel.shape[:2]} is not supported")
    encoder = [shapes[2 * i][3] for i in range(depth + 1)]
    decoder = [shapes[2 * (depth + 1) + 2 * i][3] for i in range(depth)]
    return {
        "in_channels": int(shapes[0][2]),
        "encoder": [int(w) for w in encoder],
        "decoder": [int(w) for w in decoder],
        "first_kernel": int(shapes[0][0]),
        "kernel": int(shapes[2][0]),
        "bottleneck_kernel": int(shapes[2 * (depth - 1) + 1][0]),
        "out_channels": int(shapes[-1][3]),
    }


def convs_to_state_dict(convs: Sequence[KerasConv], model) -> dict:
    """Copy Keras kernels/biases into ``model`` (a UNet2D) and return its state dict; shapes must match."""
    import torch

    targets = model.conv_layers()
    if len(targets) != len(convs):
        raise IntegrityError(f"the file has {len(convs)} Conv2D layers, the architecture {len(targets)}")
    with torch.no_grad():
        for i, (src, dst) in enumerate(zip(convs, targets)):
            w = np.transpose(src.kernel, (3, 2, 0, 1))  # (kh, kw, in, out) -> (out, in, kh, kw)
            if tuple(w.shape) != tuple(dst.weight.shape):
                raise IntegrityError(f"Conv2D {i} ('{src.name}'): Keras kernel {src.kernel.shape} does not fit the "
                                     f"torch layer {tuple(dst.weight.shape)} (out, in, kh, kw)")
            dst.weight.copy_(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
            if src.bias is None:
                dst.bias.zero_()
            else:
                if src.bias.shape != (dst.weight.shape[0],):
                    raise IntegrityError(f"Conv2D {i} ('{src.name}'): bias shape {src.bias.shape} does not fit")
                dst.bias.copy_(torch.from_numpy(np.asarray(src.bias, dtype=np.float32)))
    return model.state_dict()


def load_keras_unet(path: str | os.PathLike, config: Mapping[str, Any] | None = None):
    """Build a :class:`~neuroshift.segment.unet.UNet2D` with the weights of a Keras ``.h5`` file (eval mode).

    ``config`` (e.g. ``{"preset": "wmh"}``) is checked against the file; by default it is inferred.
    """
    from .unet import build_unet

    convs = read_keras_convs(path)
    inferred = infer_unet_config(convs)
    model = build_unet(dict(config) if config is not None else inferred)
    try:
        convs_to_state_dict(convs, model)
    except IntegrityError as exc:
        raise IntegrityError(f"{path}: {exc}") from None
    return model.eval()


def group_by_view(paths: Sequence[str | os.PathLike], views: Sequence[str]) -> dict[str, list[Path]]:
    """Assign ``.h5`` files to views: by file-name prefix (``coronal_0.h5``) when every file has one,
    otherwise in the given order, an equal number per view."""
    paths = [Path(p) for p in paths]
    views = list(views)
    if not paths:
        raise InputError("no .h5 files given")
    by_prefix: dict[str, list[Path]] = {v: [] for v in views}
    for p in paths:
        hits = [v for v in views if p.name.lower().startswith(v.lower())]
        if len(hits) != 1:
            break
        by_prefix[hits[0]].append(p)
    else:
        if all(by_prefix.values()):
            return {v: sorted(ps, key=lambda q: _natural_key(q.name)) for v, ps in by_prefix.items()}
    if len(paths) % len(views):
        raise InputError(f"{len(paths)} files cannot be split evenly over the views {', '.join(views)}; name them "
                         f"<view>_<i>.h5 or give the same number per view, in view order")
    n = len(paths) // len(views)
    return {v: paths[i * n:(i + 1) * n] for i, v in enumerate(views)}


def import_keras(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, task: str = "claustrum",
                 views: Iterable[str] | None = None, input_channels: Sequence[str] | None = None,
                 orientation: str | None = None, overrides: Mapping[str, Any] | None = None) -> Path:
    """Convert the authors' Keras files into a model package at ``out_dir``; return its path.

    ``task`` picks the manifest defaults (:data:`TASK_DEFAULTS`); ``views`` and ``input_channels``
    override them (a 1-channel WMH network gets ``["FLAIR"]``). Provenance (source file names and their
    SHA-256) goes into ``training``. ``orientation`` replaces the release's orientation (e.g. the axis
    code your training data had); ``settings_source`` then says so.

    Raises:
        InputError: unknown task or orientation, files that do not split over the views, channel mismatch.
        IntegrityError, UnreadableFileError: files that are not the released U-Net layout.
    """
    from .package import save_package, sha256_file

    if task not in TASK_DEFAULTS:
        raise InputError(f"unknown task '{task}'; use one of {', '.join(TASK_DEFAULTS)}")
    import copy

    manifest = copy.deepcopy(TASK_DEFAULTS[task])
    view_list = list(views) if views else list(manifest["views"])
    grouped = group_by_view(paths, view_list)
    models: dict[str, list] = {}
    config = None
    for view, files in grouped.items():
        models[view] = []
        for f in files:
            net = load_keras_unet(f)
            if config is None:
                config = net.config()
            elif net.config() != config:
                raise InputError(f"{f}: its network {net.config()} differs from the first file's {config}")
            models[view].append(net)
    n_in = config["in_channels"]
    if input_channels:
        channels = list(input_channels)
    elif task == "wmh" and n_in == 1:
        channels = ["FLAIR"]
    else:
        channels = list(manifest["input_channels"])
    if len(channels) != n_in:
        raise InputError(f"the networks take {n_in} input channel(s) but {len(channels)} name(s) were given "
                         f"({', '.join(channels)}); pass --channels")
    manifest["input_channels"] = channels
    manifest["architecture"] = {"name": "unet2d", "params": config}
    manifest["training"] = {
        "source": "imported from Keras HDF5 with neuroshift.segment.keras_import",
        "keras_files": {view: [{"name": f.name, "sha256": sha256_file(f)} for f in files]
                        for view, files in grouped.items()},
    }
    if orientation:
        from .preprocess import check_orientation

        manifest["preprocessing"]["orientation"] = check_orientation(orientation)
        manifest.setdefault("settings_source", {})["orientation"] = f"set at import ({orientation})"
    manifest.update(dict(overrides or {}))
    return save_package(out_dir, manifest, models)
