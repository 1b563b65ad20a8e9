"""Training data: subjects (:mod:`neuroshift.segment.subjects`) -> preprocessed 2D slices of each view.

Preprocessing is exactly the inference chain (:func:`neuroshift.segment.preprocess.prepare_inputs`
with the model's ``preprocessing`` manifest entry: canonical reorientation, resampling to the model
spacing, brain mask, z-score inside it), then the label goes to the model grid with nearest
neighbour, and :func:`neuroshift.segment.views.view_slices` cuts the slices of each view and
crops/pads them to ``crop_hw``. A model therefore sees at training time the slices it will see
at inference time.

Slice selection (``slices``): ``"all"``, ``"brain"`` (default: slices that contain brain-mask
voxels) or ``"positive"`` (slices with foreground); ``negative_fraction`` keeps that (seeded)
fraction of the foreground-free candidate slices (default: all of them, none for ``"positive"``).

The subject discovery (:class:`Subject`, :func:`discover_subjects`, ``subjects_from_*``,
:data:`LABEL_NAMES`) lives in :mod:`neuroshift.segment.subjects` and stays importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..io.volume import Volume
from .subjects import (LABEL_NAMES, Subject, discover_subjects, subjects_from_csv, subjects_from_folder,
                       subjects_from_lists)


# ============================================================== loading and preprocessing
def _as_volume(value: Any, what: str) -> Volume:
    if isinstance(value, Volume):
        return value
    from ..io.files import read_volume

    return read_volume(value)


def positive_mask(label: np.ndarray, positive_labels: Sequence[int] | None) -> np.ndarray:
    """Binary foreground: ``label in positive_labels``, or ``label > 0`` when ``None``."""
    lab = np.asarray(label)
    if positive_labels is None:
        return lab > 0.5 if np.issubdtype(lab.dtype, np.floating) else lab > 0
    return np.isin(np.rint(lab).astype(np.int64), [int(v) for v in positive_labels])


@dataclass
class PreparedSubject:
    """A subject on the model grid: z-scored channels ``(C, K, J, I)``, binary label, brain mask."""

    id: str
    group: str
    channels: np.ndarray
    label: np.ndarray
    mask: np.ndarray
    pad_value: float
    spacing: np.ndarray
    ignore: np.ndarray | None = None  # voxels excluded from validation metrics (e.g. WMH label 2)
    warnings: list[str] = field(default_factory=list)
    histogram: dict | None = None  # z-scored brain intensity histogram (qc.intensity_histogram)
    native_spacing: np.ndarray | None = None  # canonical (i, j, k) spacing of the input before resampling


def prepare_subject(subject: Subject, manifest: Mapping[str, Any],
                    positive_labels: Sequence[int] | None = None,
                    ignore_labels: Sequence[int] | None = None) -> PreparedSubject:
    """Load and preprocess one subject with the inference chain of ``manifest``."""
    from .preprocess import prepare_inputs, prepare_label

    names = list(manifest["input_channels"])
    images = {}
    for key, value in subject.images.items():
        images[key] = _as_volume(value, f"{subject.id} {key}")
    bm = _as_volume(subject.brain_mask, f"{subject.id} brain mask") if subject.brain_mask is not None else None
    try:
        prepared = prepare_inputs(images, manifest, brain_mask_volume=bm)
    except InputError as exc:
        raise InputError(f"subject {subject.id}: {exc}") from None
    label_vol = _as_volume(subject.label, f"{subject.id} label")
    # a label on another grid than the first channel is resampled onto it (nearest neighbour)
    raw = prepare_label(label_vol, prepared)
    label = positive_mask(raw, positive_labels)
    ignore = np.isin(np.rint(raw).astype(np.int64), [int(v) for v in ignore_labels]) if ignore_labels else None
    try:
        from .qc import intensity_histogram

        histogram = intensity_histogram(prepared)
    except ImportError:  # pragma: no cover - qc is part of the package
        histogram = None
    return PreparedSubject(subject.id, subject.group_id, prepared.channels, label.astype(np.uint8),
                           np.asarray(prepared.mask, dtype=bool), prepared.pad_value,
                           np.asarray(prepared.spacing), ignore, list(prepared.warnings), histogram,
                           np.asarray(prepared.canonical.spacing))


def select_slices(label_stack: np.ndarray, mask_stack: np.ndarray, mode: str = "brain",
                  negative_fraction: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of the slices to train on; ``*_stack`` are boolean ``(N, H, W)``.

    Every slice with foreground is kept. Foreground-free slices are candidates when the mode
    allows them (``all``: every slice; ``brain``: slices with brain-mask voxels; ``positive``: brain
    slices too) and a seeded ``negative_fraction`` of the candidates is kept (default 1.0 for
    ``all``/``brain``, 0.0 for ``positive``).
    """
    mode = str(mode).lower()
    if mode not in ("all", "brain", "positive"):
        raise InputError(f"slice selection must be all, brain or positive, got '{mode}'")
    n = label_stack.shape[0]
    pos = label_stack.reshape(n, -1).any(axis=1)
    brain = mask_stack.reshape(n, -1).any(axis=1)
    candidates = ~pos if mode == "all" else (~pos & brain)
    if negative_fraction is None:
        negative_fraction = 0.0 if mode == "positive" else 1.0
    frac = float(min(max(negative_fraction, 0.0), 1.0))
    keep = pos.copy()
    negatives = np.flatnonzero(candidates)
    if frac >= 1.0:
        keep[negatives] = True
    elif frac > 0 and negatives.size:
        rng = rng or np.random.default_rng(0)
        chosen = rng.choice(negatives, size=int(round(frac * negatives.size)), replace=False)
        keep[chosen] = True
    return np.flatnonzero(keep)


