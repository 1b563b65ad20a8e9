"""Read and write volumes: NIfTI, NRRD, MINC, MetaImage and DICOM series.

All formats go through SimpleITK, so spacing, origin and direction are carried
exactly (NIfTI stores them as float32, DICOM as 16-character decimal strings).
Writing is atomic: a failed write never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import locale
import os
from pathlib import Path

import numpy as np

from ..errors import DimensionError, NonFiniteError, UnreadableFileError
from .atomic import atomic_dir, atomic_path, check_gzip
from .volume import Volume

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mnc", ".mha", ".mhd")

#: DICOM tags read into ``Volume.meta`` (keyword -> "group|element").
DICOM_TAGS = {
    "RepetitionTime": "0018|0080",
    "EchoTime": "0018|0081",
    "InversionTime": "0018|0082",
    "FlipAngle": "0018|1314",
    "MagneticFieldStrength": "0018|0087",
    "EchoTrainLength": "0018|0091",
    "SeriesDescription": "0008|103e",
    "Modality": "0008|0060",
    "SeriesInstanceUID": "0020|000e",
}


_LOCALE_CATEGORIES = tuple(
    getattr(locale, name) for name in ("LC_CTYPE", "LC_NUMERIC", "LC_COLLATE", "LC_TIME", "LC_MONETARY", "LC_MESSAGES")
    if hasattr(locale, name)
)


@contextlib.contextmanager
def _locale_preserved():
    """GDCM switches the process locale to "C" while it works on DICOM and does not restore LC_CTYPE,
    which silently turns Python's default text encoding into ASCII; put every category back."""
    saved = [(cat, locale.setlocale(cat)) for cat in _LOCALE_CATEGORIES]
    try:
        yield
    finally:
        for cat, value in saved:
            with contextlib.suppress(locale.Error):
                locale.setlocale(cat, value)


def is_volume_path(path: str | os.PathLike) -> bool:
    """True when the file name has a supported volume suffix (or names a DICOM folder)."""
    p = Path(path)
    return p.is_dir() or p.name.lower().endswith(VOLUME_SUFFIXES)


def read_volume(path: str | os.PathLike, *, dtype=None, allow_nonfinite: bool = False) -> Volume:
    """Read a 3D volume from a file, or a DICOM series from a folder.

    ``dtype`` casts the voxel array (for example ``np.float32``); NaN or infinite
    voxels raise :class:`NonFiniteError` unless ``allow_nonfinite``.
    """
    p = Path(path)
    if not p.exists():
        raise UnreadableFileError(f"{p}: no such file or folder")
    _check_complete(p)
    with _locale_preserved():
        vol = _read_dicom_series(p) if p.is_dir() else _read_file(p)
    if dtype is not None:
        vol.data = vol.data.astype(dtype, copy=False)
    if not allow_nonfinite:
        bad = int(np.count_nonzero(~np.isfinite(vol.data))) if np.issubdtype(vol.data.dtype, np.floating) else 0
        bad = bad or _nifti_nonfinite_count(p)
        if bad:
            raise NonFiniteError(f"{p}: {bad} voxel(s) are NaN or infinite")
    vol.meta.setdefault("source_path", str(p))
    return vol


def _check_complete(p: Path) -> None:
    """Refuse a truncated file: SimpleITK reads a cut .nii.gz or .nii as a full image with the back part zero."""
    name = p.name.lower()
    if not p.is_file() or not name.endswith((".gz", ".nii")):
        return
    try:
        size = check_gzip(p) if name.endswith(".gz") else p.stat().st_size
    except ValueError as exc:
        why = str(exc).removeprefix(f"{p}: ")
        raise UnreadableFileError(f"{p}: cannot read image: {why}; copy or write the file again") from None
    except OSError as exc:
        raise UnreadableFileError(f"{p}: cannot read image ({exc.strerror or exc})") from None
    if name.endswith((".nii", ".nii.gz")):
        expected = _nifti_expected_bytes(p)
        if expected is not None and size < expected:
            raise UnreadableFileError(
                f"{p}: cannot read image: the file is truncated (its NIfTI header announces {expected} bytes "
                f"of header and data, the file has {size}); copy or write it again")


