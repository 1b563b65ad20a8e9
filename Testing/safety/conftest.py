"""Fixtures shared by the tests in this folder (moved from helpers/safety_helpers.py, issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> Path:
    """The digital phantom of ``neuroshift sample-data`` (SYNTHETIC), written once per test session."""
    from neuroshift.phantom import make_phantom

    folder = tmp_path_factory.mktemp("safety_phantom")
    make_phantom(folder, seed=0)
    return folder
