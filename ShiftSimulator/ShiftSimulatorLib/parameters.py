"""Acquisition parameters as the ShiftSimulator module stores and shows them (Qt-free).

Where they live on a node (``DICOM.*`` attributes from Slicer's DICOM database, the BIDS sidecar beside
the storage file, ``NeuroShift.*`` attributes the user confirmed; see :mod:`ShiftSimulatorLib.logic` for
the merge order), and how the panel's spin boxes map to :class:`~neuroshift.io.params.AcquisitionParams`:
times in ms, angles in degrees, field in tesla, ``UNKNOWN`` (-1) for "unknown" / "same as source".
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from neuroshift.errors import InputError, MissingParameterError
from neuroshift.io.params import AcquisitionParams

#: Node attribute prefix of parameters the user confirmed/typed (NeuroShift units: ms, degrees, tesla).
ATTRIBUTE_PREFIX = "NeuroShift."
#: Node attribute prefix of DICOM header values (DICOM units: ms, degrees, tesla).
DICOM_PREFIX = "DICOM."
#: DICOM keyword -> tag, for reading the header from Slicer's DICOM database.
DICOM_TAGS = {
    "RepetitionTime": "0018,0080", "EchoTime": "0018,0081", "InversionTime": "0018,0082",
    "FlipAngle": "0018,1314", "MagneticFieldStrength": "0018,0087", "EchoTrainLength": "0018,0091",
}


def as_params(value) -> AcquisitionParams:
    """``value`` (AcquisitionParams, a ``{field: value}`` mapping or ``"TE=150,TI=2900"``) as AcquisitionParams."""
    if isinstance(value, AcquisitionParams):
        return value
    if isinstance(value, str):
        return AcquisitionParams.parse(value)
    if isinstance(value, Mapping):
        return AcquisitionParams.from_mapping({k: v for k, v in value.items() if v is not None})
    raise InputError(f"target parameters must be AcquisitionParams, a mapping or 'TE=..,TI=..', got {value!r}")


def storage_path(node) -> Path | None:
    """File the node was loaded from / saved to, if any."""
    storage = node.GetStorageNode() if hasattr(node, "GetStorageNode") else None
    name = storage.GetFileName() if storage is not None else None
    return Path(name) if name else None


def dicom_attributes_from_database(node, database) -> dict[str, str]:
    """Copy the acquisition tags of a DICOM-loaded node from Slicer's DICOM database into node attributes.

    ``database`` is ``slicer.dicomDatabase`` (duck-typed: ``fileForInstance(uid)``,
    ``fileValue(file, "gggg,eeee")``); the node's ``DICOM.instanceUIDs`` attribute names
    its instances. Returns the attributes set (DICOM units: ms, degrees, tesla).
    """
    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids or database is None:
        return {}
    path = database.fileForInstance(uids[0])
    if not path:
        return {}
    found = {}
    for keyword, tag in DICOM_TAGS.items():
        value = str(database.fileValue(path, tag) or "").strip()
        if value:
            node.SetAttribute(DICOM_PREFIX + keyword, value)
            found[keyword] = value
    return found


def require_source(params: AcquisitionParams, sequence: str, node_name: str) -> AcquisitionParams:
    """``params.require`` with a message that tells Slicer users where to enter the values."""
    try:
        return params.require(sequence, context=f"'{node_name}'")
    except MissingParameterError as exc:
        raise MissingParameterError(f"{exc}. Enter them under 'Source parameters' or load the volume "
                                    "with its BIDS sidecar / from DICOM") from None


#: Value of a parameter field that is not known ("unknown" source / "same as source" target).
UNKNOWN = -1.0
#: Parameter-node field suffix -> AcquisitionParams field (units: ms, degrees, tesla).
PARAMETER_FIELDS = (("TE", "TE_ms"), ("TI", "TI_ms"), ("TR", "TR_ms"), ("FA", "FA_deg"), ("Field", "field_T"))


def params_from_fields(te_ms: float, ti_ms: float, tr_ms: float, fa_deg: float,
                       field_T: float = UNKNOWN) -> AcquisitionParams:
    """AcquisitionParams from the panel's values; a negative value (``UNKNOWN``) means unknown / keep."""
    values = {"TE_ms": te_ms, "TI_ms": ti_ms, "TR_ms": tr_ms, "FA_deg": fa_deg, "field_T": field_T}
    return AcquisitionParams(**{k: float(v) for k, v in values.items() if v is not None and v >= 0})


def fields_from_params(params: AcquisitionParams, prefix: str = "source") -> dict[str, float]:
    """Parameter-node values (``sourceTE`` ... ``sourceField``) for ``params``; ``UNKNOWN`` where not known."""
    out = {}
    for suffix, name in PARAMETER_FIELDS:
        value = getattr(params, name)
        out[prefix + suffix] = float(value) if value is not None else UNKNOWN
    return out


def header_needs_reading(node_id: str | None, read_for_id: str) -> bool:
    """Whether selecting ``node_id`` should pre-fill the source parameters from its header.

    Only when the user picks a node other than the one the header was last read for
    (``read_for_id``, saved in the parameter node): the wrapper also sets the input when a scene
    is loaded or the module is entered, and must not overwrite values typed or saved since.
    """
    return bool(node_id) and node_id != read_for_id


def simulation_request(p) -> tuple:
    """(tissues, label mapping, source, target, source field in T) from the module's parameter node.

    ``p``: any object with the parameter node's fields (``tissueMode``, ``tissueLabelmap``, ``labelMapping``,
    ``tissueSegmentation``, ``pvCSF``..``pvLesion``, ``sourceTE``..``sourceField``, ``targetTE``..``targetFA``).
    """
    from neuroshift.tissues.maps import parse_label_mapping

    if p.tissueMode == "label map":
        tissues, mapping = p.tissueLabelmap, parse_label_mapping(p.labelMapping)
    elif p.tissueMode == "segmentation":
        tissues, mapping = p.tissueSegmentation, None
    else:
        tissues = {t: n for t, n in (("CSF", p.pvCSF), ("GM", p.pvGM), ("WM", p.pvWM), ("lesion", p.pvLesion))
                   if n is not None}
        mapping = None
    source = params_from_fields(p.sourceTE, p.sourceTI, p.sourceTR, p.sourceFA, p.sourceField)
    target = params_from_fields(p.targetTE, p.targetTI, p.targetTR, p.targetFA)
    field_T = p.sourceField if p.sourceField >= 0 else None
    return tissues, mapping, source, target, field_T
