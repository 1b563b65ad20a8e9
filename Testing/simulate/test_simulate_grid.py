"""Parameter grids: inclusive ranges, lists, extras, and refusals."""

import numpy as np
import pytest

from neuroshift.errors import ParameterRangeError
from neuroshift.io.params import AcquisitionParams
from neuroshift.simulate.grid import grid_points, grid_shape, parse_grid, split_point


def test_paper_grid_is_7_by_7_inclusive():
    g = parse_grid("TE=84:150:7,TI=2200:2900:7")
    assert list(g) == ["TE", "TI"]
    np.testing.assert_allclose(g["TE"], [84, 95, 106, 117, 128, 139, 150])
    np.testing.assert_allclose(g["TI"], np.linspace(2200, 2900, 7))
    assert g["TI"][1] == pytest.approx(2316.6666666666665)
    pts = grid_points(g)
    assert len(pts) == 49 and grid_shape(g) == (7, 7)
    assert pts[0] == {"TE": 84.0, "TI": 2200.0} and pts[1] == {"TE": 84.0, "TI": pytest.approx(2316.6666666)}
    assert pts[-1] == {"TE": 150.0, "TI": 2900.0}


def test_lists_aliases_and_extras():
    g = parse_grid("flip=10|20|30, TR_ms=30, noise=0:20:3, slice=1|3, field=1.5|3")
    assert list(g) == ["FA", "TR", "noise", "slice_mm", "field"]
    np.testing.assert_array_equal(g["FA"], [10, 20, 30])
    np.testing.assert_array_equal(g["noise"], [0, 10, 20])
    assert len(grid_points(g)) == 3 * 1 * 3 * 2 * 2
    params, extras = split_point(grid_points(g)[-1], AcquisitionParams(TE_ms=5, TR_ms=20, FA_deg=5))
    assert params == AcquisitionParams(TE_ms=5, TR_ms=30, FA_deg=30, field_T=3.0)
    assert extras == {"noise": 20.0, "slice_mm": 3.0}


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("TE=84:150", "start:stop:count"),
    ("TE=84:150:0", "positive integer"),
    ("TE=84:150:2.5", "positive integer"),
    ("TE=84:150:1", "one value"),
    ("TE=abc", "not a number"),
    ("XX=1", "unknown grid parameter"),
    ("TE=1,TE=2", "twice"),
    ("TE=84:15000:3", "outside"),
    ("FA=10|200", "outside"),
    ("noise=-1", "outside"),
    ("TE", "KEY="),
])
def test_bad_grids(text, match):
    with pytest.raises(ParameterRangeError, match=match):
        parse_grid(text)