class SliceDataset:
    """2D slices of one view from prepared subjects: ``ds[i] -> (image (C, H, W), label (1, H, W))``.

    Everything is held in memory as float32/uint8 (the slices of a few hundred scans at the papers'
    sizes fit in a few GB). ``slice_subject`` / ``slice_index`` give each slice's origin.
    Usable directly as a ``torch.utils.data.Dataset`` (``__len__``/``__getitem__``, torch tensors out).
    """

    def __init__(self, subjects: Sequence[PreparedSubject], view: str, crop_hw: Sequence[int] | None,
                 *, slices: str = "brain", negative_fraction: float | None = None, seed: int = 0):
        from .views import check_view, view_slices

        self.view = check_view(view)
        self.crop_hw = None if crop_hw is None else tuple(int(v) for v in crop_hw)
        rng = np.random.default_rng(seed)
        imgs, labs, subj, idx = [], [], [], []
        for s_i, s in enumerate(subjects):
            lab_stack, _ = view_slices(s.label[None].astype(np.float32), self.view, None)
            mask_stack, _ = view_slices(s.mask[None].astype(np.float32), self.view, None)
            keep = select_slices(lab_stack[:, 0] > 0.5, mask_stack[:, 0] > 0.5, slices, negative_fraction, rng)
            if keep.size == 0:
                continue
            x, _ = view_slices(s.channels, self.view, self.crop_hw, s.pad_value, indices=keep)
            y, _ = view_slices(s.label[None].astype(np.float32), self.view, self.crop_hw, 0.0, indices=keep)
            imgs.append(x)
            labs.append((y > 0.5).astype(np.uint8))
            subj += [s_i] * keep.size
            idx.append(keep)
        if not imgs:
            raise InputError(f"no {view} training slices were selected (slices='{slices}'); "
                             "check the labels and the slice selection")
        hw = {a.shape[-2:] for a in imgs}
        if len(hw) > 1:
            raise InputError(f"{view} slices have different sizes {sorted(hw)}: set preprocessing crop_hw "
                             "(and spacing_mm) so all subjects give slices of one size")
        self.images = np.concatenate(imgs).astype(np.float32)
        self.labels = np.concatenate(labs)
        self.slice_subject = np.asarray(subj, dtype=np.int64)
        self.slice_index = np.concatenate(idx).astype(np.int64)
        self.subject_ids = [s.id for s in subjects]

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def positive_slices(self) -> int:
        return int(self.labels.reshape(len(self), -1).any(axis=1).sum())

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int):
        import torch

        return torch.from_numpy(self.images[i]), torch.from_numpy(self.labels[i]).float()

    def patch_batch(self, indices: Sequence[int], hw: Sequence[int], rng: np.random.Generator,
                    foreground_prob: float = 0.5):
        """Random ``hw`` patches of the slices ``indices``: with probability ``foreground_prob`` centred
        (± a quarter patch) on a random foreground pixel of the slice (when it has one), else anywhere.
        The network is fully convolutional, so it still segments whole slices at inference; patches raise
        the foreground share of a batch and cut the cost of a step."""
        return _patch_batch(self.images, self.labels, indices, hw, rng, foreground_prob)

    def batch(self, indices: Sequence[int]):
        """Images ``(B, C, H, W)`` and labels ``(B, 1, H, W)`` (float32 torch tensors) of ``indices``."""
        import torch

        idx = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(self.images[idx]), torch.from_numpy(self.labels[idx]).float()


def _patch_batch(images: np.ndarray, labels: np.ndarray, indices, hw, rng: np.random.Generator,
                 foreground_prob: float):
    import torch

    idx = np.asarray(indices, dtype=np.int64)
    H, W = images.shape[-2:]
    ph, pw = min(int(hw[0]), H), min(int(hw[1]), W)
    X = np.empty((idx.size, images.shape[1], ph, pw), np.float32)
    Y = np.empty((idx.size, labels.shape[1], ph, pw), labels.dtype)
    for n, i in enumerate(idx):
        fg = np.argwhere(labels[i, 0] > 0) if rng.random() < foreground_prob else np.empty((0, 2))
        if len(fg):
            cy, cx = fg[rng.integers(len(fg))]
            cy += rng.integers(-(ph // 4), ph // 4 + 1)
            cx += rng.integers(-(pw // 4), pw // 4 + 1)
        else:
            cy, cx = rng.integers(H), rng.integers(W)
        y0 = int(np.clip(cy - ph // 2, 0, H - ph))
        x0 = int(np.clip(cx - pw // 2, 0, W - pw))
        X[n] = images[i, :, y0:y0 + ph, x0:x0 + pw]
        Y[n] = labels[i, :, y0:y0 + ph, x0:x0 + pw]
    return torch.from_numpy(X), torch.from_numpy(Y).float()


def prepare_subjects(subjects: Sequence[Subject], manifest: Mapping[str, Any], *,
                     positive_labels: Sequence[int] | None = None, ignore_labels: Sequence[int] | None = None,
                     progress=None) -> list[PreparedSubject]:
    """:func:`prepare_subject` for each subject (``progress(fraction, message)`` after each)."""
    out = []
    for n, s in enumerate(subjects):
        out.append(prepare_subject(s, manifest, positive_labels, ignore_labels))
        if progress is not None:
            progress((n + 1) / len(subjects), f"prepared {s.id}")
    return out


__all__ = ["LABEL_NAMES", "PreparedSubject", "SliceDataset", "Subject", "discover_subjects", "positive_mask",
           "prepare_subject", "prepare_subjects", "select_slices", "subjects_from_csv", "subjects_from_folder",
           "subjects_from_lists"]
