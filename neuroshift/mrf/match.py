"""Dictionary matching by normalised inner product, memory bounded at any volume size.

For each voxel signal ``x`` (``n_frames`` values) the match is the atom ``d`` of the dictionary with the
largest ``<x, d> / (|x| |d|)`` (magnitude signals, so all products are >= 0). Outputs per voxel:
T1 and T2* (ms), B1 (scale), the PD scale ``<x, d> / |d|^2`` (signal units per unit proton density) and the
match quality (the cosine, 0..1; 0 for an all-zero signal).

Two searches (:func:`match_signals`, ``method``):

* ``tree`` (default on the CPU): for unit vectors ``|x - d|^2 = 2 - 2 <x, d>``, so the best match is the
  nearest normalised atom. The atoms, rotated onto their SVD basis (an orthogonal rotation: distances are
  unchanged), go into a k-d tree (:class:`scipy.spatial.cKDTree`, float64) and every voxel takes one exact
  nearest-neighbour query: the float64 argmax of the brute-force product without computing the
  voxels x atoms scores. The atoms lie on a 3-parameter manifold, so the tree visits few of them
  (measured 20-35x faster than the chunked product on 2 loaded cores; ``bench/mrf.py``). Queries run on
  ``threads`` cores in chunks of ``chunk_voxels`` (default 65,536).
* ``scores`` (default on a GPU): voxels in chunks of ``chunk_voxels`` (default: from ``memory_mb``, the budget
  of one chunk's ``chunk x n_atoms`` float32 score matrix), scores by one matrix product, the ``refine`` best
  kept (``torch.topk``) and re-scored in float64 over the full frames. Neighbouring long-T2* atoms differ by
  ~1e-7 in cosine (below float32 resolution), so this refinement is what makes noise-free dictionary signals
  come back exactly while the bulk of the work runs in float32.

Optional SVD compression (``svd_energy`` or ``svd_rank``): ``k`` = the smallest rank that retains that share
of the squared singular values of the normalised atoms. ``scores`` then multiplies in the rank-``k`` space;
``tree`` searches the ``refine`` nearest rank-``k`` projections. Both re-score their candidates in float64
over the full frames; compression makes the search approximate (the exact argmax may fall outside the
candidates), without it ``tree`` is exact.

``b1`` (optional, per voxel): a measured B1+ map restricts each voxel to the atoms of the nearest grid B1.

The peak memory is one chunk's work plus the dictionary (float64 ``n_atoms x n_frames``: 15 MB for the
paper's grid, the tree about as much again), independent of the number of voxels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import InputError, ParameterRangeError
from .dictionary import Dictionary

#: Output maps of a match, in this order, with their units.
OUTPUTS = {"T1": "ms", "T2star": "ms", "B1": "scale", "PD": "a.u.", "quality": "cosine 0..1"}
#: Search methods of :func:`match_signals` (``auto``: ``tree`` on the CPU, ``scores`` on a GPU).
METHODS = ("auto", "tree", "scores")
#: Voxels per k-d tree query chunk (inputs and results ~100 B per voxel).
TREE_CHUNK = 65536


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
    unit_np: np.ndarray | None = None  # (A, F) float64 normalised atoms
    rotation: np.ndarray | None = None  # (F, rank) float64 right singular vectors (all F without compression)
    _tree: Any = field(default=None, repr=False, compare=False)
    _subsets: dict = field(default_factory=dict, repr=False, compare=False)

    def tree(self):
        """The k-d tree of the rotated (rank-``rank``) atoms, built on first use (~0.2 s for 52,326 atoms)."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.unit_np @ self.rotation, leafsize=16, balanced_tree=False)
        return self._tree

    def subset(self, ids: np.ndarray, key: Any = None) -> "Prepared":
        """The same preparation restricted to the atoms ``ids`` (same basis, its own tree); with ``key``, kept
        and reused (e.g. one per grid B1)."""
        import torch

        if key is not None and key in self._subsets:
            return self._subsets[key]
        t = torch.as_tensor(ids, device=self.device)
        sub = replace(self, unit64=self.unit64[t], norms=self.norms[ids], scores_atoms=self.scores_atoms[t],
                      params=self.params[ids], unit_np=self.unit_np[ids], _tree=None, _subsets={})
        if key is not None:
            self._subsets[key] = sub
        return sub


