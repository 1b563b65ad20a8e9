"""Every closed-form signal equation against an independent step-by-step Bloch simulation.

The simulator below is written for these tests only and shares no code with
``neuroshift.physics.signal``: one magnetisation vector (M0 = 1), hard pulses as
3×3 rotation matrices, free relaxation between pulses
(``Mxy ← Mxy·e^{−t/T2}``, ``Mz ← 1 + (Mz − 1)·e^{−t/T1}``), ideal spoiling
(``Mxy ← 0``) where a real sequence spoils. Each sequence is played with the
pulse timing a scanner uses — the spin-echo family *with* its 180° refocusing
pulse at TE/2, which inverts the recovering Mz — and repeated for many TRs
until the magnetisation is periodic; the signal is |Mxy| at the echo of the
last repetition. The closed forms must agree to 1e-6 relative.

Times in ms, angles in degrees.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroshift.physics import signal as S

RTOL = 1e-6

#: (T1, T2) in ms of WM, GM, lesion, CSF at 3 T (values only need to be realistic).
TISSUES = [(832.0, 79.6), (1331.0, 110.0), (1350.0, 130.0), (4163.0, 379.0)]


# --------------------------------------------------------------------------- the simulator
def _rotation(deg: float, axis: str) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, s], [0, -s, c]], dtype=np.float64)
    return np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]], dtype=np.float64)  # about y


class Bloch:
    """One isochromat, M0 = 1; events change ``self.m`` in place."""

    def __init__(self, t1_ms: float, t2_ms: float) -> None:
        self.t1, self.t2 = t1_ms, t2_ms
        self.m = np.array([0.0, 0.0, 1.0])
        self.echoes: list[float] = []

    def pulse(self, deg: float, axis: str = "x") -> None:
        self.m = _rotation(deg, axis) @ self.m

    def relax(self, dt_ms: float) -> None:
        assert dt_ms >= -1e-9, f"negative interval {dt_ms} ms: impossible timing"
        dt = max(dt_ms, 0.0)
        e2 = math.exp(-dt / self.t2)
        e1 = math.exp(-dt / self.t1)
        self.m[:2] *= e2
        self.m[2] = 1.0 + (self.m[2] - 1.0) * e1

    def spoil(self) -> None:
        self.m[:2] = 0.0

    def read(self) -> None:
        self.echoes.append(math.hypot(self.m[0], self.m[1]))


def steady_state(play, t1_ms: float, t2_ms: float, *, max_cycles: int = 20000) -> float:
    """Play one repetition per call of ``play(bloch)`` until |Mz| and the echo are periodic; the last echo."""
    b = Bloch(t1_ms, t2_ms)
    last = None
    for i in range(max_cycles):
        b.echoes.clear()
        start = b.m.copy()
        play(b)
        echo = b.echoes[-1]
        if i > 3 and last is not None and abs(echo - last) <= 1e-14 * max(1.0, echo) \
                and np.max(np.abs(b.m - start)) <= 1e-14:
            return echo
        last = echo
    raise AssertionError("no steady state reached")


# --------------------------------------------------------------------------- the sequences as played
def play_se(te, tr):
    def play(b):
        b.pulse(90, "x")
        b.relax(te / 2)
        b.pulse(180, "y")       # refocusing: also inverts the Mz that recovered during TE/2
        b.relax(te / 2)
        b.read()
        b.relax(tr - te)
        b.spoil()
    return play


def play_fse(esp, etl, k_eff, tr):
    """90°, ``etl`` refocusing pulses spaced ``esp``; the echo ``k_eff`` (0-based) is the k-space centre."""
    def play(b):
        b.pulse(90, "x")
        b.relax(esp / 2)
        for k in range(etl):
            b.pulse(180, "y")
            b.relax(esp / 2)
            if k == k_eff:
                b.read()
            if k < etl - 1:
                b.relax(esp / 2)
        b.relax(tr - etl * esp)  # from the last echo to the next excitation
        b.spoil()
    return play


def play_ir(te, ti, tr):
    """Inversion at 0, excitation at TI, refocusing at TI + TE/2, next inversion at TR."""
    def play(b):
        b.pulse(180, "x")
        b.spoil()
        b.relax(ti)
        b.pulse(90, "x")
        b.relax(te / 2)
        b.pulse(180, "y")
        b.relax(te / 2)
        b.read()
        b.relax(tr - ti - te)
        b.spoil()
    return play


def play_dir(te, ti1, ti2, tr):
    """Excitation at 0 (TR apart); inversions TI1 and TI2 before the next excitation."""
    def play(b):
        b.pulse(90, "x")
        b.relax(te / 2)
        b.pulse(180, "y")
        b.relax(te / 2)
        b.read()
        b.relax(tr - ti1 - te)
        b.spoil()
        b.pulse(180, "x")
        b.relax(ti1 - ti2)
        b.pulse(180, "x")
        b.relax(ti2)
    return play


def play_gre(te, tr, fa):
    def play(b):
        b.pulse(fa, "x")
        b.relax(te)
        b.read()
        b.relax(tr - te)
        b.spoil()            # ideal spoiling before the next pulse
    return play


def play_mprage(te, ti, tr, fa, tx, n, eta=1.0):
    """Inversion (efficiency η), TA, n pulses spaced TX (spoiled), TD; TI is inversion → centre pulse n//2."""
    kc = n // 2
    ta = ti - kc * tx
    td = tr - ta - n * tx

    def play(b):
        b.pulse(math.degrees(math.acos(-eta)), "x")   # Mz -> -η·Mz; its transverse part is spoiled
        b.spoil()
        b.relax(ta)
        for k in range(n):
            b.pulse(fa, "x")
            b.relax(te)
            if k == kc:
                b.read()
            b.relax(tx - te)
            b.spoil()
        b.relax(td)
    return play


