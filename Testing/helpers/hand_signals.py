"""Independent expected values for the tests: literal relaxation values and the signal equations written out.

Tests that check the simulator, the phantom or the CLI against "the physics" take their expected
values from here, never from the engine's own helpers (``estimate._param_arrays``,
``sequence_signal``...), so a wrong parameter lookup or a changed equation in the engine cannot hide
behind a test that recomputes its expectation with the same code (issue 13).

The equations are the engine's documented forms (``neuroshift/physics/signal.py``, module docstring:
the spin-echo family exact for a 180° refocusing pulse at TE/2) in plain Python floats. When the physics is changed *deliberately*, change it here too — this is the
one place — and the tests then confirm the engine does what the documentation says.

Units: times in ms, flip angles in degrees; PD relative (free water = 1).
"""

from __future__ import annotations

import math

#: (PD, T1 ms, T2 ms, T2* ms) of ``neuroshift/physics/relaxation.py`` (Wansapura1999, Peters2007, Lu2005,
#: paper 000 Table 4, Stanisz2005, Neeb2006), copied as literals. ``Testing/simulate/test_simulate_tissuewise.py``
#: pins them to the built-in table.
LIT = {
    3.0: {"CSF": (1.0, 4163.0, 379.0, 190.0), "GM": (0.8, 1331.0, 110.0, 66.0),
          "WM": (0.7, 832.0, 79.6, 53.2), "lesion": (0.8, 1350.0, 130.0, 60.0)},
    1.5: {"CSF": (1.0, 4163.0, 329.0, 165.0), "GM": (0.8, 1124.0, 95.0, 84.0),
          "WM": (0.7, 884.0, 72.0, 64.9), "lesion": (0.8, 1150.0, 130.0, 75.0)},
}
LIT_3T = LIT[3.0]


def _refocus(t1, te, tr):
    """What the 180° refocusing pulse at TE/2 adds by inverting the recovering Mz: 2e^{−(TR−TE/2)/T1} − 2e^{−TR/T1}.

    The engine uses the exact forms (``physics/signal.py``, checked against a Bloch simulation); the
    printed forms of papers 000/002 drop this term (they are the TE → 0 limit).
    """
    return 2 * math.exp(-(tr - te / 2) / t1) - 2 * math.exp(-tr / t1)


def spin_echo(pd, t1, t2, *, te, tr):
    """S = PD·(1 − 2e^{−(TR−TE/2)/T1} + e^{−TR/T1})·e^{−TE/T2} (printed form: PD·(1 − e^{−TR/T1})·e^{−TE/T2})."""
    return pd * (1 - math.exp(-tr / t1) - _refocus(t1, te, tr)) * math.exp(-te / t2)


def flair(pd, t1, t2, *, te, ti, tr):
    """S = PD·|1 − 2e^{−TI/T1} + 2e^{−(TR−TE/2)/T1} − e^{−TR/T1}|·e^{−TE/T2} (TR as the recovery time)."""
    return pd * abs(1 - 2 * math.exp(-ti / t1) + math.exp(-tr / t1) + _refocus(t1, te, tr)) * math.exp(-te / t2)


def double_ir(pd, t1, t2, *, te, ti1, ti2, tr):
    """S = PD·|1 − 2e^{−TI2/T1} + 2e^{−TI1/T1} − 2e^{−(TR−TE/2)/T1} + e^{−TR/T1}|·e^{−TE/T2}."""
    mz = 1 - 2 * math.exp(-ti2 / t1) + 2 * math.exp(-ti1 / t1) - math.exp(-tr / t1) - _refocus(t1, te, tr)
    return pd * abs(mz) * math.exp(-te / t2)


def spoiled_gre(pd, t1, t2s, *, te, tr, fa):
    """S = PD·sin α·(1 − e^{−TR/T1})/(1 − cos α·e^{−TR/T1})·e^{−TE/T2*}."""
    a = math.radians(fa)
    e1 = math.exp(-tr / t1)
    return pd * math.sin(a) * (1 - e1) / (1 - math.cos(a) * e1) * math.exp(-te / t2s)


def by_sequence(sequence: str, p, pd, t1, t2, t2s) -> float:
    """The written-out equation of ``sequence`` ("se", "flair", "dir", "gre") at AcquisitionParams ``p``."""
    if sequence == "se":
        return spin_echo(pd, t1, t2, te=p.TE_ms, tr=p.TR_ms)
    if sequence == "flair":
        if p.Trec_ms is not None:
            raise ValueError("hand_signals.flair uses TR as the recovery time")
        return flair(pd, t1, t2, te=p.TE_ms, ti=p.TI_ms, tr=p.TR_ms)
    if sequence == "dir":
        return double_ir(pd, t1, t2, te=p.TE_ms, ti1=p.TI1_ms, ti2=p.TI2_ms, tr=p.TR_ms)
    if sequence == "gre":
        return spoiled_gre(pd, t1, t2s, te=p.TE_ms, tr=p.TR_ms, fa=p.FA_deg)
    raise ValueError(f"no hand equation for {sequence!r}")
