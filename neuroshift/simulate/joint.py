"""Choosing the estimator of the tissue model, and joint estimation from several co-registered contrasts.

:func:`estimate_parameters` is the one place :func:`~neuroshift.simulate.tissuewise.fit_tissue_model`
asks for tissue parameters:

``"fit"``        apparent parameters fitted to the contrast ratios (paper 000; :mod:`.estimate`)
``"priors"``     literature values, only the scale ``c`` fitted (the baseline every derivative must beat)
``"auto"``       per target and tissue the fit or priors-only, whichever had the lower error on
                 calibration subjects drawn from the prior (:mod:`.auto`)
``"posterior"``  all parameter sets consistent with the observed contrast(s), weighted by the prior
                 (:mod:`.posterior`): derivatives use the posterior mean, intervals its quantiles

Joint estimation (``contrasts``): further images of the same subject on the same
grid — e.g. the T1w and FLAIR of an MS protocol — each with its sequence and
parameters. Their tissue signals are measured with the same fraction maps and
their contrast ratios multiply into the posterior's likelihood, so a T1w source
gains the T2 information of the FLAIR. The derivative is always of the first
image.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..io.params import AcquisitionParams
from . import estimate as _est

#: Estimators :func:`estimate_parameters` accepts.
ESTIMATORS = ("fit", "priors", "posterior", "auto")


def measure_contrasts(contrasts: Sequence, shape: tuple, box: tuple, stack: np.ndarray, mask_box: np.ndarray,
                      geometry, tissues: tuple, *, method: str = "regression") -> list:
    """Measure the tissue signals of each ``(image, sequence, params)`` on the primary image's fraction stack."""
    from ..io.volume import Volume
    from .posterior import Contrast
    from .tissuewise import SEQUENCES

    out = []
    for k, item in enumerate(contrasts):
        try:
            image, sequence, params = item
        except (TypeError, ValueError):
            raise InputError(f"contrast {k + 1}: give (image, sequence, parameters)") from None
        seq = str(sequence).lower()
        if seq not in SEQUENCES:
            raise InputError(f"contrast {k + 1}: unknown sequence '{sequence}'; choose one of {', '.join(SEQUENCES)}")
        if isinstance(params, str):
            params = AcquisitionParams.parse(params)
        elif isinstance(params, Mapping):
            params = AcquisitionParams.from_mapping(params)
        params.require(seq, context=f"joint contrast {k + 1}")
        if isinstance(image, Volume):
            if geometry is not None:
                geometry.require_same_grid(image, f"the image and joint contrast {k + 1} (register it first)")
            data = image.data
        else:
            data = np.asarray(image)
        if data.shape != tuple(shape):
            raise InputError(f"joint contrast {k + 1} has shape {data.shape}, the image {tuple(shape)}; "
                             "register it to the image first")
        data = np.asarray(data, dtype=np.float32)
        if not np.all(np.isfinite(data)):
            raise InputError(f"joint contrast {k + 1} has NaN or infinite voxels")
        sig = _est.measure_tissue_signals(np.ascontiguousarray(data[box]).reshape(-1), stack, tissues,
                                          mask=mask_box, method=method)
        out.append(Contrast(seq, params, sig))
    return out


def estimate_parameters(estimator: str, signals: _est.TissueSignals, sequence: str, source: AcquisitionParams,
                        priors: Mapping, shape: tuple, box: tuple, stack: np.ndarray, mask_box: np.ndarray,
                        geometry, contrasts: Sequence = (), *, tolerance: float = 0.01,
                        prior_sd: Mapping[str, float] | None = None, method: str = "regression", seed: int = 0):
    """``(apparent parameters, FitReport, Posterior or None)`` for the chosen ``estimator``."""
    from ..physics.relaxation import TissueParameters
    from .posterior import Contrast, posterior_from_contrasts

    name = str(estimator).lower()
    if name not in ESTIMATORS:
        raise InputError(f"unknown estimator '{estimator}'; choose one of {', '.join(ESTIMATORS)}")
    if contrasts and name != "posterior":
        raise InputError("joint estimation from several contrasts needs estimator 'posterior' "
                         f"(got '{name}')")
    if name == "fit":
        apparent, rep = _est.fit_apparent_parameters(signals, sequence, source, priors, tolerance=tolerance,
                                                     prior_sd=prior_sd)
        return apparent, rep, None
    if name == "priors":
        apparent, rep = _est.priors_only_parameters(signals, sequence, source, priors)
        return apparent, rep, None
    if name == "auto":
        from .auto import build_auto

        return build_auto(signals, sequence, source, priors, tolerance=tolerance, prior_sd=prior_sd, seed=seed)
    extra = measure_contrasts(contrasts, shape, box, stack, mask_box, geometry, signals.tissues, method=method)
    post = posterior_from_contrasts([Contrast(sequence, source, signals)] + extra, priors, tolerance=tolerance,
                                    seed=seed)
    means = post.posterior_mean_parameters()
    apparent = {}
    for i, t in enumerate(signals.tissues):
        m = means[t]
        label = ("posterior mean given " + ("the image contrast" if not extra else f"{1 + len(extra)} contrasts")
                 if post.fitted[i] else "prior (not fitted)")
        apparent[t] = TissueParameters(m["pd"], m["t1"], m["t2"], m["t2star"],
                                       f"{label}; prior: {priors[t].source}")
    _, rep = _est.priors_only_parameters(signals, sequence, source, priors)
    rep.ratios_fitted = {}
    s = _est.tissue_signals(sequence, source, *_est.param_arrays(signals.tissues, apparent))
    ref = post.ref
    for i, t in enumerate(signals.tissues):
        if post.fitted[i] and i != ref:
            rep.ratios_fitted[t] = float(s[i] / s[ref])
    rep.reference = signals.tissues[ref]
    rep.fitted_tissues = tuple(t for i, t in enumerate(signals.tissues) if post.fitted[i])
    rep.prior_tissues = tuple(t for i, t in enumerate(signals.tissues) if not post.fitted[i])
    rep.optimizer_message = (f"estimator 'posterior': importance-weighted prior samples "
                             f"({len(post.ref_weight)} x {post.samples['pd'].shape[1]}), "
                             f"{1 + len(extra)} contrast(s); effective samples "
                             + ", ".join(f"{t} {e:.0f}" for t, e in post.ess.items()))
    rep.notes = list(post.notes)
    return apparent, rep, post
