"""Qt-free code of the ShiftSimulator Slicer module (importable and testable with slicer-core)."""

from .logic import ShiftSimulationCore, derived_name, dicom_attributes_from_database, segment_tissue

__all__ = ["ShiftSimulationCore", "derived_name", "dicom_attributes_from_database", "segment_tissue"]
