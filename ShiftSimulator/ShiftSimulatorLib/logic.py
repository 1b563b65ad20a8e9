"""Qt-free logic of the ShiftSimulator module: MRML nodes and plain values in, a derivative volume node out.

Tested with pytest against a real ``vtkMRMLScene`` from slicer-core
(``Testing/slicer/test_shiftsimulator_logic.py``); the module's widget only binds the
GUI, calls this logic and shows progress. The science is the engine's
(:func:`neuroshift.simulate.simulate_derivative`, paper 000's tissue-wise model);
nothing here re-implements it.

Acquisition parameters of the input node, merged in this order (later wins):

1. DICOM tags stored as node attributes ``DICOM.EchoTime``, ``DICOM.RepetitionTime``,
   ``DICOM.InversionTime``, ``DICOM.FlipAngle``, ``DICOM.MagneticFieldStrength``,
   ``DICOM.EchoTrainLength`` (DICOM units: ms, degrees, tesla) — the widget fills
   them from Slicer's DICOM database for DICOM-loaded volumes
   (:func:`dicom_attributes_from_database`);
2. the BIDS sidecar (``name.json``, seconds) beside the node's storage file;
3. explicit values the user typed, stored as ``NeuroShift.TE_ms`` etc.

A parameter that the sequence needs and none of these gives is a
:class:`~neuroshift.errors.MissingParameterError` naming it; nothing is guessed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from neuroshift.errors import InputError
from neuroshift.io.params import DICOM_KEYS, AcquisitionParams, sidecar_path
from neuroshift.io.volume import Volume
from neuroshift.progress import Cancelled, ProgressCallback
from neuroshift.sequences import SEQUENCES  # the one table of sequences (the module's choices)

# The helpers below live in their own modules (parameters: where parameters are stored and how the panel shows
# them; naming: node names, case ids, segment names) and stay importable from here.
from .naming import NAME_ORDER, case_id, derived_name, segment_tissue
from .parameters import (ATTRIBUTE_PREFIX, DICOM_PREFIX, DICOM_TAGS, PARAMETER_FIELDS, UNKNOWN, as_params,
                         dicom_attributes_from_database, fields_from_params, header_needs_reading, params_from_fields,
                         require_source, simulation_request, storage_path)

CancelFlag = Callable[[], bool]


class ShiftSimulationCore:
    """Simulate acquisition-shift derivatives of volume nodes (no Qt, no ``slicer.app``)."""

    def __init__(self, scene):
        self.scene = scene

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def source_parameters(node) -> AcquisitionParams:
        """Known acquisition parameters of ``node`` (DICOM attributes < sidecar < NeuroShift attributes)."""
        dicom_meta = {}
        for keyword in DICOM_KEYS:
            value = node.GetAttribute(DICOM_PREFIX + keyword)
            if value:
                dicom_meta[f"dicom:{keyword}"] = value
        params = AcquisitionParams.from_dicom_meta(dicom_meta)
        path = storage_path(node)
        if path is not None and sidecar_path(path) is not None:
            params = params.merged(AcquisitionParams.from_sidecar(sidecar_path(path)))
        explicit = {}
        for f in fields(AcquisitionParams):
            value = node.GetAttribute(ATTRIBUTE_PREFIX + f.name)
            if value not in (None, ""):
                explicit[f.name] = value
        if explicit:
            params = params.merged(AcquisitionParams.from_mapping(explicit))
        return params

    @staticmethod
    def store_parameters(node, params: AcquisitionParams, sequence: str | None = None) -> None:
        """Record ``params`` (and the sequence) on the node as ``NeuroShift.*`` attributes."""
        for name, value in asdict(params).items():
            node.SetAttribute(ATTRIBUTE_PREFIX + name, "" if value is None else f"{value:.10g}")
        if sequence:
            node.SetAttribute(ATTRIBUTE_PREFIX + "sequence", sequence)

    @staticmethod
    def sequence_hint(node) -> str | None:
        """Sequence recorded on the node or in its sidecar (``NeuroShiftSequence``/``PulseSequenceType``), if any."""
        value = node.GetAttribute(ATTRIBUTE_PREFIX + "sequence")
        if value in SEQUENCES:
            return value
        path = storage_path(node)
        side = sidecar_path(path) if path is not None else None
        if side is None:
            return None
        try:
            doc = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        for key in ("NeuroShiftSequence", "PulseSequenceType"):
            v = str(doc.get(key, "")).lower()
            if v in SEQUENCES:
                return v
        return None

    # ------------------------------------------------------------------ tissues
    def tissue_fractions(self, tissues, reference_node, label_mapping: Mapping | None = None) -> dict[str, Volume]:
        """Fractions on the reference node's grid from a label map node, a segmentation node or PV nodes.

        ``tissues``: a ``vtkMRMLLabelMapVolumeNode`` (with ``label_mapping``, default
        CSF=1, GM=2, WM=3, lesion=4); a ``vtkMRMLSegmentationNode`` whose segments are
        named CSF, GM, WM, lesion (case-insensitive; also "gray/grey matter", "white
        matter", "cerebrospinal fluid", "WMH"); or a dict ``{tissue: scalar volume node}``
        of partial-volume maps.
        """
        from neuroshift.tissues.maps import fractions_from_labels, fractions_from_pv
        from neuroshift_slicer.volume_nodes import volume_from_node

        reference = volume_from_node(reference_node)
        if tissues is None:
            raise InputError("choose a tissue segmentation: a label map, a segmentation or partial-volume maps")
        if isinstance(tissues, Mapping):
            if not tissues:
                raise InputError("no partial-volume map nodes given")
            vols = {}
            for name, node in tissues.items():
                if node is None:
                    continue
                vols[name] = volume_from_node(node)
            return fractions_from_pv(vols, reference=reference)
        if tissues.IsA("vtkMRMLSegmentationNode"):
            return self._fractions_from_segmentation(tissues, reference_node, reference)
        if tissues.IsA("vtkMRMLVolumeNode"):
            labels = volume_from_node(tissues)
            reference.require_same_grid(labels, f"input volume and tissue label map '{tissues.GetName()}'")
            return fractions_from_labels(labels, label_mapping)
        raise InputError(f"'{tissues.GetName()}' ({tissues.GetClassName()}) is not a label map, segmentation or volume")

    def _fractions_from_segmentation(self, seg_node, reference_node, reference: Volume) -> dict[str, Volume]:
        import slicer
        import vtk

        from neuroshift_slicer.volume_nodes import volume_from_node

        segmentation = seg_node.GetSegmentation()
        found: dict[str, str] = {}
        for i in range(segmentation.GetNumberOfSegments()):
            tissue = segment_tissue(segmentation.GetNthSegment(i).GetName())
            if tissue is not None:
                if tissue in found:
                    raise InputError(f"segmentation '{seg_node.GetName()}' has two segments for {tissue}")
                found[tissue] = segmentation.GetNthSegmentID(i)
        if not found:
            names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
            raise InputError(f"segmentation '{seg_node.GetName()}' has no segment named CSF, GM, WM or lesion "
                             f"(it has {', '.join(names) or 'none'}); rename the segments")
        out = {}
        for tissue, seg_id in found.items():
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(seg_id)
            tmp = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"__neuroshift_{tissue}")
            try:
                ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(seg_node, ids, tmp, reference_node)
                if not ok:
                    raise InputError(f"could not export segment {tissue} of '{seg_node.GetName()}'")
                vol = volume_from_node(tmp)
            finally:
                self.scene.RemoveNode(tmp)
            reference.require_same_grid(vol, f"input volume and segment {tissue}")
            out[tissue] = reference.with_data((vol.data > 0).astype(np.float32), tissue=tissue)
        return out

    # ------------------------------------------------------------------ simulation
    def simulate(self, input_node, tissues, sequence: str, target: AcquisitionParams | Mapping | str, *,
                 source: AcquisitionParams | None = None, field_T: float | None = None,
                 label_mapping: Mapping | None = None, progress: ProgressCallback | None = None,
                 cancel: CancelFlag | None = None, output_node=None, output_name: str | None = None):
        """Derivative of ``input_node`` at ``target`` as a new (or the given) scalar volume node.

        ``source`` overrides the parameters found on the node (:meth:`source_parameters`);
        ``cancel()`` returning True stops the run with :class:`~neuroshift.progress.Cancelled`
        at the next progress step (no node is created then).
        """
        from neuroshift.simulate import simulate_derivative
        from neuroshift_slicer.volume_nodes import add_volume_node, volume_from_node

        if input_node is None:
            raise InputError("choose an input volume")
        seq, src = self._checked_source(input_node, sequence, source)
        target = as_params(target)

        def step(fraction: float, message: str) -> None:
            if cancel is not None and cancel():
                raise Cancelled("cancelled by the user")
            if progress is not None:
                progress(fraction, message)

        step(0.0, "reading the input volume")
        image = volume_from_node(input_node)
        image = image.with_data(np.asarray(image.data, dtype=np.float32))
        step(0.05, "tissue fractions")
        fractions = self.tissue_fractions(tissues, input_node, label_mapping)
        derivative = simulate_derivative(image, fractions, seq, src, target, field_T=field_T,
                                         progress=lambda f, m: step(0.1 + 0.85 * f, m))
        step(0.97, "creating the output node")
        name = output_name or derived_name(input_node.GetName(), target)
        node = add_volume_node(self.scene, derivative, name, node=output_node)
        if output_node is not None and output_name:
            node.SetName(output_name)
        resolved = src.merged(target)
        self.store_parameters(node, resolved, seq)
        node.SetAttribute(ATTRIBUTE_PREFIX + "derivedFrom", input_node.GetID() or "")
        step(1.0, "done")
        return node

    def _checked_source(self, input_node, sequence: str, source: AcquisitionParams | None):
        """(sequence, source parameters) of the input node, refusing unknown sequences and missing parameters."""
        seq = str(sequence).lower()
        if seq not in SEQUENCES:
            raise InputError(f"unknown sequence '{sequence}'; choose one of {', '.join(SEQUENCES)}")
        src = self.source_parameters(input_node)
        if source is not None:
            src = src.merged(source)
        require_source(src, seq, input_node.GetName())
        return seq, src

    # ------------------------------------------------------------------ background run (CLI)
    def prepare_cli_run(self, input_node, tissues, sequence: str, target: AcquisitionParams | Mapping | str,
                        workdir: str | os.PathLike, *, source: AcquisitionParams | None = None,
                        field_T: float | None = None, label_mapping: Mapping | None = None) -> tuple[list[str], Path]:
        """Write the inputs into ``workdir`` and return (``neuroshift simulate`` arguments, output path).

        Used by the widget to run long simulations in a separate process
        (:class:`neuroshift_slicer.background.BackgroundRun`, Cancel = kill).
        """
        from neuroshift.io.atomic import write_text_atomic
        from neuroshift.io.files import write_volume
        from neuroshift_slicer.volume_nodes import volume_from_node

        seq, src = self._checked_source(input_node, sequence, source)
        target = as_params(target)
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
        image = volume_from_node(input_node)
        in_path = work / "input.nii.gz"
        write_volume(image.with_data(np.asarray(image.data, dtype=np.float32)), in_path)
        fractions = self.tissue_fractions(tissues, input_node, label_mapping)
        pv = []
        for tissue, vol in fractions.items():
            p = work / f"pv_{tissue}.nii.gz"
            write_volume(vol, p)
            pv.append(f"{tissue}={p}")
        out_path = work / "derivative.nii.gz"
        args = ["simulate", str(in_path), str(out_path), "--sequence", seq,
                "--target", target.label(), "--source", src.label(), "--pv", ",".join(pv)]
        if field_T is not None:
            args += ["--field", f"{field_T:g}"]
        write_text_atomic(work / "request.json", json.dumps({"args": args}, indent=2))
        return args, out_path

    def load_cli_result(self, path: str | os.PathLike, input_node, target, sequence: str, *,
                        output_node=None, output_name: str | None = None):
        """Load a derivative written by ``neuroshift simulate`` into a node on the input's grid."""
        from neuroshift.io.files import read_volume
        from neuroshift_slicer.volume_nodes import add_volume_node, volume_from_node

        vol = read_volume(path, dtype=np.float32)
        volume_from_node(input_node).require_same_grid(vol, "input volume and simulated derivative")
        target = as_params(target)
        name = output_name or derived_name(input_node.GetName(), target)
        node = add_volume_node(self.scene, vol, name, node=output_node)
        self.store_parameters(node, self.source_parameters(input_node).merged(target), sequence)
        node.SetAttribute(ATTRIBUTE_PREFIX + "derivedFrom", input_node.GetID() or "")
        return node


__all__ = ["ATTRIBUTE_PREFIX", "DICOM_PREFIX", "DICOM_TAGS", "NAME_ORDER", "PARAMETER_FIELDS", "SEQUENCES", "UNKNOWN",
           "CancelFlag", "ShiftSimulationCore", "as_params", "case_id", "derived_name", "dicom_attributes_from_database",
           "fields_from_params", "header_needs_reading", "params_from_fields", "require_source", "segment_tissue",
           "simulation_request", "storage_path"]
