"""Digital brain phantom with known ground truth (MNI ICBM152 2009 anatomy + synthetic MS lesions).

``make_phantom(outdir, seed=0)`` writes T1w/FLAIR images with BIDS sidecars, partial-volume maps,
label map, lesion and brain masks and ``ground_truth.json``; ``build_phantom`` returns the same in memory.
"""

from .make import OUTPUT_FILES, Phantom, build_phantom, make_phantom, tissue_signals

__all__ = ["OUTPUT_FILES", "Phantom", "build_phantom", "make_phantom", "tissue_signals"]