def _nifti_expected_bytes(p: Path) -> int | None:
    """Header offset + voxel bytes a NIfTI file must hold (None when nibabel cannot parse the header)."""
    import nibabel as nib

    try:
        hdr = nib.load(str(p)).header
        n = int(np.prod(hdr.get_data_shape(), dtype=np.int64)) * hdr.get_data_dtype().itemsize
        # vox_offset 0 (as ITK writes it) means "right after the header" in a single .nii file
        return max(int(hdr.get_data_offset()), int(getattr(hdr, "single_vox_offset", 0))) + n
    except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError):
        return None  # not parseable by nibabel: SimpleITK's reader decides


def _nifti_nonfinite_count(p: Path) -> int:
    """NaN/inf voxels of a float NIfTI file (ITK's NIfTI reader silently turns NaN into 0)."""
    if p.is_dir() or not p.name.lower().endswith((".nii", ".nii.gz")):
        return 0
    import nibabel as nib

    try:
        img = nib.load(str(p))
        if not np.issubdtype(img.get_data_dtype(), np.floating):
            return 0
        return int(np.count_nonzero(~np.isfinite(np.asanyarray(img.dataobj))))
    except Exception:  # unreadable by nibabel: SimpleITK already read it, nothing more to check
        return 0


def _read_file(p: Path) -> Volume:
    import SimpleITK as sitk

    if not p.name.lower().endswith(VOLUME_SUFFIXES) and p.suffix.lower() != ".dcm":
        raise UnreadableFileError(
            f"{p}: unsupported file type; use one of {', '.join(VOLUME_SUFFIXES)} or a DICOM folder"
        )
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        reader.LoadPrivateTagsOff()
        img = reader.Execute()
    except RuntimeError as exc:
        raise UnreadableFileError(f"{p}: cannot read image ({_first_line(exc)})") from None
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() != 3:
        raise DimensionError(f"{p}: expected a 3D volume, got a {img.GetDimension()}D image of size {img.GetSize()}")
    meta = {}
    if p.suffix.lower() == ".dcm":
        meta = _dicom_meta(reader.HasMetaDataKey, reader.GetMetaData)
    return Volume.from_sitk(img, meta)


