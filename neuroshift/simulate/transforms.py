"""Physically valid acquisition shifts as transforms, in the MONAI/TorchIO shape.

* :class:`AcquisitionShift` — deterministic: re-weights one image acquired with ``sequence`` at ``source``
  to ``target`` with paper 000's tissue-wise model (:mod:`neuroshift.simulate.tissuewise`; reference
  ``paper000`` in :mod:`neuroshift.references`) fitted on that
  image's tissue fractions, then optionally changes the slice thickness and adds a bias field and Rician
  noise (their realisation fixed by ``seed``);
* :class:`RandAcquisitionShift` — the array-level random transform: every random draw (apply or not,
  target parameters uniform within ``ranges``, noise, bias, slice thickness, the noise seed) happens in
  :meth:`~RandAcquisitionShift.randomize`, which also redraws targets the sequence cannot acquire
  (TI > TR, DIR with TI1 <= TI2); the call then applies the :class:`AcquisitionShift` it built;
* :class:`RandAcquisitionShiftd` — the dictionary wrapper on top (MONAI ``*d`` style): one draw per
  sample for all image ``keys``; tissue fractions and labels pass through unchanged (the anatomy does not
  move, so segmentation targets stay valid).

Values may be numpy arrays, torch tensors, MONAI ``MetaTensor`` (meta kept) or TorchIO images (``.data``
and ``.set_data``; a ``tio.Subject`` is a dict); results keep the input's type, dtype and device. Arrays
may be 3D ``(D, H, W)``, channel-first 4D ``(1, D, H, W)`` or 2D ``(H, W)`` / ``(1, H, W)`` slices; the
fractions have the same spatial shape (a mapping tissue -> map, or one channel-first stack whose
channels are ``tissues``). Neither MONAI nor TorchIO is required or imported here: when MONAI is already
imported, the random transforms are created as ``monai.transforms.Randomizable`` subclasses
(:mod:`neuroshift.simulate.monai_glue`) so that ``Compose.set_random_state`` seeds them.
"""

from __future__ import annotations

import copy
import sys
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from ..errors import DimensionError, InputError, ParameterRangeError
from ..io.params import AcquisitionParams

#: Default tissue order of a stacked fractions array.
TISSUES = ("CSF", "GM", "WM", "lesion")


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    if hasattr(x, "data") and hasattr(x, "set_data") and not isinstance(x, np.ndarray):  # TorchIO Image
        return _to_numpy(x.data)
    return np.asarray(x)


def _like(template, array: np.ndarray):
    """``array`` in the type, dtype and device of ``template`` (numpy, torch, MONAI MetaTensor, TorchIO Image)."""
    if hasattr(template, "data") and hasattr(template, "set_data") and not isinstance(template, np.ndarray) \
            and not hasattr(template, "detach"):
        new = copy.copy(template)
        new.set_data(_like(template.data, array.reshape(tuple(template.data.shape))))
        return new
    if hasattr(template, "detach"):
        import torch

        out = template.detach().clone()  # keeps MetaTensor meta
        out.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(dtype=out.dtype))
        return out
    dtype = template.dtype if np.issubdtype(np.asarray(template).dtype, np.floating) else np.float32
    return array.astype(dtype, copy=False)


def _lift(a: np.ndarray, what: str) -> np.ndarray:
    """Drop a leading channel of 1 and lift 2D to 3D."""
    a = np.asarray(a)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise DimensionError(f"{what}: expected a 2D/3D image (optionally with one leading channel), got shape "
                             f"{a.shape}")
    return a


