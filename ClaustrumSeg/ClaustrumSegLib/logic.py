"""ClaustrumSeg logic without Qt: MRML nodes in, segmentation/probability/uncertainty/table nodes out.

Two ways to run, same outputs:

* :meth:`ClaustrumSegCore.run` segments in this process (tests, scripting, the module's self-test);
* :meth:`ClaustrumSegCore.start_background` exports the input nodes to a temporary folder and starts
  ``neuroshift segment ...`` in a child process (:class:`neuroshift_slicer.background.BackgroundRun`,
  progress and Cancel); :meth:`ClaustrumSegCore.finish_background` loads the files it wrote.

Outputs: a ``vtkMRMLSegmentationNode`` with one named segment (``claustrum`` or ``WMH``) on the
input's geometry, optional probability and uncertainty ``vtkMRMLScalarVolumeNode``\\ s, and a
``vtkMRMLTableNode`` of volumes (mm³ and mL; claustrum also left/right, split at the mid-sagittal plane).
"""

from __future__ import annotations

import enum
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

TASKS = ("claustrum", "wmh")
SEGMENT_COLORS = {"claustrum": (0.95, 0.55, 0.15), "WMH": (0.9, 0.2, 0.2)}


class SegmentationTask(enum.Enum):
    """The module's task choice (bound to the task combo box by Slicer's enum connector, which shows ``label``)."""

    claustrum = "claustrum"
    wmh = "wmh"

    def label(self) -> str:
        return {"claustrum": "Claustrum", "wmh": "White-matter hyperintensities (WMH)"}[self.value]


#: Device, precision and uncertainty choices offered by the module (PRECISIONS: those of
#: ``neuroshift.segment.precision``, kept equal by a test; the module loads before NeuroShift may be installed).
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
UNCERTAINTY_KINDS = ("variance", "entropy")


def parameters_from_fields(*, task: str, model: Any, device: str, tta: bool, probabilities: bool,
                           uncertainty: bool, uncertainty_kind: str, batch_size: int, threshold: float,
                           use_age: bool, age_weeks: float, relative_mask: bool,
                           precision: str = "auto") -> "SegmentationParameters":
    """:class:`SegmentationParameters` from the panel's values (0 batch size / threshold = the model's own)."""
    return SegmentationParameters(
        task=task, model=model, device=device, precision=precision, tta=tta, probabilities=probabilities,
        uncertainty=uncertainty,
        uncertainty_kind=uncertainty_kind, batch_size=int(batch_size) or None,
        threshold=float(threshold) if threshold > 0 else None, age_weeks=float(age_weeks) if use_age else None,
        mask_mode="relative" if relative_mask else None)


