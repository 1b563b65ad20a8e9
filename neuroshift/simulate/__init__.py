"""Acquisition-shift simulation: paper 000's tissue-wise re-weighting, parameter grids, further shifts.

* :mod:`.tissuewise` — :func:`fit_tissue_model`, :class:`TissueModel`, :func:`simulate_derivative`;
* :mod:`.estimate` — what is estimated from one image (tissue signals, apparent parameters, scale, texture);
* :mod:`.grid` — ``parse_grid("TE=84:150:7,TI=2200:2900:7")`` and :func:`grid_points`;
* :mod:`.shifts` — resolution / slice thickness, bias field, Rician noise;
* :mod:`.transforms` — ``RandAcquisitionShiftd``, a MONAI/TorchIO-compatible dictionary transform.
"""

from .grid import grid_points, parse_grid
from .tissuewise import TissueModel, fit_tissue_model, simulate_derivative

__all__ = ["TissueModel", "fit_tissue_model", "simulate_derivative", "parse_grid", "grid_points"]
