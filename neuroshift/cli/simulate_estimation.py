"""Options of ``neuroshift simulate`` for the estimator, joint contrasts and the uncertainty map.

``--estimator fit|priors|posterior|auto`` (see :mod:`neuroshift.simulate.joint`),
``--joint IMG:SEQ[:TE=..,TI=..]`` (repeatable; co-registered images of the same
subject, parameters from their sidecar/DICOM header, overridable) and
``--uncertainty FILE`` (the ± map: half-width of the posterior 90 % interval,
image units, written next to the derivative; needs ``--estimator posterior``).
"""

from __future__ import annotations

from pathlib import Path

#: Choices of --estimator (default auto: the paper-000 fit only where it beat the priors out of sample).
ESTIMATOR_CHOICES = ("fit", "priors", "posterior", "auto")


def add_estimation_options(p) -> None:
    """Register the options on the ``simulate`` parser."""
    p.add_argument("--estimator", choices=ESTIMATOR_CHOICES, default="auto",
                   help="tissue parameters: 'fit' the apparent values to INPUT's contrast (paper 000), "
                        "'priors' (literature values, only the scale fitted: the baseline) or 'posterior' "
                        "(every value consistent with the contrast, weighted by the literature spread; gives "
                        "--uncertainty and uses --joint) or 'auto' (per tissue the fit or the priors, whichever "
                        "had the lower error at this target on calibration subjects drawn from the priors; the "
                        "choice and the calibration errors go into the sidecar)")
    p.add_argument("--joint", action="append", default=[], metavar="IMG:SEQ[:TE=..,TI=..]",
                   help="another co-registered image of the same subject for joint estimation (e.g. "
                        "FLAIR.nii.gz:flair); parameters from its sidecar/header, or after the second ':' "
                        "(ms). Repeatable. Needs --estimator posterior")
    p.add_argument("--uncertainty", metavar="FILE",
                   help="also write the ± map (half-width of the 90 %% interval of the derivative, image units; "
                        "needs --estimator posterior); per-tissue intervals go into the sidecar")


def _parse_joint(spec: str):
    from ..errors import InputError
    from ..io.params import AcquisitionParams

    parts = spec.split(":")
    # a Windows drive letter (C:\...) belongs to the path
    if len(parts) >= 2 and len(parts[0]) == 1 and parts[1].startswith(("\\", "/")):
        parts = [parts[0] + ":" + parts[1]] + parts[2:]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise InputError(f"--joint {spec!r}: give IMAGE:SEQUENCE[:TE=..,TI=..,TR=..], e.g. FLAIR.nii.gz:flair")
    override = AcquisitionParams.parse(":".join(parts[2:])) if len(parts) > 2 and parts[2] else None
    return parts[0], parts[1].lower(), override


def joint_inputs(args) -> list[tuple[str, str]]:
    """``(label, path)`` of every --joint image (for the overwrite guard)."""
    return [(f"--joint {i + 1}", _parse_joint(s)[0]) for i, s in enumerate(args.joint or [])]


def estimation_kwargs(args, image) -> dict:
    """Keyword arguments of :func:`~neuroshift.simulate.tissuewise.fit_tissue_model` from the options."""
    from ..errors import InputError
    from ..io.files import read_volume
    from ..io.params import AcquisitionParams
    from ..simulate.tissuewise import SEQUENCES

    estimator = getattr(args, "estimator", "fit") or "fit"
    joint = list(getattr(args, "joint", None) or [])
    if (joint or getattr(args, "uncertainty", None)) and estimator != "posterior":
        what = "--joint" if joint else "--uncertainty"
        raise InputError(f"{what} needs --estimator posterior (got --estimator {estimator})")
    contrasts = []
    for spec in joint:
        path, seq, override = _parse_joint(spec)
        if seq not in SEQUENCES:
            raise InputError(f"--joint {spec!r}: unknown sequence '{seq}'; choose one of {', '.join(SEQUENCES)}")
        vol = read_volume(path, dtype="float32")
        image.require_same_grid(vol, f"INPUT and --joint {path} (register it to INPUT first)")
        params = AcquisitionParams.for_image(path, vol.meta)
        if override is not None:
            params = params.merged(override)
        params.require(seq, context=f"--joint {path}")
        contrasts.append((vol, seq, params))
    return {"estimator": estimator, "contrasts": tuple(contrasts)}


def uncertainty_volume(args, model, target):
    """``(± map Volume, per-tissue intervals)`` or ``(None, None)`` without --uncertainty."""
    if not getattr(args, "uncertainty", None):
        return None, None
    from ..io.volume import Volume
    from ..simulate.posterior import uncertainty_map

    pm, intervals = uncertainty_map(model, target)
    geom = model.geometry if model.geometry is not None else Volume(pm)
    meta = {k: v for k, v in geom.meta.items() if k != "source_path" and not k.startswith("dicom:")}
    meta["neuroshift:uncertainty"] = "half-width of the posterior 90 % interval (image units)"
    return Volume(pm, geom.spacing.copy(), geom.origin.copy(), geom.direction.copy(), meta), intervals


def estimator_choice(model, target) -> dict | None:
    """Estimator 'auto': per tissue the choice and calibration errors (%) at ``target`` (None otherwise)."""
    rec = getattr(model.report, "auto", None) if model.report is not None else None
    if rec is None:
        return None
    return rec.get(model.resolve_target(target).label())


def uncertainty_path(args) -> Path | None:
    return Path(args.uncertainty) if getattr(args, "uncertainty", None) else None
