"""Stand-ins for the parts of Slicer's Python layer that pytest does not have (Qt, ctk, the scripted-module
base classes, ``parameterNodeWrapper``), so the module files themselves can be loaded and checked.

slicer-core provides the real MRML classes and ``slicer.util``; everything Qt is a stand-in. The one
behaviour that matters is copied as a *fact*, not code: ``ScriptedLoadableModuleLogic.__init__(self,
parent=None)`` calls ``super().__init__()`` with no arguments (Slicer ``Base/Python/slicer/
ScriptedLoadableModule.py``, every 5.x release up to 5.12).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("ShiftSimulator", "ClaustrumSeg", "ReaderStudy", "QuantitativeMRI", "LesionSynth")
#: Modules that must be re-imported under the stand-ins (they import qt/ctk at module level).
QT_DEPENDENT = ("neuroshift_slicer.connectors", "ShiftSimulatorLib.stress_panel")


class _QtNamespace(types.ModuleType):
    """``qt``/``ctk`` stand-in: every attribute is a distinct empty class (``qt.QComboBox`` etc.)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (), {"__module__": self.__name__})
        setattr(self, name, cls)
        return cls


class ScriptedLoadableModuleLogic:
    """Stand-in with the one fact the modules depend on: a no-argument cooperative ``super().__init__()``."""

    def __init__(self, parent=None):
        super().__init__()
        self.moduleName = type(self).__name__.removesuffix("Logic")

    def getParameterNode(self):
        return None


class _Base:
    def __init__(self, *args, **kwargs):
        pass


class _Annotation:
    def __init__(self, *args, **kwargs):
        self.args = args


class Choice(_Annotation):
    @property
    def choices(self):
        return self.args[0]


class WithinRange(_Annotation):
    pass


class BUILTINS:
    """Marks where Slicer's built-in connectors sit in the registry (see slicer_facts.BUILTIN_CONNECTORS)."""


def _stand_in_modules() -> dict:
    sli = types.ModuleType("slicer.ScriptedLoadableModule")
    sli.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleTest"):
        setattr(sli, name, type(name, (_Base,), {}))
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    # Slicer registers its built-ins first; @parameterNodeGuiConnector appends after them.
    pnw.guiConnectors = types.SimpleNamespace(_registeredGuiConnectors=[BUILTINS])

    def parameterNodeGuiConnector(cls):
        pnw.guiConnectors._registeredGuiConnectors.append(cls)
        return cls

    pnw.parameterNodeGuiConnector = parameterNodeGuiConnector
    pnw.parameterNodeWrapper = lambda cls: cls
    pnw.GuiConnector = type("GuiConnector", (_Base,), {})
    pnw.Choice, pnw.WithinRange = Choice, WithinRange
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    return {"qt": _QtNamespace("qt"), "ctk": _QtNamespace("ctk"), "slicer.ScriptedLoadableModule": sli,
            "slicer.parameterNodeWrapper": pnw, "slicer.i18n": i18n}


@pytest.fixture
def load_module_file(monkeypatch):
    """``load(name)`` -> the module file ``<name>/<name>.py`` executed under the stand-ins (with a real MRML scene)."""
    slicer = pytest.importorskip("slicer")
    fakes = _stand_in_modules()
    for key, module in fakes.items():
        monkeypatch.setitem(sys.modules, key, module)
    for key in QT_DEPENDENT:
        monkeypatch.delitem(sys.modules, key, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", slicer.vtkMRMLScene(), raising=False)

    def load(name: str):
        path = ROOT / name / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{name}_under_test", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.STAND_INS = fakes
        return module

    yield load
    for key in QT_DEPENDENT:  # never leave modules imported against the stand-ins behind
        sys.modules.pop(key, None)
