"""Quantitative side of the phantom: ground-truth PD/T1/T2/T2* maps and image sets to fit them from.

SYNTHETIC data. ``phantom_maps(ph)`` gives the maps of a :class:`~neuroshift.phantom.make.Phantom`:
per voxel the fraction-weighted mean of the tissue values of the 3 T relaxation table,

    PD(x) = PD_SCALE · Σ_t f_t(x)·pd_t        T(x) = Σ_t f_t(x)·T_t / Σ_t f_t(x)    (T1, T2, T2* in ms)

and 0 outside the brain (background: signal 0). In pure-tissue voxels these are the table values.

``qmri_sets(maps, rng)`` synthesises, from those maps with the forward model of ``neuroshift qmri synth``
(:func:`neuroshift.qmri.synth.synthesize`), the acquisitions that the README's ``qmri fit`` examples use,
each with Rician noise of σ = NOISE_FRACTION × its mean white-matter signal and a BIDS sidecar (seconds,
MagneticFieldStrength 3 T):

* multi-echo spin echo (TR 3000 ms, TE 15 and 90 ms): ``e1``, ``e2`` -> T2 and apparent PD;
* variable flip angle spoiled GRE (TR 20, TE 4 ms, FA 4° and 25°): ``fa4``, ``fa25`` -> T1 and PD (DESPOT1);
* mixed: PD-weighted SE (TE 15, TR 6000), T2-weighted SE (TE 100, TR 6000), inversion recovery
  (TE 15, TI 2500, TR 6000; every brain tissue recovers on the positive side, so the magnitude
  signal has one T1 branch): ``pd``, ``t2``, ``ir`` -> PD, T1, T2.

Because the images are the forward model of the maps, a fit recovers the maps up to the noise in every
brain voxel (in mixed-tissue voxels the maps are the fraction-weighted means, which is what was simulated).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.volume import Volume

#: PD map = PD_SCALE x proton density (free water = 1), so images are in the phantom's signal range.
PD_SCALE = 1000.0
#: Rician σ of the qMRI image sets as a fraction of each image's mean white-matter signal.
NOISE_FRACTION = 0.01
MAPS_DIR = "maps"
QMRI_DIR = "qmri"
MAP_UNITS = {"PD": "a.u.", "T1": "ms", "T2": "ms", "T2star": "ms"}

#: image name -> (sequence, parameters in ms / degrees / tesla), in the order of the README examples.
QMRI_SETS: dict[str, tuple[str, dict[str, float]]] = {
    "e1": ("se", {"TE_ms": 15.0, "TR_ms": 3000.0}),
    "e2": ("se", {"TE_ms": 90.0, "TR_ms": 3000.0}),
    "fa4": ("gre", {"TE_ms": 4.0, "TR_ms": 20.0, "FA_deg": 4.0}),
    "fa25": ("gre", {"TE_ms": 4.0, "TR_ms": 20.0, "FA_deg": 25.0}),
    "pd": ("se", {"TE_ms": 15.0, "TR_ms": 6000.0}),
    "t2": ("se", {"TE_ms": 100.0, "TR_ms": 6000.0}),
    "ir": ("ir", {"TE_ms": 15.0, "TI_ms": 2500.0, "TR_ms": 6000.0}),
}


def phantom_maps(ph, relaxation=None) -> dict[str, Volume]:
    """Ground-truth maps (``PD``, ``T1``, ``T2``, ``T2star``; times in ms) of a phantom, float32."""
    from ..physics.relaxation import relaxation_table

    table = relaxation if relaxation is not None else relaxation_table(float(ph.ground_truth["field_T"]))
    fr = {t: np.asarray(v.data, dtype=np.float64) for t, v in ph.fractions.items()}
    total = sum(fr.values())
    inside = (np.asarray(ph.brain_mask.data) > 0) & (total > 0)
    safe = np.where(inside, total, 1.0)
    out = {"PD": np.where(inside, PD_SCALE * sum(fr[t] * table[t].pd for t in fr), 0.0)}
    for name, attr in (("T1", "t1_ms"), ("T2", "t2_ms"), ("T2star", "t2star_ms")):
        out[name] = np.where(inside, sum(fr[t] * getattr(table[t], attr) for t in fr) / safe, 0.0)
    ref = ph.brain_mask
    return {k: ref.with_data(v.astype(np.float32)) for k, v in out.items()}


def map_sidecar(name: str, field_T: float) -> dict[str, Any]:
    """JSON written beside each ground-truth map."""
    return {"Quantity": name, "Units": MAP_UNITS[name], "MagneticFieldStrength": field_T,
            "Description": "SYNTHETIC ground truth of the NeuroShift digital phantom: fraction-weighted mean of "
                           "the tissue values (3 T relaxation table); 0 outside the brain",
            "Manufacturer": "NeuroShift digital phantom (synthetic)"}


def qmri_sets(maps: dict[str, Volume], rng: np.random.Generator, *, field_T: float,
              wm_mask: np.ndarray) -> dict[str, tuple[Volume, dict]]:
    """Image name -> (noisy image, BIDS sidecar) for every entry of :data:`QMRI_SETS`."""
    from ..io.params import AcquisitionParams
    from ..physics.noise import add_rician_noise
    from ..qmri.synth import synthesize

    out = {}
    for name, (seq, p) in QMRI_SETS.items():
        params = AcquisitionParams.from_mapping({**p, "field_T": field_T})
        clean = synthesize(maps, seq, params, dtype=np.float64)
        data = np.asarray(clean.data, dtype=np.float64)
        sigma = NOISE_FRACTION * float(np.mean(data[wm_mask]))
        noisy = np.asarray(add_rician_noise(data, sigma, rng=rng), dtype=np.float32)
        sidecar = {"Modality": "MR", **params.to_sidecar(), "NeuroShiftSequence": seq,
                   "SeriesDescription": f"NeuroShift phantom qMRI {name} (SYNTHETIC)",
                   "Manufacturer": "NeuroShift digital phantom (synthetic)", "NeuroShiftRicianSigma": sigma}
        out[name] = (maps["PD"].with_data(noisy), sidecar)
    return out
