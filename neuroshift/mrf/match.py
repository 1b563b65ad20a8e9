"""Dictionary matching by normalised inner product, chunked so memory stays bounded at any volume size.

For each voxel signal ``x`` (``n_frames`` values) the match is the atom ``d`` of the dictionary with the
largest ``<x, d> / (|x| |d|)`` (magnitude signals, so all products are >= 0). Outputs per voxel:
T1 and T2* (ms), B1 (scale), the PD scale ``<x, d> / |d|^2`` (signal units per unit proton density) and the
match quality (the cosine, 0..1; 0 for an all-zero signal).

How (:func:`match_signals`):

1. optional SVD compression: the normalised atoms are projected on their first ``k`` right singular
   vectors, ``k`` the smallest rank that retains ``svd_energy`` of the squared singular values (or a given
   ``svd_rank``); voxel signals are projected on the same basis;
2. voxels in chunks of ``chunk_voxels`` (default: from ``memory_mb``, the budget of one chunk's score
   matrix ``chunk x n_atoms`` float32): scores by one matrix product on the device (GPU when present),
   the ``refine`` best candidates kept (``torch.topk``);
3. the candidates are re-scored in float64 over the full frames and the best taken. Neighbouring long-T2*
   atoms differ by ~1e-7 in cosine (below float32 resolution), so this refinement is what makes noise-free
   dictionary signals come back exactly while the bulk of the work runs in float32.

The peak memory is one chunk's scores plus the dictionary (float64 ``n_atoms x n_frames``: 15 MB for the
paper's grid), independent of the number of voxels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, ParameterRangeError
from .dictionary import Dictionary

#: Output maps of a match, in this order, with their units.
OUTPUTS = {"T1": "ms", "T2star": "ms", "B1": "scale", "PD": "a.u.", "quality": "cosine 0..1"}


@dataclass
class Prepared:
    """A dictionary ready for matching on one device (see :func:`prepare`)."""

    unit64: Any  # torch (A, F) float64 normalised atoms
    norms: np.ndarray  # (A,) float64 atom norms
    basis: Any  # torch (F, k) float32 or None
    scores_atoms: Any  # torch (A, k or F) float32
    params: np.ndarray  # (A, 3)
    rank: int
    energy: float
    device: Any


def prepare(d: Dictionary, *, svd_energy: float | None = None, svd_rank: int | None = None, device=None) -> Prepared:
    """Normalise the atoms and (optionally) build the SVD basis."""
    import torch

    from ..torch_device import resolve_device

    dev = resolve_device(device) if isinstance(device, str) or device is None else torch.device(device)
    atoms = np.asarray(d.atoms(), dtype=np.float64)
    norms = np.linalg.norm(atoms, axis=1)
    if np.any(norms <= 0):
        raise InputError("the dictionary holds all-zero atoms; it cannot be matched")
    unit = atoms / norms[:, None]
    rank, energy, basis = unit.shape[1], 1.0, None
    if svd_energy is not None or svd_rank is not None:
        _, s, vt = np.linalg.svd(unit, full_matrices=False)
        cum = np.cumsum(s ** 2) / np.sum(s ** 2)
        if svd_rank is not None:
            if not 1 <= int(svd_rank) <= unit.shape[1]:
                raise ParameterRangeError(f"svd_rank must be in 1..{unit.shape[1]}, got {svd_rank}")
            rank = int(svd_rank)
        else:
            if not 0.0 < float(svd_energy) <= 1.0:
                raise ParameterRangeError(f"svd_energy must be in (0, 1], got {svd_energy}")
            rank = int(min(np.searchsorted(cum, float(svd_energy) - 1e-15) + 1, unit.shape[1]))
        energy = float(cum[rank - 1])
        basis = torch.as_tensor(vt[:rank].T.copy(), dtype=torch.float32, device=dev)
    unit64 = torch.as_tensor(unit, dtype=torch.float64, device=dev)
    compressed = unit @ vt[:rank].T if basis is not None else unit
    scores_atoms = torch.as_tensor(compressed, dtype=torch.float32, device=dev)
    return Prepared(unit64, norms, basis, scores_atoms, d.parameters(), rank, energy, dev)


def chunk_for(n_atoms: int, memory_mb: float) -> int:
    """Voxels per chunk so one chunk's float32 score matrix takes about ``memory_mb`` MB (at least 16)."""
    return max(16, int(memory_mb * 1e6 / (4.0 * max(n_atoms, 1))))