@dataclass
class SegmentationParameters:
    """What the user chose in the module (mirrors the ``neuroshift segment`` options)."""

    task: str = "claustrum"
    model: Any = None  # installed name, package folder, or a LoadedPackage (in-process only)
    device: str = "auto"
    precision: str = "auto"
    tta: bool = False
    probabilities: bool = False
    uncertainty: bool = False
    uncertainty_kind: str = "variance"
    batch_size: int | None = None
    threshold: float | None = None
    age_weeks: float | None = None
    mask_mode: str | None = None

    def validate(self) -> None:
        from neuroshift.errors import InputError

        if self.task not in TASKS:
            raise InputError(f"unknown task '{self.task}'; use {' or '.join(TASKS)}")
        if self.device not in DEVICES:
            raise InputError(f"unknown device '{self.device}'")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision '{self.precision}'; use one of {', '.join(PRECISIONS)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError("batch size must be at least 1")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise InputError("threshold must be in [0, 1]")


@dataclass
class OutputNodes:
    segmentation: Any
    table: Any
    probability: Any = None
    uncertainty: Any = None
    volumes_mm3: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class BackgroundJob:
    run: Any  # BackgroundRun
    workdir: Path
    outputs: dict[str, Path]
    params: SegmentationParameters
    reference_node: Any
    name: str


class ClaustrumSegCore:
    """Qt-free logic of the ClaustrumSeg module, working on a ``vtkMRMLScene``."""

    def __init__(self, scene):
        self.scene = scene

    # ------------------------------------------------------------------ models
    @staticmethod
    def available_models(task: str | None = None) -> list[dict[str, Any]]:
        """Installed and bundled segmentation packages (``registry.list_models()``), optionally of one task."""
        from neuroshift.segment.registry import list_models

        models = [m for m in list_models() if m.get("kind") == "segmentation"]  # not synthesis, not broken
        if task:
            models = [m for m in models if str(m.get("task") or "").lower().startswith(task)]
        return models

    @classmethod
    def default_model(cls, task: str) -> str | None:
        names = [m["name"] for m in cls.available_models(task)]
        preferred = {"claustrum": "claustrum", "wmh": "wmh-demo"}.get(task)
        if preferred in names:
            return preferred
        return names[0] if names else None

    @staticmethod
    def no_model_message(task: str) -> str:
        from neuroshift.cli.segment import NO_CLAUSTRUM_MODEL

        if task == "claustrum":
            return NO_CLAUSTRUM_MODEL
        return "no WMH model is installed; choose a package folder or train one with 'neuroshift train'"

    # ------------------------------------------------------------------ in-process run
    def run(self, inputs: Mapping[str, Any], params: SegmentationParameters,
            progress: Callable[[float, str], None] | None = None, name: str | None = None,
            segmentation_node=None) -> OutputNodes:
        """Segment now (in this process). ``inputs``: ``{"T1": node}`` / ``{"FLAIR": node, "T1": node}``."""
        from neuroshift.errors import InputError
        from neuroshift.segment.inference import segment_volume
        from neuroshift.segment.preprocess import BrainMaskSpec
        from neuroshift_slicer.volume_nodes import volume_from_node

        params.validate()
        model = params.model or self.default_model(params.task)
        if model is None:
            raise InputError(self.no_model_message(params.task))
        volumes = {key: volume_from_node(node) for key, node in inputs.items() if node is not None}
        if not volumes:
            raise InputError("select an input volume")
        ordered = self._order_inputs(volumes, model)
        mask_spec = None
        if params.mask_mode:
            mask_spec = BrainMaskSpec.from_manifest({"mode": params.mask_mode}, params.task)
        result = segment_volume(ordered, model, device=params.device, tta=params.tta, progress=progress,
                                batch_size=params.batch_size, threshold=params.threshold,
                                uncertainty=params.uncertainty_kind, age_weeks=params.age_weeks,
                                mask_spec=mask_spec, precision=params.precision)
        reference = next(iter(inputs.values()))
        base = name or f"{reference.GetName()}_{result.segment_name}"
        return self._make_nodes(result.label, result.segment_name, result.volumes_mm3, result.warnings,
                                result.probability if params.probabilities else None,
                                result.uncertainty if params.uncertainty else None, reference, base,
                                segmentation_node)

    @staticmethod
    def _order_inputs(volumes: dict, model) -> dict:
        """Map the user's input keys onto the model's channel names (first = reference grid)."""
        channels = None
        if hasattr(model, "manifest"):
            channels = list(model.manifest["input_channels"])
        else:
            try:
                from neuroshift.segment.package import read_manifest
                from neuroshift.segment.registry import find_model

                channels = list(read_manifest(find_model(model))["input_channels"])
            except Exception:  # noqa: BLE001 - segment_volume reports a bad model clearly
                return volumes
        keys = list(volumes)
        out = {}
        for i, ch in enumerate(channels):
            if i < len(keys):
                out[ch] = volumes[keys[i]]
        return out

    # ------------------------------------------------------------------ background run
    def build_command(self, input_paths: Mapping[str, str], params: SegmentationParameters,
                      workdir: Path) -> tuple[list[str], dict[str, Path]]:
        """``neuroshift segment ...`` arguments and the files it will write."""
        params.validate()
        workdir = Path(workdir)
        outputs = {"label": workdir / "label.nii.gz", "json": workdir / "result.json"}
        paths = list(input_paths.values())
        if params.task == "claustrum":
            args = ["segment", "claustrum", str(paths[0]), str(outputs["label"])]
        else:
            args = ["segment", "wmh", "--flair", str(paths[0])]
            if len(paths) > 1 and paths[1]:
                args += ["--t1", str(paths[1])]
            args.append(str(outputs["label"]))
        if params.model:
            args += ["--model", str(getattr(params.model, "path", None) or params.model)]
        args += ["--device", params.device, "--precision", params.precision, "--json", str(outputs["json"]),
                 "--uncertainty-kind", params.uncertainty_kind]
        if params.probabilities:
            outputs["probability"] = workdir / "probability.nii.gz"
            args += ["--probabilities", str(outputs["probability"])]
        if params.uncertainty:
            outputs["uncertainty"] = workdir / "uncertainty.nii.gz"
            args += ["--uncertainty", str(outputs["uncertainty"])]
        if params.tta:
            args.append("--tta")
        if params.batch_size:
            args += ["--batch-size", str(int(params.batch_size))]
        if params.threshold is not None:
            args += ["--threshold", repr(float(params.threshold))]
        if params.age_weeks is not None:
            args += ["--age-weeks", repr(float(params.age_weeks))]
        if params.mask_mode:
            args += ["--mask-mode", params.mask_mode]
        return args, outputs

    def start_background(self, inputs: Mapping[str, Any], params: SegmentationParameters,
                         name: str | None = None, python: str | None = None,
                         env: Mapping[str, str] | None = None) -> BackgroundJob:
        """Export the inputs and start the CLI in a child process; poll ``job.run.poll()``.

        ``python``/``env``: interpreter and extra environment (see ``neuroshift_slicer.environment.engine_process``).
        """
        from neuroshift.errors import InputError
        from neuroshift.io.files import write_volume
        from neuroshift_slicer.background import BackgroundRun
        from neuroshift_slicer.volume_nodes import volume_from_node

        nodes = {k: n for k, n in inputs.items() if n is not None}
        if not nodes:
            raise InputError("select an input volume")
        workdir = Path(tempfile.mkdtemp(prefix="ClaustrumSeg-"))
        paths = {}
        for key, node in nodes.items():
            paths[key] = workdir / f"input_{key}.nii.gz"
            write_volume(volume_from_node(node), paths[key])
        args, outputs = self.build_command(paths, params, workdir)
        reference = next(iter(nodes.values()))
        run = BackgroundRun(args, python=python, env=dict(env or {}))
        return BackgroundJob(run, workdir, outputs, params, reference,
                             name or f"{reference.GetName()}_{'claustrum' if params.task == 'claustrum' else 'WMH'}")

    def finish_background(self, job: BackgroundJob, segmentation_node=None) -> OutputNodes:
        """Load what a finished background run wrote; raise with its message if it failed."""
        from neuroshift.io.files import read_volume

        state = job.run.poll()
        try:
            state.raise_if_failed("segmentation")
            summary = json.loads(Path(job.outputs["json"]).read_text(encoding="utf-8"))
            label = read_volume(job.outputs["label"])
            prob = read_volume(job.outputs["probability"]) if "probability" in job.outputs else None
            unc = read_volume(job.outputs["uncertainty"]) if "uncertainty" in job.outputs else None
            return self._make_nodes(label, summary["segment"], summary["volumes_mm3"], summary.get("warnings", []),
                                    prob, unc, job.reference_node, job.name, segmentation_node)
        finally:
            shutil.rmtree(job.workdir, ignore_errors=True)

    def cancel_background(self, job: BackgroundJob) -> None:
        job.run.cancel()
        shutil.rmtree(job.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ nodes
    def _make_nodes(self, label, segment_name, volumes_mm3, warnings, probability, uncertainty,
                    reference_node, base, segmentation_node=None) -> OutputNodes:
        from neuroshift_slicer.volume_nodes import add_volume_node

        seg = self.create_segmentation_node(label, segment_name, reference_node, base, segmentation_node)
        table = self.create_volume_table(volumes_mm3, f"{base}_volumes")
        prob_node = unc_node = None
        if probability is not None:
            prob_node = add_volume_node(self.scene, probability, f"{base}_probability")
        if uncertainty is not None:
            unc_node = add_volume_node(self.scene, uncertainty, f"{base}_uncertainty")
        return OutputNodes(seg, table, prob_node, unc_node, dict(volumes_mm3), list(warnings))

    def create_segmentation_node(self, label, segment_name: str, reference_node=None, name: str | None = None,
                                 node=None):
        """A ``vtkMRMLSegmentationNode`` with one segment ``segment_name`` from a 0/1 label :class:`Volume`."""
        import slicer

        from neuroshift_slicer.volume_nodes import update_node_from_volume

        labelmap = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{segment_name}_labelmap")
        try:
            update_node_from_volume(labelmap, label.with_data((np.asarray(label.data) != 0).astype(np.uint8)))
            if node is None:
                node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or segment_name)
            else:
                node.GetSegmentation().RemoveAllSegments()
            if reference_node is not None and hasattr(node, "SetReferenceImageGeometryParameterFromVolumeNode"):
                node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
            if node.GetDisplayNode() is None:
                node.CreateDefaultDisplayNodes()
            segmentation = node.GetSegmentation()
            before = segmentation.GetNumberOfSegments()
            ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node)
            if not ok:
                raise RuntimeError("could not import the label map into the segmentation node")
            if segmentation.GetNumberOfSegments() == before:  # empty label: add an empty named segment
                self._add_empty_segment(segmentation, segment_name)
            segment = segmentation.GetNthSegment(segmentation.GetNumberOfSegments() - 1)
            segment.SetName(segment_name)
            segment.SetColor(*SEGMENT_COLORS.get(segment_name, (0.2, 0.6, 0.9)))
        finally:
            self.scene.RemoveNode(labelmap)
        return node

    @staticmethod
    def _add_empty_segment(segmentation, segment_name: str) -> None:
        import slicer
        import vtk

        segment = slicer.vtkSegment()
        segment.SetName(segment_name)
        image = slicer.vtkOrientedImageData()
        image.SetExtent(0, -1, 0, -1, 0, -1)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        segment.AddRepresentation("Binary labelmap", image)
        segmentation.AddSegment(segment, segment_name)

    def create_volume_table(self, volumes_mm3: Mapping[str, float], name: str = "volumes", node=None):
        """A ``vtkMRMLTableNode``: columns Segment, Volume (mm3), Volume (mL)."""
        import vtk

        if node is None:
            node = self.scene.AddNewNodeByClass("vtkMRMLTableNode", name)
        table = node.GetTable()
        table.Initialize()
        names = vtk.vtkStringArray()
        names.SetName("Segment")
        mm3 = vtk.vtkDoubleArray()
        mm3.SetName("Volume (mm3)")
        ml = vtk.vtkDoubleArray()
        ml.SetName("Volume (mL)")
        for key, value in volumes_mm3.items():
            names.InsertNextValue(str(key))
            mm3.InsertNextValue(float(value))
            ml.InsertNextValue(float(value) / 1000.0)
        for col in (names, mm3, ml):
            table.AddColumn(col)
        node.Modified()
        return node


def segment_array(segmentation_node, segment_name: str, reference_node):
    """The binary labelmap of a named segment on ``reference_node``'s grid (numpy ``[k, j, i]``), for tests."""
    import slicer
    import vtk

    from neuroshift_slicer.volume_nodes import volume_from_node

    scene = segmentation_node.GetScene()
    segmentation = segmentation_node.GetSegmentation()
    seg_id = segmentation.GetSegmentIdBySegmentName(segment_name)
    if not seg_id:
        raise KeyError(f"no segment named '{segment_name}'")
    out = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(seg_id)
        slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation_node, ids, out,
                                                                             reference_node)
        return volume_from_node(out)
    finally:
        scene.RemoveNode(out)


def table_rows(table_node) -> dict[str, float]:
    """``{segment: volume mm3}`` of a table made by :meth:`ClaustrumSegCore.create_volume_table`."""
    table = table_node.GetTable()
    names = table.GetColumnByName("Segment")
    values = table.GetColumnByName("Volume (mm3)")
    return {names.GetValue(r): float(values.GetValue(r)) for r in range(table.GetNumberOfRows())}
