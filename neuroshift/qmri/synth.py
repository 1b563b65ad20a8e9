"""Forward simulation of any sequence from quantitative maps (the qMRI route of paper 002)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import MissingParameterError
from ..io.params import AcquisitionParams
from ..io.volume import Volume
from ..physics.noise import add_rician_noise
from ..physics.signal import sequence_signal
from .maps import QMRIMaps, read_maps

__all__ = ["synthesize", "required_maps", "T2_FAMILY", "T2STAR_FAMILY"]

#: Sequences whose echo decays with T2 (spin echoes) or T2* (gradient echoes).
T2_FAMILY = ("se", "fse", "ir", "flair", "dir")
T2STAR_FAMILY = ("gre", "mprage")


def required_maps(sequence: str) -> tuple[str, ...]:
    """Maps a sequence needs: PD and T1 always, T2 for spin echoes, T2* for gradient echoes."""
    seq = sequence.lower()
    if seq in T2_FAMILY:
        return ("PD", "T1", "T2")
    if seq in T2STAR_FAMILY:
        return ("PD", "T1", "T2star")
    raise MissingParameterError(f"unknown sequence '{sequence}'; choose one of {', '.join(T2_FAMILY + T2STAR_FAMILY)}")


def synthesize(maps, sequence: str, params: AcquisitionParams, noise_sigma: float = 0.0, rng=None, *,
               t2star_for_t2: bool = False, dtype=np.float32) -> Volume:
    """Image of ``sequence`` at ``params`` (ms, degrees) from quantitative maps, on the maps' grid.

    ``maps``: a :class:`QMRIMaps`, a dict of name -> Volume, or a map folder.
    ``S = B1·PD·f(T1, T2 | T2*; params)`` per voxel (see
    :mod:`neuroshift.physics.signal`); B1 (receive field) is used when the
    maps contain it. ``noise_sigma > 0`` adds Rician noise (paper 002) drawn
    from ``rng`` (seed or Generator). Spin-echo sequences need a T2 map: paper
    002 has none (it estimates R2* only); ``t2star_for_t2=True`` uses T2* as a
    stand-in (a shorter decay than the true T2; flagged in ``meta``), never silently.
    """
    if isinstance(maps, (str, os.PathLike)):
        maps = read_maps(maps)
    elif not isinstance(maps, QMRIMaps):
        maps = QMRIMaps(dict(maps))
    seq = sequence.lower()
    if seq == "fse":
        seq = "se"
    params.require(seq, context=f"the {seq.upper()} synthesis")
    needed = list(required_maps(seq))
    meta = {"sequence": seq, "params": params.label()}
    t2_name = "T2"
    if "T2" in needed and "T2" not in maps and t2star_for_t2 and "T2star" in maps:
        needed[needed.index("T2")] = "T2star"
        t2_name = "T2star"
        meta["t2_stand_in"] = "T2star used in place of the missing T2 map (paper 002's stand-in; decays too fast)"
    maps.require(needed, purpose=f"synthesising {seq.upper()}")
    pd = maps.array("PD")
    t1 = maps.array("T1")
    b1 = maps.array("B1") if "B1" in maps else 1.0
    kwargs = {}
    if seq in T2_FAMILY:
        kwargs["t2_ms"] = maps.array(t2_name)
    else:
        kwargs["t2star_ms"] = maps.array("T2star")
    # The maps are finite and checked on load, and the equations give 0 (never NaN) in background voxels,
    # so the signal is used as computed: in the maps' precision, by the compiled kernels of
    # neuroshift.physics.kernels_jit for every sequence (SE/IR/FLAIR/DIR in one pass with the echo's decay, GRE,
    # MPRAGE; float64 per voxel, rounded once; chunks without tissue written as 0): no float64 copy, no
    # nan_to_num pass (bench/signal_equations.py).
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        # multi_echo: every echo shares the longitudinal factor of TE -> 0, as the echoes of one multi-echo
        # readout do and as qmri.fit models them (physics.signal.sequence_signal)
        s = np.asarray(sequence_signal(seq, params, pd=pd, t1_ms=t1, b1=b1, multi_echo=True, **kwargs))
    if noise_sigma:
        s = add_rician_noise(s, float(noise_sigma), rng)
        meta["noise_sigma"] = float(noise_sigma)
    return maps.reference.with_data(s.astype(dtype, copy=False), **meta)
