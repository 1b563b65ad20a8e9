"""``RandAcquisitionShiftd``: physically valid random acquisition shifts as a dictionary transform.

Works with plain dicts of numpy arrays or torch tensors, inside ``monai.transforms.Compose``
(MONAI's ``Randomizable`` API: ``R``, ``set_random_state(seed, state)``, ``randomize``; when MONAI
is installed the class also *is* a ``monai.transforms.Randomizable`` so ``Compose.set_random_state``
seeds it) and with TorchIO subjects (a ``tio.Subject`` is a dict; image values with ``.data`` and
``.set_data`` — ``tio.ScalarImage`` — are handled). Neither library is required.

Per call (with probability ``prob``) it draws target parameters uniformly within ``ranges``
(for example ``{"TE": (84, 150), "TI": (2200, 2900)}``), re-weights each image key with paper 000's
tissue-wise model (:mod:`neuroshift.simulate.tissuewise`) fitted on that sample's tissue fractions,
and optionally applies a slice-thickness change, a bias field and Rician noise. Draws that the
sequence cannot acquire (TI > TR, DIR with TI1 <= TI2) are redrawn. Tissue fraction maps and labels
pass through unchanged: the anatomy does not move, so segmentation targets stay valid.

Arrays may be 3D ``(D, H, W)``, channel-first 4D ``(1, D, H, W)`` (MONAI) or 2D ``(H, W)`` /
``(1, H, W)`` slices; the fractions have the same spatial shape (one key per tissue via
``tissue_keys``, or one channel-first stack via ``fractions_key`` with ``tissues`` naming its channels).
"""

from __future__ import annotations

import copy
from typing import Hashable, Mapping, Sequence

import numpy as np

from ..errors import DimensionError, InputError, ParameterRangeError
from ..io.params import AcquisitionParams

try:  # soft dependency: become a MONAI Randomizable when MONAI is importable
    from monai.transforms import Randomizable as _MonaiRandomizable  # type: ignore
    _BASES: tuple = (_MonaiRandomizable,)
except Exception:  # pragma: no cover - MONAI absent or broken
    _BASES = ()


class _RandomizableMixin:
    R: np.random.RandomState = np.random.RandomState()

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        """Seed the transform (MONAI API); returns ``self``."""
        if seed is not None:
            seed = int(seed) if isinstance(seed, (int, np.integer)) else id(seed)
            self.R = np.random.RandomState(seed % (2 ** 32))
            return self
        if state is not None:
            if not isinstance(state, np.random.RandomState):
                raise TypeError(f"state must be a np.random.RandomState, got {type(state).__name__}")
            self.R = state
            return self
        self.R = np.random.RandomState()
        return self


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


