"""Convert between MRML volume nodes and :class:`neuroshift.io.Volume` (geometry exact)."""

from __future__ import annotations

import numpy as np

from neuroshift.io.volume import Volume


def _vtk_matrix(array: np.ndarray):
    import vtk

    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(array[r, c]))
    return m


def volume_from_node(node) -> Volume:
    """Copy a scalar volume / label map node into a :class:`Volume` (``[k, j, i]`` array)."""
    import vtk
    from vtk.util import numpy_support

    image = node.GetImageData()
    if image is None:
        raise ValueError(f"volume node '{node.GetName()}' has no image data")
    dims = image.GetDimensions()
    scalars = image.GetPointData().GetScalars()
    data = numpy_support.vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0]).copy()
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ijk_to_ras = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    return Volume.from_ijk_to_ras(data, ijk_to_ras, {"mrml_node": node.GetName()})


def update_node_from_volume(node, vol: Volume) -> None:
    """Replace a node's voxels and geometry with those of ``vol``."""
    import vtk
    from vtk.util import numpy_support

    data = np.ascontiguousarray(vol.data)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    image = vtk.vtkImageData()
    k, j, i = data.shape
    image.SetDimensions(i, j, k)
    scalars = numpy_support.numpy_to_vtk(data.reshape(-1), deep=True)
    image.GetPointData().SetScalars(scalars)
    node.SetIJKToRASMatrix(_vtk_matrix(vol.ijk_to_ras()))
    node.SetAndObserveImageData(image)


def add_volume_node(scene, vol: Volume, name: str, *, labelmap: bool = False, node=None):
    """Add (or update ``node``) a scalar volume or label map node holding ``vol``."""
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    if node is None:
        node = scene.AddNewNodeByClass(cls, name)
    update_node_from_volume(node, vol)
    if node.GetDisplayNode() is None and hasattr(node, "CreateDefaultDisplayNodes"):
        node.CreateDefaultDisplayNodes()
    return node
