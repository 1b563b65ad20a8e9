"""Held-out SYNTHETIC subjects for the synthDIR uncertainty study (dev/synthesis_uncertainty.py --heldout varied).

The demo models are trained on phantoms of seeds 0, 1, 2, 4, 5 (dev/train_demo_synthesis.py). Every phantom is
the SAME anatomy (the packaged MNI ICBM152 2009a CSF/GM/WM fractions at 2 mm): a seed changes only the lesions
(6 periventricular + 4 deep ellipsoids, long diameters 3-15 mm, partial-volume edges) and the Rician noise.
Held-out phantom seed 3 therefore differs from the training data in lesions and noise only.

A *varied* held-out subject (:func:`varied_subject`) is a new subject from the same physics engine:

* anatomy: the template's partial-volume CSF/GM/WM fractions and brain fraction warped by a qSynth random
  smooth displacement (:func:`neuroshift.qsynth.fields.displacement_field`, largest component
  ``DEFORM_MM`` = 6 mm, control spacing 40 mm: the defaults of :func:`neuroshift.qsynth.anatomy.random_label_maps`):
  ventricle size, cortical folding position and head shape change. Resampling is cubic B-spline (prefiltered,
  clipped to [0, 1]): linear resampling (:func:`neuroshift.qsynth.fields.warp`, order 1) blurs the fractions,
  mean |in-plane gradient| of the GM fraction over brain 0.137 -> 0.116 (-16 %, seed 101) against 0.135 (-2 %)
  with cubic, i.e. the anatomy would be smoother than any training subject (kept as the sensitivity set
  ``varied_linear``). Fractions renormalised to sum 1 in the warped brain (brain fraction >= 0.5), as the phantom;
* lesions: the qSynth generative lesion model (:func:`neuroshift.qsynth.anatomy.add_lesions`, default
  :class:`~neuroshift.qsynth.anatomy.LesionModel`: count 1 + Poisson(8) up to 30, log-normal volumes median
  0.12 ml, irregular lobulated ovoids, 60 % periventricular) placed on the warped hard labels; the binary lesion
  mask gets partial-volume edges from a Gaussian of sigma ``LESION_EDGE_SIGMA_VOX`` = 0.5 voxel (an acquisition
  point-spread, so edges are not binary like nothing in the training data), then mixed into the tissues with the
  phantom's rule (:func:`neuroshift.phantom.make.mix_lesion`, the one :func:`neuroshift.phantom.make.build_phantom`
  uses: in the core, lesion fraction >= 0.5, GM is 0 and the rest is shared by WM and CSF; at edges every tissue
  is scaled by 1 - f_lesion);
* images: :func:`neuroshift.phantom.contrasts.build_contrasts` on those fractions: T1w, FLAIR, DIR by the same
  sequence equations, acquisition parameters, 3 T relaxation table, scale c and 2 % Rician noise as training.

Kept as in training (what a new subject on the same scanner and protocol would keep): the acquisition, the
relaxation values, the noise level. All seeds are fixed up front (:data:`VARIED_SEEDS`); no subject is chosen
after seeing a figure.

A harder tier, ``varied_qsynth`` (:func:`qsynth_subject`): the same anatomy and lesions, but the tissue
parameters from qSynth's label-to-image side: per subject and tissue (mu, sigma) of PD, R1, R2, R2* drawn from the
default hierarchical priors (:func:`neuroshift.qsynth.generator.draw`; between-subject CV 10 % for tissues, 20 %
for lesions, within-tissue CV 5 % / 10 % as smooth + white texture, weight 0.7, 16 mm), maps mixed by partial
volume (:func:`neuroshift.qsynth.generator.render`, no augmentation), and T1w / FLAIR / DIR rendered from those
maps by :func:`neuroshift.qmri.synth.synthesize` with the training protocol (the phantom's parameters; DIR TI1/TI2
fixed at the 3 T table's null times, so a subject whose WM/CSF T1 differ is not perfectly nulled, as on a
scanner); Rician noise of 2 % of the mean WM signal (GM for DIR), as the phantom. The priors are qSynth's
[assumption]s for contrast-agnostic training (wider than healthy adults' spread): a stress test, not a typical
subject.
"""

from __future__ import annotations

import numpy as np

DEFORM_MM = 6.0
DEFORM_SCALE_MM = 40.0
LESION_EDGE_SIGMA_VOX = 0.5
#: The varied held-out subjects (seeds never used in training: those are 0-5 phantoms).
VARIED_SEEDS = (101, 102, 103, 104, 105, 106)


