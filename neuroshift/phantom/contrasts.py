"""Every contrast LesionSynth needs, rendered from one phantom's tissue maps and acquisition physics
(SYNTHETIC data for demo models and tests; docs/synthesis.md section 5).

Images (``S = c * sum_t f_t S_t(theta)`` + Rician noise, ``c`` scales the brightest tissue to
:data:`~neuroshift.phantom.make.PEAK_SIGNAL` (T1c and T1c_low keep the T1w's ``c``: same receiver gain, so
post - pre is the enhancement), noise sigma = 2 % of the WM signal as :mod:`.make` (GM for DIR, where WM is nulled)):

* ``T1w`` — MPRAGE with :data:`~neuroshift.phantom.make.T1W_PARAMS`; ``FLAIR`` — :data:`~.make.FLAIR_PARAMS`;
* ``T2w`` — spin echo TE 100 ms, TR 6000 ms;
* ``DIR`` — double inversion recovery, TR 7500 ms, TE 25 ms, TI1/TI2 solved so that CSF and WM are nulled
  for the relaxation table in use (:func:`dir_null_times`);
* ``T1c`` — the T1w MPRAGE after gadolinium: in enhancing lesions ``1/T1_post = 1/T1_pre + r1 * C``
  (blood-brain barrier intact elsewhere: no change); T2/T2* shortening by Gd is neglected (r2 C ~ 1e-3 /ms
  against the 3 ms TE of the readout);
* ``T1c_low`` — the same with ``LOW_DOSE_FRACTION`` x C (paper 004 used a reduced dose);
* ``ADC`` — per-tissue apparent diffusion coefficients mixed by partial volume, in 1e-6 mm^2/s
  (no noise: a derived map).

Constants and sources (:data:`SOURCES`): r1 of gadobutrol in plasma at 37 C, 5.0 L/mmol/s at 3 T and 5.2 at
1.5 T (Rohrer 2005); the tissue Gd concentration of an enhancing lesion, 0.2 mmol/L, is a representative
assumption for a standard 0.1 mmol/kg dose (not a measurement); ADC of WM 0.70 and GM 0.80 x 1e-3 mm^2/s
(Helenius 2002, adults), CSF 3.0 x 1e-3 (free water at 37 C, Mills 1973), chronic MS lesion 1.10 x 1e-3
(representative, between NAWM and CSF as in the lesion relaxation values). Tables/figures were not checked
against the papers here (no text in this environment): status "literature value, location unchecked".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io.params import AcquisitionParams
from ..io.volume import Volume
from .make import FLAIR_PARAMS, NOISE_FRACTION, PEAK_SIGNAL, T1W_PARAMS, TISSUE_ORDER, Phantom

#: Contrasts this module renders (image name -> sequence of :mod:`neuroshift.physics.signal`).
CONTRAST_SEQUENCES = {"T1w": "mprage", "T2w": "se", "FLAIR": "flair", "DIR": "dir", "T1c": "mprage",
                      "T1c_low": "mprage"}
T2W_PARAMS = {"TE_ms": 100.0, "TR_ms": 6000.0}
DIR_TR_MS, DIR_TE_MS = 7500.0, 25.0
#: r1 relaxivity (L/mmol/s) of gadobutrol in plasma, 37 C, by field (tesla).
GD_R1_PER_MM_PER_S = {1.5: 5.2, 3.0: 5.0}
#: Tissue Gd concentration (mmol/L) in an enhancing lesion at standard dose (representative assumption).
GD_CONCENTRATION_MM = 0.2
#: Low-dose fraction of the standard dose.
LOW_DOSE_FRACTION = 0.25
#: ADC per tissue (1e-6 mm^2/s).
ADC_UM2_PER_S = {"CSF": 3000.0, "GM": 800.0, "WM": 700.0, "lesion": 1100.0}

SOURCES = {
    "Rohrer2005": "Rohrer M, Bauer H, Mintorovitch J, Requardt M, Weinmann HJ. Comparison of magnetic properties "
                  "of MRI contrast media solutions at different magnetic field strengths. Invest Radiol "
                  "2005;40(11):715-724, doi:10.1097/01.rli.0000184756.66360.d3 (gadobutrol r1 in plasma)",
    "Helenius2002": "Helenius J et al. Diffusion-weighted MR imaging in normal human brains in various age "
                    "groups. AJNR Am J Neuroradiol 2002;23(2):194-199 (WM and GM ADC)",
    "Mills1973": "Mills R. Self-diffusion in normal and heavy water in the range 1-45 degrees. J Phys Chem "
                 "1973;77(5):685-688 (free water diffusion, ~3.0e-3 mm^2/s at 37 C)",
    "assumption": "[representative] MS lesion ADC 1.1e-3 mm^2/s (between NAWM and CSF) and 0.2 mmol/L tissue "
                  "Gd in enhancing lesions: assumptions, not measurements; verify for your cohort",
}


@dataclass
class ContrastSet:
    """One SYNTHETIC subject in every contrast (all on the phantom's grid)."""

    images: dict[str, Volume]
    clean_images: dict[str, Volume]
    params: dict[str, AcquisitionParams]
    sequences: dict[str, str]
    adc: Volume
    enhancing_mask: Volume
    tissue_signal: dict[str, dict[str, float]]     # image -> tissue -> c * S_t
    scale_c: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)


