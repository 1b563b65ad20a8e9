"""Model packages and volume inference for LesionSynth (2D slice models and the 3D virtual-T1c model).

Package: a folder with ``manifest.json`` (task, target, input names, architecture keyword arguments,
provenance: what it was trained on; demo packages say "SYNTHETIC phantom-trained, not clinical") and
``weights.safetensors`` (loaded with safetensors: no pickle).

Intensity handling: each input volume is clipped to its 1-99 percentiles over the brain (non-zero voxels of
the first input, or the given mask) and mapped to [-1, 1] (2D GAN models) or [0, 1] (virtual T1c); missing
inputs of DiamondGAN are filled with -1 and their availability code is 0. 2D models run on the axial slices
(array axis 0) that contain brain (the papers' brain slice range); other slices are 0. Slices are padded
(edge values) to the model's size multiple and cropped back. When the package stores a reference histogram
(``histogram_reference``, :mod:`.histmatch`) the brain voxels of the output are histogram-matched to it, as the
papers do before stacking the slices. The output is mapped from the model range to [0, 1000] a.u. inside the
brain, 0 outside; geometry is the first input's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import InputError
from ..segment.registry import SYNTHESIS_TASKS

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
OUTPUT_MAX = 1000.0
TASKS = SYNTHESIS_TASKS  # one list: the model registry lists these packages without importing torch


@dataclass
class SynthesisModel:
    task: str
    target: str
    inputs: tuple[str, ...]
    architecture: dict[str, Any]
    net: torch.nn.Module
    manifest: dict[str, Any] = field(default_factory=dict)
    error_net: torch.nn.Module | None = None  # the residual-trained error model (:mod:`.error_model`), if any


def build_network(task: str, architecture: Mapping[str, Any]) -> torch.nn.Module:
    """The network of a task from its manifest's architecture arguments."""
    if task == "diamondgan":  # options a manifest lacks predate it: the legacy values (its previous outputs)
        from .diamond_domain import LEGACY_ENCODING
        from .diamond_padding import LEGACY_OPTIONS
        from .diamondgan import DiamondGenerator
        arch = {"domain_encoding": LEGACY_ENCODING, **LEGACY_OPTIONS, **architecture}
        try:
            return DiamondGenerator(**arch)
        except ValueError as exc:
            raise InputError(f"DiamondGAN architecture {arch}: {exc}") from None
    if task == "synthdir":
        from .pix2pix import UNetGenerator
        return UNetGenerator(**architecture)
    if task == "vt1c":
        from .vt1c import VirtualT1cNet
        arch = dict(architecture)
        if "features" in arch:
            arch["features"] = tuple(arch["features"])
        return VirtualT1cNet(**arch)
    raise InputError(f"unknown synthesis task {task!r}; expected one of {', '.join(TASKS)}")


def save_package(folder: str | Path, task: str, target: str, inputs: tuple[str, ...], architecture: Mapping,
                 net: torch.nn.Module, provenance: Mapping[str, Any]) -> Path:
    """Write a model package (weights then manifest, each atomically). DiamondGAN: the manifest records the
    network's options (``domain_encoding``, ``residual_padding``, ``resample_padding``; a package without one
    loads with its legacy value)."""
    from safetensors.torch import save_file

    from ..io.atomic import atomic_path, write_text_atomic
    architecture = dict(architecture)
    if task == "diamondgan":
        for key, used in net.options().items():
            if architecture.setdefault(key, used) != used:
                raise ValueError(f"architecture says {key}={architecture[key]!r}, the network uses {used!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    manifest = {"task": task, "target": target, "inputs": list(inputs), "architecture": architecture,
                **dict(provenance)}
    write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return folder


