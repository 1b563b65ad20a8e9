"""QuantitativeMRI logic without Qt: MRML nodes in, ``neuroshift mrf|qmri`` in a background process, nodes out.

For each panel ``start_*`` validates the request, writes the input nodes into a temporary folder (frames as
a frames-last 4D NIfTI, images and maps as NIfTI; geometry kept; uncompressed where the CLI allows, since the
export runs in Slicer's GUI thread and a 240 x 240 x 60 x 35 frame stack is 480 MB), and starts the CLI
commands in a child process (:class:`QuantitativeMRILib.sequential.SequentialRun` of
:class:`neuroshift_slicer.background.BackgroundRun`). :meth:`QuantitativeMRICore.finish` loads what the run
wrote as volume nodes named with their units (``<input>_UNet_T1_ms``, ``<input>_PD_au``), a segmentation of
the lesion probability at the chosen threshold (paper 001: 33 %), and synthetic images whose name says
``SYNTHETIC``; :meth:`QuantitativeMRICore.cancel` stops the run and removes the folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .requests import FitRequest, MRFRequest, SynthRequest, parse_params

#: Unit of every map, as it appears in node names (``T1_ms``) and the ``NeuroShift.Units`` attribute.
UNITS = {"T1": "ms", "T2": "ms", "T2star": "ms", "PD": "au", "B1": "scale", "quality": "cosine",
         "NAWM": "percent", "GM": "percent", "lesion": "percent"}
#: Largest difference (mm) between a written output's grid and its input node's that is float32 rounding.
GRID_TOLERANCE_MM = 1e-3
#: Map files each command writes, in display order.
MATCH_MAPS = ("T1", "T2star", "B1", "PD", "quality")
UNET_MAPS = ("T1", "T2star", "NAWM", "GM", "lesion")
FIT_MAPS = ("PD", "T1", "T2", "T2star")
SYNTH_MAPS = ("PD", "T1", "T2", "T2star", "B1")
SOURCE_TAG = {"match": "match", "unet": "UNet"}


def output_name(base: str, map_name: str, source: str | None = None) -> str:
    """``<base>[_<source>]_<map>_<unit>``, e.g. ``sub01_UNet_T1_ms``."""
    return "_".join(filter(None, [base, source, map_name, UNITS[map_name]]))


@dataclass
class Job:
    kind: str  #: "mrf", "fit" or "synth"
    run: Any  #: SequentialRun
    workdir: Path
    outputs: dict[str, Path]
    base: str
    request: Any
    #: IJK-to-RAS of the input node (4x4): outputs get it exactly (NIfTI stores the grid in float32)
    reference: Any = None


@dataclass
class Outputs:
    volumes: dict[str, Any] = field(default_factory=dict)  #: output name -> vtkMRMLScalarVolumeNode
    segmentation: Any = None
    messages: list[str] = field(default_factory=list)


def _matrix(node) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _write(node, path: Path, what: str) -> Path:
    from neuroshift.errors import InputError
    from neuroshift.io.files import write_volume
    from neuroshift_slicer.volume_nodes import volume_from_node

    if node is None or node.GetImageData() is None:
        raise InputError(f"{what}: choose a volume with image data")
    if node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise InputError(f"{what} '{node.GetName()}' has several components; choose a scalar volume")
    write_volume(volume_from_node(node), path)
    return path


def node_parameters(node):
    """Known acquisition parameters of a volume node (ms, degrees, tesla), later sources winning: ``DICOM.<keyword>``
    attributes (copied from the DICOM database by ShiftSimulator), the BIDS sidecar beside the node's file, and
    ``NeuroShift.<field>`` attributes (written by ShiftSimulator and by this module's synthesis)."""
    from dataclasses import fields

    from neuroshift.io.params import DICOM_KEYS, AcquisitionParams, sidecar_path

    from .frames import storage_path

    dicom = {f"dicom:{k}": node.GetAttribute(f"DICOM.{k}") for k in DICOM_KEYS if node.GetAttribute(f"DICOM.{k}")}
    params = AcquisitionParams.from_dicom_meta(dicom)
    path = storage_path(node)
    if path is not None and sidecar_path(path) is not None:
        params = params.merged(AcquisitionParams.from_sidecar(sidecar_path(path)))
    own = {f.name: node.GetAttribute(f"NeuroShift.{f.name}") for f in fields(AcquisitionParams)}
    return params.merged(AcquisitionParams.from_mapping({k: v for k, v in own.items() if v}))


def store_parameters(node, params, sequence: str) -> None:
    """Record ``params`` and the sequence as ``NeuroShift.*`` attributes (the ShiftSimulator convention)."""
    for name, value in params.known().items():
        node.SetAttribute(f"NeuroShift.{name}", f"{value:.10g}")
    node.SetAttribute("NeuroShift.sequence", sequence)


class QuantitativeMRICore:
    """Qt-free logic of the QuantitativeMRI module, working on a ``vtkMRMLScene``."""

    def __init__(self, scene):
        self.scene = scene

    # ------------------------------------------------------------------ MRF
    @staticmethod
    def resolve_schedule(explicit: str, source: Path | None):
        """The schedule: the chosen file, else the one beside the frames' file (``mrf`` CLI rules)."""
        from neuroshift.errors import InputError
        from neuroshift.mrf.frames_io import find_schedule
        from neuroshift.mrf.schedule import load_schedule

        if explicit:
            return load_schedule(explicit)
        if source is None:
            raise InputError("choose the schedule file (JSON: flip angle, TE and TR per frame); the frames were "
                             "not loaded from a file beside which one could be found")
        return find_schedule(source)

    def start_mrf(self, frames, request: MRFRequest, *, python: str | None = None,
                  env: Mapping[str, str] | None = None) -> Job:
        """``frames``: a sequence node, a multi-component volume node, or a 4D NIfTI path (frames last)."""
        from neuroshift.errors import DimensionError, InputError
        from neuroshift.mrf.frames_io import write_frames_nifti
        from neuroshift.mrf.schedule import save_schedule

        from .frames import frames_from_node, storage_path

        request.validate()
        reference = None
        if isinstance(frames, (str, Path)):
            if not str(frames) or not Path(frames).is_file():
                raise InputError(f"4D NIfTI '{frames}' does not exist")
            import nibabel as nib

            shape = nib.load(str(frames)).shape
            if len(shape) != 4:
                raise DimensionError(f"{frames}: expected a 4D image with the frames last, got shape {shape}")
            n_frames, source, base = shape[-1], Path(frames), Path(frames).name.split(".")[0]
        else:
            data, ref = frames_from_node(frames)
            n_frames, source, base = data.shape[-1], storage_path(frames), frames.GetName()
            reference = ref.ijk_to_ras()
        schedule = self.resolve_schedule(request.schedule, source)
        if n_frames != len(schedule):
            raise DimensionError(f"'{base}' has {n_frames} frames, the schedule has {len(schedule)}")
        workdir = Path(tempfile.mkdtemp(prefix="QuantitativeMRI-"))
        try:
            schedule_path = save_schedule(schedule, workdir / "schedule.json")
            if isinstance(frames, (str, Path)):
                frames_path = Path(frames)
            else:
                frames_path = write_frames_nifti(data, ref, workdir / "frames.nii")
            if request.runs_match and not request.dictionary and request.dictionary_cache:
                Path(request.dictionary_cache).mkdir(parents=True, exist_ok=True)
            commands, outputs = request.commands(frames_path, schedule_path, workdir, schedule.hash)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return self._start("mrf", commands, workdir, outputs, base, request, python, env, reference)

    # ------------------------------------------------------------------ qMRI fit
    @staticmethod
    def params_text(node, text: str) -> str:
        """The panel's parameter text, or (when empty) the node's own parameters (:func:`node_parameters`)."""
        if text.strip() or node is None:
            return text.strip()
        return node_parameters(node).label()

    def start_fit(self, images: Sequence[Any], request: FitRequest, *, mask=None, b1=None,
                  python: str | None = None, env: Mapping[str, str] | None = None) -> Job:
        """``images``: volume nodes in the order of ``request.sequences``/``request.params``."""
        from neuroshift.errors import InputError

        if any(n is None for n in images):
            raise InputError("choose a volume for every image row in use")
        request.params = [self.params_text(n, t) for n, t in zip(images, request.params)]
        request.names = [n.GetName() for n in images]
        request.validate()
        workdir = Path(tempfile.mkdtemp(prefix="QuantitativeMRI-"))
        try:
            paths = [_write(n, workdir / f"image_{i + 1}.nii", f"image {i + 1}") for i, n in enumerate(images)]
            mask_path = _write(mask, workdir / "mask.nii", "mask") if mask is not None else None
            b1_path = _write(b1, workdir / "b1.nii", "B1 map") if b1 is not None else None
            outputs = {"maps": workdir / "maps"}
            command = request.command(paths, outputs["maps"], mask_path, b1_path)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return self._start("fit", [command], workdir, outputs, images[0].GetName(), request, python, env,
                           _matrix(images[0]))

    # ------------------------------------------------------------------ qMRI synth
    def start_synth(self, maps: Mapping[str, Any], request: SynthRequest, *, python: str | None = None,
                    env: Mapping[str, str] | None = None) -> Job:
        """``maps``: ``{"PD": node, "T1": node, ...}`` (PD required; times in ms)."""
        from neuroshift.errors import InputError

        request.validate()
        chosen = {k: n for k, n in maps.items() if n is not None}
        unknown = set(chosen) - set(SYNTH_MAPS)
        if unknown:
            raise InputError(f"unknown map(s) {sorted(unknown)}; use {', '.join(SYNTH_MAPS)}")
        if "PD" not in chosen:
            raise InputError("choose the PD map (and the T1/T2/T2* maps the sequence needs)")
        workdir = Path(tempfile.mkdtemp(prefix="QuantitativeMRI-"))
        try:
            (workdir / "maps").mkdir()
            for name, node in chosen.items():
                _write(node, workdir / "maps" / f"{name}.nii.gz", f"{name} map")
            outputs = {"image": workdir / "synthetic.nii.gz", "sidecar": workdir / "synthetic.json"}
            command = request.command(workdir / "maps", outputs["image"])
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        base = chosen["PD"].GetName().removesuffix("_PD_au")
        return self._start("synth", [command], workdir, outputs, base, request, python, env, _matrix(chosen["PD"]))

    # ------------------------------------------------------------------ run, finish, cancel
    @staticmethod
    def _start(kind, commands, workdir, outputs, base, request, python, env, reference=None) -> Job:
        from neuroshift_slicer.background import BackgroundRun

        from .sequential import SequentialRun

        try:
            run = SequentialRun(commands, lambda args: BackgroundRun(args, python=python, env=dict(env or {})))
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return Job(kind, run, workdir, outputs, base, request, reference)

    def finish(self, job: Job) -> Outputs:
        """Load what a finished run wrote; raise with the CLI's message if it failed. Removes the work folder."""
        state = job.run.poll()
        try:
            state.raise_if_failed(job.kind)
            return {"mrf": self._finish_mrf, "fit": self._finish_fit, "synth": self._finish_synth}[job.kind](job)
        finally:
            shutil.rmtree(job.workdir, ignore_errors=True)

    @staticmethod
    def cancel(job: Job) -> None:
        job.run.cancel()
        shutil.rmtree(job.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ outputs
    def add_output(self, path: Path, name: str, reference=None):
        """A new volume node (unique name) from an output file; with ``reference`` (the input node's IJK-to-RAS)
        the node gets the input's grid exactly, after checking the file's differs only by float32 rounding."""
        from neuroshift.errors import GeometryError
        from neuroshift.io.files import read_volume
        from neuroshift.io.volume import Volume
        from neuroshift_slicer.volume_nodes import add_volume_node

        vol = read_volume(path, dtype=np.float32)
        if reference is not None:
            if not np.allclose(vol.ijk_to_ras(), reference, rtol=0.0, atol=GRID_TOLERANCE_MM):
                raise GeometryError(f"{path.name}: written on another grid than its input")
            vol = Volume.from_ijk_to_ras(vol.data, reference, vol.meta)
        return add_volume_node(self.scene, vol, self.scene.GenerateUniqueName(name))

    def add_map(self, path: Path, name: str, unit: str, source: str, reference=None):
        """A map node from ``path`` (see :meth:`add_output`), with units and source as attributes."""
        node = self.add_output(path, name, reference)
        node.SetAttribute("NeuroShift.Units", unit)
        node.SetAttribute("NeuroShift.Source", source)
        return node

    def _load_folder(self, out: Outputs, job: Job, folder: Path, names, source: str, tag: str | None) -> dict:
        """Add the maps ``names`` found in ``folder`` to ``out``; returns ``{map name: node}``."""
        loaded = {}
        for map_name in names:
            path = folder / f"{map_name}.nii.gz"
            if path.is_file():
                node = self.add_map(path, output_name(job.base, map_name, tag), UNITS[map_name], source, job.reference)
                out.volumes[node.GetName()] = loaded[map_name] = node
        return loaded

    def _finish_mrf(self, job: Job) -> Outputs:
        out = Outputs()
        request: MRFRequest = job.request
        both = request.method == "both"
        if "match" in job.outputs:
            self._load_folder(out, job, job.outputs["match"], MATCH_MAPS, "neuroshift mrf match",
                              SOURCE_TAG["match"] if both else None)
        if "unet" in job.outputs:
            folder = job.outputs["unet"]
            info = json.loads((folder / "mrf_predict.json").read_text(encoding="utf-8"))
            loaded = self._load_folder(out, job, folder, UNET_MAPS, "neuroshift mrf predict", SOURCE_TAG["unet"])
            for node in loaded.values():
                node.SetAttribute("NeuroShift.Model", f"{info.get('model', '')}: {info.get('model_notes', '')}")
            if info.get("model_notes"):
                out.messages.append(f"U-Net model: {info['model_notes']}")
            lesion = loaded.get("lesion")
            if lesion is not None and request.lesion_threshold_percent is not None:
                out.segmentation = self.threshold_segmentation(
                    lesion, request.lesion_threshold_percent,
                    f"{job.base}_lesion_{request.lesion_threshold_percent:g}percent")
        return out

    def _finish_fit(self, job: Job) -> Outputs:
        out = Outputs()
        folder = job.outputs["maps"]
        self._load_folder(out, job, folder, FIT_MAPS, "neuroshift qmri fit", None)
        report_path = folder / "qmri.json"
        if report_path.is_file():
            report = json.loads(report_path.read_text(encoding="utf-8"))
            if report.get("identified"):
                out.messages.append(f"identified: {', '.join(report['identified'])}")
            out.messages += [f"note: {n}" for n in report.get("notes", [])]
        return out

    def _finish_synth(self, job: Job) -> Outputs:
        request: SynthRequest = job.request
        sidecar = json.loads(job.outputs["sidecar"].read_text(encoding="utf-8"))
        node = self.add_output(job.outputs["image"], f"{job.base}_SYNTHETIC_{request.sequence.upper()}", job.reference)
        node.SetAttribute("NeuroShift.Synthetic", "true")
        node.SetAttribute("NeuroShift.Source", "neuroshift qmri synth (SYNTHETIC image simulated from maps)")
        store_parameters(node, parse_params(request.target, request.sequence, "target parameters"), request.sequence)
        node.SetAttribute("NeuroShift.Sidecar", json.dumps(sidecar, sort_keys=True))
        out = Outputs({node.GetName(): node})
        if sidecar.get("NeuroShiftWarning"):
            out.messages.append(f"warning: {sidecar['NeuroShiftWarning']}")
        return out

    def threshold_segmentation(self, probability_node, threshold_percent: float, name: str):
        """A segmentation node with one segment ``lesion``: voxels whose probability (%) >= the threshold."""
        import slicer

        from neuroshift_slicer.volume_nodes import update_node_from_volume, volume_from_node

        prob = volume_from_node(probability_node)
        label = prob.with_data((np.asarray(prob.data) >= threshold_percent).astype(np.uint8))
        labelmap = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{name}_labelmap")
        try:
            update_node_from_volume(labelmap, label)
            node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", self.scene.GenerateUniqueName(name))
            node.SetReferenceImageGeometryParameterFromVolumeNode(probability_node)
            node.CreateDefaultDisplayNodes()
            segmentation = node.GetSegmentation()
            if label.data.any():
                if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node):
                    raise RuntimeError("could not import the lesion label map into the segmentation node")
                segment = segmentation.GetNthSegment(0)
            else:  # nothing above the threshold: an empty named segment (AddEmptySegment needs converter rules)
                import vtk

                segment = slicer.vtkSegment()
                empty = slicer.vtkOrientedImageData()
                empty.SetExtent(0, -1, 0, -1, 0, -1)
                empty.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
                segment.AddRepresentation("Binary labelmap", empty)
                segmentation.AddSegment(segment, "lesion")
            segment.SetName("lesion")
            segment.SetColor(0.9, 0.2, 0.2)
        finally:
            self.scene.RemoveNode(labelmap)
        node.SetAttribute("NeuroShift.ThresholdPercent", f"{threshold_percent:g}")
        return node


__all__ = ["FIT_MAPS", "MATCH_MAPS", "SYNTH_MAPS", "UNET_MAPS", "UNITS", "Job", "Outputs", "QuantitativeMRICore",
           "node_parameters", "output_name", "store_parameters"]
