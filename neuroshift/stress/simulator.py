"""Grid axes of a stress test and the simulator that renders a case at one grid point.

Grid axes (names are case-insensitive; values in ms, degrees, tesla):

* acquisition parameters the sequence has: ``TE``, ``TI``, ``TR``, ``FA``,
  ``TI1``, ``TI2``, ``TX``, ``N``, ``Trec`` — passed to the tissue model as the
  target protocol; ``field`` (B0 in T) likewise;
* ``noise``: extra Rician noise, sigma in image intensity units
  (:func:`neuroshift.simulate.shifts.add_noise`; 0 = none; the same noise per case and point on every run);
* ``slice_mm`` (``slice``, ``thickness``): slice thickness in mm (through-plane
  partial volume, as :mod:`neuroshift.simulate.shifts` models it).

Grid text is parsed by :func:`neuroshift.simulate.grid.parse_grid`.

The runner talks to a simulator only through :class:`Simulator` (``fit`` once
per case, ``render`` per grid point), so tests inject synthetic ones and the
physics of :mod:`neuroshift.simulate` stays in one place.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from ..errors import InputError, ParameterRangeError
from ..io.params import ALIASES, SEQUENCE_PARAMETERS, AcquisitionParams
from ..io.volume import Volume

#: Grid axes every sequence has besides its own acquisition parameters.
COMMON_AXES = ("field", "Trec", "noise", "slice_mm")
UNITS = {"TE": "ms", "TI": "ms", "TR": "ms", "TI1": "ms", "TI2": "ms", "TX": "ms", "Trec": "ms", "FA": "deg",
         "N": "", "field": "T", "noise": "sigma", "slice_mm": "mm"}
_SHORT = {"TE_ms": "TE", "TI_ms": "TI", "TR_ms": "TR", "FA_deg": "FA", "TI1_ms": "TI1", "TI2_ms": "TI2",
          "TX_ms": "TX", "N": "N", "field_T": "field", "Trec_ms": "Trec"}


def stress_grid(grid: str | Mapping[str, Sequence[float]], sequence: str) -> dict[str, np.ndarray]:
    """Parse a grid (text or mapping, see :mod:`neuroshift.simulate.grid`) and check it against the sequence.

    Axes the sequence does not have (FA of a FLAIR) are refused; duplicate values are dropped.
    """
    from ..simulate.grid import parse_grid

    seq = sequence.lower()
    if seq not in SEQUENCE_PARAMETERS:
        raise ParameterRangeError(f"unknown sequence '{sequence}'; choose one of {', '.join(SEQUENCE_PARAMETERS)}")
    parsed = parse_grid(grid)
    has = {_SHORT[f] for f in SEQUENCE_PARAMETERS[seq]} | set(COMMON_AXES)
    out: dict[str, np.ndarray] = {}
    for name, values in parsed.items():
        if name not in has:
            raise ParameterRangeError(f"{seq.upper()} has no parameter {name}; its grid can use "
                                      f"{', '.join(sorted(has))}")
        values = np.atleast_1d(np.asarray(values, dtype=np.float64))
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ParameterRangeError(f"grid parameter {name} needs finite values")
        _, first = np.unique(values, return_index=True)
        out[name] = values[np.sort(first)]
    if not out:
        raise InputError("the grid is empty; give for example TE=84:150:7,TI=2200:2900:7")
    return out


def point_key(point: Mapping[str, float]) -> str:
    """``TE=84,TI=2200`` (values to 6 significant digits)."""
    return ",".join(f"{k}={v:.6g}" for k, v in point.items())


def target_params(source: AcquisitionParams, point: Mapping[str, float]) -> tuple[AcquisitionParams, dict]:
    """The case's protocol with the point's acquisition parameters substituted, and the extra shifts."""
    from ..simulate.grid import split_point

    return split_point(point, source)


def baseline_point(names: Sequence[str], params: AcquisitionParams, image: Volume) -> dict[str, float]:
    """The grid coordinates of a case's own acquisition (no noise added, native slice thickness)."""
    out: dict[str, float] = {}
    known = params.known()
    for name in names:
        if name == "noise":
            out[name] = 0.0
        elif name == "slice_mm":
            out[name] = native_slice_mm(image)
        else:
            field_name = "field_T" if name == "field" else ALIASES.get(name.upper(), name)
            if field_name in known:
                out[name] = float(known[field_name])
            elif name == "Trec" and "TR_ms" in known:
                out[name] = float(known["TR_ms"])
            else:
                out[name] = float("nan")
    return out