def prepare(d: Dictionary, *, svd_energy: float | None = None, svd_rank: int | None = None, device=None) -> Prepared:
    """Normalise the atoms and compute their SVD basis (rank ``n_frames`` unless compression is asked for)."""
    import torch

    from ..torch_device import resolve_device

    dev = resolve_device(device) if isinstance(device, str) or device is None else torch.device(device)
    atoms = np.asarray(d.atoms(), dtype=np.float64)
    norms = np.linalg.norm(atoms, axis=1)
    if np.any(norms <= 0):
        raise InputError("the dictionary holds all-zero atoms; it cannot be matched")
    unit = atoms / norms[:, None]
    _, s, vt = np.linalg.svd(unit, full_matrices=False)
    cum = np.cumsum(s ** 2) / np.sum(s ** 2)
    rank, energy, basis = unit.shape[1], 1.0, None
    if svd_energy is not None or svd_rank is not None:
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
    return Prepared(unit64, norms, basis, scores_atoms, d.parameters(), rank, energy, dev, unit,
                    np.ascontiguousarray(vt[:rank].T))


def chunk_for(n_atoms: int, memory_mb: float) -> int:
    """Voxels per chunk so one chunk's float32 score matrix takes about ``memory_mb`` MB (at least 16)."""
    return max(16, int(memory_mb * 1e6 / (4.0 * max(n_atoms, 1))))


