"""Real MS lesion masks as qSynth lesion labels: the packaged Lesjak 2018 consensus masks on the template grid.

``neuroshift/data/qsynth/lesion_masks_lesjak2018_2mm.npz`` holds the multi-rater consensus white-matter lesion
masks of the Lesjak et al. 2018 MS database (Neuroinformatics 16:51-63, doi:10.1007/s12021-017-9348-7; CC BY,
notice ``NOTICE-Lesjak2018.txt`` beside it), moved by the database's MNI registration and resampled by
``dev/make_lesion_bank.py`` onto the 2 mm grid of the packaged ICBM152 template (:mod:`neuroshift.phantom.template`).
Patients 07, 19 and 26 are left out: their FLAIRs are our real validation scans.

Why a mask database beside the generative model of :mod:`neuroshift.qsynth.anatomy`: real lesion loads (0.2-55 ml
here), counts, confluence around the ventricles and juxtacortical positions come from patients, not from
[assumption]s. :func:`paste_bank_lesions` puts one mask (optionally mirrored left-right) into template-space
labels where they are white or grey matter (CSF stays CSF: after an affine registration the patients' ventricles
do not match the template's); :func:`bank_label_maps` pastes first and deforms after, so the lesions move with the
anatomy.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InputError, IntegrityError
from ..io.volume import Volume

__all__ = ["LesionBank", "load_lesion_bank", "paste_bank_lesions", "bank_label_maps", "BANK_FILE", "NOTICE_FILE"]

BANK_FILE = "lesion_masks_lesjak2018_2mm.npz"
NOTICE_FILE = "NOTICE-Lesjak2018.txt"


def data_dir() -> Path:
    """Folder of the packaged qSynth resources."""
    return Path(str(resources.files("neuroshift") / "data" / "qsynth"))


@dataclass(frozen=True)
class LesionBank:
    """Binary lesion masks ``masks[n]`` (``[k, j, i]`` bool) on the template grid ``grid``, with their case names."""

    names: tuple[str, ...]
    masks: np.ndarray
    provenance: dict
    grid: Volume  # the packaged template's labels: spacing, origin and direction of the masks

    def __len__(self) -> int:
        return len(self.names)

    def lesion_ml(self, voxel_ml: float = 0.008) -> np.ndarray:
        """Lesion volume of every mask in ml (2 mm voxels: 0.008 ml)."""
        return self.masks.reshape(len(self), -1).sum(axis=1) * float(voxel_ml)


def load_lesion_bank(path: str | Path | None = None) -> LesionBank:
    """Read a lesion bank (default: the packaged Lesjak 2018 masks); its grid must be the template's."""
    from .anatomy import template_labels

    p = Path(path) if path is not None else data_dir() / BANK_FILE
    try:
        with np.load(p, allow_pickle=False) as z:
            shape = tuple(int(v) for v in z["shape_kji"])
            names = tuple(str(v) for v in z["names"])
            bits = z["packed"]
            provenance = json.loads(str(z["provenance"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise IntegrityError(f"{p}: the lesion bank is missing or damaged ({exc})") from None
    n_vox = int(np.prod(shape))
    if bits.shape != (len(names), (n_vox + 7) // 8):
        raise IntegrityError(f"{p}: {bits.shape[0]} packed masks of {bits.shape[1:]} bytes do not match "
                             f"{len(names)} names on a {shape} grid")
    grid = template_labels()
    if shape != tuple(grid.data.shape):
        raise IntegrityError(f"{p}: masks on a {shape} grid, the packaged template is {tuple(grid.data.shape)}")
    masks = np.unpackbits(bits, axis=1, count=n_vox).astype(bool).reshape((len(names), *shape))
    return LesionBank(names, masks, provenance, grid)


def paste_bank_lesions(labels: Volume, rng: np.random.Generator, bank: LesionBank, *, index: int | None = None,
                       flip_prob: float = 0.5, tissue_labels: tuple[int, ...] = (2, 3), lesion_label: int = 4
                       ) -> tuple[Volume, dict]:
    """``labels`` (template grid) with bank mask ``index`` (random if None), mirrored left-right with probability
    ``flip_prob``, as ``lesion_label`` where the labels are one of ``tissue_labels`` (GM, WM); and a record."""
    lab = np.asarray(labels.data)
    if tuple(lab.shape) != tuple(bank.masks.shape[1:]) or not labels.same_grid(bank.grid):
        raise InputError(f"labels of shape {lab.shape}, spacing {tuple(labels.spacing)} mm are not on the lesion "
                         f"bank's template grid {bank.masks.shape[1:]}, {tuple(bank.grid.spacing)} mm: paste bank "
                         "lesions before resampling or cropping")
    k = int(rng.integers(len(bank))) if index is None else int(index)
    if not 0 <= k < len(bank):
        raise InputError(f"lesion bank index {k} outside 0..{len(bank) - 1}")
    mask = bank.masks[k]
    flipped = bool(rng.random() < flip_prob)
    if flipped:
        mask = mask[:, :, ::-1]  # i runs left-right on the template grid (symmetric ICBM152 2009a)
    put = mask & np.isin(lab, tissue_labels)
    out = lab.copy()
    out[put] = lesion_label
    voxel_ml = float(np.prod(labels.spacing)) / 1000.0
    record = {"case": bank.names[k], "flipped": flipped, "mask_ml": round(float(mask.sum()) * voxel_ml, 3),
              "placed_ml": round(float(put.sum()) * voxel_ml, 3)}
    return labels.with_data(out.astype(np.int16)), record


def bank_label_maps(n: int, seed: int = 0, *, bank: LesionBank | None = None, indices=None,
                    amplitude_mm: float = 6.0, flip_prob: float = 0.5) -> list[Volume]:
    """``n`` SYNTHETIC label maps: template labels with a bank lesion mask (``indices[k % len(indices)]``, or
    random), then the random elastic deformation of :func:`~neuroshift.qsynth.anatomy.deform_labels` (seeded)."""
    from .anatomy import deform_labels

    bank = bank if bank is not None else load_lesion_bank()
    base = bank.grid
    idx = list(indices) if indices is not None else None
    out = []
    for k in range(int(n)):
        g = np.random.default_rng([int(seed), k, 2018])
        lab, rec = paste_bank_lesions(base, g, bank, index=None if not idx else idx[k % len(idx)],
                                      flip_prob=flip_prob)
        lab = deform_labels(lab, g, amplitude_mm)
        lab.meta.update(lesion_case=rec["case"], flipped=rec["flipped"],
                        lesion_ml=round(float((np.asarray(lab.data) == 4).sum()) * 0.001 * float(np.prod(lab.spacing)), 3))
        out.append(lab)
    return out
