"""AcquisitionShift / RandAcquisitionShift / RandAcquisitionShiftd: the MONAI/TorchIO shape.

Deterministic transform = what the random one applies; every draw in ``randomize``; MONAI on demand.
"""

import pickle

import numpy as np
import pytest

from neuroshift.errors import MissingParameterError, ParameterRangeError
from neuroshift.io.params import AcquisitionParams
from neuroshift.simulate import AcquisitionShift, RandAcquisitionShift, RandAcquisitionShiftd
from neuroshift.simulate.synthetic import synthetic_fractions
from neuroshift.simulate.tissuewise import fit_tissue_model

ORDER = ("CSF", "GM", "WM", "lesion")
SRC = AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000)


@pytest.fixture(scope="module")
def sample():
    """SYNTHETIC FLAIR rendered from the tissue-wise model itself (no noise), so a shift is exact."""
    fr = synthetic_fractions((16, 20, 18), brain_semi_axes_mm=(6, 8, 7), n_lesions=1, seed=2)
    rng = np.random.default_rng(0)
    base = sum((200.0 + 100 * i) * fr[t] for i, t in enumerate(ORDER)).astype(np.float32)
    img = (base + rng.normal(0, 1, base.shape)).astype(np.float32)
    return {"flair": img[None], "pv": np.stack([fr[t] for t in ORDER]).astype(np.float32), "fr": fr}


def test_deterministic_shift_is_the_tissue_model_and_repeatable(sample):
    shift = AcquisitionShift("flair", SRC, {"TE": 150.0, "TI": 2300.0})
    a, b = shift(sample["flair"], sample["pv"]), shift(sample["flair"], sample["pv"])
    np.testing.assert_array_equal(a, b)
    ref = fit_tissue_model(sample["flair"][0], sample["fr"], "flair", SRC).simulate(
        SRC.merged(AcquisitionParams(TE_ms=150.0, TI_ms=2300.0)))
    np.testing.assert_allclose(a[0], ref, rtol=1e-6)
    assert shift.target.TE_ms == 150.0 and shift.target.TR_ms == 9000.0 and a.shape == sample["flair"].shape
    # fractions as a mapping give the same as the stacked array
    np.testing.assert_array_equal(shift(sample["flair"], {t: sample["fr"][t] for t in ORDER}), a)
    # noise and bias are part of the deterministic transform, fixed by its seed
    n1 = AcquisitionShift("flair", SRC, {"TE": 150.0}, noise=5.0, seed=3)(sample["flair"], sample["pv"])
    n2 = AcquisitionShift("flair", SRC, {"TE": 150.0}, noise=5.0, seed=3)(sample["flair"], sample["pv"])
    n3 = AcquisitionShift("flair", SRC, {"TE": 150.0}, noise=5.0, seed=4)(sample["flair"], sample["pv"])
    np.testing.assert_array_equal(n1, n2)
    assert not np.array_equal(n1, n3)
    with pytest.raises(ParameterRangeError):
        AcquisitionShift("flair", SRC, {"TI": 9500.0})  # TI > TR cannot be acquired
    with pytest.raises(MissingParameterError):
        AcquisitionShift("flair", "TE=112,TR=9000", {"TE": 150.0})


def test_all_draws_happen_in_randomize_and_the_call_applies_them(sample):
    t = RandAcquisitionShift("flair", SRC, ranges={"TE": (84, 150), "TI": (2200, 2900)}, noise=(0, 5),
                             bias=(0, 0.2), seed=9)
    t.randomize()
    state = t.R.get_state()[1].copy()
    a = t(sample["flair"], sample["pv"], randomize=False)
    b = t(sample["flair"], sample["pv"], randomize=False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(t.R.get_state()[1], state)  # applying draws nothing
    p = t.last_parameters
    det = AcquisitionShift("flair", SRC, p["target"], noise=p["noise"], bias=p["bias"], seed=t.transform.seed)
    np.testing.assert_array_equal(det(sample["flair"], sample["pv"]), a)  # the random one applies this one
    # the dict wrapper draws the same way and leaves the fractions alone
    d = RandAcquisitionShiftd("flair", "flair", SRC, fractions_key="pv", ranges={"TE": (84, 150), "TI": (2200, 2900)},
                              noise=(0, 5), bias=(0, 0.2), seed=9)
    out = d({"flair": sample["flair"], "pv": sample["pv"]})
    np.testing.assert_array_equal(out["flair"], a)
    assert out["pv"] is sample["pv"] and d.last_parameters == p


def test_invalid_targets_are_redrawn_inside_randomize():
    t = RandAcquisitionShift("flair", SRC, ranges={"TI": (8000, 10000)}, seed=1)  # TR is 9000 ms
    for _ in range(20):
        t.randomize()
        assert 8000 <= t.last_parameters["target"]["TI"] < 9000
    bad = RandAcquisitionShift("flair", SRC, ranges={"TI": (9500, 10000)}, seed=1, max_redraws=5)
    with pytest.raises(ParameterRangeError, match="after 5 draws"):
        bad.randomize()
    x = np.ones(3)
    assert RandAcquisitionShift("flair", SRC, prob=0.0)(x, None) is x  # not applied: the input itself, no fit


def test_importing_the_transforms_does_not_import_monai():
    import subprocess
    import sys

    code = ("import sys, neuroshift.simulate as s; t = s.RandAcquisitionShift('flair', 'TE=112,TI=2500,TR=9000'); "
            "print('monai' in sys.modules, type(t).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "RandAcquisitionShift"]


def test_monai_subclass_only_when_monai_is_in_use(sample):
    monai = pytest.importorskip("monai")
    from monai.transforms import Compose, Randomizable

    t = RandAcquisitionShiftd("flair", "flair", SRC, fractions_key="pv", ranges={"TE": (84, 150)}, seed=0)
    assert isinstance(t, Randomizable) and isinstance(t, RandAcquisitionShiftd)
    assert isinstance(RandAcquisitionShift("flair", SRC), Randomizable)
    clone = pickle.loads(pickle.dumps(t))
    assert type(clone) is type(t)
    pipe = Compose([t])
    pipe.set_random_state(seed=4)
    first = pipe({"flair": sample["flair"], "pv": sample["pv"]})["flair"]
    pipe.set_random_state(seed=4)
    np.testing.assert_array_equal(np.asarray(pipe({"flair": sample["flair"], "pv": sample["pv"]})["flair"]),
                                  np.asarray(first))
    assert monai.__name__ == "monai"
