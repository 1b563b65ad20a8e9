"""Training and evaluation settings of the qSynth demo models (``dev/train_demo_qsynth.py``): contrasts (times in ms,
angles in degrees, 3 T), texture presets and the fixed evaluation protocols."""

from __future__ import annotations

#: Fixed evaluation protocols (ms, degrees; 3 T).
CONTRASTS = {
    "FLAIR": {"sequence": "flair", "TE_ms": 112.0, "TI_ms": 2500.0, "TR_ms": 9000.0},
    "T2w": {"sequence": "se", "TE_ms": 100.0, "TR_ms": 6000.0},
    "T1w": {"sequence": "mprage", "TE_ms": 2.98, "TI_ms": 900.0, "TR_ms": 2300.0, "FA_deg": 9.0, "TX_ms": 7.1,
            "N": 176.0},
}
#: Training contrasts (``--protocols``): parameter ranges in ms / degrees (None: paper 002's random sampling).
#: Clinical 2D FLAIR: TI 2200-2700 ms nulls CSF (T1 3.75-4.6 s) at TR 9000 ms, as in the real FLAIRs measured by
#: dev/qsynth_real_stats.py (ventricles at 0.13-0.2 of WM); TI 2000 ms left CSF at 0.5-0.8 of WM.
FLAIR_RANGE = {"sequence": "flair", "TE_ms": [70.0, 140.0], "TI_ms": [2200.0, 2700.0], "TR_ms": 9000.0}
#: Clinical 3D FLAIR (variable-flip-angle echo train): TR 5000 ms, TI 1750-1850 ms (CSF null of T1 4.16 s at
#: 1790 ms), contrast-equivalent TE 90-130 ms [assumption: the nominal TE of 390-440 ms of such trains weighs T2
#: like a much shorter spin echo]. Lesjak 2018's scans (the real validation set) are 3D FLAIR TR 5000, TI 1800 ms
#: (Siemens 3 T); ADNI3's 3D FLAIR is TR 4800, TI 1650 ms. Real FLAIRs measure GM/WM 0.97-1.01 and lesion/WM
#: 1.27-1.32 (dev/qsynth_real_stats.py); the 2D range alone gave synthetic GM/WM 1.05-1.71, this one gives
#: 1.03-1.20 (lesion/WM 1.14-1.40) at the table's means.
FLAIR3D_RANGE = {"sequence": "flair", "TE_ms": [90.0, 130.0], "TI_ms": [1750.0, 1850.0], "TR_ms": 5000.0}
T2W_RANGE = {"sequence": "se", "TE_ms": [80.0, 120.0], "TR_ms": [4000.0, 8000.0]}
MPRAGE_RANGE = {"sequence": "mprage", "TE_ms": [2.0, 4.0], "TI_ms": [600.0, 900.0], "TR_ms": [1900.0, 2500.0],
                "FA_deg": [5.0, 12.0], "TX_ms": [4.0, 8.0], "N": 100.0}
#: Clinical 3 T MPRAGE (T1w; e.g. ADNI's TR 2300, TI 900, FA 9 deg, 176 partitions): TI 800-1100 ms keeps CSF
#: darkest and GM below WM as on real T1w scans; MPRAGE_RANGE (paper 002's TI 600-900, N 100) also gives CSF
#: brighter than GM (TI below the CSF null), so the ``t1w`` set uses both.
T1W_RANGE = {"sequence": "mprage", "TE_ms": [2.0, 4.0], "TI_ms": [800.0, 1100.0], "TR_ms": [2000.0, 2500.0],
             "FA_deg": [7.0, 10.0], "TX_ms": [6.0, 8.0], "N": 176.0}
#: one entry is picked uniformly per subject: repeating an entry raises its share
PROTOCOL_SETS = {
    "mix": [FLAIR_RANGE, FLAIR3D_RANGE, T2W_RANGE, T2W_RANGE, MPRAGE_RANGE, MPRAGE_RANGE],
    "flair": [FLAIR_RANGE, FLAIR3D_RANGE],
    "flair2d": [FLAIR_RANGE],
    # half FLAIR (2D and 3D), half T2w
    "flair+t2w": [FLAIR_RANGE, FLAIR3D_RANGE, T2W_RANGE, T2W_RANGE],
    "flair2+t2w": [FLAIR_RANGE, FLAIR3D_RANGE, T2W_RANGE],  # two thirds FLAIR (2D and 3D), one third T2w
    "t2w": [T2W_RANGE],  # curriculum stage: a FLAIR model taught T2w alone before mixing
    "t1w": [T1W_RANGE, MPRAGE_RANGE],  # curriculum stage: T1w (MPRAGE) alone before mixing
    # half FLAIR (2D and 3D), a quarter T2w, a quarter T1w (clinical MPRAGE)
    "flair+t2w+t1w": [FLAIR_RANGE, FLAIR3D_RANGE, T2W_RANGE, T1W_RANGE],
    # two fifths FLAIR, one fifth T2w, two fifths T1w: for a model that at a quarter T1w learned to skip T1w
    "flair+t2w+2t1w": [FLAIR_RANGE, FLAIR3D_RANGE, T2W_RANGE, T1W_RANGE, T1W_RANGE],
    "paper": None,
}
#: ``--texture real``: within-tissue texture and bias matched to real N4-corrected 3D FLAIRs (the Lesjak 2018
#: validation scans; dev/qsynth_real_stats.py, closing notes of issue 10). Real: WM block CV (24 mm) 0.035-0.039,
#: darkest lesion decile 1.12-1.15 x WM. The generator's defaults give 0.054 (texture alone, no bias) and
#: 0.95 x WM (10 % of the lesion voxels at or below WM: labels a network cannot see); texture weight 0.3 and
#: halved within-subject spreads give 0.018-0.027 and 1.07-1.08; residual bias kept small (N4-corrected inputs).
REAL_TEXTURE = {"texture_weight": 0.3, "augment_ranges": {"bias_strength": [0.0, 0.1]}, "within_spread": 0.5}
#: ``--texture mixed``: per subject anywhere between REAL_TEXTURE and the generator's defaults (texture gain
#: 0.5-1 on the spreads, smooth share 0.3-0.7, bias 0-0.2), so that neither kind of image is new to the model.
MIXED_TEXTURE = {"augment_ranges": {"bias_strength": [0.0, 0.2], "texture_gain": [0.5, 1.0],
                                    "texture_weight": [0.3, 0.7]}}
EVAL_AUGMENT = {"noise_fraction": (0.02, 0.02), "bias_strength": (0.1, 0.1), "deform_mm": (0.0, 0.0)}


def texture_config(protocol, texture: str) -> dict:
    """qSynth settings for ``protocol`` (a range or list of them) with ``--texture`` ``default``, ``real``
    (:data:`REAL_TEXTURE`) or ``mixed`` (:data:`MIXED_TEXTURE`)."""
    from neuroshift.qsynth.priors import load_priors

    if texture == "default":
        return {"protocol": protocol}
    if texture == "mixed":
        return {"protocol": protocol, "augment_ranges": {k: list(v) for k, v in MIXED_TEXTURE["augment_ranges"].items()}}
    f = REAL_TEXTURE["within_spread"]
    spreads = {t: {p: {"mu_sigma": pr.mu_sigma * f, "sigma_sigma": pr.sigma_sigma * f} for p, pr in ps.items()}
               for t, ps in load_priors(None).items() if t in ("CSF", "GM", "WM", "lesion")}
    return {"protocol": protocol, "texture_weight": REAL_TEXTURE["texture_weight"],
            "augment_ranges": dict(REAL_TEXTURE["augment_ranges"]), "priors": spreads}
