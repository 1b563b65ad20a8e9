"""What the modules need from Slicer's Python: the engine's wheels and a background interpreter.

Shared by the ShiftSimulator, ClaustrumSeg and ReaderStudy widgets. Nothing is installed without
asking (except in self-tests, which pass ``ask=False``).

Slicer bundles numpy, scipy, SimpleITK, requests, pydicom and packaging (Slicer
``SuperBuild/External_python-*.cmake``), not the rest of what the engine imports, so every
module calls :func:`ensure_requirements` before the first engine call that needs them.

Torch is installed through the PyTorch extension (``PyTorchUtilsLogic().installTorch``, declared
as ``EXTENSION_DEPENDS PyTorch``), which picks the CUDA build that matches the GPU driver (a plain
``pip install torch`` gets a CPU-only wheel on Windows and an unchecked CUDA build on Linux). When
that extension is missing, the CPU wheel from PyPI is the fallback.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
from typing import Mapping

#: import name -> pip requirement, per feature. psutil ends background runs (whole process tree).
ENGINE_REQUIREMENTS = {"numpy": "numpy", "scipy": "scipy", "SimpleITK": "SimpleITK", "nibabel": "nibabel",
                       "yaml": "pyyaml", "tqdm": "tqdm", "h5py": "h5py", "psutil": "psutil"}
MODEL_REQUIREMENTS = {"torch": "torch>=2.1", "safetensors": "safetensors"}
REPORT_REQUIREMENTS = {"matplotlib": "matplotlib"}
#: The torch versions the engine supports (pyproject.toml).
TORCH_REQUIREMENT = ">=2.1"
#: Installed sizes on disk (MB; Linux x86-64 venv, torch 2.13 CPU build), shown before installing.
INSTALL_SIZE_MB = {"engine": 30, "torch": 750, "safetensors": 2, "matplotlib": 75}


def missing_requirements(extra: Mapping[str, str] | None = None) -> list[str]:
    """pip requirements of the engine (plus ``extra``) whose module cannot be imported."""
    required = {**ENGINE_REQUIREMENTS, **(extra or {})}
    return [req for module, req in required.items() if importlib.util.find_spec(module) is None]


def install_size_mb(requirements: list[str]) -> int:
    """Approximate installed size (MB) of the missing ``requirements`` (CPU torch)."""
    size = 0
    engine = set(ENGINE_REQUIREMENTS.values())
    if any(req in engine for req in requirements):
        size += INSTALL_SIZE_MB["engine"]
    for req in requirements:
        name = req.split(">")[0].split("=")[0].split("<")[0]
        size += INSTALL_SIZE_MB.get(name, 0)
    return size


def _install_torch(ask: bool) -> bool:
    """Torch through the PyTorch extension (GPU-matched build); the CPU wheel when the extension is absent."""
    import slicer

    try:
        import PyTorchUtils  # the PyTorch extension (EXTENSION_DEPENDS PyTorch)
    except ModuleNotFoundError:
        logging.warning("NeuroShift: the PyTorch extension is not installed; installing the CPU build of torch")
        slicer.util.pip_install(f"torch{TORCH_REQUIREMENT}")
        return importlib.util.find_spec("torch") is not None
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=ask,
                                                          torchVersionRequirement=TORCH_REQUIREMENT)
    return torch is not None


def ensure_requirements(module_title: str, extra: Mapping[str, str] | None = None, *, ask: bool = True) -> bool:
    """Ask, then install the missing wheels into Slicer's Python; False if the user declines.

    Cheap when nothing is missing (one ``find_spec`` per package), so widgets call it at the
    start of every action that reaches the engine.
    """
    missing = missing_requirements(extra)
    if not missing:
        return True
    import slicer

    wants_torch = any(req.startswith("torch") for req in missing)
    others = [req for req in missing if not req.startswith("torch")]
    size_mb = install_size_mb(missing)
    if ask and not slicer.util.confirmOkCancelDisplay(
            f"{module_title} needs these Python packages: {', '.join(missing)} "
            f"(about {size_mb} MB on disk{'; torch with CUDA takes several GB' if wants_torch else ''}). "
            "Install them now?"):
        return False
    if others:
        slicer.util.pip_install(others)
    if wants_torch and not _install_torch(ask=False):
        return False
    return not missing_requirements(extra)


def engine_process() -> tuple[str, dict[str, str]]:
    """Interpreter (``PythonSlicer`` inside Slicer) and environment for a background ``neuroshift`` run."""
    import neuroshift

    engine_root = os.path.dirname(os.path.dirname(os.path.abspath(neuroshift.__file__)))
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [engine_root, os.environ.get("PYTHONPATH", "")]))}
    return shutil.which("PythonSlicer") or sys.executable, env
