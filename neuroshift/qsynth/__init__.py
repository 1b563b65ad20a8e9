"""qSynth: label-to-image synthesis through quantitative maps with physics priors (paper 002).

* :mod:`~neuroshift.qsynth.priors` — hierarchical per-tissue priors (PD, R1, R2, R2*), sources, override file;
* :mod:`~neuroshift.qsynth.generator` — draw / render / generate one SYNTHETIC subject;
* :mod:`~neuroshift.qsynth.anatomy` — many label maps: deformed template + generative MS-like lesions;
* :mod:`~neuroshift.qsynth.fields` — smooth texture, deformation and thick-slice fields;
* :mod:`~neuroshift.qsynth.transforms` — MONAI/TorchIO-style seeded transforms.
"""

from .generator import QSynthConfig, QSynthDraw, draw, generate, render
from .priors import PARAMETERS, default_priors, load_priors, sample_subject

__all__ = ["PARAMETERS", "QSynthConfig", "QSynthDraw", "default_priors", "draw", "generate", "load_priors",
           "render", "sample_subject"]
