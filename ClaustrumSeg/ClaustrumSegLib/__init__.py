"""Qt-free logic of the ClaustrumSeg Slicer module (importable and testable without the Slicer GUI)."""

from .logic import (DEVICES, PRECISIONS, UNCERTAINTY_KINDS, BackgroundJob, ClaustrumSegCore, OutputNodes,
                    SegmentationParameters, SegmentationTask, parameters_from_fields, segment_array, table_rows)

__all__ = ["DEVICES", "PRECISIONS", "UNCERTAINTY_KINDS", "BackgroundJob", "ClaustrumSegCore", "OutputNodes",
           "SegmentationParameters", "SegmentationTask", "parameters_from_fields", "segment_array", "table_rows"]
