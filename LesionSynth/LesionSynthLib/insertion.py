"""Lesion-insertion panel logic (Qt-free): host volume + tissues + lesions in, ``neuroshift insert-lesions`` out.

The host is a real scan with known acquisition parameters (sequence and ``TE=..,TI=..,TR=..`` in ms/degrees,
pre-filled from the node's ``NeuroShift.*`` / ``DICOM.*`` attributes, which ShiftSimulator and Slicer's
DICOM loader set). Its tissues are partial-volume maps (CSF, GM, WM; recommended: the lesion fraction then
replaces tissue fractions at the edges too) or a label map on its grid (default ``CSF=1,GM=2,WM=3,lesion=4``,
turned into 0/1 fractions), written as the ``pv_<tissue>.nii.gz`` files the CLI reads. Lesions are a mask volume, or markup points with a
diameter in mm (a ball around each point, on the host grid), or ``count`` ellipsoids generated in the WM
(seeded). Outputs: the host with lesions (SYNTHETIC) and the mask of inserted lesions (fraction >= 0.5), as
the CLI wrote them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .nodes import load_into_node, require_untransformed, tag_synthetic, volumes_of

DEFAULT_LABELS = "CSF=1,GM=2,WM=3,lesion=4"
#: Node attribute prefixes read for the host's parameters (ShiftSimulatorLib.logic: typed values win over DICOM).
PARAMETER_PREFIX = "NeuroShift."
DICOM_PREFIX = "DICOM."


@dataclass
class InsertionParameters:
    """The panel's choices. ``parameters``: ``TE=..,TI=..,TR=..`` (ms, degrees, tesla) of the host."""

    sequence: str = "flair"
    parameters: str = ""
    label_mapping: str = DEFAULT_LABELS
    diameter_mm: float = 6.0
    count: int = 3
    seed: int = 0

    def validate(self) -> None:
        from neuroshift.errors import InputError
        from neuroshift.io.params import AcquisitionParams
        from neuroshift.sequences import SEQUENCES

        if self.sequence not in SEQUENCES:
            raise InputError(f"unknown sequence '{self.sequence}'; choose one of {', '.join(SEQUENCES)}")
        from neuroshift.errors import MissingParameterError

        try:
            AcquisitionParams.parse(self.parameters).require(self.sequence, context="the host volume")
        except MissingParameterError as exc:  # the engine's text names the CLI option; the panel has a field
            raise MissingParameterError(str(exc).split("; give it explicitly")[0] + "; type it in the acquisition "
                                        "parameters field (ms, degrees; e.g. TE=90,TI=2500,TR=9000)") from None
        if not self.diameter_mm > 0:
            raise InputError(f"lesion diameter must be > 0 mm, got {self.diameter_mm:g}")
        if int(self.count) < 1:
            raise InputError(f"lesion count must be at least 1, got {self.count}")


@dataclass
class InsertionJob:
    run: Any
    workdir: Path
    outputs: dict[str, Path]
    host_name: str


@dataclass
class InsertionOutputs:
    image: Any
    mask: Any
    lesion_voxels: int = 0
    summary: dict = field(default_factory=dict)


def known_parameters(node) -> str:
    """The host's known acquisition parameters as ``TE=..,TR=..`` text (typed ``NeuroShift.*`` over ``DICOM.*``)."""
    from dataclasses import fields

    from neuroshift.io.params import DICOM_KEYS, AcquisitionParams

    params = AcquisitionParams.from_dicom_meta(
        {f"dicom:{k}": node.GetAttribute(DICOM_PREFIX + k) for k in DICOM_KEYS if node.GetAttribute(DICOM_PREFIX + k)})
    typed = {f.name: node.GetAttribute(PARAMETER_PREFIX + f.name) for f in fields(AcquisitionParams)}
    typed = {k: v for k, v in typed.items() if v}
    if typed:
        params = params.merged(AcquisitionParams.from_mapping(typed))
    return params.label()


def known_sequence(node) -> str | None:
    """The host's sequence recorded as ``NeuroShift.sequence`` (ShiftSimulator stores it), if it is one we model."""
    from neuroshift.sequences import SEQUENCES

    value = (node.GetAttribute(PARAMETER_PREFIX + "sequence") or "").lower()
    return value if value in SEQUENCES else None