# --------------------------------------------------------------------------- the comparisons
def _check(closed, sims):
    np.testing.assert_allclose(np.asarray(closed, dtype=np.float64), np.asarray(sims), rtol=RTOL, atol=0)


@pytest.mark.parametrize("te, tr", [(10.0, 600.0), (15.0, 500.0), (100.0, 3000.0), (30.0, 2000.0), (80.0, 160.0)])
def test_spin_echo(te, tr):
    t1 = np.array([t for t, _ in TISSUES])
    t2 = np.array([t for _, t in TISSUES])
    sims = [0.8 * steady_state(play_se(te, tr), a, b) for a, b in TISSUES]
    _check(S.spin_echo(0.8, t1, t2, te_ms=te, tr_ms=tr), sims)


@pytest.mark.parametrize("esp, etl, k_eff, tr", [(10.0, 8, 3, 3000.0), (12.0, 16, 7, 4000.0), (20.0, 1, 0, 600.0)])
def test_fast_spin_echo(esp, etl, k_eff, tr):
    t1 = np.array([t for t, _ in TISSUES])
    t2 = np.array([t for _, t in TISSUES])
    sims = [steady_state(play_fse(esp, etl, k_eff, tr), a, b) for a, b in TISSUES]
    te_eff = (k_eff + 1) * esp
    _check(S.fast_spin_echo(1.0, t1, t2, te_ms=te_eff, tr_ms=tr, etl=etl, esp_ms=esp), sims)


@pytest.mark.parametrize("te, ti, tr", [(20.0, 400.0, 2000.0), (90.0, 800.0, 3000.0), (15.0, 150.0, 1500.0)])
def test_inversion_recovery(te, ti, tr):
    t1 = np.array([t for t, _ in TISSUES])
    t2 = np.array([t for _, t in TISSUES])
    sims = [steady_state(play_ir(te, ti, tr), a, b) for a, b in TISSUES]
    _check(S.inversion_recovery(1.0, t1, t2, te_ms=te, ti_ms=ti, tr_ms=tr), sims)


