"""Training, cross-validation and fine-tuning of the multi-view U-Net ensembles (dissertation 003).

What one run does (:func:`train`):

1. resolve the configuration: task defaults (:data:`TASK_DEFAULTS`) < the ``--init`` package's
   manifest (architecture, channels, views, preprocessing) < a named recipe (:data:`RECIPES`,
   e.g. ``neonatal``) < what the user set explicitly;
2. find the subjects (:mod:`neuroshift.segment.dataset`) and preprocess them once with the
   inference chain of the model that will be written;
3. for each fold (``folds >= 2``: k-fold cross-validation by subject; otherwise one run with an
   optional validation split), each view and each ensemble member (``models_per_view`` networks
   per view, each with its own seed: initialisation, shuffling and augmentation): train with
   batch-global Dice loss and Adam, validate after every epoch (DSC and lesion F1 of the member's
   view on the validation subjects), append a line to the member's ``log.csv`` and write a
   checkpoint (weights in safetensors, ``state.json``, optimizer state with ``torch.save`` - read back
   with ``torch.load(weights_only=True)``, so nothing is unpickled);
4. write the ensemble as a model package (:func:`neuroshift.segment.package.save_package`) with the
   training provenance in its manifest.

Checkpoints live in ``work_dir`` (default ``<out>.work/``), one folder per member (``fold-K/`` above
them for cross-validation). ``resume=True`` continues every unfinished member from its last
completed epoch and skips finished ones. Shuffling and augmentation of epoch ``e`` are seeded by
``(member seed, e)`` only, so an interrupted and resumed run gives the weights of an
uninterrupted one (bit for bit on the CPU).

Fine-tuning (``init=PACKAGE``): every member starts from the package's weights of the same view
(member ``m`` from network ``m mod n``; a view the package lacks starts from its first view) and
*every* layer is trained, as in the neonatal transfer learning (recipe ``neonatal``: 30 epochs,
batch 60, lr 2e-4, Adam, Dice loss, scale/translate/rotate/shear augmentation).

Options beyond the papers (off by default, recorded in the provenance when used): ``loss="dice+bce"``
(batch Dice plus binary cross-entropy on the logits), ``patch_hw`` (random patches instead of whole
slices, a share ``foreground_prob`` of them centred on foreground), ``grad_clip`` (gradient-norm
clipping) and ``head_bias`` (initial output bias). Small networks trained from scratch on tiny lesions
need them: with the batch Dice loss alone, a narrow U-Net without batch norm first pushes every output
towards 0, its sigmoid saturates and it never finds the lesions (``dev/train_demo_wmh.py``).

Multi-GPU: launched with ``torchrun --nproc_per_node N -m neuroshift train ...`` each process
trains the same member on its share of the slices (``DistributedSampler``, ``DistributedDataParallel``;
NCCL on GPUs, Gloo on CPUs). ``batch_size`` stays the global batch (each rank takes
``batch_size / world_size`` slices); rank 0 validates, logs and writes checkpoints and the package.
Without torchrun: one process, on ``device`` (``auto``: CUDA if available, else CPU).
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import __version__
from ..errors import InputError, IntegrityError
from .augment import AugmentConfig, RandomAffine2D
from .dataset import PreparedSubject, SliceDataset, Subject, discover_subjects, prepare_subjects

#: Defaults of the published pipelines (see ``docs``/segmentation note, section 2).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "wmh": dict(
        channels=["FLAIR", "T1"], views=["axial"], models_per_view=3, architecture={"preset": "wmh"},
        preprocessing=dict(orientation="RAS", spacing_mm=None, crop_hw=[200, 200], zscore=True,
                           brain_mask=True, pad_value=0.0),
        threshold=0.5, slab_fraction=0.1, epochs=50, batch_size=30, lr=2e-4,
        augmentation={"preset": "wmh"}, positive_labels=[1], ignore_labels=[2]),
    "claustrum": dict(
        channels=["T1"], views=["axial", "coronal"], models_per_view=3, architecture={"preset": "claustrum"},
        preprocessing=dict(orientation="RAS", spacing_mm=1.0, crop_hw=[180, 180], zscore=True,
                           brain_mask=True, pad_value="min"),
        threshold=0.4, slab_fraction=0.2, epochs=50, batch_size=30, lr=2e-4,
        augmentation={"preset": "claustrum"}, positive_labels=None, ignore_labels=None),
}
#: Other tasks: a generic single-channel setup with the claustrum network.
GENERIC_DEFAULTS: dict[str, Any] = dict(
    channels=["image"], views=["axial"], models_per_view=1, architecture={"preset": "claustrum"},
    preprocessing=dict(orientation="RAS", spacing_mm=None, crop_hw=None, zscore=True, brain_mask=True,
                       pad_value=0.0),
    threshold=0.5, slab_fraction=0.0, epochs=50, batch_size=30, lr=2e-4, augmentation={"preset": "claustrum"},
    positive_labels=None, ignore_labels=None)

#: Named training recipes (applied over the task defaults / init package, under explicit settings).
RECIPES: dict[str, dict[str, Any]] = {
    # Neubauer, Li et al. 2022: all adult weights, every layer fine-tuned on 20 neonatal scans.
    # dHCP T2w at 0.5 mm; give --channels T2w when the adult package names its channel T1.
    "neonatal": dict(epochs=30, batch_size=60, lr=2e-4, augmentation={"preset": "neonatal"},
                     preprocessing={"crop_hw": [200, 200], "spacing_mm": 0.5}, slab_fraction=0.25),
    "wmh": dict(epochs=50, batch_size=30, lr=2e-4, augmentation={"preset": "wmh"}),
}


@dataclass
class TrainConfig:
    """Everything a training run needs; ``None`` means "take the default" (task, init package, recipe)."""

    task: str = "wmh"
    images: Any = None  # CSV file, folder, or list of image entries (see dataset.discover_subjects)
    labels: Any = None
    brain_masks: Any = None
    val_images: Any = None
    val_labels: Any = None
    channels: list[str] | None = None
    views: list[str] | None = None
    models_per_view: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    init: str | None = None
    recipe: str | None = None
    folds: int = 0
    val_fraction: float = 0.0
    out: str | None = None
    work_dir: str | None = None
    resume: bool = False
    device: str = "auto"
    seed: int = 0
    architecture: dict | None = None
    preprocessing: dict | None = None
    threshold: float | None = None
    slab_fraction: float | None = None
    augmentation: dict | None = None
    positive_labels: list[int] | None = None
    ignore_labels: list[int] | None = None
    slices: str = "brain"
    negative_fraction: float | None = None
    steps_per_epoch: int | None = None  # cap on batches per epoch (None: one pass over the slices)
    amp: bool = False  # bfloat16 autocast on CUDA
    description: str | None = None
    version: str = "1"
    demo: bool = False
    keep_best: bool = False  # package the best-validation epoch instead of the last
    head_bias: float | None = None  # from-scratch only: initial bias of the 1x1 output conv (logit of a prior)
    grad_clip: float | None = None  # clip the global gradient norm (None: no clipping, as released)
    loss: str = "dice"  # "dice" (batch-global Dice, as released) or "dice+bce" (plus binary cross-entropy)
    patch_hw: list[int] | None = None  # train on random patches of this size instead of whole slices
    foreground_prob: float = 0.5  # share of patches centred on foreground (with patch_hw)
    provenance: dict | None = None  # extra provenance merged into manifest["training"]
    verbose: bool = True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        d = {str(k).replace("-", "_"): v for k, v in dict(d).items()}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown training setting(s) {unknown}; allowed: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (or JSON) training config file into a dict (keys as in :class:`TrainConfig`)."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such config file") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{p}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{p}: the config must be a mapping of settings")
    base = p.parent
    for key in ("images", "labels", "brain_masks", "val_images", "val_labels"):  # paths relative to the file
        v = data.get(key)
        if isinstance(v, str) and not Path(v).is_absolute():
            data[key] = str(base / v)
        elif isinstance(v, list):
            data[key] = [",".join(str(base / q) if not Path(q).is_absolute() else q for q in x.split(","))
                         if isinstance(x, str) else x for x in v]
    init = data.get("init")  # a package path relative to the file (a bare registry name stays as it is)
    if isinstance(init, str) and not Path(init).is_absolute() and (base / init).exists():
        data["init"] = str(base / init)
    return data


# ============================================================== resolved settings
@dataclass
class Resolved:
    """The effective settings of a run (after defaults, init package and recipe)."""

    task: str
    channels: list[str]
    views: list[str]
    models_per_view: int
    epochs: int
    batch_size: int
    lr: float
    architecture: dict
    preprocessing: dict
    threshold: float
    slab_fraction: float
    augmentation: AugmentConfig
    positive_labels: list[int] | None
    ignore_labels: list[int] | None
    init_manifest: dict | None = None
    init_path: str | None = None


def _deep_update(base: dict, upd: Mapping | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in (upd or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k != "brain_mask":
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve(cfg: TrainConfig) -> Resolved:
    """Merge task defaults, ``init`` package, recipe and explicit settings (in that order)."""
    task = str(cfg.task or "wmh").lower()
    eff = copy.deepcopy(TASK_DEFAULTS.get(task, GENERIC_DEFAULTS))
    init_manifest = init_path = None
    if cfg.init:
        from .package import read_manifest
        from .registry import find_model

        path = find_model(cfg.init)
        init_manifest = read_manifest(path)
        init_path = str(path)
        eff.update(channels=list(init_manifest["input_channels"]), views=list(init_manifest["views"]),
                   models_per_view=int(init_manifest["models_per_view"]),
                   architecture=dict(init_manifest["architecture"].get("params", {})))
        eff["preprocessing"] = _deep_update(eff["preprocessing"], init_manifest.get("preprocessing", {}))
        for key in ("threshold", "slab_fraction"):
            if key in init_manifest:
                eff[key] = init_manifest[key]
    if cfg.recipe:
        if cfg.recipe not in RECIPES:
            raise InputError(f"unknown recipe '{cfg.recipe}'; known: {', '.join(RECIPES)}")
        eff = _deep_update(eff, RECIPES[cfg.recipe])
    for key in ("channels", "views", "models_per_view", "epochs", "batch_size", "lr", "threshold",
                "slab_fraction", "positive_labels", "ignore_labels"):
        v = getattr(cfg, key)
        if v is not None:
            eff[key] = v
    if cfg.architecture is not None:
        if init_manifest is not None:
            raise InputError("fine-tuning (--init) keeps the package's architecture; do not set 'architecture'")
        eff["architecture"] = dict(cfg.architecture)
    if cfg.preprocessing is not None:
        eff["preprocessing"] = _deep_update(eff["preprocessing"], cfg.preprocessing)
    if cfg.augmentation is not None:
        eff["augmentation"] = dict(cfg.augmentation)
    channels = [str(c) for c in eff["channels"]]
    arch = dict(eff["architecture"])
    from .unet import build_unet

    probe = build_unet({**arch, **({} if init_manifest else {"in_channels": len(channels)})})
    arch = probe.config()
    if arch["in_channels"] != len(channels):
        raise InputError(f"the network takes {arch['in_channels']} channel(s) but {len(channels)} are named "
                         f"({', '.join(channels)})")
    from .views import check_view

    views = [check_view(v) for v in eff["views"]]
    if len(set(views)) != len(views):
        raise InputError(f"views repeat: {views}")
    for key, lo in (("models_per_view", 1), ("epochs", 0), ("batch_size", 1)):
        if int(eff[key]) < lo:
            raise InputError(f"{key} must be at least {lo}, got {eff[key]}")
    if not float(eff["lr"]) > 0:
        raise InputError(f"learning rate must be positive, got {eff['lr']}")
    try:
        aug = AugmentConfig.from_dict(eff["augmentation"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"augmentation settings: {exc}") from None
    return Resolved(task, channels, views, int(eff["models_per_view"]), int(eff["epochs"]), int(eff["batch_size"]),
                    float(eff["lr"]), arch, dict(eff["preprocessing"]), float(eff["threshold"]),
                    float(eff["slab_fraction"]), aug, eff.get("positive_labels"), eff.get("ignore_labels"),
                    init_manifest, init_path)


def model_manifest(r: Resolved, cfg: TrainConfig) -> dict[str, Any]:
    """The manifest (without files) of the package this run writes; also drives preprocessing."""
    return {
        "task": r.task,
        "description": cfg.description or f"{r.task} multi-view U-Net ensemble trained with neuroshift train",
        "version": str(cfg.version),
        "demo": bool(cfg.demo),
        "architecture": {"name": "unet2d", "params": r.architecture},
        "input_channels": r.channels,
        "views": r.views,
        "models_per_view": r.models_per_view,
        "preprocessing": r.preprocessing,
        "threshold": r.threshold,
        "slab_fraction": r.slab_fraction,
    }


# ============================================================== splits
def kfold_splits(groups: Sequence[str], k: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """k-fold cross-validation by subject: ``[(train indices, validation indices), ...]``.

    ``groups`` holds one subject/group id per scan; all scans of a group land in the same fold, so
    the folds are disjoint by subject. Groups are shuffled with ``seed`` and dealt round-robin, so
    fold sizes differ by at most one group.
    """
    k = int(k)
    uniq = list(dict.fromkeys(str(g) for g in groups))
    if k < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {k}")
    if k > len(uniq):
        raise InputError(f"{k} folds need at least {k} subjects, got {len(uniq)}")
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[g]: n % k for n, g in enumerate(order)}
    out = []
    for f in range(k):
        val = [i for i, g in enumerate(groups) if fold_of[str(g)] == f]
        train_idx = [i for i, g in enumerate(groups) if fold_of[str(g)] != f]
        out.append((train_idx, val))
    return out


def holdout_split(groups: Sequence[str], fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """A seeded validation split of ``fraction`` of the subjects (by group); ``([all], [])`` for 0."""
    if fraction <= 0:
        return list(range(len(groups))), []
    uniq = list(dict.fromkeys(str(g) for g in groups))
    n_val = max(1, int(round(fraction * len(uniq))))
    if n_val >= len(uniq):
        raise InputError(f"a validation fraction of {fraction} leaves no training subjects ({len(uniq)} in all)")
    val_groups = set(np.asarray(uniq)[np.random.default_rng(seed).permutation(len(uniq))[:n_val]].tolist())
    return ([i for i, g in enumerate(groups) if str(g) not in val_groups],
            [i for i, g in enumerate(groups) if str(g) in val_groups])


# ============================================================== distributed
@dataclass
class DistInfo:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistInfo()
    import torch
    import torch.distributed as td

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and str(device) != "cpu"
    if td.is_initialized():
        return DistInfo(td.get_world_size(), td.get_rank(), local_rank, False)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    td.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(td.get_world_size(), td.get_rank(), local_rank, True)


def _device_for(dist: DistInfo, name: str):
    import torch

    from ..torch_device import resolve_device

    dev = resolve_device(name)
    if dist.active and dev.type == "cuda":
        return torch.device("cuda", dist.local_rank)
    return dev


# ============================================================== checkpoints
STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.safetensors"
BEST_FILE = "best.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
LOG_FILE = "log.csv"
LOG_FIELDS = ("epoch", "step", "train_loss", "val_loss", "val_dsc", "val_f1", "val_recall", "val_precision",
              "lr", "seconds", "slices_per_s")


def _epoch_seed(member_seed: int, epoch: int, rank: int = 0) -> int:
    h = hashlib.sha256(f"{member_seed}:{epoch}:{rank}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def _write_json_atomic(path: Path, data: Any) -> None:
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def save_checkpoint(member_dir: Path, model, optimizer, state: dict[str, Any], *, best_model=None) -> None:
    """Weights (safetensors), optimizer state (``torch.save`` of tensors only) and ``state.json``, each atomic;
    ``state.json`` is written last, so a crash never leaves a state that points at missing files."""
    import torch
    from safetensors.torch import save_file

    from ..io.atomic import atomic_path

    member_dir.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(member_dir / WEIGHTS_FILE) as tmp:
        save_file(sd, str(tmp))
    if best_model is not None:
        with atomic_path(member_dir / BEST_FILE) as tmp:
            save_file({k: v.detach().to("cpu").contiguous() for k, v in best_model.items()}, str(tmp))
    with atomic_path(member_dir / OPTIMIZER_FILE) as tmp:
        torch.save(_to_cpu(optimizer.state_dict()), str(tmp))
    _write_json_atomic(member_dir / STATE_FILE, state)


def _to_cpu(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu")
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def load_checkpoint(member_dir: Path, model, optimizer, device) -> dict[str, Any] | None:
    """Load a member's checkpoint into ``model``/``optimizer``; ``None`` when there is none."""
    import torch
    from safetensors.torch import load_file

    state_path = member_dir / STATE_FILE
    if not state_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        sd = load_file(str(member_dir / WEIGHTS_FILE), device="cpu")
        model.load_state_dict(sd, strict=True)
        if optimizer is not None and (member_dir / OPTIMIZER_FILE).is_file():
            opt_sd = torch.load(str(member_dir / OPTIMIZER_FILE), map_location=device, weights_only=True)
            optimizer.load_state_dict(opt_sd)
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{member_dir}: cannot read the checkpoint ({exc}); remove the folder to start "
                             "this member again") from None
    return state