def _warp(a: np.ndarray, disp: np.ndarray, order: int) -> np.ndarray:
    """``a`` (a fraction in [0, 1]) resampled at x + disp(x): linear (qSynth's warp) or cubic B-spline, clipped."""
    from scipy.ndimage import map_coordinates

    from neuroshift.qsynth.fields import warp
    if order == 1:
        return warp(a, disp, order=1)
    coords = np.indices(a.shape, dtype=np.float32) + disp.astype(np.float32)
    return np.clip(map_coordinates(a, coords, order=order, mode="nearest", prefilter=True), 0.0, 1.0)


def varied_fractions(seed: int, warp_order: int = 3) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """(CSF/GM/WM/lesion fractions float64, brain mask bool, info) of varied subject ``seed`` on the template grid
    (``warp_order`` 3: cubic resampling of the template fractions; 1: linear, blurred)."""
    from scipy.ndimage import gaussian_filter

    from neuroshift.phantom.make import mix_lesion
    from neuroshift.phantom.template import load_template
    from neuroshift.qsynth.anatomy import LesionModel, add_lesions
    from neuroshift.qsynth.fields import displacement_field

    tpl = load_template()
    rng = np.random.default_rng([int(seed), 11])
    shape = tpl.gm.data.shape
    sp = float(np.mean(tpl.gm.spacing))
    disp = displacement_field(shape, rng, DEFORM_MM / sp, DEFORM_SCALE_MM / sp)
    brain = _warp(np.asarray(tpl.brain.data, np.float32), disp, warp_order) >= 0.5
    raw = {t: np.where(brain, _warp(np.asarray(v.data, np.float32), disp, warp_order), 0.0).astype(np.float64)
           for t, v in (("CSF", tpl.csf), ("GM", tpl.gm), ("WM", tpl.wm))}
    total = raw["CSF"] + raw["GM"] + raw["WM"]
    empty = brain & (total <= 0)
    raw["CSF"][empty], total[empty] = 1.0, 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        csf, gm, wm = (np.where(brain, raw[t] / total, 0.0) for t in ("CSF", "GM", "WM"))
    hard = (np.argmax(np.stack([csf, gm, wm]), axis=0) + 1).astype(np.int16)
    hard[~brain] = 0
    labels = tpl.gm.with_data(hard)
    les_lab, records = add_lesions(labels, rng, LesionModel())
    binary = np.asarray(les_lab.data) == 4
    les = np.clip(gaussian_filter(binary.astype(np.float64), LESION_EDGE_SIGMA_VOX), 0.0, 1.0) * brain
    fr = mix_lesion(csf, gm, wm, les)
    voxel_ml = float(np.prod(tpl.gm.spacing)) / 1000.0
    info = {"seed": int(seed), "warp_order": int(warp_order), "deform_max_mm": float(np.abs(disp).max() * sp),
            "lesions": len(records),
            "lesion_ml": round(float(les.sum()) * voxel_ml, 3), "brain_ml": round(float(brain.sum()) * voxel_ml, 1),
            "csf_ml": round(float(fr["CSF"].sum()) * voxel_ml, 1)}
    return fr, brain, info


def varied_subject(seed: int, warp_order: int = 3) -> dict:
    """A varied held-out subject in the form of ``train_demo_synthesis.subject`` (plus ``info``)."""
    from neuroshift.phantom.contrasts import build_contrasts
    from neuroshift.phantom.make import TISSUE_ORDER, Phantom
    from neuroshift.phantom.template import load_template

    fr, brain, info = varied_fractions(seed, warp_order)
    ref = load_template().gm
    fractions = {t: ref.with_data(fr[t].astype(np.float32), tissue=t) for t in TISSUE_ORDER}
    lesion = fr["lesion"] >= 0.5
    ph = Phantom(fractions, ref.with_data(np.zeros(brain.shape, np.uint8)), ref.with_data(lesion.astype(np.uint8)),
                 ref.with_data(brain.astype(np.uint8)), {}, {}, {}, {})
    cs = build_contrasts(ph, seed=int(seed))
    raw = {n: np.asarray(v.data, np.float32) for n, v in cs.images.items()}
    return {"raw": raw, "clean_dir": np.asarray(cs.clean_images["DIR"].data, np.float32), "brain": brain,
            "lesion": lesion, "nawm": (fr["WM"] >= 0.9) & ~lesion, "enhancing": cs.enhancing_mask.data > 0,
            "info": {**info, "lesion_core_voxels": int(lesion.sum()),
                     "description": "SYNTHETIC varied held-out subject (qSynth-deformed template anatomy, qSynth "
                                    "lesions, phantom contrasts)"}}