def load_package(folder: str | Path, device: str | torch.device = "cpu") -> SynthesisModel:
    """Read a model package, given as a folder or by name (``synthdir-demo``: searched like segmentation
    packages, :func:`neuroshift.segment.registry.find_model`, bundled ones last); refuses a missing or
    inconsistent one with :class:`InputError`."""
    from safetensors.torch import load_file

    from ..segment.registry import find_model
    folder = Path(folder)
    if not folder.exists() and not any(sep in str(folder) for sep in ("/", "\\")):
        folder = find_model(str(folder))  # ModelNotFoundError is an InputError naming the known models
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: not a synthesis model package ({MANIFEST}: {exc})") from None
    for key in ("task", "target", "inputs", "architecture"):
        if key not in manifest:
            raise InputError(f"{folder / MANIFEST}: missing '{key}'")
    net = build_network(manifest["task"], manifest["architecture"])
    try:
        state = load_file(str(folder / WEIGHTS), device="cpu")
        net.load_state_dict(state)
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{folder / WEIGHTS}: weights do not load into the manifest's network ({exc})") from None
    net.to(device).eval()
    from .error_model import load as load_error_model
    error_net = load_error_model(folder, manifest, len(manifest["inputs"]), device)
    return SynthesisModel(manifest["task"], manifest["target"], tuple(manifest["inputs"]),
                          dict(manifest["architecture"]), net, manifest, error_net)


def normalise_volume(data: np.ndarray, brain: np.ndarray, lo_hi: tuple[float, float]) -> np.ndarray:
    """Clip to the 1-99 percentiles over ``brain`` and map linearly to ``lo_hi``."""
    v = np.asarray(data, np.float64)
    p1, p99 = np.percentile(v[brain], [1, 99])
    scaled = (np.clip(v, p1, p99) - p1) / (p99 - p1) if p99 > p1 else np.zeros_like(v)
    return (lo_hi[0] + (lo_hi[1] - lo_hi[0]) * scaled).astype(np.float32)


def normalised_sources(model: SynthesisModel, inputs: Mapping[str, np.ndarray], brain: np.ndarray) -> np.ndarray:
    """``(n, k, j, i)`` float32: every input of ``model`` through :func:`normalise_volume` to the model's range
    ([0, 1] virtual T1c, else [-1, 1]); a missing input (DiamondGAN) is -1 everywhere."""
    lo_hi = (0.0, 1.0) if model.task == "vt1c" else (-1.0, 1.0)
    return np.stack([normalise_volume(inputs[n], brain, lo_hi) if n in inputs
                     else np.full(brain.shape, -1.0, np.float32) for n in model.inputs])


def size_multiple(model: SynthesisModel) -> int:
    """What every spatial size of a slice (or volume) given to the network must be a multiple of."""
    return 4 if model.task == "diamondgan" else 2 ** int(model.architecture.get("depth", 5))


