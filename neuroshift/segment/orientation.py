"""Reorientation of a scan to the orientation a model was trained in, without interpolation, and back.

The index axes are permuted and flipped so that they point along the model's axes (nibabel-style axis
codes of the index axes ``i, j, k``; default ``"RAS"``: ``i`` towards Right, ``j`` Anterior, ``k``
Superior), so the same scan stored RAS, LPS or with permuted axes gives the same canonical array.
Oblique scans keep their obliquity (the closest permutation is chosen). ``"stored"`` keeps the stored
array order (the authors' released claustrum inference feeds ``sitk.GetArrayFromImage`` as it is).
Used by :mod:`neuroshift.segment.preprocess`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..io.volume import LPS_TO_RAS, Volume

#: Default canonical orientation (nibabel axis codes of the index axes i, j, k).
CANONICAL = "RAS"

_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
_PHYS_AXIS = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
_POSITIVE = {"R", "A", "S"}  # direction of +x, +y, +z in RAS


def orientation_code(direction: np.ndarray) -> str:
    """Nibabel-style axis code of the index axes (i, j, k) of an LPS direction matrix, e.g. ``"LPS"``."""
    ras = LPS_TO_RAS @ np.asarray(direction, dtype=float).reshape(3, 3)
    perm = _best_assignment(ras)
    letters = []
    for c in range(3):
        p = perm[c]
        positive = "RAS"[p]
        letters.append(positive if ras[p, c] > 0 else _OPPOSITE[positive])
    return "".join(letters)


def _best_assignment(ras: np.ndarray) -> tuple[int, int, int]:
    """For each index axis, the physical axis it runs along (the permutation maximising |cosines|)."""
    best, best_score = (0, 1, 2), -1.0
    for perm in itertools.permutations(range(3)):
        score = sum(abs(ras[perm[c], c]) for c in range(3))
        if score > best_score + 1e-12:
            best, best_score = perm, score
    return best


#: Orientation value that keeps the stored array order (no reorientation), as the authors' released
#: claustrum inference does (``sitk.GetArrayFromImage`` of the file, whatever its orientation).
STORED = "stored"


def check_orientation(code: str) -> str:
    """A valid orientation value: ``"stored"`` or an axis code such as ``"RAS"`` (upper-cased); InputError otherwise."""
    return _check_code(code)


def _check_code(code: str) -> str:
    if str(code).lower() == STORED:
        return STORED
    code = str(code).upper()
    if len(code) != 3 or any(c not in _PHYS_AXIS for c in code) or len({_PHYS_AXIS[c] for c in code}) != 3:
        raise InputError(f"'{code}' is not an orientation code such as RAS, LPS or LAS")
    return code


@dataclass(frozen=True)
class Reorientation:
    """How an array was permuted and flipped into canonical order, and how to undo it."""

    transpose: tuple[int, int, int]  # canonical array axis a = original array axis transpose[a]
    flip: tuple[int, ...]  # canonical array axes flipped after the transpose
    original_shape: tuple[int, int, int]  # original [k, j, i] shape
    original_code: str
    code: str

    @property
    def identity(self) -> bool:
        return self.transpose == (0, 1, 2) and not self.flip

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Original ``[..., k, j, i]`` array -> canonical order (leading axes kept)."""
        lead = array.ndim - 3
        out = np.transpose(array, tuple(range(lead)) + tuple(lead + a for a in self.transpose))
        if self.flip:
            out = np.flip(out, axis=tuple(lead + a for a in self.flip))
        return np.ascontiguousarray(out)

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Canonical ``[..., k, j, i]`` array -> the original index order."""
        lead = array.ndim - 3
        if self.flip:
            array = np.flip(array, axis=tuple(lead + a for a in self.flip))
        inv = tuple(int(v) for v in np.argsort(self.transpose))
        return np.ascontiguousarray(np.transpose(array, tuple(range(lead)) + tuple(lead + a for a in inv)))


def reorient(vol: Volume, code: str = CANONICAL) -> tuple[Volume, Reorientation]:
    """Permute/flip ``vol`` so its index axes follow ``code``; physical positions are unchanged.

    Returns the reoriented volume (same voxels, new geometry) and the :class:`Reorientation`
    that :meth:`Reorientation.invert` uses to bring a canonical array back.
    """
    code = _check_code(code)
    if code == STORED:  # the stored array order as it is: identity, geometry unchanged
        ro = Reorientation((0, 1, 2), (), tuple(vol.data.shape), orientation_code(vol.direction), STORED)
        return Volume(np.ascontiguousarray(vol.data), vol.spacing.copy(), vol.origin.copy(), vol.direction.copy(),
                      dict(vol.meta)), ro
    ras = LPS_TO_RAS @ vol.direction
    perm_phys = _best_assignment(ras)  # index axis c runs along physical axis perm_phys[c]
    phys_to_index = {p: c for c, p in enumerate(perm_phys)}
    src_index = []  # canonical index axis t comes from original index axis src_index[t]
    flips_index = []
    for t, letter in enumerate(code):
        c = phys_to_index[_PHYS_AXIS[letter]]
        src_index.append(c)
        points_positive = ras[_PHYS_AXIS[letter], c] > 0
        wants_positive = letter in _POSITIVE
        flips_index.append(points_positive != wants_positive)
    transpose = tuple(2 - src_index[2 - a] for a in range(3))
    flip = tuple(a for a in range(3) if flips_index[2 - a])
    ro = Reorientation(transpose, flip, tuple(vol.data.shape), orientation_code(vol.direction), code)
    n = np.array(vol.shape_ijk)
    start = np.array([(n[src_index[t]] - 1) if flips_index[t] else 0 for t in range(3)], dtype=float)
    # start is indexed by canonical axis; express it as an original (i, j, k) index
    orig_idx = np.zeros(3)
    for t in range(3):
        orig_idx[src_index[t]] = start[t]
    origin = vol.origin + vol.direction @ (vol.spacing * orig_idx)
    direction = np.stack([vol.direction[:, src_index[t]] * (-1.0 if flips_index[t] else 1.0) for t in range(3)],
                         axis=1)
    spacing = np.array([vol.spacing[src_index[t]] for t in range(3)])
    return Volume(ro.apply(vol.data), spacing, origin, direction, dict(vol.meta)), ro


__all__ = ["CANONICAL", "STORED", "Reorientation", "check_orientation", "orientation_code", "reorient"]