@pytest.mark.parametrize("te, ti, tr", [(112.0, 2500.0, 9000.0), (140.0, 2800.0, 11000.0), (84.0, 2200.0, 9000.0)])
def test_flair(te, ti, tr):
    t1 = np.array([t for t, _ in TISSUES])
    t2 = np.array([t for _, t in TISSUES])
    sims = [steady_state(play_ir(te, ti, tr), a, b) for a, b in TISSUES]
    _check(S.flair(1.0, t1, t2, te_ms=te, ti_ms=ti, tr_ms=tr), sims)


@pytest.mark.parametrize("te, ti1, ti2, tr", [(25.0, 3400.0, 325.0, 11000.0), (20.0, 2000.0, 500.0, 6000.0)])
def test_double_inversion_recovery(te, ti1, ti2, tr):
    t1 = np.array([t for t, _ in TISSUES])
    t2 = np.array([t for _, t in TISSUES])
    sims = [steady_state(play_dir(te, ti1, ti2, tr), a, b) for a, b in TISSUES]
    _check(S.double_inversion_recovery(1.0, t1, t2, te_ms=te, ti1_ms=ti1, ti2_ms=ti2, tr_ms=tr), sims)


@pytest.mark.parametrize("te, tr, fa", [(5.0, 20.0, 15.0), (3.0, 8.0, 5.0), (10.0, 500.0, 60.0), (4.0, 30.0, 90.0)])
def test_spoiled_gre(te, tr, fa):
    t1 = np.array([t for t, _ in TISSUES])
    t2s = np.array([t / 2 for _, t in TISSUES])
    sims = [steady_state(play_gre(te, tr, fa), a, b / 2) for a, b in TISSUES]
    _check(S.spoiled_gre(1.0, t1, t2s, te_ms=te, tr_ms=tr, fa_deg=fa), sims)


@pytest.mark.parametrize("te, ti, tr, fa, tx, n, eta", [
    (3.0, 900.0, 2300.0, 9.0, 7.0, 176, 1.0),    # README protocol
    (2.5, 1100.0, 2500.0, 8.0, 6.0, 160, 0.96),  # imperfect inversion
    (3.5, 600.0, 2000.0, 12.0, 8.0, 64, 1.0),
])
def test_mprage(te, ti, tr, fa, tx, n, eta):
    t1 = np.array([t for t, _ in TISSUES])
    t2s = np.array([t / 2 for _, t in TISSUES])
    sims = [steady_state(play_mprage(te, ti, tr, fa, tx, n, eta), a, b / 2) for a, b in TISSUES]
    _check(S.mprage(1.0, t1, t2s, te_ms=te, ti_ms=ti, tr_ms=tr, fa_deg=fa, tx_ms=tx, n=n,
                    inversion_efficiency=eta), sims)


def test_simulator_limits():
    """The simulator itself: free recovery, a single 90° read at full Mz, and the Ernst-angle GRE maximum."""
    b = Bloch(1000.0, 100.0)
    b.m[:] = (0.0, 0.0, -1.0)
    b.relax(1000.0 * math.log(2))
    assert b.m[2] == pytest.approx(0.0, abs=1e-15)  # inversion-recovery null at T1·ln 2
    b = Bloch(1000.0, 100.0)
    b.pulse(90, "x")
    b.relax(100.0)
    b.read()
    assert b.echoes[-1] == pytest.approx(math.exp(-1.0), rel=1e-15)
    tr, t1 = 20.0, 1000.0
    ernst = math.degrees(math.acos(math.exp(-tr / t1)))  # 11.42°
    best = max(np.arange(11.0, 11.9, 0.01), key=lambda a: steady_state(play_gre(0.0, tr, a), t1, 50.0))
    assert best == pytest.approx(ernst, abs=0.01)
