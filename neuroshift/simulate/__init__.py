"""Acquisition-shift simulation: paper 000's tissue-wise re-weighting, parameter grids, further shifts.

* :mod:`.tissuewise` — :func:`fit_tissue_model`, :class:`TissueModel`, :func:`simulate_derivative`;
* :mod:`.estimate` — what is estimated from one image (tissue signals, apparent parameters, scale, texture);
* :mod:`.grid` — ``parse_grid("TE=84:150:7,TI=2200:2900:7")`` and :func:`grid_points`;
* :mod:`.shifts` — resolution / slice thickness, bias field, Rician noise;
* :mod:`.transforms` — MONAI/TorchIO-shaped transforms: deterministic :class:`AcquisitionShift`, the
  array-level :class:`RandAcquisitionShift` and its dictionary wrapper :class:`RandAcquisitionShiftd`
  (:mod:`.monai_glue` makes them MONAI ``Randomizable`` when MONAI is in use).
"""

from .grid import grid_points, parse_grid
from .tissuewise import TissueModel, fit_tissue_model, simulate_derivative
from .transforms import AcquisitionShift, RandAcquisitionShift, RandAcquisitionShiftd

__all__ = ["AcquisitionShift", "RandAcquisitionShift", "RandAcquisitionShiftd", "TissueModel", "fit_tissue_model",
           "simulate_derivative", "parse_grid", "grid_points"]