# ============================================================== validation
def predict_view(model, subject: PreparedSubject, view: str, crop_hw, device, batch_size: int = 32) -> np.ndarray:
    """Probabilities ``(K, J, I)`` of one network for every slice of ``view`` (model grid)."""
    import torch

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


def _soft_dice_loss(p: np.ndarray, g: np.ndarray, smooth: float = 1.0) -> float:
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
                         val_precision=float(det["precision"]), val_loss=_soft_dice_loss(prob, gt)))
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]} if rows else {}


# ============================================================== one member
@dataclass
class MemberSpec:
    view: str
    index: int
    seed: int
    directory: Path
    init_state: dict | None = None  # state dict to start from (fine-tuning)


@dataclass
class MemberResult:
    view: str
    index: int
    seed: int
    epochs: int
    steps: int
    state_dict: dict
    history: list[dict]
    resumed_from_epoch: int = 0
    final: dict = field(default_factory=dict)


def _fingerprint(r: Resolved, spec: MemberSpec, train_ids: Sequence[str], cfg: TrainConfig) -> str:
    key = json.dumps(dict(arch=r.architecture, view=spec.view, seed=spec.seed, lr=r.lr, batch=r.batch_size,
                          aug=r.augmentation.to_dict(), pre=r.preprocessing, channels=r.channels,
                          data=sorted(train_ids), init=r.init_path, steps=cfg.steps_per_epoch,
                          slices=cfg.slices, neg=cfg.negative_fraction, head_bias=cfg.head_bias,
                          clip=cfg.grad_clip, patch=cfg.patch_hw, fg=cfg.foreground_prob, loss=cfg.loss),
                     sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _log(cfg: TrainConfig, dist: DistInfo, msg: str) -> None:
    if cfg.verbose and dist.is_main:
        print(msg, file=sys.stderr, flush=True)


def train_member(spec: MemberSpec, r: Resolved, cfg: TrainConfig, train_ds: SliceDataset,
                 val_subjects: Sequence[PreparedSubject], device, dist: DistInfo,
                 progress: Callable[[float, str], None] | None = None) -> MemberResult:
    """Train (or resume) one ensemble member; returns its final weights and per-epoch history."""
    import torch

    from .loss import batch_dice_loss
    from .unet import build_unet

    torch.manual_seed(spec.seed)
    model = build_unet(r.architecture)
    if spec.init_state is not None:
        model.load_state_dict(spec.init_state, strict=True)
    elif cfg.head_bias is not None:  # start near a small foreground prior: Dice loss then learns much faster
        with torch.no_grad():
            model.head.bias.fill_(float(cfg.head_bias))
    for p in model.parameters():  # fine-tuning trains every layer
        p.requires_grad_(True)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=r.lr)
    fp = _fingerprint(r, spec, train_ds.subject_ids, cfg)
    state = None
    if cfg.resume:
        state = load_checkpoint(spec.directory, model, optimizer, device)
        if state is not None and state.get("fingerprint") != fp:
            raise InputError(f"{spec.directory}: the checkpoint was made with other settings or data "
                             "(architecture, view, seed, lr, batch size, augmentation, preprocessing or subjects "
                             "differ); remove the work folder or restore the settings to resume")
    elif dist.is_main and (spec.directory / STATE_FILE).exists():
        raise InputError(f"{spec.directory}: a checkpoint from an earlier run exists; pass --resume to continue "
                         "it, or remove the work folder to start again")
    dist.barrier()
    start_epoch = int(state["epoch"]) if state else 0
    step = int(state["step"]) if state else 0
    history = list(state.get("history", [])) if state else []
    best = state.get("best") if state else None
    best_sd = None
    if state and cfg.keep_best and (spec.directory / BEST_FILE).is_file():
        from safetensors.torch import load_file

        best_sd = load_file(str(spec.directory / BEST_FILE), device="cpu")
    if start_epoch:
        _log(cfg, dist, f"[{spec.view} {spec.index}] resuming after epoch {start_epoch} (step {step})")

    if cfg.loss not in ("dice", "dice+bce"):
        raise InputError(f"unknown loss '{cfg.loss}'; use dice or dice+bce")
    net = _Logits(model)
    sampler = None
    per_rank_batch = r.batch_size
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel as DDP
        from torch.utils.data.distributed import DistributedSampler

        net = DDP(net, device_ids=[dist.local_rank] if device.type == "cuda" else None)
        sampler = DistributedSampler(range(len(train_ds)), num_replicas=dist.world_size, rank=dist.rank,
                                     shuffle=True, seed=spec.seed, drop_last=False)
        per_rank_batch = max(1, r.batch_size // dist.world_size)
    aug_cfg = r.augmentation
    from .views import LR_FLIP_AXIS

    if LR_FLIP_AXIS.get(spec.view) is None:
        aug_cfg = aug_cfg.without_flip()
    else:
        from dataclasses import replace

        aug_cfg = replace(aug_cfg, flip_axis=LR_FLIP_AXIS[spec.view])
    augment = RandomAffine2D(aug_cfg)
    use_amp = bool(cfg.amp) and device.type == "cuda"
    n = len(train_ds)
    for epoch in range(start_epoch, r.epochs):
        t0 = time.monotonic()
        gen = torch.Generator().manual_seed(_epoch_seed(spec.seed, epoch, dist.rank))
        if sampler is not None:
            sampler.set_epoch(epoch)
            order = torch.as_tensor(list(iter(sampler)), dtype=torch.long)
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(spec.seed, epoch, -1)))
        chunks = [order[i:i + per_rank_batch] for i in range(0, len(order), per_rank_batch)]
        if cfg.steps_per_epoch:
            chunks = chunks[: int(cfg.steps_per_epoch)]
        net.train()
        losses, seen = [], 0
        patch_rng = np.random.default_rng(_epoch_seed(spec.seed, epoch, dist.rank) ^ 0x5EED)
        for chunk in chunks:
            if cfg.patch_hw:
                x, y = train_ds.patch_batch(chunk.numpy(), cfg.patch_hw, patch_rng, cfg.foreground_prob)
            else:
                x, y = train_ds.batch(chunk.numpy())
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if aug_cfg.enabled:
                x, y = augment(x, y, gen)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                logits = net(x)
            logits = logits.float()
            loss = batch_dice_loss(torch.sigmoid(logits), y)
            if cfg.loss == "dice+bce":
                loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg.grad_clip))
            optimizer.step()
            losses.append(float(loss.detach()))
            seen += x.shape[0]
            step += 1
        train_loss = float(np.mean(losses)) if losses else math.nan
        if dist.active:  # the mean over all ranks' batches
            import torch.distributed as td

            t = torch.tensor([float(np.sum(losses)), float(len(losses))], dtype=torch.float64,
                             device=device if device.type == "cuda" else "cpu")
            td.all_reduce(t)
            train_loss = float(t[0] / t[1]) if float(t[1]) > 0 else math.nan
        row: dict[str, Any] = dict(epoch=epoch + 1, step=step, train_loss=train_loss, lr=r.lr)
        if dist.is_main and val_subjects:
            row.update(validate(model, val_subjects, spec.view, train_ds.crop_hw, r.threshold, device))
        elapsed = time.monotonic() - t0
        row.update(seconds=round(elapsed, 3), slices_per_s=round(seen * dist.world_size / max(elapsed, 1e-9), 2))
        history.append(row)
        if cfg.keep_best and "val_dsc" in row and (best is None or row["val_dsc"] > best["val_dsc"]):
            best = {"epoch": epoch + 1, "val_dsc": row["val_dsc"]}
            best_sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if dist.is_main:
            _append_log(spec.directory / LOG_FILE, row)
            save_checkpoint(spec.directory, model, optimizer, dict(
                epoch=epoch + 1, step=step, seed=spec.seed, view=spec.view, index=spec.index, fingerprint=fp,
                complete=epoch + 1 >= r.epochs, epochs_planned=r.epochs, history=history, best=best,
                saved=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
                best_model=best_sd if cfg.keep_best and best_sd is not None and best and best["epoch"] == epoch + 1
                else None)
            msg = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                           if k not in ("lr",))
            _log(cfg, dist, f"[{spec.view} {spec.index}] {msg}")
        dist.barrier()
        if progress is not None:
            progress((epoch + 1) / max(r.epochs, 1), f"{spec.view} model {spec.index + 1}: epoch {epoch + 1}/{r.epochs}")
    final_sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if cfg.keep_best and best_sd is not None:
        final_sd = best_sd
    final = {k: v for k, v in (history[-1] if history else {}).items() if k.startswith(("val_", "train_"))}
    return MemberResult(spec.view, spec.index, spec.seed, r.epochs, step, final_sd, history, start_epoch, final)


