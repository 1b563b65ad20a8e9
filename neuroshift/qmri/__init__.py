"""The quantitative route of paper 002: synthesise any contrast from PD/T1/T2/T2* maps, fit maps from images."""

from .fit import FitResult, fit, identify
from .maps import MAP_FILES, MAP_NAMES, QMRIMaps, read_maps, write_maps
from .synth import required_maps, synthesize

__all__ = ["synthesize", "required_maps", "fit", "identify", "FitResult", "QMRIMaps", "read_maps", "write_maps",
           "MAP_FILES", "MAP_NAMES"]