def native_slice_mm(image: Volume) -> float:
    """Spacing along the slice axis (the coarsest one, as :mod:`neuroshift.simulate.shifts` chooses it)."""
    from ..simulate.shifts import slice_axis

    return float(image.spacing[::-1][slice_axis(image)])


def point_seed(case_id: str, key: str) -> int:
    """A stable seed per case and point (same noise on every rerun and worker)."""
    return zlib.crc32(f"{case_id}|{key}".encode("utf-8"))


class Simulator(Protocol):
    """Renders a case at grid points; ``fit`` runs once per case and its result is reused."""

    def fit(self, case: Any, sequence: str) -> Any: ...

    def render(self, fitted: Any, case: Any, target: AcquisitionParams, point: Mapping[str, float],
               *, seed: int) -> Volume: ...


@dataclass
class PhysicsSimulator:
    """Paper 000's tissue-wise simulation (:mod:`neuroshift.simulate`) plus the noise / slice-thickness shifts.

    ``field_T``: field strength of the relaxation priors for cases whose header does not give it
    (``None``: :func:`~neuroshift.simulate.tissuewise.fit_tissue_model` assumes 3 T and notes it).
    ``estimator``: "fit" (paper 000), "priors", "posterior" or "auto" (:mod:`neuroshift.simulate.joint`).
    ``uncertainty``: also estimate the posterior of each case and give :meth:`uncertainty` per grid
    point (the runner stores it in every record).
    """

    field_T: float | None = None
    estimator: str = "fit"
    uncertainty: bool = False

    def fit(self, case, sequence: str):
        from ..simulate.tissuewise import fit_tissue_model

        field = self.field_T if case.params.field_T is None else None
        model = fit_tissue_model(case.image, case.fractions, sequence, case.params, field_T=field,
                                 brain_mask=case.brain_mask, estimator=self.estimator)
        if self.uncertainty:
            model.uncertainty_model = model if hasattr(model.ensemble, "intervals") else fit_tissue_model(
                case.image, case.fractions, sequence, case.params, field_T=field, brain_mask=case.brain_mask,
                estimator="posterior")
        notes = getattr(getattr(model, "report", None), "notes", None) or []
        case.notes.extend(n for n in notes if n not in case.notes)
        return model

    def uncertainty_of(self, fitted, case, target: AcquisitionParams) -> dict | None:
        """Per-tissue posterior 90 % interval of the derivative's tissue signal at ``target`` (or None)."""
        post_model = getattr(fitted, "uncertainty_model", None)
        if not self.uncertainty or post_model is None:
            return None
        from ..simulate.posterior import field_factors

        params = post_model.resolve_target(target)
        iv = post_model.ensemble.intervals(params, field_factors(post_model, params))
        for v in iv.values():
            v["halfwidth_rel_pct"] = 100.0 * v["halfwidth"] / abs(v["mean"]) if v["mean"] else None
        return {"level": 0.9, "tissues": iv}

    def render(self, fitted, case, target: AcquisitionParams, point: Mapping[str, float], *, seed: int) -> Volume:
        vol = case.image.with_data(np.asarray(fitted.simulate(target), dtype=np.float32))
        slice_mm = point.get("slice_mm")
        noise = float(point.get("noise", 0.0) or 0.0)
        if slice_mm is not None and not np.isclose(slice_mm, native_slice_mm(case.image)):
            from ..simulate.shifts import change_slice_thickness

            vol = change_slice_thickness(vol, float(slice_mm))
        if noise > 0:
            from ..simulate.shifts import add_noise

            vol = add_noise(vol, noise, rng=np.random.default_rng(seed))
        return vol