def markup_points_ras(markups_node) -> list[tuple[str, np.ndarray]]:
    """``[(label, RAS mm), ...]`` of a markups node's control points in world coordinates."""
    out = []
    for i in range(markups_node.GetNumberOfControlPoints()):
        p = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(i, p)
        out.append((markups_node.GetNthControlPointLabel(i), np.array(p, dtype=np.float64)))
    return out


def points_to_mask(points: list[tuple[str, np.ndarray]], reference, diameter_mm: float):
    """A 0/1 uint8 :class:`Volume` on ``reference``'s grid: voxels whose centre lies within ``diameter_mm / 2``
    of a point (RAS mm). A point whose ball misses the grid is refused with its label and position."""
    from neuroshift.errors import InputError

    if not points:
        raise InputError("the markup node has no control points; place points or choose a lesion mask")
    radius = float(diameter_mm) / 2.0
    m = reference.ijk_to_ras()
    inv = np.linalg.inv(m)
    shape_kji = np.asarray(reference.data).shape
    mask = np.zeros(shape_kji, np.uint8)
    spacing = np.linalg.norm(m[:3, :3], axis=0)  # mm per i, j, k step
    reach = np.ceil(radius / spacing).astype(int) + 1
    for label, ras in points:
        centre = (inv @ np.append(ras, 1.0))[:3]  # continuous i, j, k
        lo = np.maximum(np.floor(centre).astype(int) - reach, 0)
        hi = np.minimum(np.ceil(centre).astype(int) + reach, np.array(shape_kji[::-1]) - 1)
        if np.any(lo > hi):
            raise InputError(f"point '{label}' at RAS ({', '.join(f'{v:.1f}' for v in ras)}) mm is outside the host "
                             "volume")
        i, j, k = np.meshgrid(*(np.arange(a, b + 1) for a, b in zip(lo, hi)), indexing="ij")
        ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
        dist = np.linalg.norm((m @ ijk)[:3] - ras[:, None], axis=0)
        inside = dist <= radius + 1e-9
        if not inside.any():
            raise InputError(f"point '{label}' at RAS ({', '.join(f'{v:.1f}' for v in ras)}) mm: no voxel centre "
                             f"within {radius:g} mm (outside the host volume, or a diameter below the voxel size)")
        mask[ijk[2, inside].astype(int), ijk[1, inside].astype(int), ijk[0, inside].astype(int)] = 1
    return reference.with_data(mask)


def write_tissue_maps(tissues, label_mapping: str, folder: Path) -> dict[str, Path]:
    """``pv_<tissue>.nii.gz`` in ``folder`` from a label :class:`Volume` and ``CSF=1,...`` text (0/1 fractions), or
    from ``{tissue: Volume}`` partial-volume maps (checked: one grid, finite, in [0, 1], sum at most 1)."""
    from neuroshift.io.files import write_volume
    from neuroshift.tissues.maps import fractions_from_labels, fractions_from_pv, parse_label_mapping

    if isinstance(tissues, dict):
        fractions = fractions_from_pv(tissues)
    else:
        fractions = fractions_from_labels(tissues, parse_label_mapping(label_mapping), unknown="warn")
    folder.mkdir(parents=True, exist_ok=True)
    return {t: write_volume(v, folder / f"pv_{t}.nii.gz") for t, v in fractions.items()}


def build_command(host_path: Path, pv_folder: Path, params: InsertionParameters, workdir: Path,
                  mask_path: Path | None = None) -> tuple[list[str], dict[str, Path]]:
    """``neuroshift insert-lesions`` arguments (a list, never a shell string) and the files it will write."""
    params.validate()
    out = Path(workdir) / "out"
    stem = Path(host_path).name.removesuffix(".nii.gz")
    args = ["insert-lesions", str(out), "--image", f"{host_path}:{params.sequence}", "--pv", str(pv_folder),
            "--source", params.parameters]
    if mask_path is not None:
        args += ["--mask", str(mask_path)]
    else:
        d = repr(float(params.diameter_mm))
        args += ["--count", str(int(params.count)), "--diameter", f"{d},{d}", "--seed", str(int(params.seed))]
    outputs = {"image": out / f"{stem}_lesions.nii.gz", "mask": out / "lesion_mask.nii.gz",
               "summary": out / "insert_lesions.json"}
    return args, outputs