def dir_null_times(t1_csf_ms: float, t1_wm_ms: float, tr_ms: float = DIR_TR_MS,
                   te_ms: float = DIR_TE_MS) -> tuple[float, float]:
    """(TI1, TI2) in ms that null both CSF and WM in :func:`~neuroshift.physics.signal.double_inversion_recovery`
    (signed longitudinal term zero for both T1s)."""
    from scipy.optimize import fsolve

    def mz(ti1, ti2, t1):
        return (1 - 2 * np.exp(-ti2 / t1) + 2 * np.exp(-ti1 / t1) - 2 * np.exp(-(tr_ms - te_ms / 2) / t1)
                + np.exp(-tr_ms / t1))

    sol, info, ok, msg = fsolve(lambda v: [mz(v[0], v[1], t1_csf_ms), mz(v[0], v[1], t1_wm_ms)],
                                [0.4 * tr_ms, 0.06 * tr_ms], full_output=True, xtol=1e-12)
    ti1, ti2 = float(sol[0]), float(sol[1])
    if ok != 1 or not (0 < ti2 < ti1 < tr_ms - te_ms / 2):
        raise ValueError(f"no DIR null times for T1 CSF {t1_csf_ms} ms, WM {t1_wm_ms} ms at TR {tr_ms} ms: {msg}")
    return ti1, ti2


