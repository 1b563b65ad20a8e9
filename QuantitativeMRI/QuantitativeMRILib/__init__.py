"""Qt-free logic of the QuantitativeMRI Slicer module (MRF, qMRI fit, qMRI synth), tested with slicer-core."""

from .logic import QuantitativeMRICore, output_name
from .requests import FitRequest, MRFMethod, MRFRequest, SynthRequest

__all__ = ["FitRequest", "MRFMethod", "MRFRequest", "QuantitativeMRICore", "SynthRequest", "output_name"]
