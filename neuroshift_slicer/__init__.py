"""Slicer-side helpers shared by the NeuroShift modules.

The engine (``neuroshift``) never imports ``slicer``; this package is the thin bridge between
MRML nodes and engine volumes (``volume_nodes``), the dependency installer (``environment``),
background runs (``background``, ``jobs``) — all tested against slicer-core — and the one
parameter-node connector the modules add (``connectors``, imported only inside Slicer).

Minimum Slicer: 5.10. Slicer 5.4-5.8 ship Python 3.9.10, 5.10 and later ship Python 3.12
(Slicer's top-level CMakeLists.txt, ``Slicer_REQUIRED_PYTHON_VERSION``); the engine needs
Python >= 3.10 (pyproject.toml ``requires-python``).
"""

import sys

#: Oldest Slicer release the modules support (also in CMakeLists.txt and the README).
MINIMUM_SLICER_VERSION = "5.10"
#: Oldest Python the engine supports (pyproject.toml requires-python).
MINIMUM_PYTHON = (3, 10)

if sys.version_info < MINIMUM_PYTHON:
    raise ImportError(f"NeuroShift needs 3D Slicer {MINIMUM_SLICER_VERSION} or later (Python "
                      f"{'.'.join(map(str, MINIMUM_PYTHON))}+); this Python is {sys.version.split()[0]}")