class InsertionCore:
    """Lesion insertion on a ``vtkMRMLScene`` through a background ``neuroshift insert-lesions``."""

    def __init__(self, scene):
        self.scene = scene

    def start_background(self, host, tissues, params: InsertionParameters, *, lesion_mask=None, lesion_points=None,
                         python: str | None = None, env: dict | None = None) -> InsertionJob:
        """Export host, tissues and lesions and start the CLI.

        ``tissues``: a label map node, or ``{"CSF": node, "GM": node, "WM": node}`` partial-volume map nodes
        (``"lesion"`` optional). Lesions: a mask node, or markup points as balls of ``diameter_mm``; neither:
        ``count`` generated lesions."""
        from neuroshift.errors import InputError
        from neuroshift.io.files import write_volume
        from neuroshift_slicer.background import BackgroundRun

        if host is None:
            raise InputError("choose the host volume")
        pv = {t: n for t, n in tissues.items() if n is not None} if isinstance(tissues, dict) else None
        if pv is not None and not {"CSF", "GM", "WM"} <= set(pv):
            missing = ", ".join(sorted({"CSF", "GM", "WM"} - set(pv)))
            raise InputError(f"partial-volume maps: choose CSF, GM and WM (missing {missing}), or a tissue label map")
        if tissues is None:
            raise InputError("choose the host's tissues: partial-volume maps (CSF, GM, WM) or a tissue label map")
        params.validate()
        tissue_nodes = {f"{t} map": n for t, n in pv.items()} if pv is not None else {"tissue label map": tissues}
        for role, node in {"host volume": host, **tissue_nodes, "lesion mask": lesion_mask,
                           "lesion points": lesion_points}.items():
            require_untransformed(node, role)
        vols = volumes_of({"host": host, **tissue_nodes, "lesion mask": lesion_mask})
        for key in vols:
            if key != "host":
                vols["host"].require_same_grid(vols[key], f"host '{host.GetName()}' and the {key}")
        workdir = Path(tempfile.mkdtemp(prefix="LesionSynth-insert-"))
        try:
            host_path = write_volume(vols["host"], workdir / "host.nii.gz")
            tissue_vols = ({t: vols[f"{t} map"] for t in pv} if pv is not None else vols["tissue label map"])
            write_tissue_maps(tissue_vols, params.label_mapping, workdir / "pv")
            mask_path = None
            if lesion_mask is not None:
                mask_path = write_volume(vols["lesion mask"], workdir / "lesions.nii.gz")
            elif lesion_points is not None:
                mask = points_to_mask(markup_points_ras(lesion_points), vols["host"], params.diameter_mm)
                mask_path = write_volume(mask, workdir / "lesions.nii.gz")
            args, outputs = build_command(host_path, workdir / "pv", params, workdir, mask_path)
            run = BackgroundRun(args, python=python, env=dict(env or {}))
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return InsertionJob(run, workdir, outputs, host.GetName())

    def finish_background(self, job: InsertionJob, image_node=None, mask_node=None) -> InsertionOutputs:
        """Load the host with lesions (tagged SYNTHETIC) and the inserted-lesion mask (label map)."""
        state = job.run.poll()
        try:
            state.raise_if_failed("lesion insertion")
            summary = json.loads(job.outputs["summary"].read_text(encoding="utf-8"))
            image = load_into_node(self.scene, job.outputs["image"], f"{job.host_name} lesions SYNTHETIC", image_node)
            tag_synthetic(image, summary.get("description", "SYNTHETIC lesions inserted by NeuroShift"),
                          source=job.host_name)
            mask = load_into_node(self.scene, job.outputs["mask"], f"{job.host_name} inserted lesion mask", mask_node,
                                  labelmap=True)
            return InsertionOutputs(image, mask, int(summary.get("lesion_voxels", 0)), summary)
        finally:
            shutil.rmtree(job.workdir, ignore_errors=True)

    @staticmethod
    def cancel_background(job: InsertionJob) -> None:
        job.run.cancel()
        shutil.rmtree(job.workdir, ignore_errors=True)