def _pad2d(x: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


@torch.no_grad()
def synthesize(model: SynthesisModel, inputs: Mapping[str, np.ndarray], brain: np.ndarray, *, mc_samples: int = 0,
               tta: bool = False, seed: int = 0, device: str | torch.device = "cpu",
               batch_slices: int = 8, histogram_match: bool = True,
               precision: str = "fp32", uncertainty: str = "auto") -> tuple[np.ndarray, np.ndarray | None]:
    """Synthetic target (float32, [0, 1000] a.u. in the brain) and, with ``mc_samples`` > 1 (synthDIR), the
    voxel-wise MC-dropout standard deviation in the same units (with ``tta`` too: MC dropout on each of the
    4 in-plane flip variants, pooled by the law of total variance, :func:`.tta.mc_flip_tta`).

    ``uncertainty`` (:data:`UNCERTAINTY_KINDS`; :func:`uncertainty_kind` names what the SD map is): ``"auto"``
    gives the predictive SD ``sqrt(mean sigma^2 + var mu)`` over the MC passes when the package has the
    aleatoric head (:func:`.pix2pix.mc_predictive`: epistemic + aleatoric), else the MC-dropout SD;
    ``"mc_dropout"`` forces the MC-dropout SD of the mean alone (the same mean either way). A package with a
    residual-trained error model (:mod:`.error_model`) gives, for ``"auto"`` or ``"residual"``, that model's
    SD of the returned image's error instead (:data:`RESIDUAL`; MC passes then only average the mean); with
    ``"residual"`` the SD is returned even without MC passes (one generator pass + one error-model pass).

    ``histogram_match`` (default on): when the package stores a reference histogram of its training targets
    (:mod:`.histmatch`), the brain voxels of the output are matched to it (the SD follows the map's slope).
    ``precision``: network arithmetic as in segmentation (:mod:`neuroshift.segment.precision`: ``auto`` is
    bfloat16 autocast on CPUs with native bf16, float16 on CUDA, else float32; ``fp32`` forced float32).

    Raises:
        InputError: no input, an input the model does not take, or one the model needs missing.
    """
    from .diamondgan import availability_tensor
    from .histmatch import MANIFEST_KEY, match_volume
    from .pix2pix import mc_predictive, mc_sample
    from .tta import flip_tta, mc_flip_tta

    unknown = sorted(set(inputs) - set(model.inputs))
    if unknown:
        raise InputError(f"model takes {', '.join(model.inputs)}; not {', '.join(unknown)}")
    if not inputs:
        raise InputError("give at least one input image")
    if model.task != "diamondgan":
        missing = [n for n in model.inputs if n not in inputs]
        if missing:
            raise InputError(f"this {model.task} model needs every input; missing: {', '.join(missing)}")
    if mc_samples > 1 and model.task != "synthdir":
        raise InputError("MC-dropout uncertainty needs a synthDIR model (the only one with dropout)")
    kind = uncertainty_kind(model, uncertainty)
    predictive = kind == PREDICTIVE
    brain = np.asarray(brain).astype(bool)
    if not brain.any():
        raise InputError("brain mask is empty")
    shape = brain.shape
    stack = normalised_sources(model, inputs, brain)
    from ..segment.precision import autocast_dtype
    net = model.net.to(device)
    dev = torch.device(device)
    amp_dtype = autocast_dtype(precision, dev)
    import contextlib
    autocast = (lambda: torch.autocast(dev.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    out = np.zeros(shape, np.float32)
    sd = np.zeros(shape, np.float32) if mc_samples > 1 else None
    if model.task == "vt1c":
        x = torch.from_numpy(stack)[None].to(device)
        m = 16
        pads = [(-s) % m for s in shape]
        x = torch.nn.functional.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]), mode="replicate")
        with autocast():
            y = (flip_tta(net, x) if tta else net(x)).float()
        out[:] = y[0, 0, :shape[0], :shape[1], :shape[2]].cpu().numpy()
    else:
        code = availability_tensor(tuple(int(n in inputs) for n in model.inputs))
        slices = np.flatnonzero(brain.any(axis=(1, 2)))
        mult = size_multiple(model)
        if model.task == "diamondgan":  # same function, faster kernels; domain stream once per volume
            from .diamond_infer import DiamondInference
            fast = DiamondInference(net)
        for start in range(0, len(slices), int(batch_slices)):
            ks = slices[start:start + int(batch_slices)]
            x, (h, w) = _pad2d(torch.from_numpy(stack[:, ks]).permute(1, 0, 2, 3).to(device), mult)
            if model.task == "diamondgan":
                def fn(t, _c=code.expand(len(ks), -1).to(device)):
                    return fast(t, _c)
            else:
                fn = net
            with autocast():
                if sd is not None:
                    if tta:  # MC dropout on every flip variant, pooled (law of total variance)
                        mean, s = mc_flip_tta(net, x, mc_samples, seed=seed + 8 * int(start), spatial_dims=2,
                                              predictive=predictive)
                    elif predictive:
                        mean, _, s = mc_predictive(net, x, mc_samples, seed=seed + int(start))
                    else:
                        mean, s = mc_sample(net, x, mc_samples, seed=seed + int(start))
                    out[ks] = mean[:, 0, :h, :w].float().cpu().numpy()
                    sd[ks] = s[:, 0, :h, :w].float().cpu().numpy()
                else:
                    y = flip_tta(fn, x, spatial_dims=2) if tta else fn(x)
                    out[ks] = y[:, 0, :h, :w].float().cpu().numpy()
        out = (out + 1.0) / 2.0  # [-1, 1] -> [0, 1]
        if sd is not None:
            sd = sd / 2.0
    if histogram_match and MANIFEST_KEY in model.manifest:
        out, sd = match_volume(out, brain, model.manifest[MANIFEST_KEY], sd)
    out = np.clip(out, 0, 1) * OUTPUT_MAX * brain
    if kind == RESIDUAL and (sd is not None or uncertainty == "residual"):
        return out.astype(np.float32), _residual_sd(model, stack, out, brain, device)
    if sd is not None:
        sd = (sd * OUTPUT_MAX * brain).astype(np.float32)
    return out.astype(np.float32), sd


