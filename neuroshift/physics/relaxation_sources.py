"""Where every built-in relaxation value comes from, and where its number was checked.

:data:`PROVENANCE` gives, per field strength, tissue and parameter, a :class:`Provenance`:
the publication (:data:`SOURCES` key), the table/figure or section, the field strength and
method of the measurement, a ``status`` and, when the number was found in a public text,
``checked_at`` (URL or ``owner/repo:path``) with ``verified = True``.

Status vocabulary:

``verified``        the number (± its SD) was found, attributed to that publication, in the text named
                    by ``checked_at`` (the publication itself or a public text that reproduces its table)
``unverified``      from that publication as cited, but no public text reproducing the number was found
                    here: check it before relying on it
``representative``  no single measurement: a value inside the published range (``note`` gives the range)
``ASSUMPTION``      no measurement behind it (a definition, a rule such as T2* = T2/2, or a reuse at
                    another field strength)

Checked in this session (issue 15) with the project's public-text search; numbers found are
quoted in ``note``. Times in ms.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SOURCES", "Provenance", "PROVENANCE", "provenance", "STATUSES"]

STATUSES = ("verified", "unverified", "representative", "ASSUMPTION")

#: Short citation keys used in the ``source`` strings and in :data:`PROVENANCE`.
SOURCES = {
    "Wansapura1999": "Wansapura JP, Holland SK, Dunn RS, Ball WS. NMR relaxation times in the human brain at "
                     "3.0 tesla. J Magn Reson Imaging 1999;9:531-538, "
                     "doi:10.1002/(SICI)1522-2586(199904)9:4<531::AID-JMRI4>3.0.CO;2-L (in vivo, 3 T)",
    "Stanisz2005": "Stanisz GJ et al. T1, T2 relaxation and magnetization transfer in tissue at 3T. "
                   "Magn Reson Med 2005;54:507-512, doi:10.1002/mrm.20605 (1.5 T and 3 T; in vitro bovine white/grey "
                   "matter at 37 °C, so not in-vivo human values: compare field trends within one source)",
    "Lu2005": "Lu H, Nagae-Poetscher LM, Golay X, Lin D, Pomper M, van Zijl PCM. Routine clinical brain MRI sequences "
              "for use at 3.0 Tesla. J Magn Reson Imaging 2005;22:13-22, doi:10.1002/jmri.20356 "
              "(1.5 T and 3 T in vivo)",
    "Peters2007": "Peters AM et al. T2* measurements in human brain at 1.5, 3 and 7 T. "
                  "Magn Reson Imaging 2007;25:748-753",
    "Bojorquez2017": "Bojorquez JZ et al. What are normal relaxation times of tissues at 3 T? "
                     "Magn Reson Imaging 2017;35:69-80 (review; ranges)",
    "Rooney2007": "Rooney WD et al. Magnetic field and tissue dependencies of human brain longitudinal 1H2O relaxation "
                  "in vivo. Magn Reson Med 2007;57:308-318, doi:10.1002/mrm.21122",
    "Wright2008": "Wright PJ et al. Water proton T1 measurements in brain tissue at 7, 3, and 1.5 T using "
                  "IR-EPI, IR-TSE, and MPRAGE. MAGMA 2008;21:121-130, doi:10.1007/s10334-008-0104-8",
    "BrainWeb": "Kwan RK-S, Evans AC, Pike GB. MRISIM tissue MR parameters (BrainWeb), "
                "brainweb.bic.mni.mcgill.ca/brainweb/tissue_mr_parameters.txt",
    "Paper000": "Posselt et al. (paper 000), Table 4: measured values, 10 volunteers, 3 T Siemens Verio",
    "Neeb2006": "Neeb H, Zilles K, Shah NJ. Fully-automated detection of cerebral water content changes. "
                "NeuroImage 2006;29:910-922 (brain water content)",
    "Gabr2017": "Gabr RE et al. Patient-specific 3D FLAIR for enhanced visualization of brain white matter "
                "lesions in multiple sclerosis. J Magn Reson Imaging 2017;46(2):557-564, doi:10.1002/jmri.25557 "
                "(DOI as cited by paper 000, ref. 32)",
    "Parry2002": "Parry A et al. White matter and lesion T1 relaxation times increase in parallel and correlate "
                 "with disability in multiple sclerosis. J Neurol 2002;249(9):1279-1286, doi:10.1007/s00415-002-0837-7 "
                 "(DOI as cited by paper 000, ref. 33)",
}

# Public texts the numbers were checked in (see ``checked_at``).
_GANNET = ("markmikkelsen/Gannet:GannetQuantify.m (header comment quoting Wansapura 1999 'WM 832 +/- 10, "
           "79.2 +/- 0.6; GM 1331 +/- 13, 110 +/- 2', Lu 2005 'CSF T1 = 3817 +/- 424' and Stanisz 2005 3 T "
           "'T1GM 1820 +/- 114, T2GM 99 +/- 7, T1WM 1084 +/- 45, T2WM 69 +/- 3')")
_ASSLAENDER = ("JakobAsslaender/T1variability:T1_mapping_methods.jl (literature WM T1 at 3 T: Stanisz 2005 "
               "1.084 +/- 0.045 s; Lu 2005 699 +/- 38 ms WM, 748 +/- 64 ms splenium)")
_PAPER000 = "/work/shared/seeds/000_aec0c323b2d4f132.txt, Table 4 and Sec. 3.1 (paper 000's text)"
_BRAINWEB = ("felixhorger/MRIConst:src/MRIConst.jl (brainweb_parameters: CSF PD 1.0, T1 2569, T2 329, T2* 58 ms; "
             "GM 0.86/833/83/69; WM 0.77/500/70/61) and paper 000 Sec. 3.1 ('329 ms')")
_STANISZ_ABSTRACT = ("http://archive.ismrm.org/2006/2494.html (Stanisz et al., ISMRM 2006 #2494: in vitro at 3 T and "
                     "37 °C, bovine white and grey matter, compared with 1.5 T)")
_IRCALC = ("IR_SetRelaxTimes.m of a public (D)IR TI calculator (find_string 'function T1_CSF = IR_SetRelaxTimes'): "
           "'1.5 T (Visser)' case quotes Rooney 2007 WM 656, GM 1188, CSF 4329 ms; 3 T 'Alsop' MS lesion T1 "
           "1350 ms (Madhuranthakam et al. MRM 2012;67:81); 'Lalande' = Bojorquez 2017 CSF T1 4300 ms (trimmed mean)")
_WATER2019 = ("https://frontiersin.org/articles/10.3389/fneur.2019.01333/full (Jülich INM-4, Neeb's group: 3 T water "
              "content WM 69.1 % (SD 1.7), GM 83.7 % (SD 1.2), CSF-calibrated)")


@dataclass(frozen=True)
class Provenance:
    """Where one built-in value comes from.

    ``ref``: key of :data:`SOURCES` (``None`` for an assumption); ``location``: table/figure/section of that
    publication (or why none); ``field_T``: field strength of the measurement (may differ from the table's
    field, e.g. a 3 T value reused at 1.5 T); ``method``: how it was measured; ``status``: one of
    :data:`STATUSES`; ``checked_at``: where the number was found (empty when nowhere); ``note``: the numbers
    found, discrepancies, the published range.
    """

    ref: str | None
    location: str
    field_T: float | None
    method: str
    status: str
    note: str = ""
    checked_at: str = ""

    @property
    def verified(self) -> bool:
        """True when the number was found in a public text (``checked_at``)."""
        return self.status == "verified" and bool(self.checked_at)


def _p(**kw) -> Provenance:
    return Provenance(**kw)


_NOT_FOUND = "table not checked: no public text reproducing this number was found"
_ASSUME = dict(ref=None, field_T=None, status="ASSUMPTION")
_WANS = dict(ref="Wansapura1999", location="values quoted with their SD by Gannet (abstract/table values)",
             field_T=3.0, method="in vivo, healthy adult volunteers, ROI means (frontal white matter, cortical grey "
                                  "matter)")
_STAN = dict(ref="Stanisz2005", location=f"Table 1 (1.5 T column); {_NOT_FOUND}", field_T=1.5,
             method="in vitro, excised bovine white/grey matter at 37 °C (method checked in the authors' ISMRM 2006 "
                    "abstract 2494); in vitro T1 is not in-vivo human T1", status="unverified",
             checked_at="")
_PET = dict(ref="Peters2007", location=_NOT_FOUND, method="in vivo, multi-echo gradient echo, healthy volunteers",
            status="unverified")
_NEEB = dict(ref="Neeb2006", location=_NOT_FOUND, field_T=1.5,
             method="in vivo quantitative water-content mapping; PD taken as water content relative to CSF",
             status="unverified")
_CSF_PD = _p(**_ASSUME, location="definition", method="free water is the PD reference (= 1 by definition)")
_CSF_T2S = _p(**_ASSUME, location="rule T2* = T2/2",
              method="no reliable in-vivo CSF T2* value; T2/2 (BrainWeb uses 58 ms at 1.5 T)")
_GESSE = ("GESSE study, MRM 2010, PubMed 20593370; checked at https://pubmed.ncbi.nlm.nih.gov/20593370 via a proxy "
          "copy of the abstract")
_LESION_NOTE = "MS lesion values vary widely with lesion age and type; verify for your cohort"

#: field -> tissue -> parameter ("pd", "t1_ms", "t2_ms", "t2star_ms") -> :class:`Provenance`.
PROVENANCE: dict[float, dict[str, dict[str, Provenance]]] = {
    3.0: {
        "CSF": {
            "pd": _CSF_PD,
            "t1_ms": _p(ref="Wansapura1999", location="CSF ROI (4163 ms, SD quoted as 1155 ms)", field_T=3.0,
                        status="unverified", checked_at="",
                        method="in vivo inversion recovery, healthy adult volunteers, CSF ROI",
                        note="earlier attributed to Lu 2005, which reports 3817 +/- 424 ms (quoted in Gannet, "
                             "markmikkelsen/Gannet:GannetQuantify.m); 4163 +/- 1155 ms is attributed to Wansapura "
                             "1999 only by a public knowledge-base page (find_string '1331 ± 13') whose CSF T2 row "
                             "(2569 ms, BrainWeb's CSF T1) is wrong, so not counted as verified; the published 3 T "
                             "range is 3817 (Lu 2005) - 4300 (Bojorquez 2017 trimmed mean) - 4470 ms (Rooney 2007, "
                             "wtclarke/fsl_mrs:docs/user_docs/constants.rst)"),
            "t2_ms": _p(ref="Paper000", location="Table 4, row 'Measured', 6th column (379 +/- 157 ms); column "
                        "order WM T1, WM T2, GM T1, GM T2, CSF T1, CSF T2 inferred", field_T=3.0,
                        method="in vivo dual-echo T2 estimate, 10 volunteers, Siemens Verio", status="verified",
                        checked_at=_PAPER000,
                        note="paper 000 notes the literature lacks a 3 T CSF T2; pure CSF T2 is longer (~2 s, "
                             "fsl_mrs constants 2030 ms), partial volume lowers this ROI value"),
            "t2star_ms": _CSF_T2S},
        "GM": {
            "pd": _p(**{**_NEEB, "note": "cross-check at 3 T, same group: GM water content 83.7 % (0.80 is 4 % "
                                          "lower); " + _WATER2019}),
            "t1_ms": _p(**_WANS, status="verified", checked_at=_GANNET, note="1331 +/- 13 ms"),
            "t2_ms": _p(**_WANS, status="verified", checked_at=_GANNET, note="110 +/- 2 ms"),
            "t2star_ms": _p(**_PET, field_T=3.0, note="cortical grey matter")},
        "WM": {
            "pd": _p(**{**_NEEB, "note": "cross-check at 3 T, same group: WM water content 69.1 % (0.70 within "
                                          "1.3 %); " + _WATER2019}),
            "t1_ms": _p(**_WANS, status="verified", checked_at=_GANNET,
                        note="832 +/- 10 ms; the 3 T WM T1 literature spans 0.6-1.1 s (Asslaender, "
                             "JakobAsslaender/T1variability), e.g. Lu 2005 699 ms, Stanisz 2005 1084 ms"),
            "t2_ms": _p(**_WANS, status="unverified", checked_at="",
                        note="two public transcriptions of Wansapura 1999 disagree: 79.2 +/- 0.6 ms (Gannet, "
                             "markmikkelsen/Gannet:GannetQuantify.m) and 79.6 +/- 0.6 ms (a knowledge-base page, "
                             "find_string '1331 ± 13'); 0.5 % apart, not resolved without the paper"),
            "t2star_ms": _p(**_PET, field_T=3.0, note="frontal white matter")},
        "lesion": {
            "pd": _p(ref=None, location="no single source", field_T=3.0, status="representative",
                     method="raised water content of MS lesions relative to NAWM", note=_LESION_NOTE),
            "t1_ms": _p(ref="Gabr2017", location="no single measurement", field_T=3.0, status="representative",
                        method="between NAWM and CSF, inside the range reported for MS lesions",
                        note="equals the 3 T MS-lesion T1 a public (D)IR calculator attributes to Alsop / "
                             "Madhuranthakam 2012 (1350 ms); " + _LESION_NOTE),
            "t2_ms": _p(ref="Gabr2017", location="no single measurement", field_T=3.0, status="representative",
                        method="between NAWM and CSF, inside the range reported for MS lesions", note=_LESION_NOTE),
            "t2star_ms": _p(**_ASSUME, location="rule", method="slightly above the NAWM T2* of Peters2007")},
    },
    1.5: {
        "CSF": {
            "pd": _CSF_PD,
            "t1_ms": _p(**_ASSUME, location="the 3 T value reused",
                        method="free-water T1 is nearly field independent; the 3 T table value reused",
                        note="cross-check: Rooney 2007 at 1.5 T 4329 ms (quoted in " + _IRCALC + ")"),
            "t2_ms": _p(ref="BrainWeb", location="tissue_mr_parameters.txt (MRISIM), CSF row", field_T=1.5,
                        method="simulator parameter table (no measurement protocol given)", status="verified",
                        checked_at=_BRAINWEB,
                        note="paper 000: the only 1.5 T CSF T2 it found; BrainWeb's WM/GM values are lower than "
                             "most 1.5 T literature"),
            "t2star_ms": _CSF_T2S},
        "GM": {
            "pd": _p(**_NEEB, note="cross-check at 3 T, same group: GM water content 83.7 %"),
            "t1_ms": _p(**_STAN, note="Stanisz 2005's 3 T GM values are verified (1820 +/- 114 ms, T2 99 +/- 7 ms, "
                                      "Gannet); in vivo 1.5 T GM T1 is 1188 ms (Rooney 2007) or 1197 +/- 134 ms "
                                      "(Wright 2008, MPRAGE)"),
            "t2_ms": _p(**_STAN, note=f"in vivo 1.5 T: frontal GM 87 ms ({_GESSE})"),
            "t2star_ms": _p(**_PET, field_T=1.5, note="cortical grey matter")},
        "WM": {
            "pd": _p(**_NEEB, note="cross-check at 3 T, same group: WM water content 69.1 %"),
            "t1_ms": _p(**_STAN, note="Stanisz 2005's 3 T WM T1 1084 +/- 45 ms is verified (Gannet, "
                                      "JakobAsslaender/T1variability); in vivo 1.5 T WM T1 is 656 ms (Rooney 2007) or "
                                      "646 +/- 32 ms (Wright 2008): this in-vitro value is 35 % longer"),
            "t2_ms": _p(**_STAN, note=f"in vivo 1.5 T: WM 80 ms ({_GESSE})"),
            "t2star_ms": _p(**_PET, field_T=1.5, note="frontal white matter")},
        "lesion": {
            "pd": _p(ref=None, location="no single source", field_T=1.5, status="representative",
                     method="raised water content of MS lesions relative to NAWM", note=_LESION_NOTE),
            "t1_ms": _p(ref="Parry2002", location="no single measurement", field_T=1.5, status="representative",
                        method="between NAWM and CSF, inside the range reported for MS lesions", note=_LESION_NOTE),
            "t2_ms": _p(ref="Parry2002", location="no single measurement", field_T=1.5, status="representative",
                        method="between NAWM and CSF (T2 is nearly field independent)", note=_LESION_NOTE),
            "t2star_ms": _p(**_ASSUME, location="rule", method="slightly above the NAWM T2* of Peters2007")},
    },
}


def provenance(field_T: float, tissue: str, parameter: str) -> Provenance:
    """The :class:`Provenance` of one built-in value (``parameter``: pd, t1_ms, t2_ms or t2star_ms)."""
    from ..errors import ParameterRangeError

    for key in PROVENANCE:
        if abs(float(field_T) - key) <= 0.05:
            return PROVENANCE[key][tissue][parameter]
    raise ParameterRangeError(f"no built-in relaxation table at {field_T:g} T")
