"""What the modules need from Slicer's Python: the engine's wheels and a background interpreter.

Shared by the ShiftSimulator, ClaustrumSeg and ReaderStudy widgets. Nothing is installed without asking.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from typing import Mapping

#: import name -> pip requirement, per feature.
ENGINE_REQUIREMENTS = {"numpy": "numpy", "scipy": "scipy", "SimpleITK": "SimpleITK", "nibabel": "nibabel",
                       "yaml": "pyyaml", "tqdm": "tqdm"}
MODEL_REQUIREMENTS = {"torch": "torch", "safetensors": "safetensors"}
REPORT_REQUIREMENTS = {"matplotlib": "matplotlib"}


def missing_requirements(extra: Mapping[str, str] | None = None) -> list[str]:
    """pip requirements of the engine (plus ``extra``) whose module cannot be imported."""
    required = {**ENGINE_REQUIREMENTS, **(extra or {})}
    return [req for module, req in required.items() if importlib.util.find_spec(module) is None]


def ensure_requirements(module_title: str, extra: Mapping[str, str] | None = None) -> bool:
    """Ask, then ``pip_install`` the missing wheels into Slicer's Python; False if the user declines."""
    missing = missing_requirements(extra)
    if not missing:
        return True
    import slicer

    if not slicer.util.confirmOkCancelDisplay(
            f"{module_title} needs these Python packages: {', '.join(missing)}. Install them now?"):
        return False
    slicer.util.pip_install(missing)
    return True


def engine_process() -> tuple[str, dict[str, str]]:
    """Interpreter (``PythonSlicer`` inside Slicer) and environment for a background ``neuroshift`` run."""
    import neuroshift

    engine_root = os.path.dirname(os.path.dirname(os.path.abspath(neuroshift.__file__)))
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [engine_root, os.environ.get("PYTHONPATH", "")]))}
    return shutil.which("PythonSlicer") or sys.executable, env
