"""Built-in partial-volume classifier: accuracy on the phantom (measured, with margin) and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.errors import GeometryError, InputError, NonFiniteError
from neuroshift.io.files import read_volume, write_volume
from neuroshift.phantom import build_phantom
from neuroshift.tissues.classify import brain_mask_from_image, evaluate_fractions, partial_volume_maps


@pytest.fixture(scope="module")
def phantom():
    return build_phantom(seed=0)


def _truth_t1_only(ph):
    """Without FLAIR the classifier cannot tell lesion from tissue: lesions count as WM (their location)."""
    tr = {t: ph.fractions[t] for t in ("CSF", "GM", "WM")}
    tr["WM"] = ph.fractions["WM"].with_data(ph.fractions["WM"].data + ph.fractions["lesion"].data)
    return tr


def test_t1_only_accuracy(phantom):
    est, fit = partial_volume_maps(phantom.images["T1w"], brain_mask=phantom.brain_mask, return_fit=True)
    assert set(est) == {"CSF", "GM", "WM"}
    res = evaluate_fractions(est, _truth_t1_only(phantom), phantom.brain_mask)
    print("\nT1w only:", res)
    # measured (seed 0): MAE CSF 0.032, GM 0.072, WM 0.048; Dice CSF 0.93, GM 0.963, WM 0.954
    assert res["mae"]["CSF"] < 0.05 and res["mae"]["GM"] < 0.10 and res["mae"]["WM"] < 0.07
    assert res["dice"]["CSF"] > 0.88 and res["dice"]["GM"] > 0.93 and res["dice"]["WM"] > 0.92
    # fitted GM/WM means within 3 % of the analytic tissue signals
    sig = phantom.ground_truth["images"]["T1w"]["tissue_signal"]
    assert fit.means[1] == pytest.approx(sig["GM"], rel=0.03)
    assert fit.means[2] == pytest.approx(sig["WM"], rel=0.03)
    for v in est.values():
        assert v.data.dtype == np.float32 and v.same_grid(phantom.images["T1w"])
    brain = phantom.brain_mask.data > 0
    total = sum(v.data.astype(np.float64) for v in est.values())
    assert np.abs(total[brain] - 1).max() < 1e-5 and total[~brain].max() == 0


def test_flair_lesion_pass(phantom):
    est = partial_volume_maps(phantom.images["T1w"], phantom.images["FLAIR"], brain_mask=phantom.brain_mask)
    assert set(est) == {"CSF", "GM", "WM", "lesion"}
    res = evaluate_fractions(est, phantom.fractions, phantom.brain_mask)
    print("\nT1w + FLAIR:", res)
    # measured (seed 0): lesion Dice 0.948, lesion MAE 1.2e-4, WM MAE 0.047
    assert res["dice"]["lesion"] > 0.8 and res["mae"]["lesion"] < 0.002
    assert res["mae"]["WM"] < 0.07 and res["dice"]["WM"] > 0.92
    core = est["lesion"].data >= 0.5
    assert est["GM"].data[core].max() == 0.0  # paper 000: f_GM = 0 in lesions
    brain = phantom.brain_mask.data > 0
    total = sum(v.data.astype(np.float64) for v in est.values())
    assert np.abs(total[brain] - 1).max() < 1e-4


def test_other_seed_same_accuracy():
    ph = build_phantom(seed=5)
    est = partial_volume_maps(ph.images["T1w"], ph.images["FLAIR"], brain_mask=ph.brain_mask)
    res = evaluate_fractions(est, ph.fractions, ph.brain_mask)
    assert res["mae"]["GM"] < 0.10 and res["dice"]["lesion"] > 0.75


def test_lesion_mask_only(phantom):
    est = partial_volume_maps(phantom.images["T1w"], brain_mask=phantom.brain_mask, lesion_mask=phantom.lesion_mask)
    mask = phantom.lesion_mask.data > 0
    assert est["lesion"].data[mask].min() > 0.5 and est["lesion"].data[~mask].max() == 0


def test_skull_stripped_mask_is_nonzero_voxels(phantom):
    img = phantom.images["T1w"].with_data(np.where(phantom.brain_mask.data > 0, phantom.images["T1w"].data, 0))
    np.testing.assert_array_equal(brain_mask_from_image(img), phantom.brain_mask.data > 0)
    est = partial_volume_maps(img)
    res = evaluate_fractions(est, _truth_t1_only(phantom), phantom.brain_mask)
    assert res["dice"]["WM"] > 0.92


def test_bad_inputs(phantom):
    t1 = phantom.images["T1w"]
    cropped = type(t1)(t1.data[:, :, :-1].copy(), t1.spacing, t1.origin, t1.direction)
    with pytest.raises(GeometryError):
        partial_volume_maps(t1, flair=cropped)
    bad = t1.data.copy()
    bad[40, 50, 40] = np.nan
    with pytest.raises(NonFiniteError):
        partial_volume_maps(t1.with_data(bad), brain_mask=phantom.brain_mask)
    with pytest.raises(InputError):
        partial_volume_maps(t1.with_data(np.ones_like(t1.data)), brain_mask=phantom.brain_mask)
    with pytest.raises(InputError, match="brain mask"):
        partial_volume_maps(t1, brain_mask=phantom.brain_mask.with_data(np.zeros_like(phantom.brain_mask.data)))


def test_cli_tissues(tmp_path, phantom):
    from neuroshift.cli.main import main

    t1, fl, bm = tmp_path / "T1w.nii.gz", tmp_path / "FLAIR.nii.gz", tmp_path / "brain.nii.gz"
    write_volume(phantom.images["T1w"], t1)
    write_volume(phantom.images["FLAIR"], fl)
    write_volume(phantom.brain_mask, bm)
    out = tmp_path / "tissues"
    assert main(["tissues", str(t1), str(out), "--flair", str(fl), "--mask", str(bm)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["pv_CSF.nii.gz", "pv_GM.nii.gz", "pv_WM.nii.gz", "pv_lesion.nii.gz",
                     "tissue_labels.nii.gz", "tissues.json"]
    lab = read_volume(out / "tissue_labels.nii.gz")
    assert lab.same_grid(phantom.images["T1w"]) and set(np.unique(lab.data)) <= {0, 1, 2, 3, 4}
    # bad input: exit 2 and nothing written
    other = tmp_path / "other.nii.gz"
    write_volume(type(phantom.images["T1w"])(phantom.images["FLAIR"].data[:-1].copy()), other)
    out2 = tmp_path / "bad"
    assert main(["tissues", str(t1), str(out2), "--flair", str(other)]) == 2
    assert not out2.exists()
    assert main(["tissues", str(tmp_path / "missing.nii.gz"), str(out2)]) == 2
    assert main(["tissues", str(t1), str(out2), "--mrf-beta", "-1"]) == 2
    assert not out2.exists()