def match_signals(signals: np.ndarray, d: Dictionary | Prepared, *, chunk_voxels: int | None = None,
                  memory_mb: float = 256.0, refine: int = 8, svd_energy: float | None = None,
                  svd_rank: int | None = None, device=None, method: str = "auto", threads: int | None = None,
                  b1: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Match ``signals`` ``(n_voxels, n_frames)``; returns ``OUTPUTS`` arrays (float32) plus ``index`` (int64).

    ``method``: see :data:`METHODS` and the module docstring; ``threads``: cores of the tree queries (default
    torch's thread count); ``b1`` ``(n_voxels,)``: measured B1+ scale per voxel, restricting each voxel to the
    atoms of the nearest grid B1.

    Raises:
        InputError: the frame count differs from the dictionary's, non-finite signals or B1, B1 of another shape;
        ParameterRangeError: unknown method.
    """
    import torch

    if method not in METHODS:
        raise ParameterRangeError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    p = d if isinstance(d, Prepared) else prepare(d, svd_energy=svd_energy, svd_rank=svd_rank, device=device)
    x_all = np.asarray(signals)
    if x_all.ndim != 2 or x_all.shape[1] != p.unit64.shape[1]:
        raise InputError(f"signals of shape {x_all.shape} do not have the dictionary's {p.unit64.shape[1]} frames")
    if not np.all(np.isfinite(x_all)):
        raise InputError("signals hold NaN or infinite values")
    if method == "auto":
        method = "tree" if torch.device(p.device).type == "cpu" else "scores"
    search = _tree_search if method == "tree" else _scores_search
    opts = {"chunk": chunk_voxels, "memory_mb": memory_mb, "refine": refine,
            "threads": int(threads or torch.get_num_threads())}
    if b1 is None:
        index, quality, norm_x = search(p, x_all, **opts)
    else:
        index, quality, norm_x = _b1_restricted(p, x_all, b1, search, opts)
    zero = norm_x <= 0
    quality[zero] = 0.0
    params = p.params[index]
    pd = norm_x * quality / p.norms[index]
    out = {"T1": params[:, 0], "T2star": params[:, 1], "B1": params[:, 2], "PD": pd, "quality": quality}
    out = {k_: np.where(zero, 0.0, v).astype(np.float32) for k_, v in out.items()}
    out["index"] = np.where(zero, -1, index)
    return out


def _b1_restricted(p: Prepared, x_all: np.ndarray, b1: np.ndarray, search, opts):
    """Match each voxel against the atoms of the grid B1 nearest its measured ``b1``."""
    b = np.asarray(b1, dtype=np.float64).reshape(-1)
    if b.shape[0] != x_all.shape[0]:
        raise InputError(f"B1 map of {b.shape[0]} voxels for {x_all.shape[0]} signals")
    if not np.all(np.isfinite(b)):
        raise InputError("the B1 map holds NaN or infinite values")
    grid = np.unique(p.params[:, 2])
    nearest = np.abs(b[:, None] - grid[None, :]).argmin(axis=1)
    index = np.zeros(len(x_all), dtype=np.int64)
    quality = np.zeros(len(x_all), dtype=np.float64)
    norm_x = np.zeros(len(x_all), dtype=np.float64)
    for g in np.unique(nearest):
        ids = np.flatnonzero(p.params[:, 2] == grid[g])
        sel = nearest == g
        i, q, n = search(p.subset(ids, key=("b1", float(grid[g]))), x_all[sel], **opts)
        index[sel], quality[sel], norm_x[sel] = ids[i], q, n
    return index, quality, norm_x


def _unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 rows scaled to unit norm (all-zero rows stay 0) and their norms."""
    x64 = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x64, axis=1)
    return x64 / np.where(n > 0, n, 1.0)[:, None], n


def _tree_search(p: Prepared, x_all: np.ndarray, *, chunk, memory_mb, refine, threads):
    """Nearest normalised atom per voxel by k-d tree (exact at full rank; see the module docstring)."""
    del memory_mb
    tree = p.tree()
    n_atoms, full = p.unit_np.shape[0], p.rank == p.unit_np.shape[1]
    k = 1 if full else max(1, min(int(refine), n_atoms))
    step = int(chunk or TREE_CHUNK)
    index = np.zeros(len(x_all), dtype=np.int64)
    quality = np.zeros(len(x_all), dtype=np.float64)
    norm_x = np.zeros(len(x_all), dtype=np.float64)
    for i in range(0, len(x_all), step):
        sl = slice(i, min(i + step, len(x_all)))
        xu, norm_x[sl] = _unit_rows(x_all[sl])
        _, cand = tree.query(xu @ p.rotation, k=k, workers=threads)
        cand = np.asarray(cand, dtype=np.int64).reshape(len(xu), k)
        exact = np.einsum("nkf,nf->nk", p.unit_np[cand], xu)
        best = exact.argmax(axis=1)
        index[sl] = cand[np.arange(len(xu)), best]
        quality[sl] = exact[np.arange(len(xu)), best]
    return index, quality, norm_x


def _scores_search(p: Prepared, x_all: np.ndarray, *, chunk, memory_mb, refine, threads):
    """Chunked float32 scores, top-``refine`` candidates re-scored in float64 (see the module docstring)."""
    import torch

    del threads
    n_atoms = p.unit64.shape[0]
    step = int(chunk or chunk_for(n_atoms, memory_mb))
    k = max(1, min(int(refine), n_atoms))
    index = np.zeros(len(x_all), dtype=np.int64)
    quality = np.zeros(len(x_all), dtype=np.float64)
    norm_x = np.zeros(len(x_all), dtype=np.float64)
    for i in range(0, len(x_all), step):
        sl = slice(i, min(i + step, len(x_all)))
        u, norm_x[sl] = _unit_rows(x_all[sl])
        xu = torch.as_tensor(u, device=p.device)
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
    return index, quality, norm_x


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
                 b1_map: np.ndarray | None = None, **kwargs) -> dict[str, np.ndarray]:
    """Match a frame stack ``(..., n_frames)`` (frames last) inside ``mask`` (default: voxels with any
    non-zero frame); maps have the spatial shape, 0 outside the mask (``index`` -1). ``b1_map`` (spatial
    shape, B1+ scale): restrict each voxel to the nearest grid B1 (see :func:`match_signals`)."""
    f = np.asarray(frames)
    spatial = f.shape[:-1]
    m = np.any(f != 0, axis=-1) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != spatial:
        raise InputError(f"mask of shape {m.shape} does not fit frames of spatial shape {spatial}")
    if b1_map is not None:
        b1_map = np.asarray(b1_map)
        if b1_map.shape != spatial:
            raise InputError(f"B1 map of shape {b1_map.shape} does not fit frames of spatial shape {spatial}")
        kwargs["b1"] = b1_map[m]
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


__all__ = ["METHODS", "OUTPUTS", "Prepared", "brute_force_match", "chunk_for", "match_signals", "match_volume",
           "prepare", "svd_rank_for"]