def _logits_wrapper():
    import torch

    class Logits(torch.nn.Module):
        """Calls ``forward_logits`` of the wrapped U-Net (what DDP wraps; the parameters are shared)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.forward_logits(x)

    return Logits


def _Logits(model):
    return _logits_wrapper()(model)


def _append_log(path: Path, row: Mapping[str, Any]) -> None:
    """Append one epoch to ``log.csv`` (rewriting lines of epochs >= this one, so a resumed run never
    duplicates the epochs an interrupted run logged after its last checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("epoch") and int(r["epoch"]) < int(row["epoch"])]
    rows.append({k: row.get(k, "") for k in LOG_FIELDS})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        w.writeheader()
        for r_ in rows:
            w.writerow({k: r_.get(k, "") for k in LOG_FIELDS})


# ============================================================== the run
@dataclass
class TrainResult:
    """What :func:`train` produced: package folder(s), per-member histories, CV summary."""

    packages: list[Path]
    members: list[dict]
    cv: dict | None = None
    work_dir: Path | None = None
    rank: int = 0  # torch.distributed rank of this process (only rank 0 writes)


def _member_seed(seed: int, fold: int, view_idx: int, index: int) -> int:
    return int(seed) * 1_000_003 + fold * 10_007 + view_idx * 101 + index


