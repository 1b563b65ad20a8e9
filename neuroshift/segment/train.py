"""Training, cross-validation and fine-tuning of the multi-view U-Net ensembles (dissertation 003,
reference ``paper003`` in :mod:`neuroshift.references`).

What one run does (:func:`train`):

1. resolve the settings (:func:`neuroshift.segment.train_config.resolve`): task defaults < the
   ``--init`` package's manifest < a named recipe (e.g. ``neonatal``) < what the user set explicitly,
   into one frozen :class:`~neuroshift.segment.train_config.Resolved`;
2. find the subjects (:mod:`neuroshift.segment.dataset`) and preprocess them once with the
   inference chain of the model that will be written;
3. split them (``folds >= 2``: k-fold cross-validation by subject; otherwise one run with an optional
   validation split; the split is saved as ``splits.json`` in the work folder) and, for each fold, view
   and ensemble member (``models_per_view`` networks per view, each with its own seed: initialisation,
   shuffling and augmentation), run the shared loop (:func:`neuroshift.training.loop.run_loop`) over a
   :class:`~neuroshift.segment.train_step.SegmentationStep`: batch-global Dice loss and Adam,
   validation after every epoch (DSC and lesion F1 of the member's view), a line in the member's
   ``log.csv`` and a checkpoint (:mod:`neuroshift.training.checkpoint`);
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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..training.history import LOG_FILE, log, software_provenance
from ..training.splits import SPLITS_FILE, check_splits, holdout_split, kfold_splits, save_splits
from .dataset import PreparedSubject, SliceDataset, Subject, discover_subjects, prepare_subjects
from .train_config import (GENERIC_DEFAULTS, RECIPES, TASK_DEFAULTS, Resolved, TrainConfig, load_config,
                           member_fingerprint, model_manifest, resolve)

LOSS_TEXT = "batch-global Dice, 1 - (2 sum(p g) + 1) / (sum p + sum g + 1)"


@dataclass
class MemberResult:
    """One trained ensemble member: its final (or best) weights and per-epoch history."""

    view: str
    index: int
    seed: int
    epochs: int
    steps: int
    state_dict: dict
    history: list[dict]
    resumed_from_epoch: int = 0
    final: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """What :func:`train` produced: package folder(s), per-member histories, CV summary."""

    packages: list[Path]
    members: list[dict]
    cv: dict | None = None
    work_dir: Path | None = None
    rank: int = 0  # torch.distributed rank of this process (only rank 0 writes)


def member_seed(seed: int, fold: int, view_idx: int, index: int) -> int:
    """The seed of one ensemble member (initialisation, shuffling, augmentation)."""
    return int(seed) * 1_000_003 + fold * 10_007 + view_idx * 101 + index


def train_member(r: Resolved, view: str, index: int, seed: int, directory: Path, train_ds: SliceDataset,
                 val_subjects: Sequence[PreparedSubject], device, dist, init_state: dict | None = None,
                 progress: Callable[[float, str], None] | None = None, synth=None) -> MemberResult:
    """Train (or resume) one ensemble member with the shared loop.

    Raises:
        InputError: a checkpoint exists without ``resume``, or was made with other settings or data.
    """
    from ..training.loop import LoopSettings, run_loop
    from .train_step import LOG_FIELDS, SegmentationStep

    if synth is not None:  # --synth: fresh synthetic slices every epoch (neuroshift.segment.synth_data)
        from .synth_data import synth_step_class

        step = synth_step_class()(r, train_ds, val_subjects, view, seed, device, dist, init_state, synth=synth)
    else:
        step = SegmentationStep(r, train_ds, val_subjects, view, seed, device, dist, init_state)
    settings = LoopSettings(
        epochs=r.epochs, directory=directory, seed=seed,
        fingerprint=member_fingerprint(r, view, seed, list(train_ds.subject_ids)), resume=r.resume, amp=r.amp,
        keep_best="val_dsc" if r.keep_best else None, steps_per_epoch=r.steps_per_epoch, log_fields=LOG_FIELDS,
        items_name="slices", state={"view": view, "index": index}, label=f"{view} {index}", verbose=r.verbose,
        settings_hint="architecture, view, seed, lr, batch size, augmentation, preprocessing or subjects")
    res = run_loop(step, settings, dist=dist, device=device,
                   progress=None if progress is None else
                   (lambda f, msg: progress(f, f"{view} model {index + 1}: {msg.split(': ', 1)[-1]}")))
    return MemberResult(view, index, seed, r.epochs, res.steps, res.states["model"], res.history,
                        res.resumed_from_epoch, res.final)


def provenance(r: Resolved, train_subj: Sequence[Subject], val_subj: Sequence[Subject],
               members: Sequence[MemberResult], datasets: Mapping[str, SliceDataset], world_size: int, device,
               fold: int | None, n_folds: int) -> dict[str, Any]:
    """``manifest["training"]`` of a package: software, recipe, loss, optimiser, data, members."""
    prov: dict[str, Any] = {
        **software_provenance(),
        "recipe": r.recipe or r.task,
        "loss": LOSS_TEXT + (" + binary cross-entropy" if r.loss == "dice+bce" else ""),
        "optimizer": {"name": "AdamW" if r.optimizer == "adamw" else "Adam", "lr": r.lr,
                      **({"weight_decay": r.weight_decay} if r.optimizer == "adamw" else {}),
                      **({"schedule": "poly lr (1 - n/N)^0.9"} if r.lr_schedule == "poly" else {})},
        "epochs": r.epochs, "batch_size": r.batch_size, "steps_per_epoch": r.steps_per_epoch,
        "head_bias_init": r.head_bias, "grad_clip": r.grad_clip,
        "patches": ({"hw": list(r.patch_hw), "foreground_prob": r.foreground_prob} if r.patch_hw else None),
        "augmentation": r.augmentation.to_dict(),
        "slices": {"selection": r.slices, "negative_fraction": r.negative_fraction,
                   **{v: {"train_slices": len(ds), "positive_slices": ds.positive_slices} for v, ds in datasets.items()}},
        "positive_labels": r.positive_labels, "ignore_labels": r.ignore_labels,
        "data": {"train_subjects": [s.id for s in train_subj], "validation_subjects": [s.id for s in val_subj]},
        "seed": r.seed,
        "members": [{"view": m.view, "index": m.index, "seed": m.seed, "epochs": m.epochs, "steps": m.steps,
                     "final": m.final} for m in members],
        "device": str(device), "world_size": world_size,
    }
    if r.synth:
        prov["synthesis"] = {"method": r.synth, "config": r.synth_config, "per_label_per_epoch": r.synth_per_epoch,
                             "note": "SYNTHETIC training images generated on the fly from the label maps "
                                     "(neuroshift.qsynth, paper 002)"}
    if fold is not None:
        prov["cross_validation"] = {"fold": fold + 1, "folds": n_folds}
    if r.init_manifest is not None:
        prov["init"] = {"path": r.init_path, "task": r.init_manifest.get("task"),
                        "version": r.init_manifest.get("version"),
                        "description": r.init_manifest.get("description"),
                        "files": r.init_manifest.get("files"), "fine_tuned": "all layers"}
    if r.recipe == "neonatal":
        prov["population"] = "neonatal"  # QC: flags scans younger than 35 gestational weeks
    if r.provenance:
        prov.update(copy.deepcopy(r.provenance))
    return prov


def _init_for(states: dict[str, list[dict]] | None, view: str, index: int) -> dict | None:
    if states is None:
        return None
    sds = states.get(view) or next(iter(states.values()))
    return sds[index % len(sds)]


def _splits(r: Resolved, subjects: Sequence[Subject], val_extra: Sequence[Subject], work: Path, dist):
    groups = [s.group_id for s in subjects]
    if r.folds >= 2:
        if val_extra:
            raise InputError("cross-validation (--folds) makes its own validation sets; drop --val-images")
        splits, fold_ids = kfold_splits(groups, r.folds, r.seed), list(range(r.folds))
    else:
        splits, fold_ids = [holdout_split(groups, r.val_fraction, r.seed)], [None]
    ids = [s.id for s in subjects]
    if r.resume or (work / SPLITS_FILE).is_file():  # an earlier run's split must match (resume or not)
        try:
            check_splits(work, ids, splits)
        except InputError:
            if r.resume:
                raise
            raise InputError(f"{work}: holds an earlier run with other data splits; pass --resume with its "
                             "settings, or remove the work folder") from None
    if dist.is_main:
        save_splits(work, ids, splits)
    return splits, fold_ids


def _package(r: Resolved, manifest: dict, fold_out: Path, tr_p, tr_s, va_s, results, datasets, dist, device,
             fold, n_folds) -> None:
    from .package import save_package

    man = dict(manifest)
    man["training"] = provenance(r, tr_s, va_s, [x for v in results.values() for x in v], datasets,
                                 dist.world_size, device, fold, n_folds)
    man["training"]["spacing_mm"] = [round(float(v), 4) for v in np.median([p.spacing for p in tr_p], axis=0)]
    hists = [p.histogram for p in tr_p if p.histogram]
    if hists:
        from .qc import merge_histograms

        man["qc"] = {**dict(man.get("qc", {}) or {}), "intensity_histogram": merge_histograms(hists)}
    save_package(fold_out, man, {v: [m.state_dict for m in ms] for v, ms in results.items()})


def train(cfg: TrainConfig | Mapping[str, Any], progress: Callable[[float, str], None] | None = None) -> TrainResult:
    """Run a training (or cross-validation, or fine-tuning) as configured; see the module docstring.

    Raises:
        InputError: missing ``out``, bad settings, unreadable or inconsistent data, a work folder that holds
            another run (without ``resume``) or other settings (with it).
        IntegrityError: a checkpoint cannot be read.
    """
    import torch

    from ..training.distributed import device_for, init_distributed

    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.from_dict(cfg)
    if not cfg.out:
        raise InputError("give the output package folder (--out)")
    r = resolve(cfg)
    out = Path(r.out)
    work = Path(r.work_dir) if r.work_dir else out.with_name(out.name + ".work")
    dist = init_distributed(r.device)

    def say(msg: str) -> None:
        log(msg, verbose=r.verbose, is_main=dist.is_main)

    try:
        device = device_for(dist, r.device)
        torch.backends.cudnn.benchmark = False
        manifest = model_manifest(r)
        qcfg = None
        if r.synth:
            from .synth_data import label_only_subjects, qsynth_config

            qcfg = qsynth_config(r.synth_config)
        if r.synth and not cfg.images:  # labels alone: one fixed synthetic image each (preprocessing, validation)
            if not cfg.labels:
                raise InputError("--synth qsynth needs the label maps (--labels)")
            subjects = label_only_subjects(cfg.labels if isinstance(cfg.labels, (list, tuple)) else [cfg.labels],
                                           r.channels, qcfg, r.seed)
        else:
            subjects = discover_subjects(cfg.images, cfg.labels, r.channels, cfg.brain_masks)
        val_extra = discover_subjects(cfg.val_images, cfg.val_labels, r.channels) if cfg.val_images else []
        ids = [s.id for s in subjects + val_extra]
        if len(set(ids)) != len(ids):
            raise InputError(f"subject ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        say(f"preparing {len(subjects) + len(val_extra)} subject(s) ({', '.join(r.channels)}; views "
            f"{', '.join(r.views)})")
        prepared = prepare_subjects(subjects, manifest, positive_labels=r.positive_labels,
                                    ignore_labels=r.ignore_labels)
        prepared_val_extra = prepare_subjects(val_extra, manifest, positive_labels=r.positive_labels,
                                              ignore_labels=r.ignore_labels)
        for p in prepared + prepared_val_extra:
            for w in p.warnings:
                say(f"warning: {p.id}: {w}")
        splits, fold_ids = _splits(r, subjects, val_extra, work, dist)
        init_states = None
        if r.init_path:
            from .package import load_state_dicts

            init_states = load_state_dicts(r.init_path).state_dicts
        total_members = len(splits) * len(r.views) * r.models_per_view
        done = 0
        packages, member_rows, cv_rows = [], [], []
        for (train_idx, val_idx), fold in zip(splits, fold_ids):
            tr_p = [prepared[i] for i in train_idx]
            va_p = [prepared[i] for i in val_idx] + (prepared_val_extra if fold is None else [])
            tr_s = [subjects[i] for i in train_idx]
            va_s = [subjects[i] for i in val_idx] + (val_extra if fold is None else [])
            fold_work = work / f"fold-{fold + 1}" if fold is not None else work
            fold_out = out / f"fold-{fold + 1}" if fold is not None else out
            if fold is not None:
                say(f"fold {fold + 1}/{len(splits)}: {len(tr_p)} training, {len(va_p)} validation subject(s) "
                    f"({', '.join(s.id for s in va_s)})")
            datasets: dict[str, SliceDataset] = {}
            results: dict[str, list[MemberResult]] = {}
            for v_i, view in enumerate(r.views):
                ds = SliceDataset(tr_p, view, r.preprocessing.get("crop_hw"), slices=r.slices,
                                  negative_fraction=r.negative_fraction, seed=r.seed)
                datasets[view] = ds
                say(f"{view}: {len(ds)} training slices ({ds.positive_slices} with foreground), "
                    f"{tuple(ds.images.shape[-2:])} pixels")
                results[view] = []
                synth = None
                if qcfg is not None:
                    synth = _synth_source(r, qcfg, tr_s, tr_p, manifest, bool(cfg.images))
                for m in range(r.models_per_view):
                    seed = member_seed(r.seed, fold or 0, v_i, m)
                    base = done

                    def sub_progress(f: float, msg: str, base=base) -> None:
                        if progress is not None:
                            progress((base + f) / total_members, msg)

                    res = train_member(r, view, m, seed, fold_work / f"{view}_{m}", ds, va_p, device, dist,
                                       _init_for(init_states, view, m), sub_progress, synth=synth)
                    results[view].append(res)
                    done += 1
                    member_rows.append({"fold": None if fold is None else fold + 1, "view": view, "index": m,
                                        "seed": seed, "log": str(fold_work / f"{view}_{m}" / LOG_FILE), **res.final})
            if dist.is_main:
                _package(r, manifest, fold_out, tr_p, tr_s, va_s, results, datasets, dist, device, fold, len(splits))
                say(f"wrote model package {fold_out}")
                if fold is not None:
                    cv_rows.append({"fold": fold + 1, "validation_subjects": [s.id for s in va_s],
                                    **_mean_final([x for v in results.values() for x in v])})
            packages.append(fold_out)
            dist.barrier()
        cv = None
        if cv_rows and dist.is_main:
            from ..training.checkpoint import write_json_atomic

            keys = [k for k in cv_rows[0] if k.startswith("val_")]
            cv = {"folds": cv_rows, "mean": {k: float(np.nanmean([row[k] for row in cv_rows])) for k in keys},
                  "note": "mean over folds of the members' last-epoch validation metrics on their own view "
                          "(model grid); per-epoch logs in the work folder"}
            write_json_atomic(out / "cv_summary.json", cv)
            say("cross-validation: " + ", ".join(f"{k}={v:.4f}" for k, v in cv["mean"].items()))
        return TrainResult(packages, member_rows, cv, work, dist.rank)
    finally:
        dist.close()


def _synth_source(r: Resolved, qcfg, subjects: Sequence[Subject], prepared: Sequence[PreparedSubject], manifest,
                  mixed: bool):
    """The per-epoch synthetic data of one fold: the training subjects' label maps (+ their real images)."""
    from .synth_data import SynthSource, read_label

    labels = [(s.id, read_label(s.label)) for s in subjects]
    return SynthSource(labels, list(prepared) if mixed else [], manifest, qcfg,
                       positive_labels=r.positive_labels, ignore_labels=r.ignore_labels,
                       per_label=r.synth_per_epoch, workers=r.synth_workers, slices=r.slices,
                       negative_fraction=r.negative_fraction)


def _mean_final(members: Sequence[MemberResult]) -> dict[str, float]:
    keys = sorted({k for m in members for k in m.final if k.startswith("val_")})
    return {k: float(np.nanmean([m.final.get(k, math.nan) for m in members])) for k in keys}


__all__ = ["GENERIC_DEFAULTS", "MemberResult", "RECIPES", "TASK_DEFAULTS", "TrainConfig", "TrainResult",
           "holdout_split", "kfold_splits", "load_config", "member_seed", "provenance", "resolve", "train",
           "train_member"]
