"""The digital phantom (known ground truth): simulated vs analytic per tissue, and the CLI end to end."""

import json

import numpy as np
import pytest

from neuroshift.cli.main import main
from neuroshift.io.files import read_volume
from neuroshift.io.params import AcquisitionParams
from neuroshift.simulate.tissuewise import fit_tissue_model

from helpers import hand_signals as hand  # Testing/ helper: literal relaxation values, written-out equations
from helpers.hand_signals import LIT_3T

phantom = pytest.importorskip("neuroshift.phantom.make")
ORDER = ("CSF", "GM", "WM", "lesion")
CORNERS = [(150, 2900), (150, 2200), (84, 2900), (84, 2200)]


@pytest.fixture(scope="module")
def ph():
    return phantom.build_phantom(seed=0)


def _per_tissue(image, fractions, mask):
    m = np.asarray(mask.data) > 0
    X = np.stack([np.asarray(fractions[t].data, np.float64)[m] for t in ORDER], axis=1)
    beta, *_ = np.linalg.lstsq(X, np.asarray(image, np.float64)[m], rcond=None)
    return dict(zip(ORDER, beta))


def test_phantom_corners_match_analytic_per_tissue(ph):
    gt = ph.ground_truth["images"]["FLAIR"]
    src = AcquisitionParams.from_mapping(gt["params_ms"])
    model = fit_tissue_model(ph.images["FLAIR"], ph.fractions, "flair", src, brain_mask=ph.brain_mask)
    assert model.scale_c == pytest.approx(gt["scale_c"], rel=1e-3)
    for t in ORDER:  # the phantom was made with the priors: the fit stays there
        assert model.tissues[t].t1_ms == pytest.approx(LIT_3T[t][1], rel=2e-3)
        assert model.tissues[t].t2_ms == pytest.approx(LIT_3T[t][2], rel=2e-3)
    assert src.TR_ms == 9000.0 and src.Trec_ms is None  # the hand equation uses TR as the recovery time
    for te, ti in CORNERS:
        target = src.merged(AcquisitionParams(TE_ms=te, TI_ms=ti))
        s = [hand.by_sequence("flair", target, *LIT_3T[t]) for t in ORDER]
        got = _per_tissue(model.simulate(target), ph.fractions, ph.brain_mask)
        for i, t in enumerate(ORDER):
            rel = abs(got[t] - gt["scale_c"] * s[i]) / (gt["scale_c"] * s[i])
            # Rician noise of the baseline stays in the texture: nulled CSF carries its bias (~0.3 %)
            assert rel < (0.01 if t == "CSF" else 0.002), (te, ti, t, rel)


def test_phantom_cli_end_to_end(tmp_path):
    paths = phantom.make_phantom(tmp_path / "ph", seed=1)
    out = tmp_path / "FLAIR_TE150_TI2900.nii.gz"
    code = main(["simulate", str(paths["FLAIR"]), str(out), "--sequence", "flair", "--target", "TE=150,TI=2900",
                 "--tissues", str(paths["tissue_labels"])])
    assert code == 0
    side = json.loads(out.with_name("FLAIR_TE150_TI2900.json").read_text())
    assert side["EchoTime"] == pytest.approx(0.15) and side["InversionTime"] == pytest.approx(2.9)
    assert side["RepetitionTime"] == pytest.approx(9.0)
    img = read_volume(paths["FLAIR"])
    sim = read_volume(out)
    assert sim.same_grid(img, atol_mm=1e-6)
    lesion = read_volume(paths["lesion_mask"]).data > 0
    wm = read_volume(paths["tissue_labels"]).data == 3
    # longer TE and TI: lesion-to-WM contrast rises (paper 000, Fig. 10)
    before = img.data[lesion].mean() / img.data[wm].mean()
    after = sim.data[lesion].mean() / sim.data[wm].mean()
    assert after > before
    pv = ",".join(f"{t}={paths['pv_' + t]}" for t in ORDER)
    out2 = tmp_path / "same.nii.gz"
    assert main(["simulate", str(paths["FLAIR"]), str(out2), "--sequence", "flair", "--target", "TE=112",
                 "--pv", pv, "--brain-mask", str(paths["brain_mask"])]) == 0
    np.testing.assert_array_equal(read_volume(out2).data, img.data)
