"""MRML node helpers of the LesionSynth module (Qt-free): export to files, load results, SYNTHETIC tags, overlay.

Every synthetic node carries the word SYNTHETIC in its name and the attributes below, so a reader study or a
saved scene never mistakes it for an acquired scan. Geometry is copied exactly (IJK-to-RAS matrix) through
:mod:`neuroshift_slicer.volume_nodes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

#: Node attributes set on every synthetic output (``"true"`` and the engine's description).
SYNTHETIC_ATTRIBUTE = "NeuroShift.Synthetic"
DESCRIPTION_ATTRIBUTE = "NeuroShift.SyntheticDescription"
SOURCE_ATTRIBUTE = "NeuroShift.SyntheticSource"
#: Colour table of the uncertainty overlay (Slicer ``Libs/MRML/Logic/vtkMRMLColorLogic.h``: file colour table
#: "Inferno", node ID ``vtkMRMLColorTableNodeFileInferno.txt``, in every 5.x release).
UNCERTAINTY_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileInferno.txt"
#: Opacity of the uncertainty in the slice views' foreground layer.
UNCERTAINTY_OPACITY = 0.5


def synthetic_name(name: str) -> str:
    """``name`` with " SYNTHETIC" appended unless the word is already in it (any case)."""
    return name if "SYNTHETIC" in name.upper() else f"{name} SYNTHETIC"


def tag_synthetic(node, description: str, source: str = "") -> None:
    """Name and attributes that say the node is SYNTHETIC (``description``: what made it, e.g. model and inputs)."""
    node.SetName(synthetic_name(node.GetName() or "volume"))
    node.SetAttribute(SYNTHETIC_ATTRIBUTE, "true")
    node.SetAttribute(DESCRIPTION_ATTRIBUTE, description)
    if source:
        node.SetAttribute(SOURCE_ATTRIBUTE, source)


def is_synthetic(node) -> bool:
    return node is not None and node.GetAttribute(SYNTHETIC_ATTRIBUTE) == "true"


def require_untransformed(node, role: str) -> None:
    """Refuse a node under a transform: the engine works on the node's own IJK-to-RAS geometry."""
    from neuroshift.errors import InputError

    if node is not None and node.GetParentTransformNode() is not None:
        raise InputError(f"{role} '{node.GetName()}' is under a transform; harden the transform first "
                         "(Data module: right-click > Harden transform)")


def volumes_of(nodes: Mapping[str, Any]) -> dict:
    """``{key: Volume}`` of the non-None nodes, in order (geometry exact)."""
    from neuroshift_slicer.volume_nodes import volume_from_node

    return {key: volume_from_node(node) for key, node in nodes.items() if node is not None}


def require_one_grid(volumes: Mapping[str, Any], names: Mapping[str, str]) -> None:
    """Every volume on the first one's grid, else a clear error naming both nodes (``names``: key -> node name)."""
    from neuroshift.errors import GeometryError

    items = list(volumes.items())
    if not items:
        return
    first_key, first = items[0]
    for key, vol in items[1:]:
        if not first.same_grid(vol):
            raise GeometryError(f"'{names[key]}' ({key}) is not on the grid of '{names[first_key]}' ({first_key}); "
                                "resample it first (Resample Image (BRAINS) or Crop Volume)")


def export_volumes(volumes: Mapping[str, Any], workdir: Path, prefix: str = "input") -> dict[str, Path]:
    """Write each volume as ``workdir/<prefix>_<key>.nii.gz`` (atomic, geometry verified); ``{key: path}``."""
    from neuroshift.io.files import write_volume

    out = {}
    for key, vol in volumes.items():
        out[key] = write_volume(vol, Path(workdir) / f"{prefix}_{key}.nii.gz")
    return out


def load_into_node(scene, path: Path, name: str, node=None, *, labelmap: bool = False):
    """Read ``path`` into ``node`` (or a new scalar volume / label map node named ``name``)."""
    import numpy as np

    from neuroshift.io.files import read_volume
    from neuroshift_slicer.volume_nodes import add_volume_node

    vol = read_volume(path)
    if labelmap:
        vol = vol.with_data((np.asarray(vol.data) > 0).astype(np.uint8))
    return add_volume_node(scene, vol, name, labelmap=labelmap, node=node)


def show_uncertainty_overlay(scene, background, uncertainty, opacity: float = UNCERTAINTY_OPACITY) -> None:
    """Uncertainty in the Inferno colour table over the synthetic image in every slice view.

    Does what ``slicer.util.setSliceViewerLayers(background=, foreground=, foregroundOpacity=)`` does (Slicer
    ``Base/Python/slicer/util.py``: set the IDs on every ``vtkMRMLSliceCompositeNode``), on ``scene`` instead of
    ``slicer.mrmlScene``, so it is tested with slicer-core.
    """
    display = uncertainty.GetDisplayNode()
    if display is None:
        uncertainty.CreateDefaultDisplayNodes()
        display = uncertainty.GetDisplayNode()
    if display is not None:
        display.SetAndObserveColorNodeID(UNCERTAINTY_COLOR_NODE_ID)
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        if background is not None:
            composite.SetBackgroundVolumeID(background.GetID())
        composite.SetForegroundVolumeID(uncertainty.GetID())
        composite.SetForegroundOpacity(opacity)
