"""Relaxation tables: built-in values with sources, JSON overrides and their validation."""

from __future__ import annotations

import json

import pytest

from neuroshift.errors import ParameterRangeError, UnreadableFileError
from neuroshift.physics.relaxation import TISSUES, TissueParameters, relaxation_table, table_as_dict


@pytest.mark.parametrize("field", [1.5, 3.0, 3, 2.99])
def test_builtin_tables_complete_and_sourced(field):
    table = relaxation_table(field)
    assert set(table) == set(TISSUES) == {"CSF", "GM", "WM", "lesion"}
    for name, tp in table.items():
        assert isinstance(tp, TissueParameters)
        for v in (tp.pd, tp.t1_ms, tp.t2_ms, tp.t2star_ms):
            assert v > 0
        assert tp.t2star_ms <= tp.t2_ms < tp.t1_ms
        for part in ("PD:", "T1:", "T2:", "T2star:"):
            assert part in tp.source, (name, tp.source)
    # physiological ordering: CSF > GM > WM for T1 and PD; lesion T1 above WM
    assert table["CSF"].t1_ms > table["GM"].t1_ms > table["WM"].t1_ms
    assert table["lesion"].t1_ms > table["WM"].t1_ms
    assert table["CSF"].pd > table["GM"].pd > table["WM"].pd


def test_literature_values():
    t3 = relaxation_table(3.0)
    assert (t3["GM"].t1_ms, t3["WM"].t1_ms) == (1331.0, 832.0)  # Wansapura 1999
    assert "Wansapura" in t3["GM"].source
    assert t3["CSF"].t2_ms == 379.0 and "Paper000" in t3["CSF"].source
    t15 = relaxation_table(1.5)
    assert t15["CSF"].t2_ms == 329.0 and "BrainWeb" in t15["CSF"].source
    assert "Stanisz2005" in t15["WM"].source
    assert (t15["GM"].t1_ms, t15["WM"].t1_ms, t15["GM"].t2_ms, t15["WM"].t2_ms) == (1124.0, 884.0, 95.0, 72.0)
    assert t3["GM"].r1_per_s == pytest.approx(1000 / 1331)


def test_override_file(tmp_path):
    f = tmp_path / "relax.json"
    f.write_text(json.dumps({"gm": {"T1": 1400, "t2_ms": 100, "source": "my lab"}, "lesion": {"PD": 0.9}}))
    table = relaxation_table(3, f)
    assert table["GM"].t1_ms == 1400 and table["GM"].t2_ms == 100 and table["GM"].source == "my lab"
    assert table["GM"].t2star_ms == relaxation_table(3)["GM"].t2star_ms
    assert table["lesion"].pd == 0.9 and "user override" in table["lesion"].source
    assert table["WM"] == relaxation_table(3)["WM"]
    # the table's own dump is a valid override ("same shape")
    f.write_text(json.dumps({"tissues": table_as_dict(table)}))
    assert relaxation_table(3, f) == table


@pytest.mark.parametrize("doc, match", [
    ({"bone": {"T1": 300}}, "unknown tissue 'bone'"),
    ({"GM": {"T1": -5}}, "GM.t1_ms must be a positive finite number"),
    ({"GM": {"T1": 0}}, "positive"),
    ({"GM": {"T2": "long"}}, "GM.t2_ms must be a number"),
    ({"GM": {"T3": 5}}, "unknown field 'T3'"),
    ({"GM": 5}, "must map to an object"),
    ([1, 2], "JSON object"),
])
def test_override_validation(tmp_path, doc, match):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(ParameterRangeError, match=match):
        relaxation_table(3, f)


def test_override_nan_and_unreadable(tmp_path):
    f = tmp_path / "nan.json"
    f.write_text('{"GM": {"T1": NaN}}')
    with pytest.raises(ParameterRangeError, match="positive finite"):
        relaxation_table(3, f)
    with pytest.raises(UnreadableFileError, match="not found"):
        relaxation_table(3, tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UnreadableFileError, match="not valid JSON"):
        relaxation_table(3, tmp_path / "broken.json")


def test_other_fields():
    with pytest.raises(ParameterRangeError, match="no built-in relaxation table at 7 T"):
        relaxation_table(7.0)
    with pytest.raises(ParameterRangeError):
        relaxation_table(-1)
    full = {t: {"pd": 1, "t1_ms": 2000, "t2_ms": 50, "t2star_ms": 30} for t in TISSUES}
    table = relaxation_table(7.0, full)
    assert table["WM"].t1_ms == 2000 and table["WM"].source == "user override"


@pytest.mark.parametrize("field", [1.5, 3.0])
def test_every_builtin_value_has_a_provenance(field):
    """Publication (or an explicit ASSUMPTION), location, field strength, method and a verified flag for every
    value; a verified number is quoted where it was checked."""
    from neuroshift.physics.relaxation import PROVENANCE, SOURCES, provenance
    from neuroshift.physics.relaxation_sources import STATUSES

    table = relaxation_table(field)
    assert set(PROVENANCE[field]) == set(TISSUES)
    for t in TISSUES:
        for param in ("pd", "t1_ms", "t2_ms", "t2star_ms"):
            pv = provenance(field, t, param)
            assert pv.status in STATUSES, (t, param)
            assert pv.method.strip() and pv.location.strip(), (t, param)
            if pv.status == "ASSUMPTION":
                assert pv.ref is None or pv.ref in SOURCES, (t, param)
                assert not pv.verified
                if param != "pd":  # the value's own source text says so too
                    assert "[assumption]" in table[t].source, (t, param)
                continue
            assert pv.field_T is not None, (t, param)
            if pv.status == "representative":
                assert pv.ref is None or pv.ref in SOURCES, (t, param)
                assert not pv.verified
            else:
                assert pv.ref in SOURCES, (t, param)
                assert pv.verified == (pv.status == "verified"), (t, param)
            if pv.verified:
                # the number itself appears in what was checked (location, note or checked_at quote it)
                value = f"{getattr(table[t], param):g}"
                assert value in pv.note + pv.checked_at + pv.location, (t, param, value)
                assert pv.checked_at.strip(), (t, param)


def test_verified_values_and_corrected_attributions():
    """Values whose numbers were found in public texts; the 3 T CSF T1 no longer claims Lu 2005 (3817 ms there)
    but Wansapura 1999, which only an unreliable secondary text confirms (unverified)."""
    from neuroshift.physics.relaxation import provenance

    verified = {(f, t, p) for f in (1.5, 3.0) for t in TISSUES for p in ("pd", "t1_ms", "t2_ms", "t2star_ms")
                if provenance(f, t, p).verified}
    assert verified == {(3.0, "CSF", "t2_ms"), (1.5, "CSF", "t2_ms"), (3.0, "GM", "t1_ms"), (3.0, "GM", "t2_ms"),
                        (3.0, "WM", "t1_ms")}
    assert relaxation_table(3.0)["CSF"].t2_ms == 379.0 and relaxation_table(1.5)["CSF"].t2_ms == 329.0
    assert (relaxation_table(3.0)["GM"].t1_ms, relaxation_table(3.0)["GM"].t2_ms,
            relaxation_table(3.0)["WM"].t1_ms) == (1331.0, 110.0, 832.0)
    csf = provenance(3.0, "CSF", "t1_ms")
    assert csf.status == "unverified" and csf.ref == "Wansapura1999" and "3817" in csf.note
    assert "Lu2005 (3 T)" not in relaxation_table(3.0)["CSF"].source
    # the 1.5 T CSF T1 is the 3 T value reused: an assumption
    assert provenance(1.5, "CSF", "t1_ms").status == "ASSUMPTION"
