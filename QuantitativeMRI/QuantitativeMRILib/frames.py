"""The MRF panel's 4D input as frames ``(K, J, I, F)`` plus a 3D reference :class:`Volume` (geometry exact).

What a 4D acquisition is inside Slicer (read from Slicer's source, main of Aug 2026):

* a ``vtkMRMLSequenceNode`` of scalar volumes (Sequences module). Slicer's "Volume Sequence" reader
  (``vtkMRMLVolumeSequenceStorageNode``) reads ``.nrrd``/``.seq.nrrd`` files; the MultiVolumeImporter's DICOM
  plugin makes one when its preferred format is "volume sequence". The frames are the data nodes in order.
* a multi-component volume: MultiVolumeImporter's ``vtkMRMLMultiVolumeNode`` (a ``vtkMRMLScalarVolumeNode``
  whose image has one scalar component per frame; it imports a folder of frames or a 4D NIfTI) and vector
  volumes. The frames are the components in order.
* a 4D NIfTI opened with "Add data" as a plain volume shows only its first frame (ITK reads the first 3D
  sub-volume), so the panel also takes the 4D NIfTI file itself, which the CLI reads directly.

Frames go to the CLI as a frames-last 4D NIfTI (:func:`neuroshift.mrf.frames_io.write_frames_nifti`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _ijk_to_ras(node) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _multicomponent_frames(node):
    from vtk.util import numpy_support

    from neuroshift.io.volume import Volume

    image = node.GetImageData()
    i, j, k = image.GetDimensions()
    n = image.GetNumberOfScalarComponents()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    frames = flat.reshape(k, j, i, n).astype(np.float32)
    ref = Volume.from_ijk_to_ras(frames[..., 0].copy(), _ijk_to_ras(node), {"mrml_node": node.GetName()})
    return frames, ref


def _sequence_frames(node):
    from neuroshift.errors import DimensionError, InputError
    from neuroshift_slicer.volume_nodes import volume_from_node

    n = node.GetNumberOfDataNodes()
    if n < 2:
        raise DimensionError(f"sequence '{node.GetName()}' holds {n} item(s); MRF needs one volume per frame")
    first = frames = None
    for index in range(n):  # one frame in memory besides the stack (a 240 x 240 x 60 x 35 stack is 480 MB)
        item = node.GetNthDataNode(index)
        if item is None or not item.IsA("vtkMRMLScalarVolumeNode") or item.GetImageData() is None:
            raise InputError(f"sequence '{node.GetName()}': item {index + 1} is not a scalar volume "
                             f"({item.GetClassName() if item is not None else 'empty'})")
        if item.GetImageData().GetNumberOfScalarComponents() != 1:
            raise DimensionError(f"sequence '{node.GetName()}': item {index + 1} has several components")
        vol = volume_from_node(item)
        if first is None:
            first = vol.with_data(np.asarray(vol.data, dtype=np.float32))
            frames = np.empty(first.data.shape + (n,), dtype=np.float32)
        else:
            first.require_same_grid(vol, f"sequence '{node.GetName()}' frames 1 and {index + 1}")
        frames[..., index] = vol.data
    return frames, first


def frames_from_node(node) -> tuple[np.ndarray, object]:
    """Frames ``(K, J, I, F)`` float32 and the 3D reference :class:`~neuroshift.io.volume.Volume` of ``node``.

    Raises:
        InputError: no node, no image data, items that are not scalar volumes, a plain 3D volume.
        DimensionError / GeometryError: fewer than two frames, frames on different grids.
    """
    from neuroshift.errors import DimensionError, InputError

    if node is None:
        raise InputError("choose the MRF frames: a sequence node, a multi-volume, or a 4D NIfTI file")
    if node.IsA("vtkMRMLSequenceNode"):
        frames, ref = _sequence_frames(node)
    elif node.IsA("vtkMRMLScalarVolumeNode"):
        if node.GetImageData() is None:
            raise InputError(f"volume '{node.GetName()}' has no image data")
        if node.GetImageData().GetNumberOfScalarComponents() < 2:
            raise DimensionError(
                f"'{node.GetName()}' is a 3D volume with one frame. Choose a sequence node or a multi-volume "
                "(MultiVolumeImporter), or give the 4D NIfTI file itself: 'Add data' loads only the first frame "
                "of a 4D NIfTI")
        frames, ref = _multicomponent_frames(node)
    else:
        raise InputError(f"'{node.GetName()}' ({node.GetClassName()}) is neither a sequence nor a volume")
    if not np.all(np.isfinite(frames)):
        from neuroshift.errors import NonFiniteError

        raise NonFiniteError(f"'{node.GetName()}': the frames hold NaN or infinite values")
    return frames, ref


def storage_path(node) -> Path | None:
    """The file ``node`` was loaded from (for a schedule or BIDS sidecar beside it), if any."""
    if node is None or not hasattr(node, "GetStorageNode"):
        return None
    storage = node.GetStorageNode()
    name = storage.GetFileName() if storage is not None else None
    return Path(name) if name else None


def frames_to_sequence(scene, frames: np.ndarray, ref, name: str):
    """A ``vtkMRMLSequenceNode`` holding ``frames`` ``(K, J, I, F)`` as scalar volumes on ``ref``'s grid
    (index ``frame``, values 1..F): what the Sequences module holds for a loaded 4D volume; used by tests and
    the self-test."""
    import slicer

    from neuroshift_slicer.volume_nodes import update_node_from_volume

    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    seq.SetIndexName("frame")
    seq.SetIndexUnit("")
    for f in range(frames.shape[-1]):
        item = slicer.vtkMRMLScalarVolumeNode()
        update_node_from_volume(item, ref.with_data(np.ascontiguousarray(frames[..., f], dtype=np.float32)))
        seq.SetDataNodeAtValue(item, str(f + 1))
    return seq


__all__ = ["frames_from_node", "frames_to_sequence", "storage_path"]