def _residual_sd(model: SynthesisModel, stack: np.ndarray, out: np.ndarray, brain: np.ndarray,
                 device) -> np.ndarray:
    """The error model's SD (:func:`.error_model.predict_sd`, target-range units) times ``out``'s own
    0.5-99.5 brain percentile range: a.u. like ``out``."""
    from .error_model import MANIFEST_KEY as ERROR_KEY
    from .error_model import network_input, predict_sd
    x = network_input(stack, out, brain)
    sd = predict_sd(model.error_net, x, brain, model.manifest[ERROR_KEY]["architecture"], device=device)
    lo, hi = np.percentile(out[brain], [0.5, 99.5])
    return (sd * float(hi - lo)).astype(np.float32)


#: What :func:`synthesize`'s SD map is (file metadata and sidecar say which).
MC_DROPOUT = "mc_dropout"
PREDICTIVE = "mc_predictive (epistemic + aleatoric)"
RESIDUAL = "residual_sd (error model trained on the generator's held-out residuals)"
UNCERTAINTY_KINDS = ("auto", "mc_dropout", "predictive", "residual")


def uncertainty_kind(model: SynthesisModel, requested: str = "auto") -> str:
    """:data:`RESIDUAL` for ``auto``/``residual`` on a package with an error model; else :data:`PREDICTIVE`
    for ``auto``/``predictive`` on a package whose manifest architecture has the aleatoric head, else
    :data:`MC_DROPOUT`; ``residual`` or ``predictive`` on a package without that part is refused."""
    if requested not in UNCERTAINTY_KINDS:
        raise InputError(f"uncertainty must be one of {', '.join(UNCERTAINTY_KINDS)}, got {requested!r}")
    if requested == "residual" and model.error_net is None:
        raise InputError("residual uncertainty needs a package with an error model (manifest 'error_model')")
    if model.error_net is not None and requested in ("auto", "residual"):
        return RESIDUAL
    has_head = model.task == "synthdir" and bool(model.architecture.get("aleatoric", False))
    if requested == "predictive" and not has_head:
        raise InputError("predictive uncertainty needs a synthDIR package with the aleatoric head "
                         "(manifest architecture 'aleatoric': true)")
    return PREDICTIVE if has_head and requested != "mc_dropout" else MC_DROPOUT


def write_synthetic(vol, path: str | Path, description: str = "SYNTHETIC NeuroShift LesionSynth") -> Path:
    """Write a NIfTI volume whose header ``descrip`` says SYNTHETIC (nibabel; atomic; geometry read back and
    checked against ``vol``)."""
    import nibabel as nib

    from ..errors import GeometryError
    from ..io.atomic import atomic_path
    from ..io.files import read_volume
    p = Path(path)
    if not p.name.lower().endswith((".nii", ".nii.gz")):
        raise InputError(f"{p}: synthetic outputs are written as NIfTI (.nii or .nii.gz)")
    data = np.asarray(vol.data).transpose(2, 1, 0)  # Volume is (k, j, i); NIfTI is (i, j, k)
    img = nib.Nifti1Image(np.ascontiguousarray(data), vol.ijk_to_ras())
    img.header["descrip"] = description[:79].encode()
    img.header.set_qform(vol.ijk_to_ras(), code=1)
    img.header.set_sform(vol.ijk_to_ras(), code=1)

    def verify(tmp: Path) -> None:
        back = read_volume(tmp)
        if not back.same_grid(vol) or not np.array_equal(back.data, np.asarray(vol.data)):
            raise GeometryError(f"{p}: written volume does not read back identically")

    with atomic_path(p, verify=verify) as tmp:  # the temporary keeps the .nii(.gz) suffix
        nib.save(img, str(tmp))
    return p


__all__ = ["MANIFEST", "MC_DROPOUT", "OUTPUT_MAX", "PREDICTIVE", "RESIDUAL", "TASKS", "UNCERTAINTY_KINDS",
           "WEIGHTS", "SynthesisModel", "build_network", "load_package", "normalise_volume", "normalised_sources",
           "save_package", "synthesize", "uncertainty_kind", "write_synthetic"]
