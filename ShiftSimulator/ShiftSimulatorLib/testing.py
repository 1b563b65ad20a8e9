"""Stand-ins for the module's in-Slicer self test (Qt-free, no torch)."""

from __future__ import annotations

import numpy as np


class ThresholdModel:
    """A stand-in segmentation model: FLAIR above its 99.5th percentile (no weights, no torch)."""

    name = "threshold"
    image_channel = "FLAIR"
    extra_inputs = ()

    def predict(self, inputs, *, case_id=""):
        image = inputs["FLAIR"]
        data = np.asarray(image.data, dtype=np.float32)
        return image.with_data((data > np.percentile(data, 99.5)).astype(np.uint8))
