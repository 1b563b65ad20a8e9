"""Settings of segmentation training: the request (:class:`TrainConfig`), defaults, recipes and the one
frozen effective settings object (:class:`Resolved`) a run uses.

Layers, later ones win: task defaults (:data:`TASK_DEFAULTS`) < the ``--init`` package's manifest
(architecture, channels, views, preprocessing) < a named recipe (:data:`RECIPES`, e.g. ``neonatal``) <
what the user set explicitly. Each setting is declared once, as a field of :class:`TrainConfig` whose
metadata also carries its command-line flag(s) (``neuroshift train`` builds its options from them).
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError
from ..training.config import (Flag, csv_list, deep_update, fingerprint, from_dict, height_width, int_list,
                               internal, load_yaml, setting)

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
#: Losses: batch-global Dice (as released) or Dice plus binary cross-entropy on the logits.
LOSSES = ("dice", "dice+bce")
#: Optimisers and learning-rate schedules (``adamw`` and ``poly`` as in paper 002).
OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "poly")
#: Settings given as paths in a config file (made relative to the file by :func:`load_config`).
PATH_SETTINGS = ("images", "labels", "brain_masks", "val_images", "val_labels", "synth_config")


def _spacing(text: str) -> Any:
    if text.lower() in ("none", "native"):
        return "native"
    try:
        vals = [float(v) for v in csv_list(text)]
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"'{text}' is not a spacing in mm (one or three numbers, or native)") \
            from None
    return vals[0] if len(vals) == 1 else vals


@dataclass
class TrainConfig:
    """Everything a training run needs; ``None`` means "take the default" (task, init package, recipe).

    Each field's metadata holds its command-line flag(s) (:class:`neuroshift.training.config.Flag`).
    """

    task: str = setting("wmh", help="wmh, claustrum or a name of your own (sets defaults; default wmh)")
    images: Any = setting(None, Flag(nargs="+", metavar="IMAGES", help="CSV file, folder of subject folders, or "
                                     "one entry per subject (channels joined by commas)"))
    labels: Any = setting(None, Flag(nargs="+", metavar="LABEL", help="one label file per --images entry"))
    brain_masks: Any = internal()
    val_images: Any = setting(None, Flag(nargs="+", metavar="IMAGES",
                                         help="validation subjects (same forms as --images)"))
    val_labels: Any = setting(None, Flag(nargs="+", metavar="LABEL", help="labels of --val-images"))
    channels: list[str] | None = setting(None, Flag(type=csv_list, help="input channel names in order (default by "
                                                    "task: wmh FLAIR,T1; claustrum T1)"))
    views: list[str] | None = setting(None, Flag(type=csv_list, help="views to train, e.g. axial,coronal"))
    models_per_view: int | None = setting(None, Flag(type=int, help="ensemble members per view (different seeds "
                                                     "and shuffles)"))
    epochs: int | None = setting(None, Flag(type=int))
    batch_size: int | None = setting(None, Flag(type=int, help="global batch size in slices"))
    lr: float | None = setting(None, Flag(type=float, help="Adam learning rate (default 2e-4)"))
    init: str | None = setting(None, Flag(metavar="PACKAGE", help="fine-tune every layer starting from this "
                                          "model package"))
    recipe: str | None = setting(None, help="named recipe, e.g. neonatal (30 epochs, batch 60, lr 2e-4)")
    folds: int = setting(0, Flag(type=int, help="k-fold cross-validation by subject (one package per fold)"))
    val_fraction: float = setting(0.0, Flag(type=float, help="hold out this fraction of the subjects for "
                                            "validation"))
    out: str | None = setting(None, Flag(metavar="PACKAGE_DIR", help="output model package folder"))
    work_dir: str | None = setting(None, help="checkpoint folder (default: OUT.work)")
    resume: bool = setting(False, Flag(flag_value=True, help="continue from the checkpoints in the work folder"))
    device: str = setting("auto", Flag(choices=("auto", "cpu", "cuda"), help="where torch runs (default auto)"))
    seed: int = setting(0, Flag(type=int, help="base random seed (default 0)"))
    architecture: dict | None = setting(None, Flag("--arch", path=("preset",),
                                                   help="U-Net preset: wmh, claustrum or demo (default by task)"))
    preprocessing: dict | None = setting(
        None,
        Flag("--crop", type=height_width, metavar="HxW", path=("crop_hw",),
             help="crop/pad size of the slices, e.g. 200x200"),
        Flag("--spacing", type=_spacing, metavar="MM", path=("spacing_mm",),
             convert=lambda v: None if v == "native" else v,
             help="model voxel spacing in mm (one or three numbers, or 'native')"),
        Flag("--mask-mode", choices=("absolute", "relative"), path=("brain_mask", "mode"),
             help="brain-mask thresholds: raw intensities (as released) or relative to the 99th percentile"))
    threshold: float | None = setting(None, Flag(type=float, help="probability threshold stored in the package"))
    slab_fraction: float | None = setting(None, Flag(type=float, help="fraction of slices removed at each end of "
                                                     "each view"))
    augmentation: dict | None = internal()
    positive_labels: list[int] | None = setting(None, Flag(type=int_list, help="label values that are foreground "
                                                           "(default: wmh 1, else >0)"))
    ignore_labels: list[int] | None = setting(None, Flag(type=int_list, help="label values left out of validation "
                                                         "metrics (wmh: 2)"))
    slices: str = setting("brain", Flag(choices=("all", "brain", "positive"),
                                        help="training slice selection (default brain)"))
    negative_fraction: float | None = setting(None, Flag(type=float, help="fraction of foreground-free slices "
                                                         "kept"))
    steps_per_epoch: int | None = setting(None, Flag(type=int, help="cap on batches per epoch (default: one pass "
                                                     "over the slices)"))
    amp: bool = setting(False, Flag(flag_value=True, help="bfloat16 mixed precision on CUDA"))
    description: str | None = setting(None, help="description stored in the manifest")
    version: str = internal("1")
    demo: bool = internal(False)
    keep_best: bool = setting(False, Flag(flag_value=True, help="package the best-validation epoch instead of "
                                          "the last"))
    head_bias: float | None = internal()  # from-scratch only: initial bias of the 1x1 output conv (logit of a prior)
    grad_clip: float | None = setting(None, Flag(type=float, metavar="NORM", help="clip the gradient norm "
                                                 "(default: no clipping, as released)"))
    loss: str = setting("dice", Flag(choices=LOSSES, help="batch-global Dice (as released; default) or Dice + "
                                     "binary cross-entropy"))
    patch_hw: list[int] | None = setting(None, Flag("--patch", type=height_width, metavar="HxW",
                                                    help="train on random patches of this size (see "
                                                         "--foreground-prob) instead of whole slices"))
    foreground_prob: float = setting(0.5, Flag(type=float, help="share of patches centred on foreground "
                                               "(default 0.5)"))
    optimizer: str = setting("adam", Flag(choices=OPTIMIZERS, help="adam (as released; default) or adamw "
                                          "(paper 002: betas 0.9/0.999, --weight-decay default 0.01)"))
    weight_decay: float | None = setting(None, Flag(type=float, help="AdamW weight decay (default 0.01)"))
    lr_schedule: str = setting("constant", Flag(choices=LR_SCHEDULES, help="constant (default) or poly: "
                                                "lr_n = lr (1 - n/N)^0.9 over all N steps (paper 002)"))
    synth: str | None = setting(None, Flag(choices=("qsynth",), help="train on SYNTHETIC images generated on the "
                                           "fly from the label maps (qsynth: paper 002 physics priors); --images "
                                           "optional (given: real and synthetic mixed)"))
    synth_config: Any = setting(None, Flag(metavar="FILE", help="YAML/JSON of qSynth generator settings "
                                           "(neuroshift.qsynth.QSynthConfig fields: priors, protocol, ...)"))
    synth_per_epoch: int = setting(1, Flag(type=int, help="synthetic subjects per label map per epoch "
                                           "(default 1)"))
    synth_workers: int = setting(0, Flag(type=int, help="DataLoader worker processes generating the synthetic "
                                         "subjects (default 0: in the training process)"))
    provenance: dict | None = internal()  # extra provenance merged into manifest["training"]
    verbose: bool = setting(True, Flag("--quiet", flag_value=False, help="no per-epoch lines on stderr"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Raises: InputError: an unknown setting."""
        return from_dict(cls, d, what="training setting")

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (or JSON) training config file into a dict (keys as in :class:`TrainConfig`); data paths
    and an ``init`` package path are relative to the file.

    Raises:
        InputError: the file is missing, not YAML or not a mapping.
    """
    return load_yaml(path, path_keys=PATH_SETTINGS, optional_path_keys=("init",))


@dataclass(frozen=True)
class Resolved:
    """The effective settings of a run (after defaults, init package and recipe); nothing else is read."""

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
    augmentation: AugmentConfig  # noqa: F821 - neuroshift.segment.augment (numpy), imported when resolving
    positive_labels: list[int] | None
    ignore_labels: list[int] | None
    init_manifest: dict | None = None
    init_path: str | None = None
    recipe: str | None = None
    seed: int = 0
    folds: int = 0
    val_fraction: float = 0.0
    slices: str = "brain"
    negative_fraction: float | None = None
    steps_per_epoch: int | None = None
    loss: str = "dice"
    head_bias: float | None = None
    grad_clip: float | None = None
    patch_hw: list[int] | None = None
    foreground_prob: float = 0.5
    amp: bool = False
    keep_best: bool = False
    device: str = "auto"
    resume: bool = False
    out: str | None = None
    work_dir: str | None = None
    description: str | None = None
    version: str = "1"
    demo: bool = False
    provenance: dict | None = None
    verbose: bool = True
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    synth: str | None = None
    synth_config: Any = None
    synth_per_epoch: int = 1
    synth_workers: int = 0


#: Settings that may differ between an interrupted run and its resumption (or do not change the weights):
#: everything else enters a member's checkpoint fingerprint (:func:`member_fingerprint`).
FINGERPRINT_EXCLUDE = ("epochs", "views", "models_per_view", "threshold", "slab_fraction", "ignore_labels",
                       "init_manifest", "recipe", "folds", "val_fraction", "keep_best", "device", "resume", "out",
                       "work_dir", "description", "version", "demo", "provenance", "verbose", "synth_workers")


def member_fingerprint(r: Resolved, view: str, member_seed: int, train_ids: list[str]) -> str:
    """The fingerprint a member's checkpoint must carry to be resumed."""
    return fingerprint(r, exclude=FINGERPRINT_EXCLUDE,
                       extra={"view": view, "member_seed": member_seed, "data": sorted(train_ids)})


