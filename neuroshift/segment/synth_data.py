"""Training from labels with qSynth (``neuroshift train --synth qsynth``; paper 002).

Every epoch each member gets fresh SYNTHETIC subjects: for every training label map,
``synth_per_epoch`` images drawn by :func:`neuroshift.qsynth.generate` (new priors, sequence, scanner
augmentations and deformation per subject), preprocessed by the model's own inference chain
(:func:`~neuroshift.segment.dataset.prepare_subject`) and cut into slices
(:class:`~neuroshift.segment.dataset.SliceDataset`). Generation runs in a ``torch`` DataLoader with
``synth_workers`` worker processes; subject ``i`` of epoch ``e`` is seeded by ``(member seed, e, rank, i)``
only, so the data do not depend on the number of workers and a resumed run sees the data of an
uninterrupted one. Subjects that also have real images are trained on both (mixed); label-only subjects
get one fixed synthetic image (seed ``run seed + index``) for preprocessing and validation, so a
validation split of label maps gives held-out *synthetic* scores. The brain mask of a synthetic subject is
its labelled region (label > 0), whatever ``--mask-mode`` says.

The label maps follow the qSynth convention (:data:`neuroshift.qsynth.generator.DEFAULT_LABEL_TISSUES`:
1 CSF, 2 GM, 3 WM, 4 lesion, 0 background; e.g. ``tissue_labels.nii.gz`` of ``neuroshift sample-data``);
without ``--positive-labels`` the target is label 4. One synthetic image per subject: train
single-channel models (``--channels FLAIR``; the name is only a name, the contrast is random).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..io.volume import Volume
from .dataset import PreparedSubject, SliceDataset, Subject, prepare_subject

__all__ = ["SYNTH_METHODS", "SYNTH_POSITIVE_LABELS", "qsynth_config", "label_only_subjects", "read_label",
           "SynthSubjects", "SynthSource", "synth_step_class"]

SYNTH_METHODS = ("qsynth",)
#: Foreground of a qSynth label map when the user names none (lesion).
SYNTH_POSITIVE_LABELS = [4]


def qsynth_config(spec: Any):
    """A :class:`~neuroshift.qsynth.QSynthConfig` from None, a mapping, or a YAML/JSON file of its fields."""
    import dataclasses

    from ..qsynth import QSynthConfig
    from ..training.config import load_yaml

    if spec is None:
        return QSynthConfig()
    if isinstance(spec, QSynthConfig):
        return spec
    data = load_yaml(spec, optional_path_keys=("priors",)) if isinstance(spec, (str, Path)) else dict(spec)
    known = {f.name for f in dataclasses.fields(QSynthConfig)}
    bad = sorted(set(data) - known)
    if bad:
        raise InputError(f"unknown qSynth setting(s) {bad}; known: {', '.join(sorted(known))}")
    if "label_tissues" in data:
        data["label_tissues"] = {int(k): v for k, v in data["label_tissues"].items()}
    if "sequences" in data:
        data["sequences"] = tuple(data["sequences"])
    return QSynthConfig(**data)


def read_label(value: Any) -> Volume:
    if isinstance(value, Volume):
        return value
    from ..io.files import read_volume

    return read_volume(value)


def label_only_subjects(labels: Sequence[Any], channels: Sequence[str], qcfg, seed: int) -> list[Subject]:
    """Subjects made from label maps alone: each with one fixed synthetic image (seed ``seed + n``)."""
    from ..qsynth import generate

    if len(channels) != 1:
        raise InputError(f"qSynth training makes one image per subject; train a single-channel model "
                         f"(e.g. --channels FLAIR), not {len(channels)} channels ({', '.join(channels)})")
    out = []
    for n, lab in enumerate(labels):
        vol = read_label(lab)
        sid = Path(str(lab)).name.split(".")[0] if isinstance(lab, (str, Path)) else f"labels{n + 1}"
        if sid in {s.id for s in out}:
            sid = f"{sid}_{n + 1}"
        g = generate(vol, qcfg, seed=int(seed) + n)
        # the label is the generator's (deformed) one: the image was rendered from it
        out.append(Subject(sid, {channels[0]: g["image"]}, g["labels"], brain_mask=_head_mask(g["labels"])))
    return out


def _head_mask(labels: Volume) -> Volume:
    """The brain mask of a synthetic subject: every labelled voxel (its image scale is arbitrary, so
    intensity thresholds would mean nothing)."""
    return labels.with_data((np.asarray(labels.data) > 0).astype(np.uint8))


def _identity(x):
    return x


class SynthSubjects:
    """``torch`` map-style dataset: item ``i`` is a prepared synthetic subject (see the module docstring)."""

    def __init__(self, labels: Sequence[tuple[str, Volume]], manifest: Mapping[str, Any], qcfg, *,
                 positive_labels, ignore_labels, seed: int, per_label: int = 1):
        self.labels, self.manifest, self.qcfg = list(labels), dict(manifest), qcfg
        self.positive_labels, self.ignore_labels = positive_labels, ignore_labels
        self.seed, self.per_label, self.epoch, self.rank = int(seed), int(per_label), 0, 0

    def __len__(self) -> int:
        return len(self.labels) * self.per_label

    def __getitem__(self, i: int) -> PreparedSubject:
        from ..qsynth import generate

        sid, lab = self.labels[i % len(self.labels)]
        g = np.random.default_rng([self.seed, self.epoch, self.rank, int(i)])
        out = generate(lab, self.qcfg, seed=g)
        channel = self.manifest["input_channels"][0]
        subj = Subject(f"{sid}-qsynth-e{self.epoch}-{i}", {channel: out["image"]}, out["labels"],
                       brain_mask=_head_mask(out["labels"]), group=sid)
        return prepare_subject(subj, self.manifest, self.positive_labels, self.ignore_labels)


class SynthSource:
    """Makes each epoch's slices: synthetic subjects (DataLoader workers) plus the real ones, if any."""

    def __init__(self, labels: Sequence[tuple[str, Volume]], real: Sequence[PreparedSubject],
                 manifest: Mapping[str, Any], qcfg, *, positive_labels, ignore_labels, per_label: int = 1,
                 workers: int = 0, slices: str = "brain", negative_fraction: float | None = None):
        if per_label < 1:
            raise InputError(f"synth_per_epoch must be at least 1, got {per_label}")
        if workers < 0:
            raise InputError(f"synth_workers must be >= 0, got {workers}")
        self.labels, self.real, self.manifest, self.qcfg = list(labels), list(real), manifest, qcfg
        self.positive_labels, self.ignore_labels = positive_labels, ignore_labels
        self.per_label, self.workers = int(per_label), int(workers)
        self.slices, self.negative_fraction = slices, negative_fraction

    def subjects(self, seed: int, epoch: int, rank: int = 0) -> list[PreparedSubject]:
        """The synthetic prepared subjects of one epoch (deterministic in ``seed, epoch, rank``)."""
        from torch.utils.data import DataLoader

        ds = SynthSubjects(self.labels, self.manifest, self.qcfg, positive_labels=self.positive_labels,
                           ignore_labels=self.ignore_labels, seed=seed, per_label=self.per_label)
        ds.epoch, ds.rank = int(epoch), int(rank)
        loader = DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.workers, collate_fn=_identity)
        return list(loader)

    def dataset(self, view: str, crop_hw, seed: int, epoch: int, rank: int = 0) -> SliceDataset:
        """One epoch's slices of ``view``: real subjects (if any) and this epoch's synthetic ones."""
        return SliceDataset(self.real + self.subjects(seed, epoch, rank), view, crop_hw, slices=self.slices,
                            negative_fraction=self.negative_fraction, seed=seed + epoch)


def synth_step_class():
    """:class:`~neuroshift.segment.train_step.SegmentationStep` whose slices are regenerated every epoch."""
    from .train_step import SegmentationStep

    class SynthSegmentationStep(SegmentationStep):
        """Epoch ``e``'s slices come from :meth:`SynthSource.dataset` seeded by ``(ctx.seed, e, rank)``."""

        def __init__(self, *args, synth: SynthSource, **kwargs):
            super().__init__(*args, **kwargs)
            self.synth = synth

        def batches(self, ctx):
            self.dataset = self.synth.dataset(self.view, self.dataset.crop_hw, ctx.seed, ctx.epoch, ctx.dist.rank)
            return super().batches(ctx)

    return SynthSegmentationStep
