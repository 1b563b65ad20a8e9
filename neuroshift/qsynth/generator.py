"""qSynth generator: label map -> quantitative maps -> image -> scanner augmentations (paper 002).

SYNTHETIC data. One subject is two steps, so that every random choice is made up front (the shape of a
MONAI ``randomize()``) and the rendering is a deterministic function of it:

1. :func:`draw` — all random draws of one subject (:class:`QSynthDraw`): per tissue and parameter the
   subject's (μ_s, σ_s) from the hierarchical priors (:mod:`neuroshift.qsynth.priors`), the sequence and
   its parameters (paper 002's random sequence sampling, :func:`neuroshift.physics.sampling.sample_sequence`,
   or uniform draws within a user ``protocol`` range), the augmentation strengths, and the seeds of the
   voxel-level fields;
2. :func:`render` — labels (hard integer labels, or partial-volume fractions per tissue) ->

   * small smooth deformation of the labels (nearest neighbour for hard labels, linear for fractions);
   * maps: per tissue ``v(x) = μ_s + σ_s·z(x)``, ``z = √w·smooth + √(1-w)·white`` (unit variance,
     ``w = texture_weight``; optional per-subject draws scale σ_s and set w: augment ranges ``texture_gain``,
     ``texture_weight``); PD ≥ 0, rates ≥ 1 % of the subject mean μ_s; partial volume mixes like
     :func:`neuroshift.phantom.quantitative.phantom_maps` (PD = 1000·Σ f_t PD_t, times = Σ f_t T_t / Σ f_t);
     times (ms) = 1000 / rate (1/s); 0 outside every tissue (background, no signal);
   * image: the existing forward model (:func:`neuroshift.qmri.synth.synthesize`);
   * scanner: multiplicative bias field (:func:`neuroshift.physics.noise.bias_field`), thick slices along one
     random axis (:func:`neuroshift.qsynth.fields.reslice_low_res`), Rician noise of σ = ``noise_fraction`` x
     the mean tissue signal.

With ``prior_scale = 0`` and ``augment = False`` the maps are the relaxation table's values and the
image equals ``neuroshift qmri synth`` of those maps (tested). Labels, shape and geometry of the input are
kept (the output label is the deformed input label, on the same grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError, ParameterRangeError
from ..physics.sampling import SEQUENCES_002
from .fields import displacement_field, reslice_low_res, smooth_field, warp
from .priors import PARAMETERS, load_priors, sample_subject

__all__ = ["QSynthConfig", "QSynthDraw", "draw", "render", "generate", "DEFAULT_LABEL_TISSUES", "PD_SCALE",
           "AUGMENT_RANGES"]

#: Phantom / NeuroShift label convention (``tissue_labels.nii.gz``): 0 background.
DEFAULT_LABEL_TISSUES = {1: "CSF", 2: "GM", 3: "WM", 4: "lesion"}
#: PD map scale (as the phantom's maps): image values in a ~0-1000 range.
PD_SCALE = 1000.0
_TIME = {"R1": "T1", "R2": "T2", "R2star": "T2star"}

#: Documented ranges of the augmentation draws (uniform): name -> (low, high).
AUGMENT_RANGES = {
    "bias_strength": (0.0, 0.3),          # log-field coefficient bound of physics.noise.bias_field
    "noise_fraction": (0.0, 0.05),        # Rician σ / mean tissue signal
    "slice_thickness_mm": (2.0, 6.0),     # thick-slice acquisition (applied with probability low_res_prob)
    "deform_mm": (0.0, 2.0),              # largest displacement component
    # texture strength per subject: a gain on every within-tissue spread σ_s and the smooth share w of the texture
    # (defaults: 1 and QSynthConfig.texture_weight; drawn, after every other draw, only when given in
    # augment_ranges, so default configs draw exactly as before)
    "texture_gain": (1.0, 1.0),
    "texture_weight": (0.0, 1.0),
}
#: entries drawn only when the user gives them (see above)
OPTIONAL_RANGES = ("texture_gain", "texture_weight")


@dataclass(frozen=True)
class QSynthConfig:
    """Settings of the generator (times ms, lengths mm, rates 1/s).

    ``protocol``: None for paper 002's random sequences among ``sequences``; or
    ``{"sequence": "flair", "TE_ms": [80, 140], "TI_ms": [2000, 2800], "TR_ms": 9000}`` (uniform within each
    ``[low, high]``, a number is fixed); or a list of such ranges, one picked uniformly per subject (e.g.
    clinical FLAIR, T2w and T1w ranges for a contrast-agnostic model trained on a small budget). ``priors``: JSON path or mapping overriding the default priors.
    ``prior_scale`` multiplies every spread (0: degenerate prior). ``augment_ranges`` overrides
    :data:`AUGMENT_RANGES` entries.
    """

    field_T: float = 3.0
    priors: Any = None
    prior_scale: float = 1.0
    label_tissues: Mapping[int, str] = field(default_factory=lambda: dict(DEFAULT_LABEL_TISSUES))
    texture_weight: float = 0.7
    texture_scale_mm: float = 16.0
    sequences: Sequence[str] = SEQUENCES_002
    protocol: Mapping[str, Any] | None = None
    augment: bool = True
    augment_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    low_res_prob: float = 0.5
    deform_scale_mm: float = 32.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.prior_scale) and self.prior_scale >= 0):
            raise ParameterRangeError(f"prior_scale must be >= 0, got {self.prior_scale!r}")
        if not 0.0 <= self.texture_weight <= 1.0:
            raise ParameterRangeError(f"texture_weight must be within 0-1, got {self.texture_weight!r}")
        for k, v in self.augment_ranges.items():
            if k not in AUGMENT_RANGES:
                raise ParameterRangeError(f"unknown augmentation range '{k}'; known: {', '.join(AUGMENT_RANGES)}")
            if len(v) != 2 or not all(math.isfinite(float(x)) and float(x) >= 0 for x in v) or v[0] > v[1]:
                raise ParameterRangeError(f"augmentation range {k} must be [low, high] with 0 <= low <= high")
        if "texture_weight" in self.augment_ranges and float(self.augment_ranges["texture_weight"][1]) > 1.0:
            raise ParameterRangeError("augmentation range texture_weight must lie within 0-1")

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {**AUGMENT_RANGES, **{k: (float(v[0]), float(v[1])) for k, v in self.augment_ranges.items()}}

    def prior_table(self):
        tab = load_priors(self.priors, field_T=self.field_T)
        return {t: {p: pr.scaled(self.prior_scale) for p, pr in ps.items()} for t, ps in tab.items()}


@dataclass
class QSynthDraw:
    """Every random choice of one synthetic subject (JSON-ready via :meth:`to_dict`)."""

    subject: dict[str, dict[str, tuple[float, float]]]
    sequence: str
    params: Any  # AcquisitionParams
    bias_strength: float = 0.0
    noise_fraction: float = 0.0
    slice_thickness_mm: float | None = None
    low_res_axis: int | None = None
    deform_mm: float = 0.0
    texture_gain: float = 1.0
    texture_weight: float | None = None  # None: QSynthConfig.texture_weight
    seeds: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "params": {k: v for k, v in vars(self.params).items() if v is not None},
                "subject": {t: {p: {"mu": m, "sigma": s} for p, (m, s) in ps.items()} for t, ps in self.subject.items()},
                "bias_strength": self.bias_strength, "noise_fraction": self.noise_fraction,
                "slice_thickness_mm": self.slice_thickness_mm, "low_res_axis": self.low_res_axis,
                "deform_mm": self.deform_mm, "texture_gain": self.texture_gain,
                "texture_weight": self.texture_weight, "seeds": dict(self.seeds)}


def _draw_protocol(protocol: Mapping[str, Any], rng: np.random.Generator, field_T: float, tries: int = 1000):
    from ..io.params import AcquisitionParams

    seq = str(protocol.get("sequence", "")).lower()
    if not seq:
        raise ParameterRangeError("a qSynth protocol needs 'sequence' (flair, se, gre, mprage, ir, ...)")
    spec = {k: v for k, v in protocol.items() if k != "sequence"}
    for _ in range(tries):
        vals = {}
        for k, v in spec.items():
            if isinstance(v, (list, tuple)):
                if len(v) != 2 or float(v[0]) > float(v[1]):
                    raise ParameterRangeError(f"protocol {k}: give [low, high] with low <= high, got {v!r}")
                vals[k] = float(rng.uniform(float(v[0]), float(v[1])))
            else:
                vals[k] = float(v)
        vals.setdefault("field_T", field_T)
        try:
            p = AcquisitionParams.from_mapping(vals)
            p.require("se" if seq == "fse" else seq)
        except InputError as exc:
            last = exc
            continue
        return seq, p
    raise ParameterRangeError(f"protocol gives no valid {seq} parameters in {tries} draws ({last})")


def draw(cfg: QSynthConfig, rng, tissues: Sequence[str] | None = None, priors=None) -> QSynthDraw:
    """All random draws of one subject (see the module docstring); ``rng``: seed or Generator."""
    from dataclasses import replace as dc_replace

    from ..physics.noise import as_rng
    from ..physics.sampling import sample_sequence

    g = as_rng(rng)
    table = priors if priors is not None else cfg.prior_table()
    tissues = [t for t in (tissues if tissues is not None else table)]
    missing = [t for t in tissues if t not in table]
    if missing:
        raise ParameterRangeError(f"no qSynth prior for tissue(s) {missing}; give them in a prior file "
                                  f"(known: {', '.join(table)})")
    subject = sample_subject(table, g, tissues)
    if cfg.protocol is not None:
        protocols = [cfg.protocol] if isinstance(cfg.protocol, Mapping) else list(cfg.protocol)
        if not protocols or not all(isinstance(p, Mapping) for p in protocols):
            raise ParameterRangeError("protocol must be a mapping of parameter ranges or a non-empty list of them")
        chosen = protocols[int(g.integers(len(protocols)))] if len(protocols) > 1 else protocols[0]
        seq, params = _draw_protocol(chosen, g, cfg.field_T)
    else:
        seq, params = sample_sequence(g, sequences=cfg.sequences)
        params = dc_replace(params, field_T=cfg.field_T)
    d = QSynthDraw(subject, seq, params)
    d.seeds = {k: int(g.integers(2**31 - 1)) for k in ("texture", "bias", "noise", "deform")}
    if cfg.augment:
        r = cfg.ranges()
        d.bias_strength = float(g.uniform(*r["bias_strength"]))
        d.noise_fraction = float(g.uniform(*r["noise_fraction"]))
        d.deform_mm = float(g.uniform(*r["deform_mm"]))
        if g.random() < cfg.low_res_prob:
            d.slice_thickness_mm = float(g.uniform(*r["slice_thickness_mm"]))
            d.low_res_axis = int(g.integers(3))
        for name in OPTIONAL_RANGES:  # drawn last and only when asked for: earlier draws keep their values
            if name in cfg.augment_ranges:
                setattr(d, name, float(g.uniform(*r[name])))
    return d


def split_labels(labels, cfg: QSynthConfig):
    """-> (hard int array or None, fractions dict or None, tissues list)."""
    if isinstance(labels, Mapping):
        fr = {str(t): np.asarray(v, dtype=np.float32) for t, v in labels.items()}
        shapes = {a.shape for a in fr.values()}
        if len(shapes) != 1 or next(iter(shapes)).__len__() != 3:
            raise InputError(f"partial-volume fractions must be 3D arrays of one shape, got {sorted(shapes)}")
        return None, fr, list(fr)
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise InputError(f"a qSynth label map must be 3D, got shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.isfinite(lab)) or np.any(lab != np.rint(lab)):
            raise InputError("a hard label map must hold integer labels (give fractions as a tissue -> map dict)")
    lab = np.rint(lab).astype(np.int32)
    present = [int(v) for v in np.unique(lab) if v != 0]
    unknown = [v for v in present if v not in cfg.label_tissues]
    if unknown:
        raise InputError(f"label value(s) {unknown} have no tissue; map them in label_tissues "
                         f"(known: {dict(cfg.label_tissues)})")
    tissues = list(dict.fromkeys(cfg.label_tissues[v] for v in present if cfg.label_tissues[v] is not None))
    return lab, None, tissues


def _tissue_values(d: QSynthDraw, cfg: QSynthConfig, shape, spacing_mm, tissues, priors, masks=None):
    """tissue -> parameter -> value array (full shape, or the masked voxels when ``masks`` is given)."""
    g = np.random.default_rng(d.seeds["texture"])
    scale_vox = cfg.texture_scale_mm / float(np.mean(spacing_mm))
    w = cfg.texture_weight if d.texture_weight is None else d.texture_weight
    out = {}
    for t in tissues:
        out[t] = {}
        for p in PARAMETERS:
            mu, sd = d.subject[t][p]
            sd = sd * d.texture_gain
            if sd == 0:
                out[t][p] = np.float64(mu)
                continue
            z_s = smooth_field(shape, g, scale_vox)
            sel = masks[t] if masks is not None else slice(None)
            z = math.sqrt(w) * z_s[sel] + math.sqrt(1 - w) * g.standard_normal(z_s[sel].shape).astype(np.float32)
            v = mu + sd * z.astype(np.float64)
            floor = 0.0 if p == "PD" else 0.01 * mu
            out[t][p] = np.maximum(v, floor)
    return out


def render(labels, d: QSynthDraw, cfg: QSynthConfig, *, spacing_mm=(1.0, 1.0, 1.0), priors=None,
           dtype=np.float32) -> dict[str, Any]:
    """Deterministic rendering of one draw: ``{"image", "maps" (PD, T1, T2, T2star), "labels"}`` arrays.

    ``labels``: 3D integer array (hard labels, :attr:`QSynthConfig.label_tissues`) or a tissue -> fraction
    dict of 3D arrays. ``spacing_mm``: voxel size (for texture, deformation and slice thickness in mm).
    For fractions the returned ``labels`` is the deformed fraction dict.
    """
    from ..io.params import AcquisitionParams  # noqa: F401  (params live in the draw)
    from ..io.volume import Volume
    from ..physics.noise import add_rician_noise, bias_field
    from ..qmri.synth import synthesize

    table = priors if priors is not None else cfg.prior_table()
    hard, fr, tissues = split_labels(labels, cfg)
    shape = (hard if hard is not None else next(iter(fr.values()))).shape
    spacing = np.asarray(spacing_mm, dtype=np.float64).reshape(3)
    if d.deform_mm > 0:
        disp = displacement_field(shape, np.random.default_rng(d.seeds["deform"]),
                                  d.deform_mm / float(spacing.min()), cfg.deform_scale_mm / float(spacing.mean()))
        if hard is not None:
            hard = warp(hard, disp, order=0)
        else:
            fr = {t: warp(a, disp, order=1) for t, a in fr.items()}
    maps = {k: np.zeros(shape, np.float64) for k in ("PD", "T1", "T2", "T2star")}
    if hard is not None:
        masks = {t: np.isin(hard, [v for v, n in cfg.label_tissues.items() if n == t]) for t in tissues}
        vals = _tissue_values(d, cfg, shape, spacing, tissues, table, masks)
        for t in tissues:
            m = masks[t]
            maps["PD"][m] = PD_SCALE * vals[t]["PD"]
            for p, name in _TIME.items():
                maps[name][m] = 1000.0 / vals[t][p]
    else:
        vals = _tissue_values(d, cfg, shape, spacing, tissues, table)
        f64 = {t: fr[t].astype(np.float64) for t in tissues}
        total = sum(f64.values())
        inside = total > 0
        safe = np.where(inside, total, 1.0)
        maps["PD"] = np.where(inside, PD_SCALE * sum(f64[t] * vals[t]["PD"] for t in tissues), 0.0)
        for p, name in _TIME.items():
            maps[name] = np.where(inside, sum(f64[t] * (1000.0 / vals[t][p]) for t in tissues) / safe, 0.0)
    ref = Volume(np.zeros(shape, np.float32), spacing=spacing)
    vols = {k: ref.with_data(v.astype(np.float32)) for k, v in maps.items()}
    img = np.asarray(synthesize(vols, d.sequence, d.params, dtype=np.float64).data)
    tissue_mask = (hard > 0) if hard is not None else (sum(fr.values()) > 0)
    if d.bias_strength > 0:
        img = img * bias_field(shape, d.bias_strength, np.random.default_rng(d.seeds["bias"]), spacing=spacing,
                               dtype=np.float64)
    if d.slice_thickness_mm is not None and d.low_res_axis is not None:
        img = reslice_low_res(img, d.low_res_axis, d.slice_thickness_mm / float(spacing[d.low_res_axis]))
    if d.noise_fraction > 0 and np.any(tissue_mask):
        sigma = d.noise_fraction * float(np.mean(img[tissue_mask]))
        img = add_rician_noise(img, sigma, np.random.default_rng(d.seeds["noise"]))
    return {"image": img.astype(dtype), "maps": {k: v.data for k, v in vols.items()},
            "labels": hard if hard is not None else fr}


def generate(labels, cfg: QSynthConfig | None = None, seed=None) -> dict[str, Any]:
    """One synthetic subject from ``labels`` (a :class:`~neuroshift.io.volume.Volume` of hard labels, a
    tissue -> fraction-Volume dict, or the same as arrays): :func:`draw` then :func:`render`.

    Returns ``{"image", "maps", "labels"}`` as Volumes on the input's grid (arrays for array input) and
    ``"draw"`` (the :class:`QSynthDraw`). SYNTHETIC.
    """
    from ..io.volume import Volume

    cfg = cfg or QSynthConfig()
    priors = cfg.prior_table()
    if isinstance(labels, Mapping):
        ref = next(iter(labels.values()))
        arrays = {t: (v.data if isinstance(v, Volume) else v) for t, v in labels.items()}
    else:
        ref = labels
        arrays = labels.data if isinstance(labels, Volume) else labels
    spacing = ref.spacing if isinstance(ref, Volume) else (1.0, 1.0, 1.0)
    _, _, tissues = split_labels(arrays, cfg)
    d = draw(cfg, seed, tissues, priors)
    out = render(arrays, d, cfg, spacing_mm=spacing, priors=priors)
    out["draw"] = d
    if isinstance(ref, Volume):
        meta = {"synthetic": "SYNTHETIC qSynth image", "sequence": d.sequence, "params": d.params.label()}
        out["image"] = ref.with_data(out["image"], **meta)
        out["maps"] = {k: ref.with_data(v) for k, v in out["maps"].items()}
        out["labels"] = ref.with_data(out["labels"]) if not isinstance(out["labels"], Mapping) else \
            {t: ref.with_data(v) for t, v in out["labels"].items()}
    return out