def _merge_init(eff: dict[str, Any], init: str) -> tuple[dict[str, Any], dict, str]:
    from .package import read_manifest
    from .registry import find_model

    path = find_model(init)
    man = read_manifest(path)
    eff.update(channels=list(man["input_channels"]), views=list(man["views"]),
               models_per_view=int(man["models_per_view"]),
               architecture=dict(man["architecture"].get("params", {})))
    eff["preprocessing"] = deep_update(eff["preprocessing"], man.get("preprocessing", {}), replace=("brain_mask",))
    for key in ("threshold", "slab_fraction"):
        if key in man:
            eff[key] = man[key]
    return eff, man, str(path)


def resolve(cfg: TrainConfig) -> Resolved:
    """Merge task defaults, ``init`` package, recipe and explicit settings (in that order) and check them.

    Raises:
        InputError: an unknown recipe or loss, an architecture with ``init``, channels that do not fit the
            network, repeated views, or a count or learning rate out of range.
    """
    task = str(cfg.task or "wmh").lower()
    eff = copy.deepcopy(TASK_DEFAULTS.get(task, GENERIC_DEFAULTS))
    init_manifest = init_path = None
    if cfg.init:
        eff, init_manifest, init_path = _merge_init(eff, cfg.init)
    if cfg.recipe:
        if cfg.recipe not in RECIPES:
            raise InputError(f"unknown recipe '{cfg.recipe}'; known: {', '.join(RECIPES)}")
        eff = deep_update(eff, RECIPES[cfg.recipe], replace=("brain_mask",))
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
        eff["preprocessing"] = deep_update(eff["preprocessing"], cfg.preprocessing, replace=("brain_mask",))
    if cfg.augmentation is not None:
        eff["augmentation"] = dict(cfg.augmentation)
    if cfg.loss not in LOSSES:
        raise InputError(f"unknown loss '{cfg.loss}'; use {' or '.join(LOSSES)}")
    if cfg.optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer '{cfg.optimizer}'; use {' or '.join(OPTIMIZERS)}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise InputError(f"unknown lr schedule '{cfg.lr_schedule}'; use {' or '.join(LR_SCHEDULES)}")
    if cfg.weight_decay is not None and not float(cfg.weight_decay) >= 0:
        raise InputError(f"weight decay must be >= 0, got {cfg.weight_decay}")
    if cfg.synth is not None:
        if cfg.synth != "qsynth":
            raise InputError(f"unknown synthesis '{cfg.synth}'; use qsynth")
        if cfg.positive_labels is None:  # qSynth label maps: 1 CSF, 2 GM, 3 WM, 4 lesion
            eff["positive_labels"], eff["ignore_labels"] = [4], None
        if int(cfg.synth_per_epoch) < 1 or int(cfg.synth_workers) < 0:
            raise InputError("synth_per_epoch must be >= 1 and synth_workers >= 0")
    channels = [str(c) for c in eff["channels"]]
    from .unet import build_unet
    from .views import check_view

    arch = build_unet({**eff["architecture"], **({} if init_manifest else {"in_channels": len(channels)})}).config()
    if arch["in_channels"] != len(channels):
        raise InputError(f"the network takes {arch['in_channels']} channel(s) but {len(channels)} are named "
                         f"({', '.join(channels)})")
    views = [check_view(v) for v in eff["views"]]
    if len(set(views)) != len(views):
        raise InputError(f"views repeat: {views}")
    for key, lo in (("models_per_view", 1), ("epochs", 0), ("batch_size", 1)):
        if int(eff[key]) < lo:
            raise InputError(f"{key} must be at least {lo}, got {eff[key]}")
    if not float(eff["lr"]) > 0:
        raise InputError(f"learning rate must be positive, got {eff['lr']}")
    from .augment import AugmentConfig

    try:
        aug = AugmentConfig.from_dict(eff["augmentation"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"augmentation settings: {exc}") from None
    return Resolved(
        task, channels, views, int(eff["models_per_view"]), int(eff["epochs"]), int(eff["batch_size"]),
        float(eff["lr"]), arch, dict(eff["preprocessing"]), float(eff["threshold"]), float(eff["slab_fraction"]),
        aug, eff.get("positive_labels"), eff.get("ignore_labels"), init_manifest, init_path,
        recipe=cfg.recipe, seed=int(cfg.seed), folds=int(cfg.folds or 0), val_fraction=float(cfg.val_fraction or 0),
        slices=cfg.slices, negative_fraction=cfg.negative_fraction, steps_per_epoch=cfg.steps_per_epoch,
        loss=cfg.loss, head_bias=cfg.head_bias, grad_clip=cfg.grad_clip,
        patch_hw=list(cfg.patch_hw) if cfg.patch_hw else None, foreground_prob=float(cfg.foreground_prob),
        amp=bool(cfg.amp), keep_best=bool(cfg.keep_best), device=cfg.device, resume=bool(cfg.resume),
        out=None if cfg.out is None else str(cfg.out), work_dir=None if cfg.work_dir is None else str(cfg.work_dir),
        description=cfg.description, version=str(cfg.version), demo=bool(cfg.demo),
        provenance=copy.deepcopy(cfg.provenance), verbose=bool(cfg.verbose), optimizer=cfg.optimizer,
        weight_decay=float(cfg.weight_decay if cfg.weight_decay is not None else
                           (0.01 if cfg.optimizer == "adamw" else 0.0)),
        lr_schedule=cfg.lr_schedule, synth=cfg.synth,
        synth_config=None if cfg.synth_config is None else
        (str(cfg.synth_config) if isinstance(cfg.synth_config, (str, os.PathLike)) else copy.deepcopy(cfg.synth_config)),
        synth_per_epoch=int(cfg.synth_per_epoch), synth_workers=int(cfg.synth_workers))


def model_manifest(r: Resolved) -> dict[str, Any]:
    """The manifest (without files) of the package this run writes; also drives preprocessing."""
    return {
        "task": r.task,
        "description": r.description or f"{r.task} multi-view U-Net ensemble trained with neuroshift train",
        "version": str(r.version),
        "demo": bool(r.demo),
        "architecture": {"name": "unet2d", "params": r.architecture},
        "input_channels": r.channels,
        "views": r.views,
        "models_per_view": r.models_per_view,
        "preprocessing": r.preprocessing,
        "threshold": r.threshold,
        "slab_fraction": r.slab_fraction,
    }


__all__ = ["FINGERPRINT_EXCLUDE", "GENERIC_DEFAULTS", "LOSSES", "RECIPES", "Resolved", "TASK_DEFAULTS",
           "TrainConfig", "load_config", "member_fingerprint", "model_manifest", "resolve"]
