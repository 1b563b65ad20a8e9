"""The pickle-free hand-over of a fitted case to stress-test workers (neuroshift.stress.share)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from neuroshift.io import Volume
from neuroshift.io.params import AcquisitionParams as P
from neuroshift.simulate.tissuewise import fit_tissue_model
from neuroshift.stress.cases import LoadedCase
from neuroshift.stress.share import NotShareable, load_shared, save_shared

SHAPE = (8, 12, 16)
SRC = P.parse("TE=10,TR=600,B0=1.5")
TARGET = P.parse("TE=80,TR=3000,B0=1.5")


def _case() -> LoadedCase:
    """SYNTHETIC: four tissue bands along i, an image made from them, a one-voxel lesion mask."""
    i = np.arange(SHAPE[2])[None, None, :] * np.ones(SHAPE)
    fr = {t: ((i >= 4 * n) & (i < 4 * n + 4)).astype(np.float32) for n, t in enumerate(("CSF", "GM", "WM", "lesion"))}
    img = Volume(sum(fr[t] * (200.0 + 100 * n) for n, t in enumerate(fr)).astype(np.float32),
                 spacing=(1.0, 0.9, 1.2), origin=(3.0, -2.0, 5.0))
    mask = np.zeros(SHAPE, np.uint8)
    mask[4, 6, 14] = 1
    return LoadedCase("c1", img, SRC, {t: img.with_data(v) for t, v in fr.items()}, img.with_data(mask))


@pytest.mark.parametrize("estimator", ["fit", "posterior"])
def test_fitted_tissue_model_round_trip_simulates_bit_for_bit(tmp_path, estimator):
    case = _case()
    model = fit_tissue_model(case.image, case.fractions, "se", SRC, field_T=1.5, estimator=estimator)
    model.uncertainty_model = model  # what PhysicsSimulator(uncertainty=True) does: a self-reference
    path = save_shared(tmp_path / "case.npz", (case, model, 1.5))
    loaded, fitted, fit_s = load_shared(path)
    assert fit_s == 1.5 and loaded.case_id == "c1" and fitted.uncertainty_model is fitted
    np.testing.assert_array_equal(fitted.simulate(TARGET), model.simulate(TARGET))
    np.testing.assert_array_equal(fitted.simulate(SRC), case.image.data)
    assert fitted.tissues == model.tissues and fitted.source == model.source and fitted.scale_c == model.scale_c
    # geometry survives
    np.testing.assert_array_equal(loaded.image.spacing, [1.0, 0.9, 1.2])
    np.testing.assert_array_equal(loaded.image.origin, [3.0, -2.0, 5.0])
    assert int(loaded.mask.data.sum()) == 1 and loaded.params == SRC
    # views share memory as in the parent: the fraction stack lies inside the joint block (slab mode)
    if model._joint is not None:
        assert np.shares_memory(fitted._stack, fitted._joint)
        assert fitted._stack.shape == model._stack.shape


def test_file_is_plain_npz_with_json_structure(tmp_path):
    path = save_shared(tmp_path / "x.npz", {"a": np.arange(5.0), 3: (1, 2.5, None), "s": slice(1, 9, 2),
                                            "nan": float("nan"), "i": np.int64(7)})
    with zipfile.ZipFile(path) as zf:
        names = sorted(zf.namelist())
    assert names == ["__structure__.npy", "a0.npy"]  # one array + the structure, nothing else
    with np.load(path, allow_pickle=False) as npz:
        structure = json.loads(bytes(npz["__structure__"]).decode())
    assert structure["format"] == "neuroshift-stress-share/1"
    out = load_shared(path)
    assert out["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and out[3] == (1, 2.5, None)
    assert out["s"] == slice(1, 9, 2) and np.isnan(out["nan"]) and out["i"] == 7 and out["i"].dtype == np.int64


def test_foreign_classes_are_refused_before_writing(tmp_path):
    class Foreign:
        pass

    with pytest.raises(NotShareable, match="Foreign"):
        save_shared(tmp_path / "f.npz", {"model": Foreign()})
    with pytest.raises(NotShareable, match="object"):
        save_shared(tmp_path / "g.npz", np.array([object()]))
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_structure_cannot_name_a_foreign_class(tmp_path):
    doc = {"format": "neuroshift-stress-share/1",
           "root": {"t": "obj", "id": 0, "cls": "os:system", "v": {}}}
    payload = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    np.savez(tmp_path / "t.npz", __structure__=payload)
    with pytest.raises(NotShareable, match="not a NeuroShift class"):
        load_shared(tmp_path / "t.npz")
