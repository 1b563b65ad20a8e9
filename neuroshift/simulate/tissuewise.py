"""Tissue-wise acquisition-shift simulation of paper 000 (Posselt et al.).

Image model (``shift-simulator.md`` §1)::

    S(x; θ) = c · Σ_t f_t(x) · S_t(θ; PD_t, T1_t, T2_t) + T(x)

:func:`fit_tissue_model` estimates the apparent tissue parameters, the global
scale ``c`` and the texture ``T`` from one image acquired with known parameters
``θ_0`` (see :mod:`neuroshift.simulate.estimate` for exactly what is fitted).
:meth:`TissueModel.simulate` then produces the derivative at ``θ_new``::

    S_new(x) = S_real(x) + c · Σ_t f_t(x) · [S_t(θ_new) − S_t(θ_0)]

which equals ``c·Σ_t f_t·S_t(θ_new) + T`` with the texture kept fixed, and is
the input itself (bit for bit) at ``θ_new = θ_0``.

Performance (issue 9): with numba the model keeps a *block layout* (:mod:`.block_layout`): the tissue
fractions of every 8-voxel block that holds tissue as uint16 fixed point, in memory order, and a derivative
is one compiled streaming pass (copy between tissue spans, 8-lane sums inside: ≈ a copy of the image); below
``block_layout.PARALLEL_MIN`` voxels one compiled call (``block_layout.derive_target``) also merges an
``AcquisitionParams`` target with the source, checks it and computes the 4 tissue increments from the scalar
signal equations (:mod:`neuroshift.physics.scalar_signal`), so a 64³ derivative costs no Python work beyond
one dispatch. Without numba (or with :data:`BLOCK_LAYOUT` off)
the fractions are used as a contiguous float32 stack
``(tissues, voxels)`` restricted to the tissue support, in one of two layouts
chosen by estimated memory traffic. *Box*: the bounding box of the brain; a
derivative is 4 scalar signal evaluations, one copy of the image and, plane by
plane of the box, ``Σ_t Δ_t·f_t`` into a plane-sized buffer added in place. *Slab* (tissue everywhere, box
widened to whole slices so it is contiguous): the image slab is stored as row 0
of ``[S; f_CSF; f_GM; ...]`` and one ``sgemv`` with ``[1, Δ_CSF, Δ_GM, ...]``
writes the derivative straight into the output, copying only the slices outside;
slabs under :data:`BLAS_MIN_VOXELS` use the same sum block by block on one thread
(a multithreaded BLAS call costs more than the whole sum there). Memory beyond
the output: one plane or block (``Testing/simulate/test_perf_derivative.py``).
Nothing that does not depend on ``θ`` is recomputed between grid points, and
``simulate(target, out=buffer)`` reuses an output buffer (see ``bench/simulate.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from ..errors import InputError, ParameterRangeError
from ..io.params import AcquisitionParams, SEQUENCE_PARAMETERS
from ..io.volume import Volume
from ..physics.scalar_signal import SEQUENCE_CODES as _CODES
from ..progress import ProgressCallback, report
from . import estimate as _est
from . import block_layout as _blocks
from . import model_signals as _signals_of
# the input checks and the fraction stack live in tissue_inputs (names kept importable here)
from .tissue_inputs import FRACTION_TOLERANCE, TISSUE_ORDER, prepare_inputs  # noqa: F401

#: Sequences the tissue-wise simulation supports (the one table: :data:`neuroshift.io.params.SEQUENCES`).
SEQUENCES = tuple(SEQUENCE_PARAMETERS)


@dataclass(eq=False)
class TissueModel:
    """The estimated tissue-wise model of one image; call :meth:`simulate` for derivatives."""

    sequence: str
    source: AcquisitionParams
    field_T: float
    tissues: dict            # name -> TissueParameters (apparent)
    scale_c: float
    fractions: dict          # name -> float32 array on the image grid (views into the stack's box)
    priors: dict = field(default_factory=dict)
    report: _est.FitReport | None = None
    geometry: Volume | None = None
    relaxation: object = None
    estimator: str = "fit"
    ensemble: object = None  # posterior.Posterior when estimator == "posterior"
    # internals ---------------------------------------------------------------
    _image: np.ndarray = field(default=None, repr=False)       # float32, C-contiguous, image grid
    _stack: np.ndarray = field(default=None, repr=False)       # (T, M) float32 fractions inside the box
    _box: tuple = field(default=(), repr=False)                # slices of the box
    _joint: np.ndarray | None = field(default=None, repr=False)  # slab mode: (1+T, M) [image; fractions]
    _blocks: _blocks.BlockLayout | None = field(default=None, repr=False)  # block layout (one-pass derivative)
    _order: tuple = field(default=(), repr=False)              # tissue names of the stack rows
    _s0: np.ndarray = field(default=None, repr=False)          # S_t(θ_0) with the apparent parameters
    _texture: np.ndarray | None = field(default=None, repr=False)
    _params: dict = field(default_factory=dict, repr=False)    # field (T) -> (3, 4) PD/T1/T2(*) table
    _consts: np.ndarray | None = field(default=None, repr=False)  # block layout: constants of the one-call path
    _spans: np.ndarray | None = field(default=None, repr=False)   # block layout: (3, S) starts, counts, offsets

    def __post_init__(self) -> None:
        if self._s0 is not None and self.ensemble is None:
            # S_t(θ_0) from the same scalar equations as every target, so θ_new = θ_0 gives Δ = 0 exactly
            self._s0 = np.asarray(self._scalar_signals(self.source), dtype=np.float64)
        if self._s0 is not None:
            self._s0_pad = np.zeros(max(self._s0.size, 4), np.float64)
            self._s0_pad[:self._s0.size] = self._s0
        if self._blocks is not None and self.ensemble is None and self._s0 is not None:
            # simulate's one-call path (block_layout.derive_target): model constants and spans as two arrays
            b = self._blocks
            self._consts = _blocks.entry_constants(self._table(self.source), self._s0_pad, self.scale_c,
                                                   self.sequence, self.source)
            self._spans = np.stack([b.starts, b.counts, b.offsets]).astype(np.int64)

    # ------------------------------------------------------------------ access
    @property
    def texture(self) -> np.ndarray:
        """Texture map ``T = S − c·Σ_t f_t·S_t(θ_0)`` (float32, image grid; computed once, then cached)."""
        if self._texture is None:
            self._texture = _est.texture_map(self._image, self._stack, self.scale_c * self._s0, self._box)
        return self._texture

    @property
    def shape(self) -> tuple[int, ...]:
        return self._image.shape

    def resolve_target(self, target: AcquisitionParams | Mapping | str) -> AcquisitionParams:
        """The target parameters with every parameter it leaves unknown taken from the source."""
        if type(target) is AcquisitionParams:
            pass
        elif isinstance(target, str):
            target = AcquisitionParams.parse(target)
        elif isinstance(target, Mapping):
            target = AcquisitionParams.from_mapping(target)
        params = self.source.merged(target)
        params.require(self.sequence, context="the target")
        return params

    def tissue_signals(self, target: AcquisitionParams | Mapping | str) -> dict[str, float]:
        """``S_t(θ)`` per tissue (without ``c``) with the apparent parameters."""
        s = self._signals(self.resolve_target(target))
        return {t: float(v) for t, v in zip(self._order, s)}

    def _signals(self, params: AcquisitionParams) -> np.ndarray:
        return np.asarray(self._scalar_signals(params), dtype=np.float64)

    # S_t(θ) per tissue from the scalar signal equations (simulate/model_signals.py)
    _table = _signals_of.parameter_table
    _scalar_signals = _signals_of.scalar_signals
    _at_field = _signals_of.at_field

    def deltas(self, target: AcquisitionParams | Mapping | str) -> np.ndarray:
        """Per-tissue voxel increments ``c·[S_t(θ_new) − S_t(θ_0)]`` (float32, stack order)."""
        if self.ensemble is not None:  # estimator "posterior": posterior mean of the increments
            from .posterior import field_factors

            params = self.resolve_target(target)
            return self.ensemble.deltas(params, field_factors(self, params)).astype(np.float32)
        s_new = self._signals(self.resolve_target(target))
        return (self.scale_c * (s_new - self._s0)).astype(np.float32)

    # ------------------------------------------------------------ simulation
    def simulate(self, target: AcquisitionParams | Mapping | str, *, out: np.ndarray | None = None) -> np.ndarray:
        """The derivative at ``target`` (float32, image grid). ``out`` may be a preallocated float32 array."""
        consts = self._consts
        if consts is not None and type(target) is AcquisitionParams and self._image.size < _blocks.PARALLEL_MIN:
            # One compiled call (block_layout.derive_target): merge, checks, increments and the pass. Targets at
            # another field strength (other tables) or failing the checks take the path below (which raises).
            f = target.field_T
            if (f is None or abs(f - self.field_T) <= 1e-9) and (
                    out is None or (out.shape == self._image.shape and out.dtype == np.float32
                                    and out.flags.c_contiguous and out.flags.writeable)):
                y = _blocks.derive_target(self._image, self._spans, self._blocks.records, consts,
                                          _CODES[self.sequence], target, out)
                if y is not None:
                    return y
        if self._blocks is None or self.ensemble is not None:
            return self._apply(self.deltas(target), out)
        # Block layout: increments and derivative in one compiled call (block_layout.derive)
        if out is not None and (out.shape != self._image.shape or out.dtype != np.float32
                                or not out.flags.c_contiguous or not out.flags.writeable):
            raise InputError(f"out must be a writeable C-contiguous float32 array of shape {self._image.shape}")
        if type(target) is AcquisitionParams:  # resolve_target without its call overhead (same checks)
            params = self.source.merged(target)
            if not params._meets(self.sequence):
                params.require(self.sequence, context="the target")  # raises, naming the problem
        else:
            params = self.resolve_target(target)
        # out None: a new array on a 64-byte boundary, like the model's image (block_layout.derive)
        return self._blocks.derive(self._image, out, self.sequence, params, self._table(params), self._s0_pad,
                                   self.scale_c)

    def _apply(self, delta: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is not None and (out.shape != self._image.shape or out.dtype != np.float32
                                or not out.flags.c_contiguous or not out.flags.writeable):
            raise InputError(f"out must be a writeable C-contiguous float32 array of shape {self._image.shape}")
        if not self._stack.size or not np.any(delta):
            if out is None:
                return self._image.copy()
            np.copyto(out, self._image)
            return out
        if self._blocks is not None:
            # Block layout: out = S + Σ_t f_t·Δ_t in one compiled streaming pass (block_layout; no temporaries).
            if out is None:
                out = np.empty(self._image.shape, np.float32)
            return self._blocks.apply(self._image, delta, out)
        if self._joint is not None:
            # Slab mode (the tissue support spans most of the volume): one sgemv writes the slab directly,
            # out = [1, Δ] · [S; f_CSF; f_GM; ...], and only the slices outside the slab are copied.
            if out is None:
                out = np.empty(self._image.shape, np.float32)
            flat, src = out.reshape(-1), self._image.reshape(-1)
            a, b = self._slab
            flat[:a] = src[:a]
            flat[b:] = src[b:]
            if b - a >= BLAS_MIN_VOXELS:
                np.matmul(np.concatenate([np.ones(1, np.float32), delta]), self._joint, out=flat[a:b])
            else:
                _axpy_blocked(flat[a:b], self._joint[0], self._stack, delta)
            return out
        # Box mode: copy the image, add Σ_t Δ_t·f_t over the bounding box of the tissue support.
        if out is None:
            out = self._image.copy()
        else:
            np.copyto(out, self._image)
        # Groups of whole planes with one group-sized scratch buffer (no box-sized temporary, no BLAS threads):
        # at least AXPY_BLOCK voxels per group (few Python calls for small planes), at most 1/8 of the image.
        region = out[self._box]
        plane = int(np.prod(region.shape[1:]))
        group = max(1, min(-(-AXPY_BLOCK // plane), self._image.size // (8 * plane), region.shape[0]))
        tmp = np.empty(group * plane, np.float32)
        for i in range(0, region.shape[0], group):
            k = min(group, region.shape[0] - i)
            _axpy_blocked(tmp[:k * plane], None, self._stack[:, i * plane:(i + k) * plane], delta)
            region[i:i + k] += tmp[:k * plane].reshape((k,) + region.shape[1:])
        return out

    @property
    def _slab(self) -> tuple[int, int]:
        plane = int(np.prod(self._image.shape[1:]))
        return self._box[0].start * plane, self._box[0].stop * plane

    def simulate_volume(self, target: AcquisitionParams | Mapping | str) -> Volume:
        """The derivative as a :class:`Volume` on the image grid, with its parameters in ``meta``."""
        params = self.resolve_target(target)
        data = self.simulate(params)
        geom = self.geometry if self.geometry is not None else Volume(np.zeros((1, 1, 1), np.float32))
        meta = {k: v for k, v in geom.meta.items() if k != "source_path"}
        meta.update(derivative_meta(self.sequence, params))
        return Volume(data, geom.spacing.copy(), geom.origin.copy(), geom.direction.copy(), meta)

    def signal(self, target: AcquisitionParams | Mapping | str) -> np.ndarray:
        """The texture-free model signal ``c·Σ_t f_t·S_t(θ)`` (float32, image grid)."""
        s = self._signals(self.resolve_target(target))
        out = np.zeros(self._image.shape, np.float32)
        if self._stack.size:
            out[self._box] = ((self.scale_c * s).astype(np.float32) @ self._stack).reshape(out[self._box].shape)
        return out

    def simulate_grid(self, targets, *, progress: ProgressCallback | None = None):
        """Yield ``(target, derivative)`` for each target; everything independent of θ is shared."""
        targets = list(targets)
        for i, target in enumerate(targets):
            yield target, self.simulate(target)
            report(progress, (i + 1) / max(len(targets), 1), f"derivative {i + 1}/{len(targets)}")


#: Slabs with fewer voxels than this are combined by :func:`_axpy_blocked` (one thread) instead of a BLAS
#: ``sgemv``: multithreaded BLAS costs a thread wake-up per call, which dominates small volumes and on a
#: busy machine made a 64³ derivative ~400× a copy (``bench/simulate.py --sizes``).
BLAS_MIN_VOXELS = 1 << 22

#: Use the block layout (:mod:`.block_layout`) when it applies; False keeps the dense layouts (tests, benches).
BLOCK_LAYOUT = True

#: Voxels per block of :func:`_axpy_blocked` (float32: 256 KiB per row, inside L2).
AXPY_BLOCK = 1 << 16


def _axpy_blocked(dst: np.ndarray, base: np.ndarray | None, stack: np.ndarray, delta: np.ndarray) -> None:
    """``dst = base + Σ_t delta[t]·stack[t]`` (``base`` None: 0) block by block, single-threaded."""
    n = dst.size
    block = max(1, min(AXPY_BLOCK, n // 8))  # scratch <= 1/8 of the output
    tmp = np.empty(block, np.float32)
    rows = [(stack[t], np.float32(delta[t])) for t in range(stack.shape[0]) if delta[t] != 0]
    for s in range(0, n, block):
        e = min(s + block, n)
        o = dst[s:e]
        if base is None:
            o.fill(0.0)
        else:
            np.copyto(o, base[s:e])
        t = tmp[:e - s]
        for row, d in rows:
            np.multiply(row[s:e], d, out=t)
            o += t


def derivative_meta(sequence: str, params: AcquisitionParams) -> dict:
    """``Volume.meta`` entries that describe a derivative (DICOM tags rewritten to the target)."""
    meta = {"neuroshift:sequence": sequence, "neuroshift:params": params.label(),
            "dicom:SeriesDescription": f"NeuroShift {sequence.upper()} {params.label()}"}
    meta.update(params.to_dicom_meta())
    return meta


# --------------------------------------------------------------------------- public API
def fit_tissue_model(image, fractions: Mapping, sequence: str, source: AcquisitionParams, *,
                     field_T: float | None = None, priors: Mapping | None = None, brain_mask=None,
                     relaxation=None, method: str = "regression", tolerance: float = 0.01,
                     prior_sd: Mapping[str, float] | None = None, estimator: str = "fit",
                     contrasts: tuple = (), seed: int = 0,
                     progress: ProgressCallback | None = None) -> TissueModel:
    """Estimate apparent tissue parameters, the scale ``c`` and the texture from one image.

    ``image``: 3D :class:`Volume` or array; ``fractions``: ``{tissue: Volume|array}`` (CSF, GM, WM, lesion;
    any subset) on the same grid; ``source``: the image's acquisition parameters (every parameter the
    sequence needs must be known — :class:`~neuroshift.errors.MissingParameterError` otherwise, nothing is
    guessed). ``field_T``: field strength of the priors; default the source's ``field_T``, else 3 T (noted
    in the report). ``priors``: ``{tissue: TissueParameters}`` (default: ``relaxation_table(field_T,
    relaxation)``; ``relaxation`` is a JSON override path or dict). The brain mask, if given, restricts
    the voxels used and the tissue support.

    ``estimator``: ``"fit"`` (apparent parameters fitted to the contrast, paper 000), ``"priors"``
    (literature values, only ``c`` fitted: the baseline) or ``"posterior"`` (every parameter set
    consistent with the contrast, weighted by the prior: :mod:`neuroshift.simulate.posterior`; gives
    intervals). ``contrasts``: further co-registered images of the same subject as
    ``(image, sequence, AcquisitionParams)`` for joint estimation (estimator ``"posterior"``).
    """
    seq = str(sequence).lower()
    if seq not in SEQUENCES:
        raise ParameterRangeError(f"unknown sequence '{sequence}'; choose one of {', '.join(SEQUENCES)}")
    if isinstance(source, str):
        source = AcquisitionParams.parse(source)
    elif isinstance(source, Mapping):
        source = AcquisitionParams.from_mapping(source)
    source.require(seq, context="the input image (source)")
    notes = []
    if field_T is None:
        if source.field_T is not None:
            field_T = float(source.field_T)
        else:
            field_T = 3.0
            notes.append("field strength unknown: 3 T relaxation priors used (give --field to change)")
    elif source.field_T is not None and abs(source.field_T - field_T) > 1e-6:
        notes.append(f"field strength {field_T:g} T given explicitly; the image header says {source.field_T:g} T")
    source = replace(source, field_T=float(field_T))
    report(progress, 0.05, "checking inputs")
    img, geom, stack, box, order, mask_box, joint = prepare_inputs(image, fractions, brain_mask)
    if priors is None:
        from ..physics.relaxation import relaxation_table

        priors = relaxation_table(field_T, relaxation)
    missing = [t for t in order if t not in priors]
    if missing:
        raise InputError(f"no relaxation prior for {', '.join(missing)} at {field_T:g} T")
    report(progress, 0.3, "measuring tissue signals")
    signals = _est.measure_tissue_signals(img[box].reshape(-1), stack, order, mask=mask_box, method=method)
    report(progress, 0.6, "fitting apparent tissue parameters")
    from .joint import estimate_parameters

    apparent, fit_report, ensemble = estimate_parameters(
        estimator, signals, seq, source, priors, img.shape, box, stack, mask_box, geom, contrasts,
        tolerance=tolerance, prior_sd=prior_sd, method=method, seed=seed)
    fit_report.notes[:0] = notes
    pd, t1, t2, t2s = _est.param_arrays(order, apparent)
    s0 = _est.tissue_signals(seq, source, pd, t1, t2, t2s)
    c = _est.estimate_scale(signals, s0)
    report(progress, 0.9, "building the model")
    layout = _blocks.build(img.shape, stack, box) if BLOCK_LAYOUT else None
    if layout is not None:  # the compiled pass reads the image on 64-byte boundaries (block_kernels.derive_aligned)
        img = _blocks.aligned_copy(img)
    fr = {}
    for i, t in enumerate(order):
        full = np.zeros(img.shape, np.float32)
        full[box] = stack[i].reshape(full[box].shape)
        fr[t] = full
    model = TissueModel(
        sequence=seq, source=source, field_T=float(field_T), tissues=apparent, scale_c=c, fractions=fr,
        priors=dict(priors), report=fit_report, geometry=geom, relaxation=relaxation,
        estimator=str(estimator).lower(), ensemble=ensemble,
        _image=img, _stack=stack, _box=box, _joint=joint, _order=order, _s0=s0,
        _blocks=layout,
    )
    report(progress, 1.0, "model ready")
    return model


def simulate_derivative(image, fractions: Mapping, sequence: str, source: AcquisitionParams,
                        target: AcquisitionParams | Mapping | str, *, field_T: float | None = None,
                        progress: ProgressCallback | None = None, **fit_options) -> Volume:
    """Fit the tissue model of ``image`` and return its derivative at ``target`` as a :class:`Volume`."""
    model = fit_tissue_model(image, fractions, sequence, source, field_T=field_T,
                             progress=(lambda f, m: report(progress, 0.9 * f, m)) if progress else None,
                             **fit_options)
    out = model.simulate_volume(target)
    report(progress, 1.0, "derivative ready")
    return out


__all__ = ["TissueModel", "fit_tissue_model", "simulate_derivative", "derivative_meta", "SEQUENCES",
           "SEQUENCE_PARAMETERS"]
