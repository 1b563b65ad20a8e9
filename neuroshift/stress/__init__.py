"""Stress testing: a segmentation model's performance across simulated acquisition shifts.

Paper 000 (Posselt et al.) measured lesion F1 of MS lesion networks on a 7 × 7
TE × TI grid of simulated FLAIR derivatives and described it by a quadratic
response surface. This package does that for any model and grid:

* :mod:`.cases` — cases from a folder or CSV (image, parameters, tissue maps, ground truth);
* :mod:`.models` — models under test: NeuroShift packages, ``wmh-demo``, external tools (``cmd:``);
* :mod:`.simulator` — grid axes and the simulator interface (paper 000's tissue-wise model);
* :mod:`.runner` — the resumable, parallel engine (:func:`run_stress_test`);
* :mod:`.store` — the durable per-point store (``points.jsonl``);
* :mod:`.surface` — response surfaces by OLS (:func:`fit_surface`);
* :mod:`.report` — results.csv, surface.json, PNG figures, report.html;
* :mod:`.validate` — simulated vs really acquired images per tissue (paper 000, Table 5).

Heavy dependencies (torch, matplotlib, dask) are imported only where used.
"""

from .runner import StressRun, run_stress_test
from .surface import SurfaceFit, fit_surface

__all__ = ["run_stress_test", "StressRun", "fit_surface", "SurfaceFit"]