def _read_dicom_series(folder: Path) -> Volume:
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise UnreadableFileError(f"{folder}: no DICOM series found in this folder")
    if len(series) > 1:
        raise UnreadableFileError(
            f"{folder}: {len(series)} DICOM series found ({', '.join(series[:3])}...); point to a folder with one series"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise UnreadableFileError(f"{folder}: cannot read DICOM series ({_first_line(exc)})") from None
    if img.GetDimension() != 3:
        raise DimensionError(f"{folder}: the DICOM series is not a 3D volume")
    meta = _dicom_meta(lambda key: reader.HasMetaDataKey(0, key), lambda key: reader.GetMetaData(0, key))
    return Volume.from_sitk(img, meta)


def _dicom_meta(has, get) -> dict:
    meta = {}
    for name, tag in DICOM_TAGS.items():
        if has(tag):
            value = get(tag).strip()
            if value:
                meta[f"dicom:{name}"] = value
    return meta


def write_volume(vol: Volume, path: str | os.PathLike) -> Path:
    """Write a volume atomically; a path without a volume suffix is written as a DICOM series folder."""
    p = Path(path)
    if p.name.lower().endswith(VOLUME_SUFFIXES):
        import SimpleITK as sitk

        img = vol.to_sitk()
        with atomic_path(p, verify=lambda tmp: _verify_image_file(tmp, img)) as tmp:
            try:
                sitk.WriteImage(img, str(tmp), useCompression=p.name.lower().endswith((".gz", ".nrrd", ".mha")))
            except RuntimeError as exc:
                raise UnreadableFileError(f"{p}: cannot write image ({_first_line(exc)})") from None
        return p
    if p.suffix:
        raise UnreadableFileError(
            f"{p}: unsupported output type '{p.suffix}'; use one of {', '.join(VOLUME_SUFFIXES)} "
            "or a folder name (no suffix) for a DICOM series"
        )
    with atomic_dir(p, verify=lambda tmp: _verify_dicom_folder(tmp, vol)) as tmp, _locale_preserved():
        _write_dicom_series(vol, tmp)
    return p


def _verify_image_file(path: Path, img) -> None:
    """Read a just-written image back (SimpleITK, as it was written) and compare grid and every voxel.

    SimpleITK does not raise on a short write (full disk, ``ulimit -f``) and reads a truncated
    file as zeros, so the voxels themselves are compared; raises ``ValueError`` on any difference.
    """
    import SimpleITK as sitk

    try:
        back = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ValueError(f"the written file cannot be read back ({_first_line(exc)})") from None
    if back.GetSize() != img.GetSize() or back.GetPixelID() != img.GetPixelID():
        raise ValueError(f"the written file reads back as {back.GetPixelIDTypeAsString()} {back.GetSize()}, "
                         f"not {img.GetPixelIDTypeAsString()} {img.GetSize()}")
    a, b = sitk.GetArrayViewFromImage(img), sitk.GetArrayViewFromImage(back)
    equal_nan = np.issubdtype(a.dtype, np.floating)
    if not np.array_equal(a, b, equal_nan=equal_nan):
        raise ValueError("the voxels read back differ from those written (incomplete file)")


def _verify_dicom_folder(folder: Path, vol: Volume) -> None:
    """Read a just-written DICOM series back; compare its grid and every voxel within one quantisation step
    (float data are stored as int16 with RescaleSlope = half range / 32000, integral data exactly)."""
    with _locale_preserved():
        try:
            back = _read_dicom_series(folder)
        except UnreadableFileError as exc:
            raise ValueError(str(exc)) from None
    if back.data.shape != vol.data.shape:
        raise ValueError(f"the written series reads back with shape {back.data.shape}, not {vol.data.shape}")
    data = np.asarray(vol.data, dtype=np.float64)
    if data.size:
        lo, hi = float(data.min()), float(data.max())
        integral = bool(np.all(np.equal(np.mod(data, 1), 0))) and lo >= -32768 and hi <= 32767
        step = 0.0 if integral else max(hi - lo, 1e-9) / 32000.0
        worst = float(np.max(np.abs(np.asarray(back.data, dtype=np.float64) - data)))
        if worst > step + 1e-6 * max(abs(lo), abs(hi), 1.0):
            raise ValueError(f"the voxels read back differ from those written by up to {worst:g} "
                             f"(allowed {step:g}; incomplete files?)")


def _write_dicom_series(vol: Volume, folder: Path) -> None:
    """Write one MR DICOM file per slice, int16 with RescaleSlope/Intercept for float data."""
    import time

    import SimpleITK as sitk

    data = np.asarray(vol.data, dtype=np.float64)
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    integral = bool(np.all(np.equal(np.mod(data, 1), 0))) and lo >= -32768 and hi <= 32767
    if integral:
        img, intercept, slope = vol.with_data(data.astype(np.int16)).to_sitk(), 0.0, 1.0
    else:
        # GDCM quantises float voxels with these tags (intercept must be integral).
        intercept = float(np.round((hi + lo) / 2.0))
        slope = max(hi - intercept, intercept - lo, 1e-9) / 32000.0
        img = vol.with_data(data.astype(np.float32)).to_sitk()
    uid_root = "1.2.826.0.1.3680043.2.1125." + time.strftime("%Y%m%d%H%M%S")
    d = vol.direction
    orientation = "\\".join(f"{v:.10g}" for v in (*d[:, 0], *d[:, 1]))
    common = {
        "0008|0060": "MR",
        "0008|0008": "DERIVED\\SECONDARY",
        "0008|103e": str(vol.meta.get("dicom:SeriesDescription", "NeuroShift volume")),
        "0020|000d": uid_root + ".1",
        "0020|000e": uid_root + ".2",
        "0020|0037": orientation,
        "0028|1052": f"{intercept:.10g}",
        "0028|1053": f"{slope:.10g}",
        "0018|0050": f"{vol.spacing[2]:.10g}",
        "0028|0100": "16",
        "0028|0101": "16",
        "0028|0102": "15",
        "0028|0103": "1",
    }
    for name, tag in DICOM_TAGS.items():
        key = f"dicom:{name}"
        if key in vol.meta and tag not in common:
            common[tag] = str(vol.meta[key])
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        for tag, value in common.items():
            sl.SetMetaData(tag, value)
        pos = img.TransformIndexToPhysicalPoint((0, 0, k))
        sl.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in pos))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0008|0018", f"{uid_root}.3.{k + 1}")
        writer.SetFileName(str(folder / f"slice{k + 1:04d}.dcm"))
        writer.Execute(sl)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1].strip() if text else type(exc).__name__