def _fraction_maps(fractions, tissues: Sequence[str], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    if isinstance(fractions, Mapping) and not (hasattr(fractions, "data") and hasattr(fractions, "set_data")):
        maps = {str(t): _to_numpy(v) for t, v in fractions.items()}
    else:
        stack = _to_numpy(fractions)
        if stack.shape[0] != len(tissues):
            raise DimensionError(f"the fractions have {stack.shape[0]} channels, expected {len(tissues)} "
                                 f"({', '.join(tissues)})")
        maps = {t: stack[i] for i, t in enumerate(tissues)}
    out = {}
    for t, f in maps.items():
        f3 = _lift(f, f"{t} fractions")
        if f3.shape != shape:
            raise DimensionError(f"{t} fractions have spatial shape {f3.shape}, the image {shape}")
        out[t] = f3
    return out


def as_params(value) -> AcquisitionParams:
    """``AcquisitionParams`` from itself, ``"TE=112,TI=2500"`` or a mapping.

    Raises:
        InputError: another type, or a string/mapping that does not parse.
    """
    if isinstance(value, AcquisitionParams):
        return value
    if isinstance(value, str):
        return AcquisitionParams.parse(value)
    if isinstance(value, Mapping):
        return AcquisitionParams.from_mapping(value)
    raise InputError(f"acquisition parameters must be AcquisitionParams, 'TE=..,TI=..' or a mapping, got "
                     f"{type(value).__name__}")


def _check_sequence(sequence: str) -> str:
    from .tissuewise import SEQUENCES

    seq = str(sequence).lower()
    if seq not in SEQUENCES:
        raise ParameterRangeError(f"unknown sequence '{sequence}'; choose one of {', '.join(SEQUENCES)}")
    return seq


class AcquisitionShift:
    """Deterministic shift of an image from ``source`` to ``target`` (see the module doc).

    ``slice_mm``: new slice thickness (mm) along ``slice_axis`` of spacing ``spacing_mm`` (3D only);
    ``bias``: bias-field strength; ``noise``: Rician sigma in image units; ``seed``: their realisation.

    Raises:
        ParameterRangeError: unknown sequence, or a target the sequence cannot acquire.
        MissingParameterError: a parameter the sequence needs is unknown in source or target.
    """

    def __init__(self, sequence: str, source, target, *, tissues: Sequence[str] = TISSUES,
                 slice_mm: float | None = None, slice_axis: int = 0, spacing_mm: float = 1.0, bias: float = 0.0,
                 noise: float = 0.0, seed: int = 0, field_T: float | None = None, relaxation=None) -> None:
        self.sequence = _check_sequence(sequence)
        self.source = as_params(source).require(self.sequence, context="AcquisitionShift source")
        self.target = self.source.merged(as_params(target)).require(self.sequence, context="the target")
        self.tissues = tuple(tissues)
        self.slice_mm, self.slice_axis, self.spacing_mm = slice_mm, int(slice_axis), float(spacing_mm)
        self.bias, self.noise, self.seed = float(bias), float(noise), int(seed)
        self.field_T, self.relaxation = field_T, relaxation

    def __call__(self, image, fractions):
        """``image`` at the target parameters, in ``image``'s type and shape."""
        from .shifts import add_noise, apply_bias_field, reacquire_axis
        from .tissuewise import fit_tissue_model

        arr = _to_numpy(image)
        spatial = _lift(arr, "image")
        model = fit_tissue_model(spatial, _fraction_maps(fractions, self.tissues, spatial.shape), self.sequence,
                                 self.source, field_T=self.field_T, relaxation=self.relaxation)
        result = model.simulate(self.target)
        rng = np.random.default_rng(self.seed)
        if self.slice_mm and spatial.shape[0] > 1:
            result = reacquire_axis(result, self.slice_axis, self.spacing_mm, self.slice_mm)
        if self.bias > 0:
            result = apply_bias_field(result, self.bias, rng=rng)
        if self.noise > 0:
            result = add_noise(result, self.noise, rng=rng)
        return _like(image, np.asarray(result, dtype=np.float32).reshape(arr.shape))


class _MonaiOnDemand:
    """Created as a ``monai.transforms.Randomizable`` subclass when MONAI is already imported."""

    _monai = False

    def __new__(cls, *args: Any, **kwargs: Any):
        if not cls._monai and "monai" in sys.modules:
            from .monai_glue import monai_class

            cls = monai_class(cls)
        return super().__new__(cls)

    R: np.random.RandomState = np.random.RandomState()

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        """Seed the transform (MONAI API); returns ``self``."""
        if seed is not None:
            seed = int(seed) if isinstance(seed, (int, np.integer)) else id(seed)
            self.R = np.random.RandomState(seed % (2 ** 32))
        elif state is not None:
            if not isinstance(state, np.random.RandomState):
                raise TypeError(f"state must be a np.random.RandomState, got {type(state).__name__}")
            self.R = state
        else:
            self.R = np.random.RandomState()
        return self


def _check_range(name: str, rng, *, nonneg: bool = True) -> tuple[float, float] | None:
    if rng is None:
        return None
    if len(rng) != 2 or not (np.isfinite(rng[0]) and np.isfinite(rng[1])) or rng[0] > rng[1] \
            or (nonneg and rng[0] < 0):
        raise ParameterRangeError(f"{name} must be (lo, hi) with {'0 <= ' if nonneg else ''}lo <= hi, got {rng}")
    return float(rng[0]), float(rng[1])


class RandAcquisitionShift(_MonaiOnDemand):
    """Random :class:`AcquisitionShift` of one image (array level; see the module doc).

    ``ranges``: ``{"TE": (lo, hi), "TI": (lo, hi), ...}`` in ms/degrees, uniform draws (parameters not listed
    keep the source's value); ``noise``, ``bias``, ``slice_mm``: ``(lo, hi)`` or None; ``prob``: probability
    of applying; ``seed``: initial random state; ``require_source=False`` defers the check of the source to
    :meth:`randomize` (when each sample brings its own).

    Raises:
        ParameterRangeError: unknown sequence, a bad range or probability.
        MissingParameterError: the source lacks a parameter the sequence needs.
    """

    def __init__(self, sequence: str, source, *, ranges: Mapping[str, tuple[float, float]] | None = None,
                 noise: tuple[float, float] | None = None, bias: tuple[float, float] | None = None,
                 slice_mm: tuple[float, float] | None = None, slice_axis: int = 0, spacing_mm: float = 1.0,
                 prob: float = 1.0, seed: int | None = 0, tissues: Sequence[str] = TISSUES,
                 field_T: float | None = None, relaxation=None, max_redraws: int = 100,
                 require_source: bool = True) -> None:
        from .grid import canonical_key

        self.sequence = _check_sequence(sequence)
        self.source = as_params(source)
        if require_source:
            self.source.require(self.sequence, context="RandAcquisitionShift source")
        self.ranges: dict[str, tuple[float, float]] = {}
        for k, rng in (ranges or {}).items():
            short = canonical_key(k)
            if short in ("noise", "slice_mm"):
                raise ParameterRangeError(f"give {short} with the noise=/slice_mm= arguments, not in ranges")
            self.ranges[short] = _check_range(f"range of {short}", rng, nonneg=False)
        self.noise, self.bias = _check_range("noise", noise), _check_range("bias", bias)
        self.slice_mm = _check_range("slice_mm", slice_mm)
        if not 0.0 <= prob <= 1.0:
            raise ParameterRangeError(f"prob must be in [0, 1], got {prob}")
        self.prob, self.max_redraws = float(prob), int(max_redraws)
        self.options = dict(tissues=tuple(tissues), slice_axis=int(slice_axis), spacing_mm=float(spacing_mm),
                            field_T=field_T, relaxation=relaxation)
        self._do, self._draw, self.transform = False, {}, None
        self.set_random_state(seed)

    def _draw_target(self) -> dict[str, float]:
        return {k: float(self.R.uniform(lo, hi)) for k, (lo, hi) in self.ranges.items()}

    def randomize(self, data: Any = None, source=None) -> None:
        """Draw everything of one call (MONAI API): whether to apply, a target the sequence can acquire
        from ``source`` (default: the transform's; a per-sample one is merged over it), noise, bias, slice
        thickness and the noise seed; then build :attr:`transform`.

        Raises:
            MissingParameterError: the source lacks a parameter the sequence needs.
            ParameterRangeError: no valid target within ``max_redraws`` draws.
        """
        self._do = bool(self.R.rand() < self.prob)
        draw: dict = {"target": self._draw_target()}
        draw["noise"] = float(self.R.uniform(*self.noise)) if self.noise else 0.0
        draw["bias"] = float(self.R.uniform(*self.bias)) if self.bias else 0.0
        draw["slice_mm"] = float(self.R.uniform(*self.slice_mm)) if self.slice_mm else None
        draw["seed"] = int(self.R.randint(0, 2 ** 31 - 1))
        self._draw, self.transform = draw, None
        if not self._do:
            return
        src = self.source if source is None else self.source.merged(as_params(source))
        src.require(self.sequence, context="RandAcquisitionShift source")
        for _ in range(self.max_redraws):
            try:
                self.transform = AcquisitionShift(self.sequence, src, draw["target"], slice_mm=draw["slice_mm"],
                                                  bias=draw["bias"], noise=draw["noise"], seed=draw["seed"],
                                                  **self.options)
                return
            except ParameterRangeError:
                draw["target"] = self._draw_target()
        raise ParameterRangeError(f"no valid {self.sequence.upper()} parameters within {self.ranges} after "
                                  f"{self.max_redraws} draws")

    @property
    def last_parameters(self) -> dict:
        """The last draw: ``{"applied", "target", "noise", "bias", "slice_mm"}``."""
        return {"applied": self._do, **{k: v for k, v in self._draw.items() if k != "seed"}}

    def __call__(self, image, fractions, source=None, randomize: bool = True):
        """``image`` shifted by a new draw (or by the last one with ``randomize=False``); unchanged, the same
        object, when the draw says not to apply."""
        if randomize:
            self.randomize(source=source)
        return self.transform(image, fractions) if self._do else image


class RandAcquisitionShiftd(_MonaiOnDemand):
    """Dictionary wrapper of :class:`RandAcquisitionShift`: one draw per sample for all image ``keys``.

    ``tissue_keys={"CSF": key, ...}`` or ``fractions_key`` (one stack whose channels are ``tissues``) name the
    fractions; ``source_key`` a per-sample source (merged over ``source``). Other keyword arguments go to
    :class:`RandAcquisitionShift`.

    Raises:
        InputError: not exactly one of ``tissue_keys`` / ``fractions_key``; see also RandAcquisitionShift.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable, sequence: str, source, *,
                 tissue_keys: Mapping[str, Hashable] | None = None, fractions_key: Hashable | None = None,
                 source_key: Hashable | None = None, allow_missing_keys: bool = False, **kwargs: Any) -> None:
        if (tissue_keys is None) == (fractions_key is None):
            raise InputError("give exactly one of tissue_keys={tissue: key} or fractions_key=...")
        self.keys = tuple(keys) if isinstance(keys, (list, tuple)) else (keys,)
        self.tissue_keys, self.fractions_key = (dict(tissue_keys) if tissue_keys else None), fractions_key
        self.source_key, self.allow_missing_keys = source_key, allow_missing_keys
        self.shift = RandAcquisitionShift(sequence, source, require_source=source_key is None, **kwargs)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        self.shift.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        """One draw for the sample ``data`` (its ``source_key`` entry, if any, is the source)."""
        has_source = data is not None and self.source_key is not None and self.source_key in data
        self.shift.randomize(source=data[self.source_key] if has_source else None)

    @property
    def last_parameters(self) -> dict:
        return self.shift.last_parameters

    def __call__(self, data, randomize: bool = True):
        out = data.copy() if type(data) is dict else copy.copy(data)
        if randomize:
            self.randomize(data)
        if not self.shift.last_parameters["applied"]:
            return out
        fractions = ({t: data[k] for t, k in self.tissue_keys.items() if k in data} if self.tissue_keys
                     else data[self.fractions_key])
        for key in self.keys:
            if key not in data:
                if self.allow_missing_keys:
                    continue
                raise KeyError(f"key {key!r} not in the data (allow_missing_keys=False)")
            out[key] = self.shift(data[key], fractions, randomize=False)
        return out


__all__ = ["AcquisitionShift", "RandAcquisitionShift", "RandAcquisitionShiftd", "TISSUES", "as_params"]
