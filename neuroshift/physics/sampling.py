"""Random sequence sampling of paper 002 (qATLAS/qSynth training-time contrasts).

One sequence is drawn uniformly among FLAIR, FSE, MPRAGE and spoiled GRE; its
parameters are drawn from the paper's distributions (given there in seconds;
absolute values are taken "to ensure physical plausibility") and converted to
ms for :class:`~neuroshift.io.params.AcquisitionParams`:

========  ==================================================================
FLAIR     TE ~ 10^N(log10 0.02, |log10 0.1|) s (a standard deviation of one decade),
          TR ~ 10^U(log10 0.001, log10 5) s, TI ~ 10^U(log10 0.001, log10 3) s
FSE       TE ~ 10^U(log10 0.001, log10 3) s, TR ~ 10^U(log10 0.001, log10 3) s
MPRAGE    TR ~ N(2.3, 0.23) s (printed "N(23, 2.3)"; 2.3 s is the ADNI/NiTorch
          value and qATLAS's own range 1.9-2.5 s, so we read it as a typo),
          TI ~ U(0.6, 0.9) s, TX ~ U(0.004, 0.008) s, TE ~ U(0.002, 0.004) s,
          α ~ U(5°, 12°), n = 100 **[inferred]**: the paper gives no n; 100 is
          the default of NiTorch's ``mprage`` that the paper used
GRE       TE ~ 10^U(log10 0.002, log10 0.08) s, TR ~ 10^U(log10 0.005, log10 5) s,
          α ~ U(5°, 50°)
========  ==================================================================

Draws that :class:`AcquisitionParams` refuses (TE above 5 s, which FLAIR's
one-decade TE spread produces ~4 % of the time, or TI > TR for FLAIR, which
the IR equation here does not model) are redrawn for the same sequence; so
the FLAIR distribution is the paper's truncated to TE ≤ 5 s, TI ≤ TR. Pass
``redraw=False`` to get the raw draw (as a dict in ms) instead.
"""

from __future__ import annotations

import math


from ..errors import InputError, ParameterRangeError
from ..io.params import AcquisitionParams
from .noise import as_rng

__all__ = ["SEQUENCES_002", "sample_sequence", "sample_raw"]

#: Sequence names (NeuroShift's vocabulary) in the order of paper 002.
SEQUENCES_002 = ("flair", "se", "mprage", "gre")

#: Number of readout pulses per MPRAGE shot when the caller gives none [inferred: NiTorch default].
MPRAGE_N = 100


def _logu(g, lo, hi):
    return 10.0 ** g.uniform(math.log10(lo), math.log10(hi))


def sample_raw(sequence: str, rng=None, *, mprage_n: int = MPRAGE_N) -> dict[str, float]:
    """One raw draw for ``sequence`` (ms, degrees), absolute values, no validity check."""
    g = as_rng(rng)
    seq = sequence.lower()
    if seq == "flair":
        te = 10.0 ** g.normal(math.log10(0.02), abs(math.log10(0.1)))
        tr = _logu(g, 0.001, 5.0)
        ti = _logu(g, 0.001, 3.0)
        out = {"TE_ms": te, "TR_ms": tr, "TI_ms": ti}
    elif seq in ("se", "fse"):
        out = {"TE_ms": _logu(g, 0.001, 3.0), "TR_ms": _logu(g, 0.001, 3.0)}
    elif seq == "mprage":
        tr = g.normal(2.3, 0.23)
        ti = g.uniform(0.6, 0.9)
        tx = g.uniform(0.004, 0.008)
        te = g.uniform(0.002, 0.004)
        fa = g.uniform(5.0, 12.0)
        out = {"TR_ms": tr, "TI_ms": ti, "TX_ms": tx, "TE_ms": te, "FA_deg": fa, "N": float(mprage_n)}
    elif seq == "gre":
        out = {"TE_ms": _logu(g, 0.002, 0.08), "TR_ms": _logu(g, 0.005, 5.0), "FA_deg": g.uniform(5.0, 50.0)}
    else:
        raise ParameterRangeError(f"paper 002 samples {', '.join(SEQUENCES_002)}; got '{sequence}'")
    # seconds -> ms, absolute values (paper 002)
    return {k: abs(v) * (1000.0 if k.endswith("_ms") else 1.0) for k, v in out.items()}


def sample_sequence(rng=None, *, sequences=SEQUENCES_002, mprage_n: int = MPRAGE_N, redraw: bool = True,
                    max_tries: int = 1000):
    """Draw ``(sequence, AcquisitionParams)``: a sequence uniformly from ``sequences``, then its parameters.

    ``rng`` is a seed, a ``numpy.random.Generator`` or None. With ``redraw=False``
    returns ``(sequence, dict)`` of the raw draw (ms, degrees) without validation.
    """
    g = as_rng(rng)
    seqs = tuple(sequences)
    if not seqs:
        raise ParameterRangeError("sample_sequence needs at least one sequence")
    seq = seqs[int(g.integers(len(seqs)))]
    for _ in range(max_tries):
        raw = sample_raw(seq, g, mprage_n=mprage_n)
        if not redraw:
            return seq, raw
        try:
            params = AcquisitionParams(**raw)
            params.require(seq)
        except InputError:
            continue
        return seq, params
    raise ParameterRangeError(f"no valid {seq} parameters in {max_tries} draws")
