"""The digital phantom: files, geometry, fractions, lesions, sidecars and simulated-vs-analytic signals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi

from neuroshift.io.files import read_volume
from neuroshift.io.params import AcquisitionParams
from neuroshift.phantom import OUTPUT_FILES, build_phantom, make_phantom
from neuroshift.phantom.check import check_phantom_dir, format_table, simulated_vs_analytic
from neuroshift.phantom.template import TEMPLATE_FILE, data_dir, load_template

from helpers import hand_signals as hand  # Testing/ helper: literal relaxation values, written-out equations
from helpers.hand_signals import LIT_3T

TISSUES = ("CSF", "GM", "WM", "lesion")


@pytest.fixture(scope="module")
def phantom():
    return build_phantom(seed=0)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    paths = make_phantom(out, seed=0)
    return out, paths


def test_template_is_compact_and_noticed():
    path = data_dir() / TEMPLATE_FILE
    assert path.stat().st_size < 2 * 1024 * 1024
    notice = (data_dir() / "NOTICE-ICBM152.txt").read_text(encoding="utf-8")
    assert "Louis Collins, McConnell Brain Imaging Centre" in notice
    assert "provided that the above copyright" in notice
    tpl = load_template()
    assert tpl.gm.data.shape == (86, 99, 81)
    np.testing.assert_allclose(tpl.gm.spacing, [2.0, 2.0, 2.0])
    # the template's real grid: 2 mm voxels centred on the 1 mm ICBM152 2009a grid (RAS)
    np.testing.assert_allclose(tpl.gm.ijk_to_ras()[:3, 3], [-79.5, -114.5, -79.5])


def test_files_exactly_as_contract(phantom_dir):
    out, paths = phantom_dir
    expected = {"T1w.nii.gz", "T1w.json", "FLAIR.nii.gz", "FLAIR.json", "pv_CSF.nii.gz", "pv_GM.nii.gz",
                "pv_WM.nii.gz", "pv_lesion.nii.gz", "tissue_labels.nii.gz", "lesion_mask.nii.gz",
                "brain_mask.nii.gz", "ground_truth.json", "NOTICE-ICBM152.txt"}
    assert {p.name for p in out.iterdir()} == expected
    assert set(OUTPUT_FILES.values()) == expected
    ref = read_volume(paths["T1w"])
    for key in ("FLAIR", "pv_CSF", "pv_GM", "pv_WM", "pv_lesion", "tissue_labels", "lesion_mask", "brain_mask"):
        vol = read_volume(paths[key])
        ref.require_same_grid(vol, key)
    assert read_volume(paths["lesion_mask"]).data.dtype == np.uint8
    assert read_volume(paths["tissue_labels"]).data.dtype == np.uint8
    gt = json.loads(paths["ground_truth"].read_text())
    np.testing.assert_allclose(ref.ijk_to_ras(), np.array(gt["grid"]["ijk_to_ras"]), atol=1e-5)


def test_nifti_affine_is_the_template_affine(phantom_dir):
    import nibabel as nib

    _, paths = phantom_dir
    img = nib.load(str(paths["FLAIR"]))
    np.testing.assert_allclose(img.affine, load_template().gm.ijk_to_ras(), atol=1e-4)
    assert img.shape == (81, 99, 86)


def test_fractions_sum_to_one_in_brain(phantom):
    brain = phantom.brain_mask.data > 0
    total = sum(phantom.fractions[t].data.astype(np.float64) for t in TISSUES)
    assert np.abs(total[brain] - 1.0).max() < 1e-5
    assert total[~brain].max() == 0.0
    for t in TISSUES:
        d = phantom.fractions[t].data
        assert d.dtype == np.float32 and d.min() >= 0.0 and d.max() <= 1.0
    vol_ml = brain.sum() * 8 / 1000
    assert 1700 < vol_ml < 2100  # ICBM152 brain incl. cerebellum and brainstem


def test_lesions_count_size_and_placement(phantom):
    gt = phantom.ground_truth
    les = phantom.fractions["lesion"].data
    mask = phantom.lesion_mask.data > 0
    assert gt["lesion_count"] == len(gt["lesions"]) == 10
    kinds = [l_["kind"] for l_ in gt["lesions"]]
    assert kinds.count("periventricular") == 6 and kinds.count("deep") == 4
    diam = np.array([l_["long_diameter_mm"] for l_ in gt["lesions"]])
    assert diam.min() >= 3.0 and diam.max() <= 15.0
    assert diam.min() < 5.0 and diam.max() > 12.0  # varied sizes
    assert all(l_["mask_voxels"] >= 1 for l_ in gt["lesions"])
    _, n_components = ndi.label(mask, structure=np.ones((3, 3, 3)))
    assert n_components == 10
    assert 0.5 < gt["lesion_volume_ml"] < 6.0
    # PV edges: fractional voxels exist and the mask is the >= 0.5 core
    assert np.count_nonzero((les > 0.05) & (les < 0.95)) > 100
    np.testing.assert_array_equal(mask, les >= 0.5)
    # GM = 0 in lesions (paper 000), label 4 exactly on the mask
    assert phantom.fractions["GM"].data[mask].max() == 0.0
    np.testing.assert_array_equal(phantom.labels.data == 4, mask)
    # lesions sit in white matter: mostly WM around them once the lesion is removed
    ring = ndi.binary_dilation(les > 0, iterations=1) & ~(les > 0)
    assert phantom.fractions["WM"].data[ring].mean() > 0.7


def test_seed_determinism(phantom):
    again = build_phantom(seed=0)
    np.testing.assert_array_equal(again.images["FLAIR"].data, phantom.images["FLAIR"].data)
    np.testing.assert_array_equal(again.fractions["lesion"].data, phantom.fractions["lesion"].data)
    other = build_phantom(seed=1)
    assert not np.array_equal(other.fractions["lesion"].data, phantom.fractions["lesion"].data)
    assert other.ground_truth["lesion_count"] == 10


def test_labels_are_argmax(phantom):
    labels = phantom.labels.data
    brain = phantom.brain_mask.data > 0
    assert set(np.unique(labels[brain]).tolist()) == {1, 2, 3, 4}
    assert labels[~brain].max() == 0
    stack = np.stack([phantom.fractions[t].data for t in ("CSF", "GM", "WM")])
    lesion = phantom.lesion_mask.data > 0
    sel = brain & ~lesion
    np.testing.assert_array_equal(labels[sel], (np.argmax(stack, axis=0) + 1)[sel])


def test_sidecars_in_seconds_and_readable(phantom_dir):
    _, paths = phantom_dir
    flair = json.loads(paths["FLAIR_json"].read_text())
    assert flair["EchoTime"] == pytest.approx(0.112) and flair["InversionTime"] == pytest.approx(2.5)
    assert flair["RepetitionTime"] == pytest.approx(9.0) and flair["MagneticFieldStrength"] == 3.0
    p = AcquisitionParams.for_image(paths["FLAIR"]).require("flair")
    assert (p.TE_ms, p.TI_ms, p.TR_ms, p.field_T) == pytest.approx((112.0, 2500.0, 9000.0, 3.0))
    t1 = AcquisitionParams.for_image(paths["T1w"]).require("mprage")
    assert (t1.TE_ms, t1.TI_ms, t1.TR_ms, t1.FA_deg, t1.TX_ms, t1.N) == pytest.approx((2.98, 900, 2300, 9, 7.1, 176))
    gt = json.loads(paths["ground_truth"].read_text())
    assert gt["images"]["FLAIR"]["params_ms"]["TE_ms"] == 112.0
    assert gt["field_T"] == 3.0 and set(gt["relaxation"]) == set(TISSUES)


def test_ground_truth_signals_are_the_physics_equations(phantom):
    """FLAIR written out by hand with literal relaxation values; T1w through the steady-state MPRAGE."""
    from neuroshift.physics.signal import mprage_steady_state

    g = phantom.ground_truth["images"]
    assert g["FLAIR"]["params_ms"]["TE_ms"] == 112.0 and g["FLAIR"]["params_ms"]["TI_ms"] == 2500.0
    assert g["FLAIR"]["params_ms"]["TR_ms"] == 9000.0
    for t in TISSUES:
        pd, t1, t2, _ = LIT_3T[t]
        s = hand.flair(pd, t1, t2, te=112.0, ti=2500.0, tr=9000.0)
        assert g["FLAIR"]["tissue_signal_unscaled"][t] == pytest.approx(s, rel=1e-12)
    # CSF near the FLAIR null, by hand: e^{-2500/4163} = 0.548522, e^{-9000/4163} = 0.115106,
    # e^{-(9000-56)/4163} = 0.116665 -> Mz = 1 - 1.097043 + 0.233330 - 0.115106 = 0.021180; x e^{-112/379}
    # (0.744149) = 0.015761 (the printed form without the refocusing term would give 0.013441)
    assert g["FLAIR"]["tissue_signal_unscaled"]["CSF"] == pytest.approx(0.015761, rel=1e-4)
    for t in TISSUES:
        pd, t1, _, t2s = LIT_3T[t]
        s = float(mprage_steady_state(pd, t1, t2s, te_ms=2.98, ti_ms=900, tr_ms=2300, fa_deg=9, tx_ms=7.1, n=176))
        assert g["T1w"]["tissue_signal_unscaled"][t] == pytest.approx(s, rel=1e-12)
    # contrasts a reader expects: T1w WM > GM > CSF; FLAIR lesion > GM > WM > CSF (CSF nulled)
    t1 = g["T1w"]["tissue_signal"]
    fl = g["FLAIR"]["tissue_signal"]
    assert t1["WM"] > t1["GM"] > t1["CSF"]
    assert fl["lesion"] > fl["GM"] > fl["WM"] > 5 * fl["CSF"]


def test_noise_free_image_is_exactly_the_model(phantom):
    for name, info in phantom.ground_truth["images"].items():
        expected = sum(phantom.fractions[t].data.astype(np.float64) * info["tissue_signal"][t] for t in TISSUES)
        np.testing.assert_allclose(phantom.clean_images[name].data, expected, rtol=1e-6, atol=1e-3)


def test_simulated_vs_analytic_per_tissue(phantom):
    """Least-squares tissue signals of the noisy images vs the analytic values (the reported figure)."""
    result = {}
    for name, info in phantom.ground_truth["images"].items():
        result[name] = simulated_vs_analytic(phantom.images[name], phantom.fractions, phantom.brain_mask,
                                             info["tissue_signal"], info["noise_sigma"])
        sigma = info["noise_sigma"]
        for t, row in result[name].items():
            if row["analytic"] > 10 * sigma:
                assert abs(row["lstsq_rel_error"]) < 0.01, (name, t, row)
            else:  # nulled CSF on FLAIR: Rician bias (+2.7 % expected at S = 4.4 σ)
                assert 0 <= row["lstsq"] - row["analytic"] < 0.05 * row["analytic"] + 0.3 * sigma, (name, t, row)
            if "pure_mean" in row:
                sem = sigma / np.sqrt(row["pure_voxels"])
                assert abs(row["pure_mean"] - row["rician_expected"]) < 4 * sem + 1e-3 * row["analytic"], (name, t, row)
    print("\n" + format_table(result))
    # noise-free: exact
    for name, info in phantom.ground_truth["images"].items():
        rows = simulated_vs_analytic(phantom.clean_images[name], phantom.fractions, phantom.brain_mask,
                                     info["tissue_signal"])
        for t, row in rows.items():
            assert abs(row["lstsq_rel_error"]) < 1e-5


def test_check_phantom_dir(phantom_dir):
    out, _ = phantom_dir
    result = check_phantom_dir(out)
    assert set(result) == {"T1w", "FLAIR"}
    assert abs(result["FLAIR"]["WM"]["lstsq_rel_error"]) < 0.01


def test_runtime_does_not_import_nilearn(tmp_path):
    code = ("import sys; from neuroshift.phantom import make_phantom; make_phantom(sys.argv[1]); "
            "assert 'nilearn' not in sys.modules, 'nilearn imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "p")], check=True)


def test_cli_sample_data(tmp_path):
    from neuroshift.cli.main import main

    out = tmp_path / "sample"
    assert main(["sample-data", str(out), "--seed", "2"]) == 0
    gt = json.loads((out / "ground_truth.json").read_text())
    assert gt["seed"] == 2 and gt["lesion_count"] == 10
    assert main(["sample-data", str(tmp_path / "bad"), "--seed", "-1"]) == 2
    assert not (tmp_path / "bad").exists()
