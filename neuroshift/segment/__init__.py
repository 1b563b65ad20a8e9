"""Multi-view 2D U-Net segmentation (dissertation 003): networks, model packages, metrics, inference.

Submodules are imported lazily by their users so that ``import neuroshift.segment`` stays cheap.
"""
