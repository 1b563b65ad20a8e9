"""One training engine for every task: segmentation ensembles today, GANs, MRF regression and
label-to-image synthesis next. A task supplies a step and its settings; this package does the rest.

* :mod:`.config` — :func:`deep_update`, :func:`from_dict` (refuses unknown keys), :func:`load_yaml`
  (paths relative to the file), :func:`fingerprint` (resolved settings minus an exclusion list), CLI flags
  generated from dataclass field metadata (:func:`setting`, :class:`Flag`, :func:`add_arguments`);
* :mod:`.distributed` — torchrun/DDP set-up and wrapping, seeded epoch order, all-reduce,
  :class:`ForwardMethod` (what DDP wraps when training needs another output than ``forward``);
* :mod:`.checkpoint` — models and optimisers keyed by name, safetensors, ``weights_only=True``,
  ``state.json`` written last;
* :mod:`.history` — ``log.csv`` that rewinds on resume, :class:`BestTracker`, rank-0 messages, provenance;
* :mod:`.splits` — k-fold and hold-out splits by subject, saved to the work folder;
* :mod:`.pool` — :class:`ImagePool`, the GAN discriminator's history of generated images;
* :mod:`.loop` — :func:`run_loop` over a :class:`TrainStep` (seeded epochs, AMP, resume, per-epoch
  checkpoint, keep-best).

Adding a task (a GAN for LesionSynth, MRF regression, label-to-image synthesis) is a settings dataclass
(fields declared with :func:`setting`, so ``neuroshift <cmd>`` gets its flags from them), a frozen resolved
settings object, a fingerprint (:func:`fingerprint` with an explicit exclusion list: what may change between
an interrupted run and its resumption) and a step class with ``models``/``optimizers`` dicts, ``batches``,
``step`` and ``validate`` (plus ``extra_state``/``load_extra_state`` for state such as an
:class:`ImagePool`); :func:`run_loop` does epochs, resume, logging, checkpoints and keep-best.
``neuroshift.segment.train_step.SegmentationStep`` is the worked example; ``Testing/training/test_training_engine.py``
has a two-optimiser GAN step with an image pool that resumes bit-identically.

Layering: this package imports torch but never a capability (``segment``, ``simulate``, ...), the CLI or
Slicer; capabilities import it. Torch-free parts (config, splits, history) import without torch being
loaded; the names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "config": ("Flag", "add_arguments", "deep_update", "fingerprint", "from_dict", "internal", "load_yaml",
               "setting", "values_from_args"),
    "distributed": ("DistInfo", "ForwardMethod", "all_reduce_sums", "device_for", "epoch_order", "epoch_seed",
                    "init_distributed", "wrap_ddp"),
    "checkpoint": ("load_checkpoint", "save_checkpoint"),
    "history": ("BestTracker", "append_epoch", "software_provenance"),
    "splits": ("holdout_split", "kfold_splits", "save_splits", "check_splits"),
    "pool": ("ImagePool",),
    "loop": ("EpochContext", "LoopResult", "LoopSettings", "StepOutput", "TrainStep", "run_loop"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_WHERE)
