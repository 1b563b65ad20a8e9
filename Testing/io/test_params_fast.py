"""Fast merge/require paths of AcquisitionParams (issue 9): same results and refusals as the general paths."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from neuroshift.errors import MissingParameterError, ParameterRangeError
from neuroshift.io.params import SEQUENCE_PARAMETERS, AcquisitionParams

VALUES = {"TE_ms": (None, 0.0, 10.0, 150.0, 5000.0), "TI_ms": (None, 0.0, 900.0, 2500.0, 9500.0),
          "TR_ms": (None, 150.0, 2300.0, 9000.0), "FA_deg": (None, 0.0, 9.0, 90.0, 150.0),
          "TI1_ms": (None, 3400.0, 500.0), "TI2_ms": (None, 500.0, 3400.0), "TX_ms": (None, 0.0, 7.0),
          "N": (None, 1.0, 176.0), "Trec_ms": (None, 7000.0), "field_T": (None, 1.5, 3.0)}


def _grid(names, limit=4000):
    keys = list(names)
    for combo in itertools.islice(itertools.product(*(VALUES[k] for k in keys)), limit):
        yield AcquisitionParams(**{k: v for k, v in zip(keys, combo) if v is not None})


def test_merged_equals_the_general_replace():
    src = AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000, field_T=3.0, FA_deg=90.0)
    for tgt in _grid(("TE_ms", "TI_ms", "TR_ms", "Trec_ms", "field_T")):
        fast = src.merged(tgt)
        slow = replace(src, **tgt.known())
        assert type(fast) is AcquisitionParams and fast == slow and hash(fast) == hash(slow)
        assert fast.label() == slow.label() and fast.known() == slow.known()
    assert src.merged(AcquisitionParams()) == src and src.merged(AcquisitionParams()) is not src
    with pytest.raises(Exception):  # the merged result stays frozen
        src.merged(AcquisitionParams(TE_ms=80)).TE_ms = 1.0


def test_merged_of_a_subclass_keeps_the_general_path():
    class Sub(AcquisitionParams):
        pass

    out = Sub(TE_ms=100, TR_ms=2000).merged(AcquisitionParams(TE_ms=50))
    assert type(out) is Sub and out.TE_ms == 50 and out.TR_ms == 2000


@pytest.mark.parametrize("seq", sorted(SEQUENCE_PARAMETERS))
def test_require_fast_check_agrees_with_the_full_checks(seq):
    """_meets (the fast path) is True exactly when the full checks pass; refusals keep their messages."""
    names = SEQUENCE_PARAMETERS[seq]
    passed = refused = 0
    for p in _grid(names):
        try:
            p.require(seq, context="the target")
            ok = True
        except (MissingParameterError, ParameterRangeError) as exc:
            ok = False
            assert "the target" in str(exc) or "must be shorter" in str(exc) or "TI1 > TI2" in str(exc) \
                or "cannot exceed" in str(exc)
        assert p._meets(seq) == ok, (seq, p)
        passed += ok
        refused += not ok
    assert passed > 5 and refused > 5
