"""neuroshift.references: the papers 000-004 and every relaxation source have an entry; DOIs well formed."""

import re

import pytest

from neuroshift.physics.relaxation import SOURCES
from neuroshift.references import REFERENCES, cite


def test_source_papers_and_relaxation_sources_are_listed():
    keys = {k.lower() for k in REFERENCES}
    assert {f"paper00{i}" for i in range(5)} <= keys
    assert {k.lower() for k in SOURCES} <= keys, sorted({k.lower() for k in SOURCES} - keys)


def test_dois_are_well_formed_and_missing_ones_say_why():
    for key, r in REFERENCES.items():
        assert 1990 <= r.year <= 2026 and r.authors and r.title and r.venue, key
        if r.doi is None:
            assert r.note, key
        else:
            assert re.fullmatch(r"10\.\d{4,9}/\S+", r.doi), (key, r.doi)
    assert REFERENCES["paper001"].doi == "10.1186/s12880-021-00636-x"  # as printed in the paper (seeds/001)
    assert cite("paper000").endswith("https://doi.org/10.1117/1.JMI.11.2.024013")
    assert cite("paper003").startswith("Li H (2023).")
    with pytest.raises(KeyError, match="known: "):
        cite("paper999")


def test_keys_cited_in_docstrings_exist():
    """Docstrings cite as "reference ``key``"; every such key is in the table."""
    from pathlib import Path

    import neuroshift

    root = Path(neuroshift.__file__).parent
    cited = {m for p in root.rglob("*.py")
             for m in re.findall(r"reference\s+``(\w+)``", p.read_text(encoding="utf-8"))}
    assert {"paper000", "paper003", "Shrivastava2017"} <= cited
    assert cited <= set(REFERENCES), sorted(cited - set(REFERENCES))
