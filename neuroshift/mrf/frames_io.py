"""Reading MRF frames and writing maps, geometry kept.

Frames come as a 4D NIfTI with the frames last (``X, Y, Z, n_frames``) or as a folder of 3D frames (any
volume format NeuroShift reads, sorted by name with numbers compared as numbers: ``frame2`` before
``frame10``). The schedule lies beside them: ``<name>.schedule.json`` or ``schedule.json`` next to a 4D
file, ``schedule.json`` inside a frames folder; ``--schedule`` overrides. Arrays are returned as
``(K, J, I, n_frames)`` together with a 3D :class:`~neuroshift.io.volume.Volume` that carries the grid, so
every map is written on the input's grid.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import DimensionError, GeometryError, InputError, NonFiniteError, UnreadableFileError
from ..io.volume import Volume
from .schedule import Schedule, load_schedule

SCHEDULE_NAME = "schedule.json"


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _strip_suffix(name: str) -> str:
    for suf in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def find_schedule(frames_path: str | os.PathLike, explicit: str | os.PathLike | None = None) -> Schedule:
    """The schedule of ``frames_path`` (see the module docstring).

    Raises:
        UnreadableFileError: no schedule found beside the frames and none given.
    """
    if explicit is not None:
        return load_schedule(explicit)
    p = Path(frames_path)
    candidates = [p / SCHEDULE_NAME] if p.is_dir() else [p.parent / f"{_strip_suffix(p.name)}.schedule.json",
                                                         p.parent / SCHEDULE_NAME]
    for c in candidates:
        if c.is_file():
            return load_schedule(c)
    raise UnreadableFileError(f"{p}: no schedule beside the frames (looked for "
                              f"{', '.join(str(c) for c in candidates)}); pass --schedule")


def read_frames(path: str | os.PathLike) -> tuple[np.ndarray, Volume]:
    """Frames ``(K, J, I, F)`` float32 and a 3D reference volume with their geometry."""
    p = Path(path)
    if not p.exists():
        raise UnreadableFileError(f"{p}: no such file or folder")
    if p.is_dir():
        from ..io.files import is_volume_path, read_volume

        files = sorted((f for f in p.iterdir() if f.is_file() and is_volume_path(f)), key=_natural_key)
        if not files:
            raise UnreadableFileError(f"{p}: the folder holds no 3D frame volumes")
        vols = [read_volume(f, dtype=np.float32) for f in files]
        for f, v in zip(files[1:], vols[1:]):
            vols[0].require_same_grid(v, f"frame {files[0].name} and {f.name}")
        return np.stack([v.data for v in vols], axis=-1), vols[0].with_data(vols[0].data)
    import nibabel as nib

    try:
        img = nib.load(str(p))
        arr = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for unreadable files
        raise UnreadableFileError(f"{p}: not a readable 4D NIfTI ({str(exc).splitlines()[0][:200]})") from None
    if arr.ndim != 4:
        raise DimensionError(f"{p}: expected a 4D image with the frames last, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{p}: the frames hold NaN or infinite values")
    data = np.ascontiguousarray(arr.transpose(2, 1, 0, 3))  # (I, J, K, F) -> (K, J, I, F)
    try:
        ref = Volume.from_ijk_to_ras(data[..., 0], img.affine, {"source_path": str(p)})
    except GeometryError as exc:
        raise GeometryError(f"{p}: {exc}") from None
    return data, ref


def write_frames_nifti(frames: np.ndarray, ref: Volume, path: str | os.PathLike) -> Path:
    """Write ``(K, J, I, F)`` frames as a 4D NIfTI (frames last) on ``ref``'s grid, atomically, read back."""
    import nibabel as nib

    from ..io.atomic import atomic_path

    p = Path(path)
    arr = np.ascontiguousarray(np.asarray(frames, dtype=np.float32).transpose(2, 1, 0, 3))
    img = nib.Nifti1Image(arr, ref.ijk_to_ras())

    def verify(tmp: Path) -> None:
        back = np.asarray(nib.load(str(tmp)).dataobj)
        if back.shape != arr.shape or not np.array_equal(back, arr):
            raise InputError(f"{p}: frames read back differ")

    with atomic_path(p, verify=verify) as tmp:
        nib.save(img, str(tmp))
    return p


def write_maps(maps: dict[str, np.ndarray], ref: Volume, out_dir: str | os.PathLike, *,
               extra_files: dict[str, bytes | str] | None = None) -> dict[str, Path]:
    """Write every map as ``<name>.nii.gz`` on ``ref``'s grid into ``out_dir`` (the folder replaced as a whole,
    only when every file verified)."""
    from ..io.atomic import atomic_dir
    from ..io.files import write_volume

    out = Path(out_dir)
    src = ref.meta.get("source_path")
    if src and Path(src).resolve() == out.resolve():
        raise InputError(f"{out}: the output folder is the input; choose another --out")
    written = {}
    with atomic_dir(out) as tmp:
        for name, arr in maps.items():
            write_volume(ref.with_data(np.asarray(arr, dtype=np.float32)), tmp / f"{name}.nii.gz")
            written[name] = out / f"{name}.nii.gz"
        for name, content in (extra_files or {}).items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            (tmp / name).write_bytes(data)
            written[name] = out / name
    return written


def read_maps(folder: str | os.PathLike, names) -> tuple[dict[str, np.ndarray], Volume]:
    """Read ``<name>.nii.gz`` maps of a folder (all on one grid)."""
    from ..io.files import read_volume

    root = Path(folder)
    maps, ref = {}, None
    for n in names:
        f = root / f"{n}.nii.gz"
        if not f.is_file():
            continue
        v = read_volume(f, dtype=np.float32)
        if ref is not None:
            ref.require_same_grid(v, f"maps in {root}")
        ref = ref or v
        maps[n] = v.data
    if ref is None:
        raise UnreadableFileError(f"{root}: none of the maps {', '.join(f'{n}.nii.gz' for n in names)} found")
    return maps, ref


__all__ = ["find_schedule", "read_frames", "read_maps", "write_frames_nifti", "write_maps"]
