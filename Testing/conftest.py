"""Shared pytest fixtures. Module logic is imported from the Slicer module folders."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def mrml_scene():
    """A real ``vtkMRMLScene`` from slicer-core (required in CI, skipped elsewhere if absent)."""
    if os.environ.get("CI"):
        import slicer
    else:
        slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    yield scene
    scene.Clear(1)


@pytest.fixture(scope="session")
def phantom_volumes():
    """The digital phantom of ``neuroshift sample-data`` (SYNTHETIC, seed 0) in memory, built once per session."""
    from neuroshift.phantom.make import build_phantom

    return build_phantom(seed=0)


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    """The phantom (SYNTHETIC, seed 0) written to a folder once per session: ``(folder, paths)``."""
    from neuroshift.phantom import make_phantom

    out = tmp_path_factory.mktemp("phantom_session")
    return out, make_phantom(out, seed=0)