def _provenance(r: Resolved, cfg: TrainConfig, train_subj: Sequence[Subject], val_subj: Sequence[Subject],
                members: list[MemberResult], datasets: Mapping[str, SliceDataset], dist: DistInfo, device,
                fold: int | None, n_folds: int) -> dict[str, Any]:
    import torch

    prov: dict[str, Any] = {
        "software": {"neuroshift": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": cfg.recipe or r.task,
        "loss": ("batch-global Dice, 1 - (2 sum(p g) + 1) / (sum p + sum g + 1)"
                 + (" + binary cross-entropy" if cfg.loss == "dice+bce" else "")),
        "optimizer": {"name": "Adam", "lr": r.lr},
        "epochs": r.epochs, "batch_size": r.batch_size, "steps_per_epoch": cfg.steps_per_epoch,
        "head_bias_init": cfg.head_bias, "grad_clip": cfg.grad_clip,
        "patches": ({"hw": list(cfg.patch_hw), "foreground_prob": cfg.foreground_prob} if cfg.patch_hw else None),
        "augmentation": r.augmentation.to_dict(),
        "slices": {"selection": cfg.slices, "negative_fraction": cfg.negative_fraction,
                   **{v: {"train_slices": len(ds), "positive_slices": ds.positive_slices} for v, ds in datasets.items()}},
        "positive_labels": r.positive_labels, "ignore_labels": r.ignore_labels,
        "data": {"train_subjects": [s.id for s in train_subj], "validation_subjects": [s.id for s in val_subj]},
        "seed": cfg.seed,
        "members": [{"view": m.view, "index": m.index, "seed": m.seed, "epochs": m.epochs, "steps": m.steps,
                     "final": m.final} for m in members],
        "device": str(device), "world_size": dist.world_size,
    }
    if fold is not None:
        prov["cross_validation"] = {"fold": fold + 1, "folds": n_folds}
    if r.init_manifest is not None:
        prov["init"] = {"path": r.init_path, "task": r.init_manifest.get("task"),
                        "version": r.init_manifest.get("version"),
                        "description": r.init_manifest.get("description"),
                        "files": r.init_manifest.get("files"),
                        "fine_tuned": "all layers"}
    if cfg.recipe == "neonatal":
        prov["population"] = "neonatal"  # QC: flags scans younger than 35 gestational weeks
    if cfg.provenance:
        prov.update(copy.deepcopy(cfg.provenance))
    return prov


def _init_states(r: Resolved) -> dict[str, list[dict]] | None:
    if not r.init_path:
        return None
    from .package import load_state_dicts

    return load_state_dicts(r.init_path).state_dicts


def _init_for(states: dict[str, list[dict]] | None, view: str, index: int) -> dict | None:
    if states is None:
        return None
    sds = states.get(view) or next(iter(states.values()))
    return sds[index % len(sds)]


def train(cfg: TrainConfig | Mapping[str, Any], progress: Callable[[float, str], None] | None = None) -> TrainResult:
    """Run a training (or cross-validation, or fine-tuning) as configured; see the module docstring."""
    import torch

    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.from_dict(cfg)
    if not cfg.out:
        raise InputError("give the output package folder (--out)")
    r = resolve(cfg)
    out = Path(cfg.out)
    work = Path(cfg.work_dir) if cfg.work_dir else out.with_name(out.name + ".work")
    dist = init_distributed(cfg.device)
    try:
        device = _device_for(dist, cfg.device)
        torch.backends.cudnn.benchmark = False
        manifest = model_manifest(r, cfg)
        subjects = discover_subjects(cfg.images, cfg.labels, r.channels, cfg.brain_masks)
        val_extra = discover_subjects(cfg.val_images, cfg.val_labels, r.channels) if cfg.val_images else []
        ids = [s.id for s in subjects + val_extra]
        if len(set(ids)) != len(ids):
            raise InputError(f"subject ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        _log(cfg, dist, f"preparing {len(subjects) + len(val_extra)} subject(s) "
                        f"({', '.join(r.channels)}; views {', '.join(r.views)})")
        prepared = prepare_subjects(subjects, manifest, positive_labels=r.positive_labels,
                                    ignore_labels=r.ignore_labels)
        prepared_val_extra = prepare_subjects(val_extra, manifest, positive_labels=r.positive_labels,
                                              ignore_labels=r.ignore_labels)
        for p in prepared + prepared_val_extra:
            for w in p.warnings:
                _log(cfg, dist, f"warning: {p.id}: {w}")
        groups = [s.group_id for s in subjects]
        if cfg.folds and cfg.folds >= 2:
            if val_extra:
                raise InputError("cross-validation (--folds) makes its own validation sets; drop --val-images")
            splits = kfold_splits(groups, cfg.folds, cfg.seed)
            fold_ids: list[int | None] = list(range(len(splits)))
        else:
            splits = [holdout_split(groups, cfg.val_fraction, cfg.seed)]
            fold_ids = [None]
        init_states = _init_states(r)
        total_members = len(splits) * len(r.views) * r.models_per_view
        done = 0
        packages, member_rows = [], []
        cv_rows = []
        for (train_idx, val_idx), fold in zip(splits, fold_ids):
            tr_p = [prepared[i] for i in train_idx]
            va_p = [prepared[i] for i in val_idx] + (prepared_val_extra if fold is None else [])
            tr_s = [subjects[i] for i in train_idx]
            va_s = [subjects[i] for i in val_idx] + (val_extra if fold is None else [])
            fold_work = work / f"fold-{fold + 1}" if fold is not None else work
            fold_out = out / f"fold-{fold + 1}" if fold is not None else out
            if fold is not None:
                _log(cfg, dist, f"fold {fold + 1}/{len(splits)}: {len(tr_p)} training, {len(va_p)} validation "
                                f"subject(s) ({', '.join(s.id for s in va_s)})")
            datasets: dict[str, SliceDataset] = {}
            results: dict[str, list[MemberResult]] = {}
            for v_i, view in enumerate(r.views):
                crop = r.preprocessing.get("crop_hw")
                ds = SliceDataset(tr_p, view, crop, slices=cfg.slices, negative_fraction=cfg.negative_fraction,
                                  seed=cfg.seed)
                datasets[view] = ds
                _log(cfg, dist, f"{view}: {len(ds)} training slices ({ds.positive_slices} with foreground), "
                                f"{tuple(ds.images.shape[-2:])} pixels")
                results[view] = []
                for m in range(r.models_per_view):
                    spec = MemberSpec(view, m, _member_seed(cfg.seed, fold or 0, v_i, m),
                                      fold_work / f"{view}_{m}", _init_for(init_states, view, m))
                    base = done

                    def sub_progress(f: float, msg: str, base=base) -> None:
                        if progress is not None:
                            progress((base + f) / total_members, msg)

                    res = train_member(spec, r, cfg, ds, va_p, device, dist, sub_progress)
                    results[view].append(res)
                    done += 1
                    member_rows.append({"fold": None if fold is None else fold + 1, "view": view, "index": m,
                                        "seed": spec.seed, "log": str(spec.directory / LOG_FILE), **res.final})
            if dist.is_main:
                man = dict(manifest)
                man["training"] = _provenance(r, cfg, tr_s, va_s, [x for v in results.values() for x in v],
                                              datasets, dist, device, fold, len(splits))
                man["training"]["spacing_mm"] = [round(float(v), 4) for v in
                                                 np.median([p.spacing for p in tr_p], axis=0)]
                hists = [p.histogram for p in tr_p if p.histogram]
                if hists:
                    from .qc import merge_histograms

                    man["qc"] = {**dict(man.get("qc", {}) or {}), "intensity_histogram": merge_histograms(hists)}
                from .package import save_package

                save_package(fold_out, man, {v: [m.state_dict for m in ms] for v, ms in results.items()})
                _log(cfg, dist, f"wrote model package {fold_out}")
                if fold is not None:
                    cv_rows.append({"fold": fold + 1, "validation_subjects": [s.id for s in va_s],
                                    **_mean_final([x for v in results.values() for x in v])})
            packages.append(fold_out)
            dist.barrier()
        cv = None
        if cv_rows and dist.is_main:
            keys = [k for k in cv_rows[0] if k.startswith("val_")]
            cv = {"folds": cv_rows, "mean": {k: float(np.nanmean([row[k] for row in cv_rows])) for k in keys},
                  "note": "mean over folds of the members' last-epoch validation metrics on their own view "
                          "(model grid); per-epoch logs in the work folder"}
            _write_json_atomic(out / "cv_summary.json", cv)
            _log(cfg, dist, "cross-validation: " + ", ".join(f"{k}={v:.4f}" for k, v in cv["mean"].items()))
        return TrainResult(packages, member_rows, cv, work, dist.rank)
    finally:
        if dist.initialised_here:
            import torch.distributed as td

            td.destroy_process_group()


def _mean_final(members: Sequence[MemberResult]) -> dict[str, float]:
    keys = sorted({k for m in members for k in m.final if k.startswith("val_")})
    return {k: float(np.nanmean([m.final.get(k, math.nan) for m in members])) for k in keys}


__all__ = ["GENERIC_DEFAULTS", "RECIPES", "TASK_DEFAULTS", "TrainConfig", "TrainResult", "kfold_splits",
           "holdout_split", "load_checkpoint", "load_config", "resolve", "save_checkpoint", "train",
           "train_member", "validate"]
