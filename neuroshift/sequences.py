"""The one table of MR sequences: what each needs, and every sequence list derived from it.

Pure Python (no numpy), so command-line parsers can offer the choices without loading the engine.
:data:`SEQUENCE_PARAMETERS` names the :class:`~neuroshift.io.params.AcquisitionParams` fields each
sequence needs (times in ms, flip angle in degrees, ``N`` readout pulses); everything else is derived.
"""

from __future__ import annotations

#: Parameters each sequence needs (names of :class:`~neuroshift.io.params.AcquisitionParams` fields).
SEQUENCE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "se": ("TE_ms", "TR_ms"),
    "ir": ("TE_ms", "TI_ms", "TR_ms"),
    "flair": ("TE_ms", "TI_ms", "TR_ms"),
    "dir": ("TE_ms", "TI1_ms", "TI2_ms", "TR_ms"),
    "gre": ("TE_ms", "TR_ms", "FA_deg"),
    "mprage": ("TE_ms", "TI_ms", "TR_ms", "FA_deg", "TX_ms", "N"),
}
#: Other names of a sequence in the signal equations (fast spin echo has the spin-echo contrast, paper 002).
SEQUENCE_SYNONYMS: dict[str, str] = {"fse": "se"}
#: The sequences every simulation supports (tissue-wise model, stress test, validation).
SEQUENCES: tuple[str, ...] = tuple(SEQUENCE_PARAMETERS)
#: The names the signal equations accept: :data:`SEQUENCES` with each synonym after its sequence.
SIGNAL_SEQUENCES: tuple[str, ...] = tuple(n for s in SEQUENCES
                                          for n in (s, *[k for k, v in SEQUENCE_SYNONYMS.items() if v == s]))

__all__ = ["SEQUENCES", "SEQUENCE_PARAMETERS", "SEQUENCE_SYNONYMS", "SIGNAL_SEQUENCES"]