def match_signals(signals: np.ndarray, d: Dictionary | Prepared, *, chunk_voxels: int | None = None,
                  memory_mb: float = 256.0, refine: int = 8, svd_energy: float | None = None,
                  svd_rank: int | None = None, device=None) -> dict[str, np.ndarray]:
    """Match ``signals`` ``(n_voxels, n_frames)``; returns ``OUTPUTS`` arrays (float32) plus ``index`` (int64).

    Raises:
        DimensionError-like InputError: the frame count differs from the dictionary's.
    """
    import torch

    p = d if isinstance(d, Prepared) else prepare(d, svd_energy=svd_energy, svd_rank=svd_rank, device=device)
    x_all = np.asarray(signals, dtype=np.float64)
    if x_all.ndim != 2 or x_all.shape[1] != p.unit64.shape[1]:
        raise InputError(f"signals of shape {x_all.shape} do not have the dictionary's {p.unit64.shape[1]} frames")
    if not np.all(np.isfinite(x_all)):
        raise InputError("signals hold NaN or infinite values")
    n_atoms = p.unit64.shape[0]
    chunk = int(chunk_voxels or chunk_for(n_atoms, memory_mb))
    k = max(1, min(int(refine), n_atoms))
    index = np.zeros(len(x_all), dtype=np.int64)
    quality = np.zeros(len(x_all), dtype=np.float64)
    norm_x = np.linalg.norm(x_all, axis=1)
    for i in range(0, len(x_all), chunk):
        sl = slice(i, min(i + chunk, len(x_all)))
        x64 = torch.as_tensor(x_all[sl], device=p.device)
        nx = torch.as_tensor(norm_x[sl], device=p.device)
        xu = x64 / torch.where(nx > 0, nx, torch.ones_like(nx))[:, None]
        xs = xu.float()
        if p.basis is not None:
            xs = xs @ p.basis
        scores = xs @ p.scores_atoms.T
        top = torch.topk(scores, k, dim=1).indices if k > 1 else scores.argmax(dim=1, keepdim=True)
        del scores
        exact = torch.einsum("nkf,nf->nk", p.unit64[top], xu)
        best = exact.argmax(dim=1)
        index[sl] = top.gather(1, best[:, None])[:, 0].cpu().numpy()
        quality[sl] = exact.gather(1, best[:, None])[:, 0].cpu().numpy()
    zero = norm_x <= 0
    quality[zero] = 0.0
    params = p.params[index]
    pd = norm_x * quality / p.norms[index]
    out = {"T1": params[:, 0], "T2star": params[:, 1], "B1": params[:, 2], "PD": pd, "quality": quality}
    out = {k_: np.where(zero, 0.0, v).astype(np.float32) for k_, v in out.items()}
    out["index"] = np.where(zero, -1, index)
    return out


def brute_force_match(signals: np.ndarray, d: Dictionary, *, dtype: str = "float64") -> np.ndarray:
    """Reference: argmax of the normalised inner product over the WHOLE dictionary in one einsum
    (memory grows with voxels x atoms). Returns atom indices."""
    import torch

    tdt = getattr(torch, dtype)
    atoms = torch.as_tensor(np.asarray(d.atoms()), dtype=tdt)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    x = torch.as_tensor(np.asarray(signals), dtype=tdt)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(tdt).tiny)
    return torch.einsum("nf,af->na", x, atoms).argmax(dim=1).numpy()


def match_volume(frames: np.ndarray, d: Dictionary | Prepared, mask: np.ndarray | None = None,
                 **kwargs) -> dict[str, np.ndarray]:
    """Match a frame stack ``(..., n_frames)`` (frames last) inside ``mask`` (default: voxels with any
    non-zero frame); maps have the spatial shape, 0 outside the mask (``index`` -1)."""
    f = np.asarray(frames)
    spatial = f.shape[:-1]
    m = np.any(f != 0, axis=-1) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != spatial:
        raise InputError(f"mask of shape {m.shape} does not fit frames of spatial shape {spatial}")
    res = match_signals(f[m], d, **kwargs)
    out = {}
    for k, v in res.items():
        full = np.full(spatial, -1 if k == "index" else 0, dtype=v.dtype)
        full[m] = v
        out[k] = full
    return out


def svd_rank_for(d: Dictionary, energy: float) -> int:
    """The rank :func:`prepare` keeps for ``energy``."""
    unit = d.atoms() / np.linalg.norm(d.atoms(), axis=1, keepdims=True)
    s = np.linalg.svd(unit, compute_uv=False)
    cum = np.cumsum(s ** 2) / np.sum(s ** 2)
    return int(min(np.searchsorted(cum, energy - 1e-15) + 1, len(s)))


__all__ = ["OUTPUTS", "Prepared", "brute_force_match", "chunk_for", "match_signals", "match_volume", "prepare",
           "svd_rank_for"]
