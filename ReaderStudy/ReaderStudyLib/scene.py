"""MRML side of a read: load only the allowed volumes, named neutrally; lesions from line markups.

Uses only MRML (slicer-core or Slicer), never Qt. Volumes are read with the
engine (geometry exact) and put in the scene without storage nodes, so file
names and header metadata that could reveal the source never reach the reader.
Each lesion is a pair of ``vtkMRMLMarkupsLineNode`` tagged with attributes
``ReaderStudy.LesionId`` and ``ReaderStudy.Axis`` (``long``/``short``); its
centre is the midpoint of the long axis in RAS mm and axes more than the
task's tolerance away from orthogonal are flagged.
"""

from __future__ import annotations

from typing import Mapping

from neuroshift.readerstudy.answers import Lesion, lesion_from_axes
from neuroshift.readerstudy.blinding import strip_metadata

ROLE = "ReaderStudy.Role"
LESION_ID = "ReaderStudy.LesionId"
AXIS = "ReaderStudy.Axis"


def _nodes(scene, cls: str):
    col = scene.GetNodesByClass(cls)
    return [col.GetItemAsObject(i) for i in range(col.GetNumberOfItems())]


def clear_read(scene) -> None:
    """Remove every node this module added for the previous read (volumes and lesion lines)."""
    for cls in ("vtkMRMLScalarVolumeNode", "vtkMRMLMarkupsLineNode"):
        for node in _nodes(scene, cls):
            if node.GetAttribute(ROLE):
                scene.RemoveNode(node)


def load_read_volumes(scene, images: Mapping[str, str], names: Mapping[str, str]) -> dict:
    """Load exactly ``images`` (image set -> path, only what the read allows) named by ``names``."""
    from neuroshift.io import read_volume
    from neuroshift_slicer.volume_nodes import add_volume_node

    clear_read(scene)
    out = {}
    for image_set, path in images.items():
        vol = read_volume(path)
        vol.meta = strip_metadata(vol.meta)
        node = add_volume_node(scene, vol, names[image_set])
        node.SetAttribute(ROLE, "image")
        out[image_set] = node
    return out


def add_lesion_lines(scene, lesion_id: str, long_ends, short_ends):
    """Create the two line markups of one lesion (end points in RAS mm)."""
    nodes = []
    for axis, ends in (("long", long_ends), ("short", short_ends)):
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", f"Lesion {lesion_id} {axis}")
        for p in ends:
            node.AddControlPointWorld([float(x) for x in p])
        node.SetAttribute(ROLE, "lesion")
        node.SetAttribute(LESION_ID, str(lesion_id))
        node.SetAttribute(AXIS, axis)
        nodes.append(node)
    return tuple(nodes)


def _ends(node):
    pts = []
    for i in range(2):
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(i, p)
        pts.append(p)
    return pts


def lesions_from_scene(scene, *, tolerance_deg: float = 10.0) -> tuple[list[Lesion], list[str]]:
    """(lesions, problems): one lesion per complete long/short pair; incomplete ones are reported."""
    pairs: dict[str, dict[str, object]] = {}
    for node in _nodes(scene, "vtkMRMLMarkupsLineNode"):
        if node.GetAttribute(ROLE) != "lesion":
            continue
        pairs.setdefault(node.GetAttribute(LESION_ID), {})[node.GetAttribute(AXIS)] = node
    lesions, problems = [], []
    for lid in sorted(pairs, key=lambda x: (len(x), x)):
        axes = pairs[lid]
        if set(axes) != {"long", "short"}:
            problems.append(f"lesion {lid}: needs a long and a short axis")
            continue
        if any(axes[a].GetNumberOfControlPoints() != 2 for a in ("long", "short")):
            problems.append(f"lesion {lid}: each axis needs two end points")
            continue
        lesions.append(lesion_from_axes(lid, _ends(axes["long"]), _ends(axes["short"]), tolerance_deg=tolerance_deg))
    return lesions, problems
