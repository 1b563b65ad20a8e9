"""Qt-free logic of the ClaustrumSeg Slicer module (importable and testable without the Slicer GUI)."""

from .logic import (BackgroundJob, ClaustrumSegLogic, OutputNodes, SegmentationParameters, segment_array,
                    table_rows)

__all__ = ["BackgroundJob", "ClaustrumSegLogic", "OutputNodes", "SegmentationParameters", "segment_array",
           "table_rows"]
