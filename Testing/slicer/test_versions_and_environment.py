"""Declared minimum Slicer, the engine's Python and the extension metadata agree; what the modules install."""

from __future__ import annotations

import pathlib
import re
import sys
import types

import pytest

from helpers.slicer_facts import NOT_BUNDLED, SLICER_PYTHON

import neuroshift_slicer
from neuroshift_slicer import environment

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _requires_python() -> tuple[int, int]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    major, minor = re.search(r'^requires-python = ">=(\d+)\.(\d+)"', text, re.M).groups()
    return int(major), int(minor)


def test_minimum_slicer_is_the_first_release_whose_python_the_engine_supports():
    """Slicer top-level CMakeLists.txt: 5.4-5.8 ship Python 3.9.10, 5.10+ ship 3.12.10. Before the fix no minimum
    was declared, while pyproject.toml requires Python >= 3.10: the extension would have been offered to 5.4-5.8."""
    minimum = neuroshift_slicer.MINIMUM_SLICER_VERSION
    need = _requires_python()
    assert neuroshift_slicer.MINIMUM_PYTHON == need
    key = lambda v: tuple(map(int, v.split(".")))  # noqa: E731
    supported = [v for v in sorted(SLICER_PYTHON, key=key) if SLICER_PYTHON[v] >= need]
    assert supported[0] == minimum
    assert all(SLICER_PYTHON[v] < need for v in SLICER_PYTHON if key(v) < key(minimum))
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert f'set(NEUROSHIFT_MINIMUM_SLICER_VERSION "{minimum}")' in cmake
    assert 'Slicer_REQUIRED_PYTHON_VERSION VERSION_LESS "3.10"' in cmake
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"**Minimum: 3D Slicer {minimum}**" in readme


def test_extension_metadata():
    """Defects 7 and 10: PyTorch declared as extension dependency; screenshots not empty and present in the
    repository; the engine copied into the build tree at build time (``file(COPY)`` runs only at configure time)."""
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r'set\(EXTENSION_DEPENDS "[^"]*\bPyTorch\b[^"]*"\)', cmake)
    urls = re.search(r'set\(EXTENSION_SCREENSHOTURLS "([^"]*)"\)', cmake).group(1).split()
    assert urls
    for url in urls:
        path = ROOT / url.split("/main/", 1)[1]
        assert path.is_file() and path.stat().st_size > 10_000, url
    code = "\n".join(line.split("#")[0] for line in cmake.splitlines())
    assert "file(COPY" not in code and "copy_directory" in code


def test_modules_install_every_engine_dependency_slicer_lacks():
    """pyproject's dependencies that Slicer does not bundle are all in what the modules install (psutil included,
    which ends background process trees)."""
    deps = re.search(r"^dependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.S | re.M)
    names = {re.split(r"[<>=\[]", d.strip().strip('",'))[0].lower() for d in deps.group(1).split("\n") if d.strip()}
    installed = {re.split(r"[<>=]", r)[0].lower() for r in {**environment.ENGINE_REQUIREMENTS,
                                                            **environment.MODEL_REQUIREMENTS,
                                                            **environment.REPORT_REQUIREMENTS}.values()}
    wheel = {"yaml": "pyyaml"}
    needed = {wheel.get(m, m).lower() for m in NOT_BUNDLED} & names
    assert "psutil" in names and needed <= installed, needed - installed


@pytest.fixture
def fake_slicer(monkeypatch):
    calls = []
    util = types.SimpleNamespace(pip_install=lambda req: calls.append(("pip", req)),
                                 confirmOkCancelDisplay=lambda text: calls.append(("ask", text)) or True)
    monkeypatch.setitem(sys.modules, "slicer", types.SimpleNamespace(util=util))
    return calls


def _missing_sequence(monkeypatch, *answers):
    answers = list(answers)
    monkeypatch.setattr(environment, "missing_requirements", lambda extra=None: answers.pop(0) if answers else [])


def test_torch_comes_from_the_pytorch_extension(monkeypatch, fake_slicer):
    """SlicerMONAIAuto3DSeg ``dependency_handler.py``: ``PyTorchUtilsLogic().installTorch(askConfirmation=...,
    torchVersionRequirement=...)``. Before the fix torch was a plain ``pip_install`` (CPU wheel on Windows)."""
    asked = []

    class Logic:
        def installTorch(self, askConfirmation, torchVersionRequirement):
            asked.append((askConfirmation, torchVersionRequirement))
            return object()

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=Logic))
    _missing_sequence(monkeypatch, ["nibabel", "torch>=2.1"], [])
    assert environment.ensure_requirements("ClaustrumSeg", environment.MODEL_REQUIREMENTS)
    assert fake_slicer[0][0] == "ask" and "780 MB" in fake_slicer[0][1]  # 30 engine + 750 torch (CPU, on disk)
    assert fake_slicer[1:] == [("pip", ["nibabel"])]  # torch not through pip
    assert asked == [(False, ">=2.1")]  # the user already confirmed once


def test_cpu_torch_wheel_when_the_pytorch_extension_is_missing(monkeypatch, fake_slicer):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import raises ModuleNotFoundError
    _missing_sequence(monkeypatch, ["torch>=2.1"], [])
    monkeypatch.setattr(environment.importlib.util, "find_spec", lambda name: object())
    assert environment.ensure_requirements("ClaustrumSeg", environment.MODEL_REQUIREMENTS, ask=False)
    assert fake_slicer == [("pip", "torch>=2.1")]


def test_declining_installs_nothing(monkeypatch, fake_slicer):
    fake_slicer_util = sys.modules["slicer"].util
    monkeypatch.setattr(fake_slicer_util, "confirmOkCancelDisplay", lambda text: False)
    _missing_sequence(monkeypatch, ["pyyaml"])
    assert not environment.ensure_requirements("ReaderStudy")
    assert fake_slicer == []
