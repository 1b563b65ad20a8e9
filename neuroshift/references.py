"""The literature the engine implements or takes numbers from: key -> authors, year, title, venue, DOI.

Docstrings cite by key ("paper 000" = ``REFERENCES["paper000"]``, relaxation sources by the keys of
:data:`neuroshift.physics.relaxation.SOURCES`); :func:`cite` formats one entry. DOIs were checked against
the papers' own text (``shared/seeds``) or the publisher's page; an entry without a DOI says why in
``note``. Nothing here is imported by the computations: it is documentation that tests can check.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One publication. ``doi`` without the ``https://doi.org/`` prefix; ``None`` when there is none."""

    authors: str
    year: int
    title: str
    venue: str
    doi: str | None = None
    url: str | None = None
    note: str = ""

    @property
    def doi_url(self) -> str | None:
        return None if self.doi is None else f"https://doi.org/{self.doi}"


REFERENCES: dict[str, Reference] = {
    # ---- the project's source papers (shared/seeds/README.md)
    "paper000": Reference(
        "Posselt C, Avci MY, Yigitsoy M, Schuenke P, Kolbitsch C, Schaeffter T, Remmele S", 2024,
        "Simulation of acquisition shifts in T2 weighted fluid-attenuated inversion recovery magnetic resonance "
        "images to stress test artificial intelligence segmentation networks",
        "J Med Imaging 11(2):024013", "10.1117/1.JMI.11.2.024013",
        note="tissue-wise FLAIR re-weighting, TE x TI stress test, quadratic F1 model (ShiftSimulator)"),
    "paper001": Reference(
        "Hermann I, Golla AK, Martinez-Heras E, Schmidt R, Solana E, Llufriu S, Gass A, Schad LR, Zoellner FG", 2021,
        "Lesion probability mapping in MS patients using a regression network on MR fingerprinting",
        "BMC Med Imaging 21:107", "10.1186/s12880-021-00636-x",
        note="MRF dictionary simulation and matching, regression U-Net"),
    "paper002": Reference(
        "Chalcroft L, Crinion J, Price CJ, Ashburner J", 2025,
        "Domain-agnostic stroke lesion segmentation using physics-constrained synthetic data",
        "MICCAI 2025, LNCS, pp. 163-173", "10.1007/978-3-032-04965-0_16", url="https://arxiv.org/abs/2412.03318",
        note="qATLAS / qSynth: qMRI forward models (FSE, GRE, FLAIR, MPRAGE), random sequence sampling"),
    "paper003": Reference(
        "Li H", 2023, "Efficient and cross-domain deep learning for advanced neuroimage analysis",
        "Dissertation, Technical University of Munich", None,
        note="no DOI (TUM dissertation, accepted 19 July 2023): WMH and claustrum multi-view U-Net ensembles, "
             "neonatal transfer learning, DiamondGAN, synthDIR"),
    "paper004": Reference(
        "Ammari S, Bone A, Balleyguier C, Moulton E, Chouzenoux E, Volk A, Menu Y, Bidault F, Nicolas F, Robert P, "
        "et al.", 2022, "Can deep learning replace gadolinium in neuro-oncology? A reader study",
        "Invest Radiol 57(2):99-107", "10.1097/RLI.0000000000000811",
        note="virtual contrast-enhanced T1 and its reader study (published online 2021)"),
    "Posselt2023": Reference(
        "Posselt C, et al.", 2023,
        "Novel concept for systematic testing of AI models for MRI acquisition shifts with simulated data",
        "Proc SPIE 12467:124671B", "10.1117/12.2653883", note="paper 000's Ref. 36: the TE/TI ranges"),
    # ---- relaxation times and signal models (physics/relaxation.py, physics/signal.py)
    "Wansapura1999": Reference(
        "Wansapura JP, Holland SK, Dunn RS, Ball WS", 1999, "NMR relaxation times in the human brain at 3.0 tesla",
        "J Magn Reson Imaging 9(4):531-538", "10.1002/(SICI)1522-2586(199904)9:4<531::AID-JMRI4>3.0.CO;2-L"),
    "Stanisz2005": Reference(
        "Stanisz GJ, Odrobina EE, Pun J, Escaravage M, Graham SJ, Bronskill MJ, Henkelman RM", 2005,
        "T1, T2 relaxation and magnetization transfer in tissue at 3T", "Magn Reson Med 54(3):507-512",
        "10.1002/mrm.20605"),
    "Lu2005": Reference(
        "Lu H, Nagae-Poetscher LM, Golay X, Lin D, Pomper M, van Zijl PCM", 2005,
        "Routine clinical brain MRI sequences for use at 3.0 Tesla", "J Magn Reson Imaging 22(1):13-22",
        "10.1002/jmri.20356"),
    "Peters2007": Reference(
        "Peters AM, Brookes MJ, Hoogenraad FG, Gowland PA, Francis ST, Morris PG, Bowtell R", 2007,
        "T2* measurements in human brain at 1.5, 3 and 7 T", "Magn Reson Imaging 25(6):748-753",
        "10.1016/j.mri.2007.02.014"),
    "Bojorquez2017": Reference(
        "Bojorquez JZ, Bricq S, Acquitter C, Brunotte F, Walker PM, Lalande A", 2017,
        "What are normal relaxation times of tissues at 3 T?", "Magn Reson Imaging 35:69-80",
        "10.1016/j.mri.2016.08.021"),
    "Rooney2007": Reference(
        "Rooney WD, et al.", 2007,
        "Magnetic field and tissue dependencies of human brain longitudinal 1H2O relaxation in vivo",
        "Magn Reson Med 57(2):308-318", "10.1002/mrm.21122",
        note="DOI as listed in FSL-MRS's constants documentation (wtclarke/fsl_mrs)"),
    "Wright2008": Reference(
        "Wright PJ, et al.", 2008,
        "Water proton T1 measurements in brain tissue at 7, 3, and 1.5 T using IR-EPI, IR-TSE, and MPRAGE: "
        "results and optimization", "MAGMA 21(1-2):121-130", "10.1007/s10334-008-0104-8",
        note="values checked in the abstract (link.springer.com/article/10.1007/s10334-008-0104-8)"),
    "BrainWeb": Reference(
        "Kwan RK-S, Evans AC, Pike GB", 1999,
        "MRI simulation-based evaluation of image-processing and classification methods",
        "IEEE Trans Med Imaging 18(11):1085-1097", "10.1109/42.816072",
        url="https://brainweb.bic.mni.mcgill.ca/brainweb/tissue_mr_parameters.txt",
        note="the tissue parameter table is on the BrainWeb site"),
    "Neeb2006": Reference(
        "Neeb H, Zilles K, Shah NJ", 2006, "Fully-automated detection of cerebral water content changes: study of "
        "age- and gender-related H2O patterns with quantitative MRI", "NeuroImage 29(3):910-922",
        "10.1016/j.neuroimage.2005.08.062"),
    "Gabr2017": Reference(
        "Gabr RE, et al.", 2017, "Patient-specific 3D FLAIR for enhanced visualization of brain white matter "
        "lesions in multiple sclerosis", "J Magn Reson Imaging 46:557-564", None,
        note="DOI not verified offline; look it up before citing"),
    "Parry2002": Reference(
        "Parry A, Clare S, Jenkinson M, Smith S, Palace J, Matthews PM", 2002,
        "White matter and lesion T1 relaxation times increase in parallel and correlate with disability in "
        "multiple sclerosis", "J Neurol 249(9):1279-1286", None, note="DOI not verified offline; look it up before citing"),
    "Deichmann2000": Reference(
        "Deichmann R, Good CD, Josephs O, Ashburner J, Turner R", 2000,
        "Optimization of 3-D MP-RAGE sequences for structural brain imaging", "NeuroImage 12(1):112-127",
        "10.1006/nimg.2000.0601", note="the MPRAGE steady state in physics/signal.py"),
    "Shrivastava2017": Reference(
        "Shrivastava A, Pfister T, Tuzel O, Susskind J, Wang W, Webb R", 2017,
        "Learning from simulated and unsupervised images through adversarial training", "CVPR 2017, pp. 2107-2116",
        None, url="https://arxiv.org/abs/1612.07828",
        note="the history of refined images (training/pool.py); conference paper, cited by its arXiv page"),
    "Gudbjartsson1995": Reference(
        "Gudbjartsson H, Patz S", 1995, "The Rician distribution of noisy MRI data", "Magn Reson Med 34(6):910-914",
        "10.1002/mrm.1910340618", note="Rician noise (simulate/shifts.py)"),
}


def cite(key: str) -> str:
    """``"Authors (year). Title. Venue. https://doi.org/..."`` of one reference.

    Raises:
        KeyError: an unknown key (the message lists the known ones).
    """
    try:
        r = REFERENCES[key]
    except KeyError:
        raise KeyError(f"unknown reference {key!r}; known: {', '.join(sorted(REFERENCES))}") from None
    link = r.doi_url or r.url or ""
    return f"{r.authors} ({r.year}). {r.title}. {r.venue}." + (f" {link}" if link else "")


__all__ = ["REFERENCES", "Reference", "cite"]
