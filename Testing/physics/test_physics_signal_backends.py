"""The signal equations give the same numbers with numpy and torch inputs (and return the input's backend).

Literal values are derived by hand from the equations in the module docstring of physics/signal.py.
"""

import math

import numpy as np
import pytest

from neuroshift.physics import signal as S

torch = pytest.importorskip("torch")

BACKENDS = ["numpy", "torch"]


def as_backend(backend, x):
    return torch.as_tensor(np.asarray(x, dtype=np.float64)) if backend == "torch" else np.asarray(x, dtype=np.float64)


def to_numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def test_spin_echo_literal(backend):
    t1 = as_backend(backend, [1000.0, 1000.0])
    s = S.spin_echo(1.0, t1, 100.0, te_ms=100.0, tr_ms=1000.0)
    assert isinstance(s, torch.Tensor) == (backend == "torch")
    # exact form with the refocusing pulse at TE/2: (1 - 2e^{-(TR-TE/2)/T1} + e^{-TR/T1}) e^{-TE/T2} = 0.2186665812
    expected = (1 - 2 * math.exp(-0.95) + math.exp(-1)) * math.exp(-1)
    np.testing.assert_allclose(to_numpy(s), expected, rtol=1e-12)
    # TE -> 0: paper 002's saturation-recovery form 1 - e^{-TR/T1} = 0.6321205588
    s0 = S.spin_echo(1.0, t1, 100.0, te_ms=0.0, tr_ms=1000.0)
    np.testing.assert_allclose(to_numpy(s0), 1 - math.exp(-1), rtol=1e-12)


def test_flair_nulls_at_its_null_time(backend):
    t1 = as_backend(backend, [400.0, 900.0, 4000.0])
    ti = S.flair_null_ti(t1, 9000.0)
    s = S.flair(1.0, t1, 80.0, te_ms=0.0, ti_ms=ti, tr_ms=9000.0)
    np.testing.assert_allclose(to_numpy(s), 0.0, atol=1e-12)
    # TR -> infinity: the null is T1 ln 2
    np.testing.assert_allclose(to_numpy(S.flair_null_ti(t1, float("inf"))), np.log(2) * np.array([400, 900, 4000]),
                               rtol=1e-12)


def test_spoiled_gre_at_the_ernst_angle(backend):
    t1 = as_backend(backend, [1000.0])
    fa = S.ernst_angle(t1, 100.0)
    s = S.spoiled_gre(1.0, t1, 50.0, te_ms=0.0, tr_ms=100.0, fa_deg=fa)
    e = math.exp(-0.1)
    np.testing.assert_allclose(to_numpy(s), math.sqrt((1 - e) / (1 + e)), rtol=1e-12)  # 0.2235136


def test_dir_with_equal_inversions_is_saturation_recovery(backend):
    t1 = as_backend(backend, [300.0, 1200.0])
    s = S.double_inversion_recovery(1.0, t1, 90.0, te_ms=0.0, ti1_ms=500.0, ti2_ms=500.0, tr_ms=2000.0)
    np.testing.assert_allclose(to_numpy(s), 1 - np.exp(-2000.0 / np.array([300.0, 1200.0])), rtol=1e-12)


def test_non_positive_times_give_zero_without_nan(backend):
    t1 = as_backend(backend, [0.0, -5.0, 1000.0])
    s = to_numpy(S.spin_echo(1.0, t1, 100.0, te_ms=10.0, tr_ms=500.0))
    assert np.isfinite(s).all() and s[0] == 0.0 and s[1] == 0.0 and s[2] > 0


def test_backends_agree_on_the_phantom(phantom_volumes):
    """Both backends on the phantom's tissue maps (GM fraction as PD weight, T1/T2 of GM at 3 T)."""
    pd = np.asarray(phantom_volumes.fractions["GM"].data, dtype=np.float64)
    args = dict(te_ms=112.0, ti_ms=2500.0, tr_ms=9000.0)
    ref = S.flair(pd, 1400.0, 90.0, **args)
    out = S.flair(torch.as_tensor(pd), torch.tensor(1400.0, dtype=torch.float64), 90.0, **args)
    assert isinstance(ref, np.ndarray) and isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-15)
    assert float(ref.max()) > 0


def test_torch_gradient_matches_the_analytic_derivative():
    t2 = torch.tensor([80.0, 120.0], dtype=torch.float64, requires_grad=True)
    s = S.spin_echo(1.0, 1000.0, t2, te_ms=100.0, tr_ms=3000.0)
    s.sum().backward()
    expected = s.detach() * 100.0 / t2.detach() ** 2  # dS/dT2 = S TE / T2^2
    np.testing.assert_allclose(t2.grad.numpy(), expected.numpy(), rtol=1e-10)