def _enhancing(ph: Phantom, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """Lesion-fraction map restricted to a seeded subset of the lesions (at least one)."""
    from scipy import ndimage as ndi

    les = ph.fractions["lesion"].data.astype(np.float64)
    lab, n = ndi.label(les > 0)
    if n == 0:
        return np.zeros_like(les)
    chosen = np.flatnonzero(rng.random(n) < fraction) + 1
    if chosen.size == 0:
        chosen = np.array([int(rng.integers(1, n + 1))])
    return np.where(np.isin(lab, chosen), les, 0.0)


def build_contrasts(ph: Phantom, *, seed: int = 0, field_T: float = 3.0, enhancing_fraction: float = 0.5,
                    relaxation=None) -> ContrastSet:
    """Render :data:`CONTRAST_SEQUENCES` and the ADC map from ``ph``'s fractions (deterministic per seed)."""
    from ..physics.noise import add_rician_noise
    from ..physics.relaxation import relaxation_table
    from ..physics.signal import sequence_signal

    table = relaxation if relaxation is not None else relaxation_table(field_T)
    r1 = GD_R1_PER_MM_PER_S[min(GD_R1_PER_MM_PER_S, key=lambda f: abs(f - field_T))]
    rng = np.random.default_rng(seed)
    ti1, ti2 = dir_null_times(table["CSF"].t1_ms, table["WM"].t1_ms)
    params = {
        "T1w": T1W_PARAMS, "T2w": T2W_PARAMS, "FLAIR": FLAIR_PARAMS,
        "DIR": {"TE_ms": DIR_TE_MS, "TI1_ms": ti1, "TI2_ms": ti2, "TR_ms": DIR_TR_MS},
        "T1c": T1W_PARAMS, "T1c_low": T1W_PARAMS,
    }
    params = {k: AcquisitionParams.from_mapping({**v, "field_T": field_T}) for k, v in params.items()}
    fr = {t: ph.fractions[t].data.astype(np.float64) for t in TISSUE_ORDER}
    enh = _enhancing(ph, rng, enhancing_fraction)
    ref = ph.fractions["WM"]

    def tissue_signal(name: str, t: str, dose: float = 0.0) -> float:
        tp = table[t]
        t1 = tp.t1_ms
        if dose:
            t1 = 1.0 / (1.0 / t1 + r1 * GD_CONCENTRATION_MM * dose / 1000.0)  # r1 in /s -> /ms
        return float(sequence_signal(CONTRAST_SEQUENCES[name], params[name], pd=tp.pd, t1_ms=t1,
                                     t2_ms=tp.t2_ms, t2star_ms=tp.t2star_ms))

    images, clean, signals, scales = {}, {}, {}, {}
    for name in CONTRAST_SEQUENCES:
        s_t = {t: tissue_signal(name, t) for t in TISSUE_ORDER}
        dose = {"T1c": 1.0, "T1c_low": LOW_DOSE_FRACTION}.get(name, 0.0)
        s_enh = tissue_signal(name, "lesion", dose) if dose else s_t["lesion"]
        # post-contrast images keep the pre-contrast T1w's scale (same receiver gain): enhancement = post - pre
        c = scales["T1w"] if dose else PEAK_SIGNAL / max(s_t.values())
        img = sum(fr[t] * s_t[t] for t in TISSUE_ORDER) + enh * (s_enh - s_t["lesion"])
        img = img * c
        sigma = NOISE_FRACTION * c * s_t["GM" if name == "DIR" else "WM"]  # DIR nulls WM: GM as reference
        clean[name] = ref.with_data(img.astype(np.float32))
        images[name] = ref.with_data(np.asarray(add_rician_noise(img, sigma, rng=rng), dtype=np.float32))
        signals[name] = {**{t: c * s_t[t] for t in TISSUE_ORDER}, "lesion_enhancing": c * s_enh}
        scales[name] = c
    adc = sum(fr[t] * ADC_UM2_PER_S[t] for t in TISSUE_ORDER)
    meta = {"description": "SYNTHETIC NeuroShift phantom contrasts (not patient data)", "seed": int(seed),
            "field_T": float(field_T), "gd_r1_per_mM_per_s": r1, "gd_concentration_mM": GD_CONCENTRATION_MM,
            "low_dose_fraction": LOW_DOSE_FRACTION, "adc_1e-6_mm2_per_s": dict(ADC_UM2_PER_S),
            "dir_ti_ms": [ti1, ti2], "sources": dict(SOURCES)}
    return ContrastSet(images, clean, params, dict(CONTRAST_SEQUENCES), ref.with_data(adc.astype(np.float32)),
                       ref.with_data((enh >= 0.5).astype(np.uint8)), signals, scales, meta)


__all__ = ["ADC_UM2_PER_S", "CONTRAST_SEQUENCES", "ContrastSet", "GD_CONCENTRATION_MM", "GD_R1_PER_MM_PER_S",
           "LOW_DOSE_FRACTION", "SOURCES", "build_contrasts", "dir_null_times"]
