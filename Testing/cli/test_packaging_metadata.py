"""pyproject.toml: SPDX licence metadata (no setuptools deprecation warning) with a setuptools that reads it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_license_is_an_spdx_string_with_license_files():
    import tomllib

    doc = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert doc["project"]["license"] == "Apache-2.0"  # a string: the TOML-table form is deprecated
    files = doc["project"]["license-files"]
    assert files == ["LICENSE"] and (ROOT / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache")
    # SPDX strings and license-files need setuptools >= 77
    req = [r for r in doc["build-system"]["requires"] if r.startswith("setuptools")]
    assert len(req) == 1
    m = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", req[0].replace(" ", ""))
    assert m and int(m.group(1)) >= 77