def qsynth_subject(seed: int) -> dict:
    """Varied subject ``seed`` (same anatomy and lesions as :func:`varied_subject`) with qSynth-drawn tissue
    parameters and texture, rendered by the training protocol (see the module docstring)."""
    from neuroshift.io.params import AcquisitionParams
    from neuroshift.io.volume import Volume
    from neuroshift.phantom.contrasts import DIR_TE_MS, DIR_TR_MS, dir_null_times
    from neuroshift.phantom.make import FLAIR_PARAMS, NOISE_FRACTION, T1W_PARAMS
    from neuroshift.physics.noise import add_rician_noise
    from neuroshift.phantom.template import load_template
    from neuroshift.physics.relaxation import relaxation_table
    from neuroshift.qmri.synth import synthesize as render_sequence
    from neuroshift.qsynth.generator import QSynthConfig, draw, render

    fr, brain, info = varied_fractions(seed)
    spacing = tuple(float(v) for v in load_template().gm.spacing)
    cfg = QSynthConfig(augment=False)
    priors = cfg.prior_table()
    rng = np.random.default_rng([int(seed), 23])
    d = draw(cfg, rng, list(fr), priors)
    maps = render({t: a.astype(np.float32) for t, a in fr.items()}, d, cfg, spacing_mm=spacing, priors=priors)["maps"]
    ref = Volume(np.zeros(brain.shape, np.float32), spacing=spacing)
    vols = {k: ref.with_data(np.asarray(v, np.float32)) for k, v in maps.items()}
    table = relaxation_table(3.0)
    ti1, ti2 = dir_null_times(table["CSF"].t1_ms, table["WM"].t1_ms)
    protocol = {"T1w": ("mprage", T1W_PARAMS), "FLAIR": ("flair", FLAIR_PARAMS),
                "DIR": ("dir", {"TE_ms": DIR_TE_MS, "TI1_ms": ti1, "TI2_ms": ti2, "TR_ms": DIR_TR_MS})}
    lesion = fr["lesion"] >= 0.5
    wm_pure, gm_pure = (fr["WM"] >= 0.9) & ~lesion, fr["GM"] >= 0.9
    noise_rng = np.random.default_rng([int(seed), 29])
    raw, clean_dir = {}, None
    for name, (seq, p) in protocol.items():
        img = np.asarray(render_sequence(vols, seq, AcquisitionParams.from_mapping({**p, "field_T": 3.0}),
                                         dtype=np.float64).data)
        img = 1000.0 * img / float(np.percentile(img[brain], 99.5))
        sigma = NOISE_FRACTION * float(img[gm_pure if name == "DIR" else wm_pure].mean())
        raw[name] = np.asarray(add_rician_noise(img, sigma, rng=noise_rng), np.float32)
        if name == "DIR":
            clean_dir = img.astype(np.float32)
    subj = {"T1": {t: round(1000.0 / d.subject[t]["R1"][0], 1) for t in d.subject},
            "T2": {t: round(1000.0 / d.subject[t]["R2"][0], 1) for t in d.subject}}
    return {"raw": raw, "clean_dir": clean_dir, "brain": brain, "lesion": lesion, "nawm": wm_pure,
            "info": {**info, "lesion_core_voxels": int(lesion.sum()), "subject_mean_ms": subj,
                     "description": "SYNTHETIC varied held-out subject with qSynth tissue parameters and texture "
                                    "(training protocol)"}}


def heldout_subjects(kind: str) -> list[tuple[str, dict]]:
    """``phantom``: [phantom seed 3]; ``varied``: phantom seed 3 first (the old reference), then every
    :data:`VARIED_SEEDS` subject; ``varied_linear``: the same with linear (blurring) resampling of the anatomy.
    Names: ``phantom_seed3``, ``varied_seed101``, ..."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_demo_synthesis import TEST_SEED, subject

    out = [(f"phantom_seed{TEST_SEED}", subject(TEST_SEED))]
    if kind in ("varied", "varied_linear"):
        order = 1 if kind == "varied_linear" else 3
        out += [(f"varied_seed{s}", varied_subject(s, order)) for s in VARIED_SEEDS]
    elif kind == "varied_qsynth":
        out += [(f"varied_seed{s}", qsynth_subject(s)) for s in VARIED_SEEDS]
    elif kind != "phantom":
        raise ValueError(f"unknown held-out set {kind!r} (phantom|varied|varied_linear|varied_qsynth)")
    return out