class RandAcquisitionShiftd(_RandomizableMixin, *_BASES):
    """Random physically valid acquisition shift of the images in ``keys`` (see the module doc).

    Parameters
    ----------
    keys: image keys to shift (all acquired with ``sequence`` at ``source``).
    sequence: "se", "ir", "flair", "dir", "gre" or "mprage".
    source: the images' acquisition parameters (``AcquisitionParams``, ``"TE=112,TI=2500,TR=9000"`` or a
        mapping); every parameter the sequence needs must be known. ``source_key``, if given, names a
        per-sample entry (same forms) that overrides it.
    tissue_keys: ``{"CSF": "pv_csf", "GM": ..., "WM": ..., "lesion": ...}`` fraction map keys, or
    fractions_key + tissues: one stacked entry ``(T, ...)`` whose channels are ``tissues``.
    ranges: ``{"TE": (lo, hi), "TI": (lo, hi), ...}`` ms/degrees; uniform draws. Parameters not listed
        keep the source's value.
    noise: ``(lo, hi)`` Rician σ in image units, or None. bias: ``(lo, hi)`` bias-field strength, or None.
    slice_mm: ``(lo, hi)`` slice thickness in mm (3D only; slice axis ``slice_axis`` of the array,
        spacing ``spacing_mm``), or None.
    prob: probability of applying the shift. seed: initial random seed.
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable, sequence: str, source, *,
                 tissue_keys: Mapping[str, Hashable] | None = None, fractions_key: Hashable | None = None,
                 tissues: Sequence[str] = ("CSF", "GM", "WM", "lesion"),
                 ranges: Mapping[str, tuple[float, float]] | None = None,
                 noise: tuple[float, float] | None = None, bias: tuple[float, float] | None = None,
                 slice_mm: tuple[float, float] | None = None, slice_axis: int = 0, spacing_mm: float = 1.0,
                 prob: float = 1.0, seed: int | None = 0, field_T: float | None = None, relaxation=None,
                 source_key: Hashable | None = None, allow_missing_keys: bool = False,
                 max_redraws: int = 100) -> None:
        from .grid import canonical_key
        from .tissuewise import SEQUENCES

        self.keys = tuple(keys) if isinstance(keys, (list, tuple)) else (keys,)
        self.sequence = str(sequence).lower()
        if self.sequence not in SEQUENCES:
            raise ParameterRangeError(f"unknown sequence '{sequence}'; choose one of {', '.join(SEQUENCES)}")
        self.source = _params(source)
        if source_key is None:
            self.source.require(self.sequence, context="RandAcquisitionShiftd source")
        if (tissue_keys is None) == (fractions_key is None):
            raise InputError("give exactly one of tissue_keys={tissue: key} or fractions_key=...")
        self.tissue_keys = dict(tissue_keys) if tissue_keys is not None else None
        self.fractions_key = fractions_key
        self.tissues = tuple(tissues)
        self.ranges: dict[str, tuple[float, float]] = {}
        for k, (lo, hi) in (ranges or {}).items():
            short = canonical_key(k)
            if short in ("noise", "slice_mm"):
                raise ParameterRangeError(f"give {short} with the noise=/slice_mm= arguments, not in ranges")
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
                raise ParameterRangeError(f"range of {short} must be finite with lo <= hi, got ({lo}, {hi})")
            self.ranges[short] = (float(lo), float(hi))
        for name, rng in (("noise", noise), ("bias", bias), ("slice_mm", slice_mm)):
            if rng is not None and (len(rng) != 2 or rng[0] > rng[1] or rng[0] < 0):
                raise ParameterRangeError(f"{name} must be (lo, hi) with 0 <= lo <= hi, got {rng}")
        self.noise, self.bias, self.slice_mm = noise, bias, slice_mm
        self.slice_axis, self.spacing_mm = int(slice_axis), float(spacing_mm)
        if not 0.0 <= prob <= 1.0:
            raise ParameterRangeError(f"prob must be in [0, 1], got {prob}")
        self.prob = float(prob)
        self.field_T, self.relaxation = field_T, relaxation
        self.source_key = source_key
        self.allow_missing_keys = allow_missing_keys
        self.max_redraws = int(max_redraws)
        self._do = False
        self._draw: dict = {}
        self.set_random_state(seed)

    # ------------------------------------------------------------- randomness
    def randomize(self, data=None) -> None:
        """Draw whether to apply, the target parameters and the extra shifts (MONAI API)."""
        self._do = bool(self.R.rand() < self.prob)
        draw: dict = {"target": {k: float(self.R.uniform(lo, hi)) for k, (lo, hi) in self.ranges.items()}}
        draw["noise"] = float(self.R.uniform(*self.noise)) if self.noise else 0.0
        draw["bias"] = float(self.R.uniform(*self.bias)) if self.bias else 0.0
        draw["slice_mm"] = float(self.R.uniform(*self.slice_mm)) if self.slice_mm else None
        draw["seed"] = int(self.R.randint(0, 2 ** 31 - 1))
        self._draw = draw

    def _valid_target(self, source: AcquisitionParams) -> AcquisitionParams:
        for _ in range(self.max_redraws):
            try:
                target = source.merged(AcquisitionParams.from_mapping(self._draw["target"]))
                return target.require(self.sequence, context="the random target")
            except ParameterRangeError:
                self._draw["target"] = {k: float(self.R.uniform(lo, hi)) for k, (lo, hi) in self.ranges.items()}
        raise ParameterRangeError(f"no valid {self.sequence.upper()} parameters within {self.ranges} "
                                  f"after {self.max_redraws} draws")

    @property
    def last_parameters(self) -> dict:
        """The last draw: ``{"applied", "target", "noise", "bias", "slice_mm"}``."""
        return {"applied": self._do, **{k: v for k, v in self._draw.items() if k != "seed"}}

    # ----------------------------------------------------------------- apply
    def _fractions(self, data) -> dict[str, np.ndarray]:
        if self.tissue_keys is not None:
            return {t: _to_numpy(data[k]) for t, k in self.tissue_keys.items() if k in data}
        stack = _to_numpy(data[self.fractions_key])
        if stack.shape[0] != len(self.tissues):
            raise DimensionError(f"{self.fractions_key!r} has {stack.shape[0]} channels, expected "
                                 f"{len(self.tissues)} ({', '.join(self.tissues)})")
        return {t: stack[i] for i, t in enumerate(self.tissues)}

    def __call__(self, data, randomize: bool = True):
        out = data.copy() if type(data) is dict else copy.copy(data)
        if randomize:
            self.randomize(data)
        if not self._do:
            return out
        from .shifts import add_noise, apply_bias_field, reacquire_axis
        from .tissuewise import fit_tissue_model

        source = self.source
        if self.source_key is not None and self.source_key in data:
            source = source.merged(_params(data[self.source_key]))
        source.require(self.sequence, context="RandAcquisitionShiftd source")
        target = self._valid_target(source)
        fractions = self._fractions(data)
        for key in self.keys:
            if key not in data:
                if self.allow_missing_keys:
                    continue
                raise KeyError(f"key {key!r} not in the data (allow_missing_keys=False)")
            value = data[key]
            arr = _to_numpy(value)
            shape = arr.shape
            spatial, fr = _spatial(arr, fractions)
            model = fit_tissue_model(spatial, fr, self.sequence, source, field_T=self.field_T,
                                     relaxation=self.relaxation)
            result = model.simulate(target)
            rng = np.random.default_rng(self._draw["seed"])
            if self._draw["slice_mm"] and spatial.shape[0] > 1:
                result = reacquire_axis(result, self.slice_axis, self.spacing_mm, self._draw["slice_mm"])
            if self._draw["bias"] > 0:
                result = apply_bias_field(result, self._draw["bias"], rng=rng)
            if self._draw["noise"] > 0:
                result = add_noise(result, self._draw["noise"], rng=rng)
            out[key] = _like(value, np.asarray(result, dtype=np.float32).reshape(shape))
        return out


def _spatial(arr: np.ndarray, fractions: Mapping[str, np.ndarray]):
    """Drop a leading channel of 1 and lift 2D to 3D, for the image and every fraction map alike."""
    def lift(a: np.ndarray, what: str) -> np.ndarray:
        a = np.asarray(a)
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise DimensionError(f"{what}: expected a 2D/3D image (optionally with one leading channel), "
                                 f"got shape {a.shape}")
        return a

    img = lift(arr, "image")
    fr = {}
    for t, f in fractions.items():
        f3 = lift(f, f"{t} fractions")
        if f3.shape != img.shape:
            raise DimensionError(f"{t} fractions have spatial shape {f3.shape}, the image {img.shape}")
        fr[t] = f3
    return img, fr


def _params(value) -> AcquisitionParams:
    if isinstance(value, AcquisitionParams):
        return value
    if isinstance(value, str):
        return AcquisitionParams.parse(value)
    if isinstance(value, Mapping):
        return AcquisitionParams.from_mapping(value)
    raise InputError(f"acquisition parameters must be AcquisitionParams, 'TE=..,TI=..' or a mapping, got "
                     f"{type(value).__name__}")


__all__ = ["RandAcquisitionShiftd"]
