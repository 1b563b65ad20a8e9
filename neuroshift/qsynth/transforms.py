"""qSynth as transforms in the MONAI/TorchIO shape (like :mod:`neuroshift.simulate.transforms`).

* :class:`QSynth` — deterministic: renders one fixed :class:`~neuroshift.qsynth.generator.QSynthDraw`;
* :class:`RandQSynth` — array random transform: every draw (priors, sequence, augmentation strengths and the
  seeds of the voxel fields) happens in :meth:`RandQSynth.randomize`; the call renders it and returns
  ``(image, labels)`` (labels deformed with the image, so they stay the segmentation target);
* :class:`RandQSynthd` — dictionary wrapper: reads ``label_key``, writes ``image_key`` (channel-first
  ``(1, D, H, W)``) and replaces the label by its deformed version.

Labels may be a 3D array or channel-first ``(1, D, H, W)`` (numpy or torch); outputs are numpy float32.
``set_random_state(seed)`` reseeds as MONAI's ``Randomizable`` does, so ``Compose.set_random_state`` works
when the transform is wrapped by MONAI.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping

import numpy as np

from .generator import QSynthConfig, QSynthDraw, split_labels, draw, render

__all__ = ["QSynth", "RandQSynth", "RandQSynthd"]


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    return a[0] if a.ndim == 4 and a.shape[0] == 1 else a


class QSynth:
    """Render a fixed draw (deterministic)."""

    def __init__(self, d: QSynthDraw, cfg: QSynthConfig | None = None, spacing_mm=(1.0, 1.0, 1.0)):
        self.draw, self.cfg, self.spacing_mm = d, cfg or QSynthConfig(), spacing_mm

    def __call__(self, labels):
        out = render(_array(labels), self.draw, self.cfg, spacing_mm=self.spacing_mm)
        return out["image"], out["labels"]


class RandQSynth:
    """One new synthetic subject per call (see the module docstring); ``seed`` fixes the sequence of draws."""

    def __init__(self, cfg: QSynthConfig | None = None, *, spacing_mm=(1.0, 1.0, 1.0), seed: int | None = 0):
        self.cfg = cfg or QSynthConfig()
        self.spacing_mm = spacing_mm
        self._priors = self.cfg.prior_table()
        self.R = np.random.default_rng(seed)
        self._draw: QSynthDraw | None = None

    def set_random_state(self, seed: int | None = None, state=None):
        if seed is not None:
            self.R = np.random.default_rng(int(seed) % (2**32))
        elif state is not None:
            self.R = np.random.default_rng(int(state.randint(2**31 - 1)))
        return self

    def randomize(self, labels: Any = None) -> None:
        tissues = None if labels is None else split_labels(_array(labels), self.cfg)[2]
        self._draw = draw(self.cfg, self.R, tissues, self._priors)

    @property
    def last_parameters(self) -> dict:
        return {} if self._draw is None else self._draw.to_dict()

    def __call__(self, labels, randomize: bool = True):
        lab = _array(labels)
        if randomize or self._draw is None:
            self.randomize(lab)
        out = render(lab, self._draw, self.cfg, spacing_mm=self.spacing_mm, priors=self._priors)
        return out["image"], out["labels"]


class RandQSynthd:
    """Dictionary form: ``data[image_key] = (1, D, H, W)`` image, ``data[label_key]`` = deformed labels."""

    def __init__(self, label_key: Hashable = "label", image_key: Hashable = "image",
                 cfg: QSynthConfig | None = None, *, spacing_mm=(1.0, 1.0, 1.0), seed: int | None = 0):
        self.label_key, self.image_key = label_key, image_key
        self.rand = RandQSynth(cfg, spacing_mm=spacing_mm, seed=seed)

    def set_random_state(self, seed: int | None = None, state=None):
        self.rand.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping, randomize: bool = True) -> dict:
        out = dict(data)
        lab_in = data[self.label_key]
        image, lab = self.rand(lab_in, randomize=randomize)
        out[self.image_key] = image[None]
        out[self.label_key] = lab[None] if len(np.shape(lab_in)) == 4 else lab
        return out
