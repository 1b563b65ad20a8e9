"""Qt-free logic of the LesionSynth Slicer module (importable and testable without the Slicer GUI).

* :mod:`.synthesis` — synthesis panel: inputs, model choice, ``neuroshift synthesize`` command, SYNTHETIC nodes;
* :mod:`.insertion` — lesion-insertion panel: markup points to a lesion mask, tissue maps, ``insert-lesions``;
* :mod:`.nodes` — export/load with exact geometry, SYNTHETIC name and attributes, uncertainty overlay.
"""

from neuroshift.sequences import SEQUENCES  # pure Python (no numpy): the sequence choices

from .insertion import (DEFAULT_LABELS, InsertionCore, InsertionParameters, known_parameters, known_sequence,
                        markup_points_ras, points_to_mask)
from .nodes import SYNTHETIC_ATTRIBUTE, UNCERTAINTY_COLOR_NODE_ID, is_synthetic, synthetic_name
from .synthesis import (DEVICES, INPUT_FLAGS, SynthesisCore, SynthesisParameters, SynthesisTarget,
                        available_models, resolve_model)

__all__ = ["DEFAULT_LABELS", "DEVICES", "INPUT_FLAGS", "SEQUENCES", "SYNTHETIC_ATTRIBUTE", "UNCERTAINTY_COLOR_NODE_ID",
           "InsertionCore", "InsertionParameters", "SynthesisCore", "SynthesisParameters", "SynthesisTarget",
           "available_models", "is_synthetic", "known_parameters", "known_sequence", "markup_points_ras",
           "points_to_mask", "resolve_model", "synthetic_name"]
