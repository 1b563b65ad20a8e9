"""Rician noise (paper 002) and smooth multiplicative bias / receive fields.

Both work on numpy arrays; :func:`add_rician_noise` also on torch tensors
(torch imported lazily). Randomness is always explicit: pass a seed or a
``numpy.random.Generator`` (or, for tensors, a ``torch.Generator``) to get
reproducible draws.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np

from ..errors import ParameterRangeError
from .signal import is_torch

__all__ = ["add_rician_noise", "rician_mean", "bias_field", "receive_field", "as_rng"]


def as_rng(rng) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a Generator, an int seed or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    raise ParameterRangeError(f"rng must be a seed (int), a numpy Generator or None, got {type(rng).__name__}")


def _check_sigma(sigma):
    s = np.asarray(sigma.detach().cpu() if is_torch(sigma) else sigma, dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ParameterRangeError(f"noise sigma must be finite and >= 0, got {sigma!r}")
    return s


def add_rician_noise(signal, sigma, rng=None):
    """Magnitude of the signal plus complex Gaussian noise (paper 002, Gudbjartsson & Patz 1995).

    ``S_noisy = sqrt((S + n1)^2 + n2^2)`` with ``n1, n2 ~ N(0, sigma^2)`` independent.
    ``sigma`` is a scalar or an array broadcasting against ``signal`` (e.g. a
    g-factor-scaled map); ``sigma = 0`` returns a copy of the signal. For a
    torch tensor the result is a tensor on its device (differentiable in the
    signal); ``rng`` may then be a ``torch.Generator`` (or a seed / numpy
    Generator, whose draws are copied to the device, so numpy and torch give the
    same numbers for the same seed). At S = 0 the mean is ``sigma·sqrt(pi/2)``.
    """
    s = _check_sigma(sigma)
    if is_torch(signal):
        import torch

        if not np.any(s > 0):
            return signal.clone()
        dtype = signal.dtype if signal.is_floating_point() else torch.get_default_dtype()
        sig_t = sigma if is_torch(sigma) else torch.as_tensor(s, dtype=dtype, device=signal.device)
        if isinstance(rng, torch.Generator):
            n1 = torch.randn(signal.shape, generator=rng, dtype=dtype, device=rng.device).to(signal.device)
            n2 = torch.randn(signal.shape, generator=rng, dtype=dtype, device=rng.device).to(signal.device)
        else:
            g = as_rng(rng)
            n1 = torch.as_tensor(g.standard_normal(tuple(signal.shape)), dtype=dtype, device=signal.device)
            n2 = torch.as_tensor(g.standard_normal(tuple(signal.shape)), dtype=dtype, device=signal.device)
        return torch.sqrt((signal + sig_t * n1) ** 2 + (sig_t * n2) ** 2)
    x = np.asarray(signal)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    if not np.any(s > 0):
        return x.astype(dtype, copy=True)
    g = as_rng(rng)
    n1 = g.standard_normal(x.shape)
    n2 = g.standard_normal(x.shape)
    out = np.sqrt((x + s * n1) ** 2 + (s * n2) ** 2)
    return out.astype(dtype, copy=False)


def rician_mean(signal, sigma):
    """Expected value of the Rician magnitude (exact, via Laguerre L_{1/2}); = sigma·sqrt(pi/2) at S = 0."""
    from scipy.special import i0e, i1e

    a = np.asarray(signal, dtype=np.float64)
    s = float(sigma)
    if s == 0:
        return a.copy()
    x = -(a ** 2) / (2 * s ** 2)
    # L_{1/2}(x) = e^{x/2}[(1 - x) I0(-x/2) - x I1(-x/2)]; with scaled Bessels e^{x/2} I(-x/2) = Ie(-x/2).
    lag = (1 - x) * i0e(-x / 2) - x * i1e(-x / 2)
    return s * math.sqrt(math.pi / 2) * lag


def bias_field(shape: Sequence[int], strength: float = 0.3, rng=None, *, order: int = 3,
               spacing: Sequence[float] | None = None, dtype=np.float32) -> np.ndarray:
    """A smooth, positive, multiplicative field of mean 1 (receive-coil / bias-field shift).

    ``log B(x) = Σ c_abc·P_a(u)·P_b(v)·P_c(w)`` over Legendre polynomials of total
    degree 1..``order`` in normalised coordinates u, v, w ∈ [−1, 1] (physical
    extent when ``spacing`` is given, so anisotropic voxels do not stretch the
    field), coefficients ``c ~ U(−strength, strength)/(1 + degree)`` drawn from
    ``rng`` (seed, Generator or None); then ``B`` is divided by its mean. So
    ``strength = 0`` gives exactly 1 everywhere and ``strength ≈ 0.3`` gives a
    typical ±20-40 % 3 T receive profile. The same seed gives the same field.
    Works for 1-3 D shapes; returns ``dtype`` (float32 by default).
    """
    shape = tuple(int(n) for n in shape)
    if not 1 <= len(shape) <= 3 or any(n < 1 for n in shape):
        raise ParameterRangeError(f"bias field shape must have 1-3 positive sizes, got {shape}")
    if not math.isfinite(strength) or strength < 0:
        raise ParameterRangeError(f"bias field strength must be finite and >= 0, got {strength!r}")
    if order < 0:
        raise ParameterRangeError(f"bias field order must be >= 0, got {order}")
    g = as_rng(rng)
    if strength == 0 or order == 0:
        return np.ones(shape, dtype=dtype)
    extent = np.array([n * (1.0 if spacing is None else float(spacing[i])) for i, n in enumerate(shape)])
    rel = extent / extent.max()
    axes = [np.linspace(-r, r, n) if n > 1 else np.zeros(1) for r, n in zip(rel, shape)]
    legendre = [np.polynomial.legendre.legvander(a, order) for a in axes]  # (n, order+1)
    log_b = np.zeros(shape)
    for degrees in itertools.product(range(order + 1), repeat=len(shape)):
        total = sum(degrees)
        if total == 0 or total > order:
            continue
        c = g.uniform(-strength, strength) / (1.0 + total)
        term = c
        for axis, d in enumerate(degrees):
            view = [1] * len(shape)
            view[axis] = shape[axis]
            term = term * legendre[axis][:, d].reshape(view)
        log_b = log_b + term
    field = np.exp(log_b)
    field /= field.mean()
    return field.astype(dtype)


#: Paper 002 calls B1 the receive field; the generator is the same smooth model.
receive_field = bias_field
