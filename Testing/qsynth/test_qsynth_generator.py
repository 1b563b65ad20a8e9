"""qSynth generator (paper 002): prior statistics, σ = 0 identity with ``qmri synth``, seeds, geometry,
sampled acquisition parameters within their documented ranges. SYNTHETIC data throughout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from neuroshift.errors import InputError, ParameterRangeError
from neuroshift.io.params import AcquisitionParams
from neuroshift.io.volume import Volume
from neuroshift.qsynth import QSynthConfig, default_priors, draw, generate, load_priors, render, sample_subject
from neuroshift.qsynth.generator import AUGMENT_RANGES, PD_SCALE, QSynthDraw
from neuroshift.qsynth.transforms import RandQSynth, RandQSynthd

FLAIR = {"sequence": "flair", "TE_ms": 112.0, "TI_ms": 2500.0, "TR_ms": 9000.0}


def _blocks(shape=(24, 24, 24)) -> np.ndarray:
    """Hard labels: background rim, CSF / GM / WM slabs and a lesion cube (phantom convention 1-4)."""
    lab = np.zeros(shape, np.int16)
    lab[2:-2, 2:-2, 2:8] = 1
    lab[2:-2, 2:-2, 8:14] = 2
    lab[2:-2, 2:-2, 14:-2] = 3
    lab[8:12, 8:12, 16:20] = 4
    return lab


# ---------------------------------------------------------------- priors
def test_population_draws_match_the_prior_moments():
    priors = default_priors(3.0)
    wm = priors["WM"]["R1"]
    assert wm.mu_mu == pytest.approx(1000.0 / 832.0)  # Wansapura1999 WM T1 at 3 T, as a rate (1/s)
    assert wm.sigma_mu == pytest.approx(0.10 * wm.mu_mu) and wm.mu_sigma == pytest.approx(0.05 * wm.mu_mu)
    g = np.random.default_rng(0)
    draws = [sample_subject(priors, g, ["WM", "lesion"]) for _ in range(4000)]
    mus = np.array([d["WM"]["R1"][0] for d in draws])
    sds = np.array([d["WM"]["R1"][1] for d in draws])
    se = wm.sigma_mu / math.sqrt(len(mus))
    assert abs(mus.mean() - wm.mu_mu) < 4 * se
    assert mus.std() == pytest.approx(wm.sigma_mu, rel=0.05)
    # σ_s = |N(μ_σ, σ_σ)| with μ_σ = 3 σ_σ: folding changes the mean by < 0.1 %
    assert sds.mean() == pytest.approx(wm.mu_sigma, rel=0.02)
    assert sds.std() == pytest.approx(wm.sigma_sigma, rel=0.06)
    # lesions are drawn relative to the subject's WM: R2 ratio mean = table 79.6 / 130 ms; the hyperintensity
    # condition truncates the ratio distribution a little (mean within 2 %, SD within 15 % of the prior's)
    lp = priors["lesion"]["R2"]
    assert lp.relative_to == "WM" and lp.mu_mu == pytest.approx(79.6 / 130.0)
    ratio = np.array([d["lesion"]["R2"][0] / d["WM"]["R2"][0] for d in draws])
    assert ratio.mean() == pytest.approx(lp.mu_mu, rel=0.02) and ratio.std() == pytest.approx(lp.sigma_mu, rel=0.15)


def test_voxel_values_within_a_tissue_have_the_subject_mean_and_sd():
    lab = np.full((40, 40, 40), 3, np.int16)
    cfg = QSynthConfig(protocol=FLAIR, augment=False)
    d = draw(cfg, 3, ["WM"])
    out = render(lab, d, cfg, spacing_mm=(2, 2, 2))
    r1 = 1000.0 / out["maps"]["T1"].astype(np.float64)
    mu, sd = d.subject["WM"]["R1"]
    assert r1.mean() == pytest.approx(mu, abs=0.15 * sd)
    assert r1.std() == pytest.approx(sd, rel=0.05)
    pd = out["maps"]["PD"] / PD_SCALE
    assert pd.mean() == pytest.approx(d.subject["WM"]["PD"][0], abs=0.15 * d.subject["WM"]["PD"][1])


def test_prior_file_overrides_and_bad_files_are_refused(tmp_path):
    f = tmp_path / "priors.json"
    f.write_text(json.dumps({"wm": {"R1": {"mu_mu": 1.5, "sigma_mu": 0.0, "source": "test"}},
                             "fat": {p: {"mu_mu": v} for p, v in
                                     {"PD": 0.9, "R1": 2.7, "R2": 14.0, "R2star": 30.0}.items()}}))
    pr = load_priors(f)
    assert pr["WM"]["R1"].mu_mu == 1.5 and pr["WM"]["R1"].sigma_mu == 0.0 and pr["WM"]["R1"].source == "test"
    assert pr["WM"]["R2"].mu_mu == pytest.approx(1000.0 / 79.6)  # untouched parameters keep the table value
    assert pr["fat"]["R1"].sigma_mu == pytest.approx(0.27)  # CV rule for a new tissue
    with pytest.raises(ParameterRangeError, match="needs a prior for every parameter"):
        load_priors({"skull": {"PD": {"mu_mu": 0.1}}})
    with pytest.raises(ParameterRangeError, match="unknown parameter"):
        load_priors({"WM": {"T1": {"mu_mu": 800}}})
    with pytest.raises(ParameterRangeError, match="positive"):
        load_priors({"WM": {"R1": {"mu_mu": -1}}})
    assert "Wansapura1999" in default_priors()["WM"]["R1"].source


# ---------------------------------------------------------------- identity with qmri synth
def test_degenerate_prior_reproduces_qmri_synth_on_hard_labels():
    from neuroshift.physics.relaxation import relaxation_table
    from neuroshift.qmri.synth import synthesize

    lab = _blocks()
    cfg = QSynthConfig(prior_scale=0.0, augment=False, protocol=FLAIR)
    out = render(lab, draw(cfg, 0, ["CSF", "GM", "WM", "lesion"]), cfg)
    table = relaxation_table(3.0)
    maps = {k: np.zeros(lab.shape, np.float32) for k in ("PD", "T1", "T2", "T2star")}
    for v, t in {1: "CSF", 2: "GM", 3: "WM", 4: "lesion"}.items():
        m = lab == v
        maps["PD"][m] = PD_SCALE * table[t].pd
        maps["T1"][m], maps["T2"][m], maps["T2star"][m] = table[t].t1_ms, table[t].t2_ms, table[t].t2star_ms
    ref = Volume(np.zeros(lab.shape, np.float32))
    want = synthesize({k: ref.with_data(a) for k, a in maps.items()}, "flair",
                      AcquisitionParams.from_mapping({**{k: v for k, v in FLAIR.items() if k != "sequence"},
                                                      "field_T": 3.0})).data
    np.testing.assert_allclose(out["image"], want, rtol=1e-5, atol=1e-6)
    assert np.all(out["image"][lab == 0] == 0)
    # FLAIR contrast in the right order: lesion > GM > WM > CSF (nulled)
    s = {v: float(out["image"][lab == v].mean()) for v in (1, 2, 3, 4)}
    assert s[4] > s[2] > s[3] > s[1]


def test_degenerate_prior_reproduces_qmri_synth_of_the_phantom_maps(phantom_volumes):
    from neuroshift.phantom.quantitative import phantom_maps
    from neuroshift.qmri.synth import synthesize

    ph = phantom_volumes
    cfg = QSynthConfig(prior_scale=0.0, augment=False, protocol={"sequence": "gre", "TE_ms": 4.0, "TR_ms": 20.0,
                                                                "FA_deg": 25.0})
    out = generate(ph.fractions, cfg, seed=5)
    want = synthesize(phantom_maps(ph), "gre", out["draw"].params).data
    np.testing.assert_allclose(out["image"].data, want, rtol=1e-5, atol=1e-4)
    assert out["image"].same_grid(ph.labels)


# ---------------------------------------------------------------- seeds, labels, geometry
def test_seeds_reproduce_and_differ():
    lab = _blocks()
    a, b, c = (generate(lab, QSynthConfig(), seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["labels"], b["labels"])
    assert a["draw"].to_dict() == b["draw"].to_dict()
    assert not np.array_equal(a["image"], c["image"])


def test_labels_and_geometry_are_preserved():
    lab = _blocks()
    direction = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]], float)
    vol = Volume(lab, spacing=(2.0, 1.5, 3.0), origin=(10.0, -4.0, 7.5), direction=direction)
    out = generate(vol, QSynthConfig(augment=False), seed=1)
    for v in [out["image"], out["labels"], *out["maps"].values()]:
        assert v.same_grid(vol) and v.data.shape == lab.shape
    np.testing.assert_array_equal(out["labels"].data, lab)
    cfg = QSynthConfig(augment_ranges={"deform_mm": (2.0, 2.0)})
    moved = generate(vol, cfg, seed=1)
    ml = moved["labels"].data
    assert set(np.unique(ml)) <= set(np.unique(lab)) and ml.dtype == np.int32
    changed = float(np.mean(ml != lab))
    assert 0 < changed < 0.2  # a small deformation moves label edges only
    # image and labels move together: background stays zero where the deformed label is 0 (before noise)
    quiet = generate(vol, QSynthConfig(augment_ranges={"deform_mm": (2.0, 2.0), "noise_fraction": (0, 0)},
                                       low_res_prob=0.0), seed=1)
    assert np.all(quiet["image"].data[quiet["labels"].data == 0] == 0)


def test_unknown_labels_and_bad_inputs_are_refused():
    lab = _blocks()
    lab[0, 0, 0] = 9
    with pytest.raises(InputError, match="label value"):
        generate(lab, QSynthConfig(), seed=0)
    with pytest.raises(InputError, match="integer"):
        generate(np.full((4, 4, 4), 0.5), QSynthConfig(), seed=0)
    with pytest.raises(ParameterRangeError, match="augmentation range"):
        QSynthConfig(augment_ranges={"noise": (0, 1)})


def test_rician_noise_level_in_the_background():
    lab = np.zeros((40, 40, 40), np.int16)
    lab[10:30, 10:30, 10:30] = 3
    cfg = QSynthConfig(prior_scale=0.0, protocol=FLAIR, augment_ranges={
        "noise_fraction": (0.05, 0.05), "bias_strength": (0, 0), "deform_mm": (0, 0)}, low_res_prob=0.0)
    d = draw(cfg, 2, ["WM"])
    clean = render(lab, QSynthDraw(d.subject, d.sequence, d.params, seeds=d.seeds), cfg)["image"]
    noisy = render(lab, d, cfg)["image"]
    sigma = 0.05 * float(clean[lab == 3].mean())
    assert float(noisy[lab == 0].mean()) == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.02)


# ---------------------------------------------------------------- sampled parameters in range
RANGES_MS = {  # physics.sampling docstring (paper 002), ms / degrees
    "flair": {"TE_ms": (0.0, 5000.0), "TR_ms": (1.0, 5000.0), "TI_ms": (1.0, 3000.0)},
    "se": {"TE_ms": (1.0, 3000.0), "TR_ms": (1.0, 3000.0)},
    "mprage": {"TI_ms": (600.0, 900.0), "TX_ms": (4.0, 8.0), "TE_ms": (2.0, 4.0), "FA_deg": (5.0, 12.0)},
    "gre": {"TE_ms": (2.0, 80.0), "TR_ms": (5.0, 5000.0), "FA_deg": (5.0, 50.0)},
}


def test_every_sampled_parameter_is_within_its_documented_range():
    cfg = QSynthConfig()
    priors = cfg.prior_table()
    g = np.random.default_rng(11)
    seen = set()
    for _ in range(400):
        d = draw(cfg, g, ["WM"], priors)
        seen.add(d.sequence)
        for k, (lo, hi) in RANGES_MS[d.sequence].items():
            v = getattr(d.params, k)
            assert lo - 1e-9 <= v <= hi + 1e-9, (d.sequence, k, v)
        if d.sequence == "flair":
            assert d.params.TI_ms <= d.params.TR_ms
        assert d.params.field_T == 3.0
        for name in ("bias_strength", "noise_fraction", "deform_mm"):
            lo, hi = AUGMENT_RANGES[name]
            assert lo <= getattr(d, name) <= hi
        if d.slice_thickness_mm is not None:
            assert AUGMENT_RANGES["slice_thickness_mm"][0] <= d.slice_thickness_mm <= AUGMENT_RANGES["slice_thickness_mm"][1]
            assert d.low_res_axis in (0, 1, 2)
    assert seen == {"flair", "se", "mprage", "gre"}
    prot = QSynthConfig(protocol={"sequence": "flair", "TE_ms": [80, 140], "TI_ms": [2000, 2800], "TR_ms": 9000})
    for s in range(50):
        p = draw(prot, s, ["WM"]).params
        assert 80 <= p.TE_ms <= 140 and 2000 <= p.TI_ms <= 2800 and p.TR_ms == 9000


# ---------------------------------------------------------------- transforms
def test_random_transform_is_seeded_and_keeps_the_channel_layout():
    import torch

    lab = _blocks()
    t1, t2 = RandQSynthd(seed=3), RandQSynthd(seed=3)
    a = t1({"label": torch.from_numpy(lab[None].astype(np.int64))})
    b = t2({"label": lab[None]})
    assert a["image"].shape == (1,) + lab.shape and a["label"].shape == (1,) + lab.shape
    np.testing.assert_array_equal(a["image"], b["image"])
    c = t1({"label": lab[None]})  # the next draw differs
    assert not np.array_equal(a["image"], c["image"])
    r = RandQSynth(seed=0).set_random_state(seed=3)
    img, _ = r(lab)
    np.testing.assert_array_equal(img, a["image"][0])
    assert r.last_parameters["sequence"] in ("flair", "se", "mprage", "gre")


def test_a_list_of_protocols_picks_one_per_subject_within_its_ranges():
    from neuroshift.qsynth.generator import draw

    prots = [{"sequence": "flair", "TE_ms": [80, 140], "TI_ms": [2000, 2800], "TR_ms": 9000},
             {"sequence": "se", "TE_ms": [80, 120], "TR_ms": [4000, 8000]}]
    cfg = QSynthConfig(protocol=prots)
    seqs = []
    for s in range(200):
        d = draw(cfg, s)
        seqs.append(d.sequence)
        lo_hi = prots[0] if d.sequence == "flair" else prots[1]
        assert lo_hi["TE_ms"][0] <= d.params.TE_ms <= lo_hi["TE_ms"][1]
        if d.sequence == "se":
            assert 4000 <= d.params.TR_ms <= 8000 and d.params.TI_ms is None
        else:
            assert d.params.TR_ms == 9000 and 2000 <= d.params.TI_ms <= 2800
    # uniform choice: 200 draws, binomial SD ~7; 100 +- 4 SD
    assert set(seqs) == {"flair", "se"} and 72 <= seqs.count("flair") <= 128
    # one mapping draws exactly as before (no extra random number), a bad list is refused
    one = QSynthConfig(protocol=prots[0])
    assert draw(one, 3).params == draw(QSynthConfig(protocol=[prots[0]]), 3).params
    with pytest.raises(ParameterRangeError):
        draw(QSynthConfig(protocol=[]), 0)


def test_texture_strength_draws_scale_the_within_tissue_spread_and_leave_other_draws_alone():
    lab = _blocks()
    quiet = {"noise_fraction": (0, 0), "bias_strength": (0, 0), "deform_mm": (0, 0)}
    base = QSynthConfig(protocol=FLAIR, augment_ranges=quiet, low_res_prob=0.0)
    ref = generate(lab, base, seed=3)
    assert ref["draw"].texture_gain == 1.0 and ref["draw"].texture_weight is None
    # asking for a degenerate gain of 1 draws it last: every other draw, and so the image, is unchanged
    same = generate(lab, QSynthConfig(protocol=FLAIR, augment_ranges={**quiet, "texture_gain": (1, 1)},
                                      low_res_prob=0.0), seed=3)
    np.testing.assert_array_equal(same["image"], ref["image"])
    assert same["draw"].to_dict()["params"] == ref["draw"].to_dict()["params"]
    # the gain scales σ_s: PD is linear in it (same texture field), so the deviations from the subject mean halve
    half = generate(lab, QSynthConfig(protocol=FLAIR, augment_ranges={**quiet, "texture_gain": (0.5, 0.5)},
                                      low_res_prob=0.0), seed=3)
    wm = lab == 3
    mu_pd = PD_SCALE * ref["draw"].subject["WM"]["PD"][0]
    np.testing.assert_allclose(half["maps"]["PD"][wm] - mu_pd, 0.5 * (ref["maps"]["PD"][wm] - mu_pd), rtol=1e-4,
                               atol=1e-3)
    flat = generate(lab, QSynthConfig(protocol=FLAIR, augment_ranges={**quiet, "texture_gain": (0, 0)},
                                      low_res_prob=0.0), seed=3)
    for v in (1, 2, 3, 4):  # no within-tissue variation left: one value per tissue
        assert np.ptp(flat["image"][lab == v]) == 0
    g = np.random.default_rng(0)
    cfg = QSynthConfig(augment_ranges={"texture_gain": (0.5, 1.0), "texture_weight": (0.3, 0.7)})
    for _ in range(50):
        d = draw(cfg, g, ["WM"])
        assert 0.5 <= d.texture_gain <= 1.0 and 0.3 <= d.texture_weight <= 0.7
    with pytest.raises(ParameterRangeError, match="texture_weight"):
        QSynthConfig(augment_ranges={"texture_weight": (0.5, 1.5)})
