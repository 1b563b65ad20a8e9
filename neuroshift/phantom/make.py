"""Digital brain phantom with known ground truth: ``make_phantom(outdir, seed=0)``.

Anatomy: the MNI ICBM152 2009a CSF/GM/WM maps at 2 mm on the template's real
grid (packaged, see :mod:`neuroshift.phantom.template`), normalised so the
fractions sum to 1 inside the brain mask; plus seeded MS-like lesions
(:mod:`neuroshift.phantom.lesions`) with partial-volume edges. In lesion voxels
(lesion fraction >= 0.5) the GM fraction is 0 (as paper 000 sets it) and the
rest is shared between WM and CSF; at lesion edges every tissue is scaled by
``1 - f_lesion``.

Images follow the tissue-wise model of paper 000 with zero texture:

    S(x) = c · Σ_t f_t(x) · S_t(θ)      then Rician noise of standard deviation σ

with S_t from :mod:`neuroshift.physics.signal` and the 3 T relaxation table of
:mod:`neuroshift.physics.relaxation`:

* ``T1w``: 3D MPRAGE at 3 T (TR 2300, TI 900, TE 2.98 ms, FA 9°, 176 excitations
  spaced 7.1 ms; ADNI-like), computed with the cycle-consistent
  ``mprage_steady_state`` (the published Eq. 6 form of paper 002 gives almost no
  GM/WM contrast at these timings);
* ``FLAIR``: 3 T, TE 112, TI 2500, TR 9000 ms (paper 000's volunteer baseline),
  ``flair`` with Trec = TR.

``c`` puts the brightest tissue at 1000; σ is 2 % of the WM signal. The
outputs, all on one grid, are listed in :data:`OUTPUT_FILES`;
``ground_truth.json`` records the relaxation values, acquisition parameters
(ms), c, σ, the analytic per-tissue signals (c·S_t, noise-free) and the
lesions. No bias field and no texture: a phantom image equals the analytic
equation plus noise, which is what makes it a test oracle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.volume import Volume
from .lesions import Lesion, place_lesions
from .template import NOTICE_FILE, load_template, notice_text

FIELD_T = 3.0

#: Acquisition parameters (ms, degrees, tesla) of the two phantom images.
T1W_PARAMS = {"TE_ms": 2.98, "TI_ms": 900.0, "TR_ms": 2300.0, "FA_deg": 9.0, "TX_ms": 7.1, "N": 176.0,
              "field_T": FIELD_T}
FLAIR_PARAMS = {"TE_ms": 112.0, "TI_ms": 2500.0, "TR_ms": 9000.0, "field_T": FIELD_T}

#: Relative noise: σ = NOISE_FRACTION x the noise-free WM signal of each image.
NOISE_FRACTION = 0.02
#: Brightest tissue signal after scaling by c.
PEAK_SIGNAL = 1000.0

#: output key -> file name (all in ``outdir``)
OUTPUT_FILES = {
    "T1w": "T1w.nii.gz", "T1w_json": "T1w.json",
    "FLAIR": "FLAIR.nii.gz", "FLAIR_json": "FLAIR.json",
    "pv_CSF": "pv_CSF.nii.gz", "pv_GM": "pv_GM.nii.gz", "pv_WM": "pv_WM.nii.gz", "pv_lesion": "pv_lesion.nii.gz",
    "tissue_labels": "tissue_labels.nii.gz", "lesion_mask": "lesion_mask.nii.gz",
    "brain_mask": "brain_mask.nii.gz", "ground_truth": "ground_truth.json", "notice": NOTICE_FILE,
}

TISSUE_ORDER = ("CSF", "GM", "WM", "lesion")


@dataclass
class Phantom:
    """An in-memory phantom (everything ``make_phantom`` writes)."""

    fractions: dict[str, Volume]
    labels: Volume
    lesion_mask: Volume
    brain_mask: Volume
    images: dict[str, Volume]
    clean_images: dict[str, Volume]
    sidecars: dict[str, dict]
    ground_truth: dict[str, Any]
    lesions: list[Lesion] = field(default_factory=list)


def _signal_t1w(tp, p):
    from ..physics.signal import mprage_steady_state

    return float(mprage_steady_state(tp.pd, tp.t1_ms, tp.t2star_ms, te_ms=p["TE_ms"], ti_ms=p["TI_ms"],
                                     tr_ms=p["TR_ms"], fa_deg=p["FA_deg"], tx_ms=p["TX_ms"], n=p["N"]))


def _signal_flair(tp, p):
    from ..physics.signal import flair

    return float(flair(tp.pd, tp.t1_ms, tp.t2_ms, te_ms=p["TE_ms"], ti_ms=p["TI_ms"], tr_ms=p["TR_ms"]))


#: image name -> (sequence name for the simulator, params, analytic per-tissue signal, signal function name)
IMAGES = {
    "T1w": ("mprage", T1W_PARAMS, _signal_t1w, "neuroshift.physics.signal.mprage_steady_state"),
    "FLAIR": ("flair", FLAIR_PARAMS, _signal_flair, "neuroshift.physics.signal.flair"),
}


def tissue_signals(field_T: float = FIELD_T, relaxation=None) -> dict[str, dict[str, float]]:
    """Noise-free per-tissue signal S_t (before the scale c) of each phantom image."""
    from ..physics.relaxation import relaxation_table

    table = relaxation if relaxation is not None else relaxation_table(field_T)
    return {name: {t: fn(table[t], params) for t in TISSUE_ORDER} for name, (_, params, fn, _) in IMAGES.items()}


def _sidecar(name: str) -> dict:
    seq, p, _, _ = IMAGES[name]
    from ..io.params import AcquisitionParams

    doc = {"Modality": "MR", **AcquisitionParams.from_mapping(p).to_sidecar()}
    if name == "T1w":
        doc.update({"MRAcquisitionType": "3D", "ScanningSequence": "GR_IR", "PulseSequenceType": "MPRAGE"})
    else:
        doc.update({"MRAcquisitionType": "2D", "ScanningSequence": "SE_IR", "PulseSequenceType": "FLAIR"})
    doc.update({"NeuroShiftSequence": seq, "SeriesDescription": f"NeuroShift phantom {name}",
                "Manufacturer": "NeuroShift digital phantom (synthetic)"})
    return doc


def mix_lesion(csf: np.ndarray, gm: np.ndarray, wm: np.ndarray, les: np.ndarray) -> dict[str, np.ndarray]:
    """CSF/GM/WM/lesion fractions (float64) with the lesion fraction ``les`` mixed in by the phantom's rule:
    in the core (``les`` >= 0.5) GM is 0 and the rest, ``1 - les``, is shared by WM and CSF in their local
    ratio (all WM where neither is present); at edges every tissue is scaled by ``1 - les``."""
    core = les >= 0.5
    rest = 1.0 - les
    wc = wm + csf
    share_wm = np.where(wc > 0, wm / np.where(wc > 0, wc, 1.0), 1.0)
    return {"CSF": np.where(core, rest * (1.0 - share_wm), csf * rest), "GM": np.where(core, 0.0, gm * rest),
            "WM": np.where(core, rest * share_wm, wm * rest), "lesion": les}


def build_phantom(*, seed: int = 0, field_T: float = FIELD_T) -> Phantom:
    """Build the phantom in memory (deterministic for a given seed)."""
    from ..physics.noise import add_rician_noise
    from ..physics.relaxation import relaxation_table
    from ..tissues.maps import labels_from_fractions

    rng = np.random.default_rng(seed)
    tpl = load_template()
    brain = tpl.brain.data >= 0.5
    csf, gm, wm = (np.where(brain, v.data, 0.0).astype(np.float64) for v in (tpl.csf, tpl.gm, tpl.wm))
    total = csf + gm + wm
    empty = brain & (total <= 0)
    csf[empty], total[empty] = 1.0, 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        csf, gm, wm = (np.where(brain, x / total, 0.0) for x in (csf, gm, wm))

    ijk_to_ras = tpl.gm.ijk_to_ras()
    les, lesions = place_lesions(csf, wm, brain, ijk_to_ras, rng)
    les = les.astype(np.float64) * brain
    core = les >= 0.5
    fr = mix_lesion(csf, gm, wm, les)
    ref = tpl.gm
    fractions = {t: ref.with_data(fr[t].astype(np.float32), tissue=t) for t in TISSUE_ORDER}
    # hard labels: argmax of CSF/GM/WM, and lesion (4) exactly on the lesion mask (fraction >= 0.5)
    labels = labels_from_fractions({t: fractions[t] for t in ("CSF", "GM", "WM")}, min_total=0.0)
    labels.data[~brain] = 0
    labels.data[core] = 4
    lesion_mask = ref.with_data(core.astype(np.uint8))
    brain_mask = ref.with_data(brain.astype(np.uint8))

    table = relaxation_table(field_T)
    signals = tissue_signals(field_T, table)
    images, clean, sidecars, gt_images = {}, {}, {}, {}
    for name, (seq, params, _, fn_name) in IMAGES.items():
        s_t = signals[name]
        c = PEAK_SIGNAL / max(s_t.values())
        img = np.zeros(ref.data.shape, dtype=np.float64)
        for t in TISSUE_ORDER:
            img += fr[t] * s_t[t]
        img *= c
        sigma = NOISE_FRACTION * c * s_t["WM"]
        noisy = np.asarray(add_rician_noise(img, sigma, rng=rng), dtype=np.float32)
        clean[name] = ref.with_data(img.astype(np.float32))
        images[name] = ref.with_data(noisy)
        sidecars[name] = _sidecar(name)
        gt_images[name] = {
            "file": OUTPUT_FILES[name], "sequence": seq, "signal_function": fn_name,
            "params_ms": {k: v for k, v in params.items()},
            "scale_c": c, "noise_sigma": sigma,
            "tissue_signal": {t: c * s_t[t] for t in TISSUE_ORDER},
            "tissue_signal_unscaled": dict(s_t),
        }
    spacing = ref.spacing
    gt = {
        "description": "NeuroShift digital brain phantom: S = c * sum_t f_t * S_t(theta) + Rician noise "
                       "(no texture, no bias field); times in ms",
        "seed": int(seed),
        "field_T": float(field_T),
        "template": tpl.provenance,
        "template_notice": NOTICE_FILE,
        "grid": {"shape_ijk": list(ref.shape_ijk), "spacing_mm": spacing.tolist(),
                 "ijk_to_ras": ijk_to_ras.round(6).tolist()},
        "labels": {"CSF": 1, "GM": 2, "WM": 3, "lesion": 4},
        "relaxation": {t: {"pd": table[t].pd, "t1_ms": table[t].t1_ms, "t2_ms": table[t].t2_ms,
                           "t2star_ms": table[t].t2star_ms, "source": table[t].source} for t in TISSUE_ORDER},
        "images": gt_images,
        "lesions": [les_.to_json() for les_ in lesions],
        "lesion_count": len(lesions),
        "lesion_volume_ml": float(les.sum() * np.prod(spacing) / 1000.0),
        "brain_volume_ml": float(brain.sum() * np.prod(spacing) / 1000.0),
        "tissue_volume_ml": {t: float(fr[t].sum() * np.prod(spacing) / 1000.0) for t in TISSUE_ORDER},
    }
    return Phantom(fractions, labels, lesion_mask, brain_mask, images, clean, sidecars, gt, lesions)


def make_phantom(outdir: str | os.PathLike, *, seed: int = 0, quantitative: bool = False) -> dict[str, Path]:
    """Write the phantom into ``outdir`` (created if needed); returns output key -> path.

    ``quantitative=True`` also writes the ground-truth maps ``maps/PD|T1|T2|T2star.nii.gz`` (ms, with a
    JSON sidecar each and ``maps/qmri.json``) and the image sets of :mod:`neuroshift.phantom.quantitative`
    in ``qmri/`` (multi-echo SE, variable flip angle GRE, SE + IR; BIDS sidecars), keys ``map_*`` and
    ``qmri_*``. Everything is computed before the first file is written, and each file is written
    atomically, so an error never leaves a partial file.
    """
    from ..io.atomic import write_text_atomic
    from ..io.files import write_volume

    ph = build_phantom(seed=seed)
    quant = _quantitative(ph, seed) if quantitative else None
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in OUTPUT_FILES.items()}
    if quant is not None:
        _write_quantitative(quant, out, paths)
    for name in IMAGES:
        write_volume(ph.images[name], paths[name])
        write_text_atomic(paths[f"{name}_json"], json.dumps(ph.sidecars[name], indent=2) + "\n")
    for t in TISSUE_ORDER:
        write_volume(ph.fractions[t], paths[f"pv_{t}"])
    write_volume(ph.labels, paths["tissue_labels"])
    write_volume(ph.lesion_mask, paths["lesion_mask"])
    write_volume(ph.brain_mask, paths["brain_mask"])
    write_text_atomic(paths["ground_truth"], json.dumps(ph.ground_truth, indent=2) + "\n")
    write_text_atomic(paths["notice"], notice_text())
    return paths


def _quantitative(ph: Phantom, seed: int) -> dict:
    """Maps, their sidecars and the qMRI image sets of ``ph`` (in memory)."""
    from .quantitative import map_sidecar, phantom_maps, qmri_sets

    field_T = float(ph.ground_truth["field_T"])
    maps = phantom_maps(ph)
    wm = np.asarray(ph.fractions["WM"].data) >= 0.99
    sets = qmri_sets(maps, np.random.default_rng([seed, 2]), field_T=field_T, wm_mask=wm)
    info = {"description": "SYNTHETIC ground-truth maps of the NeuroShift digital phantom (fraction-weighted "
                           "tissue values; 0 outside the brain)", "field_T": field_T, "seed": int(seed),
            "units": {"PD": "a.u.", "T1": "ms", "T2": "ms", "T2star": "ms"},
            "identified": ["PD", "T1", "T2", "T2star"]}
    return {"maps": maps, "sidecars": {k: map_sidecar(k, field_T) for k in maps}, "info": info, "sets": sets}


def _write_quantitative(quant: dict, out: Path, paths: dict[str, Path]) -> None:
    from ..io.atomic import write_text_atomic
    from ..io.files import write_volume
    from .quantitative import MAPS_DIR, QMRI_DIR

    (out / MAPS_DIR).mkdir(exist_ok=True)
    (out / QMRI_DIR).mkdir(exist_ok=True)
    for name, vol in quant["maps"].items():
        paths[f"map_{name}"] = out / MAPS_DIR / f"{name}.nii.gz"
        write_volume(vol, paths[f"map_{name}"])
        write_text_atomic(out / MAPS_DIR / f"{name}.json", json.dumps(quant["sidecars"][name], indent=2) + "\n")
    paths["maps_info"] = out / MAPS_DIR / "qmri.json"
    write_text_atomic(paths["maps_info"], json.dumps(quant["info"], indent=2) + "\n")
    for name, (vol, sidecar) in quant["sets"].items():
        paths[f"qmri_{name}"] = out / QMRI_DIR / f"{name}.nii.gz"
        write_volume(vol, paths[f"qmri_{name}"])
        write_text_atomic(out / QMRI_DIR / f"{name}.json", json.dumps(sidecar, indent=2) + "\n")
