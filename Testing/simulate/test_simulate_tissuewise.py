"""Tissue-wise simulation of paper 000: identities, scale invariance, analytic agreement, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.errors import DimensionError, GeometryError, InputError, MissingParameterError, NonFiniteError
from neuroshift.io.params import AcquisitionParams
from neuroshift.io.volume import Volume
from neuroshift.physics.relaxation import relaxation_table
from neuroshift.physics.signal import mprage
from neuroshift.simulate.synthetic import synthetic_fractions
from neuroshift.simulate.tissuewise import fit_tissue_model, simulate_derivative

from helpers import hand_signals as hand  # Testing/ helper: literal relaxation values, written-out equations
from helpers.hand_signals import LIT

ORDER = ("CSF", "GM", "WM", "lesion")
SHAPE = (40, 48, 44)
FLAIR0 = AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000, field_T=3.0)
CORNERS = [(150, 2900), (150, 2200), (84, 2900), (84, 2200)]
SOURCES = {
    "se": AcquisitionParams(TE_ms=90, TR_ms=4000),
    "flair": FLAIR0,
    "dir": AcquisitionParams(TE_ms=100, TI1_ms=3400, TI2_ms=450, TR_ms=11000),
    "gre": AcquisitionParams(TE_ms=10, TR_ms=30, FA_deg=25),
    "mprage": AcquisitionParams(TE_ms=3, TI_ms=900, TR_ms=2300, FA_deg=9, TX_ms=7, N=176),
}


@pytest.fixture(scope="module")
def fractions():
    return synthetic_fractions(SHAPE, brain_semi_axes_mm=(15, 20, 18), n_lesions=4, seed=3)


def _values(p):
    """(PD, T1, T2, T2*) of a literal tuple or of a TissueParameters-like object."""
    return p if isinstance(p, tuple) else (p.pd, p.t1_ms, p.t2_ms, p.t2star_ms)


def signal_by_hand(sequence, a, pd, t1, t2, t2s):
    """The written-out equations of ``hand_signals``; MPRAGE only builds input images (any form will do)."""
    if sequence != "mprage":
        return hand.by_sequence(sequence, a, pd, t1, t2, t2s)
    return float(mprage(pd, t1, t2s, te_ms=a.TE_ms, ti_ms=a.TI_ms, tr_ms=a.TR_ms, fa_deg=a.FA_deg, tx_ms=a.TX_ms,
                        n=a.N))


def analytic(fr, sequence, params, table, c):
    """c·Σ_t f_t·S_t(θ) with S_t from :func:`signal_by_hand` and ``table`` {tissue: values} (float64)."""
    return sum(np.float64(c * signal_by_hand(sequence, params, *_values(table[t]))) * fr[t].astype(np.float64)
               for t in ORDER if t in fr)


def make_image(fr, sequence="flair", params=FLAIR0, table=None, c=1000.0, noise=0.0, seed=0):
    table = table or LIT[3.0]
    clean = analytic(fr, sequence, params, table, c)
    rng = np.random.default_rng(seed)
    tex = rng.normal(0.0, noise, clean.shape) if noise else np.zeros(clean.shape)
    return (clean + tex).astype(np.float32), clean, tex


@pytest.mark.parametrize("field", [3.0, 1.5])
def test_literal_tables_are_the_builtin_ones(field):
    table = relaxation_table(field)
    assert {t: _values(table[t]) for t in ORDER} == LIT[field]


def test_hand_flair_literal_value():
    # WM at the source: 1 - 2e^{-2500/832} + 2e^{-(9000-56)/832} - e^{-9000/832} = 1 - 2*0.0495483 + 0.0000228
    # ... = 0.900926, e^{-112/79.6} = 0.244868, x PD 0.7 -> 0.154426
    assert signal_by_hand("flair", FLAIR0, *LIT[3.0]["WM"]) == pytest.approx(0.154426, rel=1e-5)
    # CSF near the null: Mz = 1 - 2*0.548522 + 2*0.116665 - 0.115106 = 0.021180, x e^{-112/379} = 0.015761
    assert signal_by_hand("flair", FLAIR0, *LIT[3.0]["CSF"]) == pytest.approx(0.015761, rel=1e-4)


@pytest.mark.parametrize("sequence", sorted(SOURCES))
def test_identity_at_source_is_exact(fractions, sequence):
    img, _, _ = make_image(fractions, sequence, SOURCES[sequence], noise=3.0)
    model = fit_tissue_model(img, fractions, sequence, SOURCES[sequence])
    out = model.simulate(SOURCES[sequence])
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.array_equal(out, img)
    # and via the texture form c·Σ f S_t(θ0) + T, to float tolerance
    np.testing.assert_allclose(model.signal(SOURCES[sequence]) + model.texture, img, atol=1e-3 * np.abs(img).max())


def test_texture_identical_across_derivatives(fractions):
    img, _, _ = make_image(fractions, noise=5.0)
    model = fit_tissue_model(img, fractions, "flair", FLAIR0)
    tex = model.texture
    scale = float(np.abs(img).max())
    for te, ti in CORNERS:
        target = AcquisitionParams(TE_ms=te, TI_ms=ti)
        derived = model.simulate(target) - model.signal(target)
        # block layout: fractions in uint16 fixed point, error <= Σ_t |Δ_t|·2⁻¹⁶ (simulate/block_layout.py)
        fixed_point = float(np.abs(model.deltas(target)).sum()) * 2.0 ** -16 if model._blocks is not None else 0.0
        np.testing.assert_allclose(derived, tex, rtol=0, atol=2e-6 * scale + fixed_point)


def test_scaling_input_scales_c_and_output_only(fractions):
    img, _, _ = make_image(fractions, noise=4.0)
    k = 7.5
    m1 = fit_tissue_model(img, fractions, "flair", FLAIR0)
    m2 = fit_tissue_model(img * np.float32(k), fractions, "flair", FLAIR0)
    assert m2.scale_c == pytest.approx(k * m1.scale_c, rel=1e-6)
    for t in m1.tissues:
        for attr in ("pd", "t1_ms", "t2_ms", "t2star_ms"):
            assert getattr(m2.tissues[t], attr) == pytest.approx(getattr(m1.tissues[t], attr), rel=1e-6)
    np.testing.assert_allclose(m2.texture, k * m1.texture, rtol=1e-4, atol=1e-3 * k)
    target = AcquisitionParams(TE_ms=150, TI_ms=2900)
    np.testing.assert_allclose(m2.simulate(target), k * m1.simulate(target), rtol=1e-5, atol=1e-3 * k)


def test_simulated_matches_analytic_per_tissue(fractions):
    """Image built from the priors (+ zero-mean texture): every corner matches the analytic image per tissue."""
    img, clean, tex = make_image(fractions, noise=2.0, c=1234.0)
    model = fit_tissue_model(img, fractions, "flair", FLAIR0)
    assert model.scale_c == pytest.approx(1234.0, rel=2e-3)
    table = LIT[3.0]
    for te, ti in CORNERS:
        target = FLAIR0.merged(AcquisitionParams(TE_ms=te, TI_ms=ti))
        sim = model.simulate(target)
        truth = analytic(fractions, "flair", target, table, 1234.0) + tex
        for t in ORDER:
            pure = fractions[t] > 0.99
            if pure.sum() < 5:
                continue
            rel = abs(sim[pure].mean() - truth[pure].mean()) / truth[pure].mean()
            assert rel < 5e-3, (t, te, ti, rel)


def test_noise_free_image_from_priors_is_recovered_exactly(fractions):
    img, clean, _ = make_image(fractions, c=500.0)
    model = fit_tissue_model(img, fractions, "flair", FLAIR0)
    table = LIT[3.0]
    for t in ORDER:
        assert model.tissues[t].t1_ms == pytest.approx(table[t][1], rel=1e-4)
        assert model.tissues[t].t2_ms == pytest.approx(table[t][2], rel=1e-4)
    assert model.scale_c == pytest.approx(500.0, rel=1e-5)
    assert np.abs(model.texture).max() < 1e-3 * img.max()
    target = AcquisitionParams(TE_ms=84, TI_ms=2200)
    np.testing.assert_allclose(model.simulate(target), analytic(fractions, "flair", FLAIR0.merged(target), table, 500.0),
                               rtol=0, atol=1e-4 * img.max())


def test_contrast_of_other_relaxation_times_is_reproduced(fractions):
    """Truth differs from the priors: apparent parameters reproduce the measured contrast ratios."""
    table = LIT[3.0]
    truth = {t: (pd, t1 * 1.1, t2 * 0.9, t2s) for t, (pd, t1, t2, t2s) in table.items()}
    img, _, _ = make_image(fractions, table=truth, c=800.0)
    model = fit_tissue_model(img, fractions, "flair", FLAIR0)
    rep = model.report
    assert rep.reference == "WM"
    for t, r in rep.ratios_measured.items():
        assert rep.ratios_fitted[t] == pytest.approx(r, abs=0.01)
    assert set(rep.fitted_parameters) >= {"GM.T1", "GM.T2", "CSF.PD"}
    # parameters move toward the truth (T2 down, T1 up or the equivalent contrast) but stay within the bounds
    for t in ORDER:
        assert 0.5 <= model.tissues[t].t1_ms / table[t][1] <= 2.0
        assert 0.4 <= model.tissues[t].t2_ms / table[t][2] <= 2.5


def test_pure_method_and_missing_tissue(fractions):
    img, _, _ = make_image(fractions, noise=1.0)
    fr = {t: fractions[t] for t in ("CSF", "GM", "WM")}
    img3 = img - (1000.0 * signal_by_hand("flair", FLAIR0, *LIT[3.0]["lesion"]) * fractions["lesion"]).astype(np.float32)
    model = fit_tissue_model(img3, fr, "flair", FLAIR0, method="pure")
    assert set(model.tissues) == {"CSF", "GM", "WM"}
    assert np.array_equal(model.simulate(FLAIR0), img3)


def test_missing_source_parameter_is_refused(fractions):
    img, _, _ = make_image(fractions)
    with pytest.raises(MissingParameterError, match="TI"):
        fit_tissue_model(img, fractions, "flair", AcquisitionParams(TE_ms=112, TR_ms=9000))
    with pytest.raises(MissingParameterError, match="TR"):
        fit_tissue_model(img, fractions, "flair", AcquisitionParams(TE_ms=112, TI_ms=2500))
    with pytest.raises(MissingParameterError, match="TE"):
        fit_tissue_model(img, fractions, "flair", AcquisitionParams(TI_ms=2500, TR_ms=9000))


def test_bad_inputs_are_refused(fractions):
    img, _, _ = make_image(fractions)
    bad = img.copy()
    bad[3, 3, 3] = np.nan
    with pytest.raises(NonFiniteError):
        fit_tissue_model(bad, fractions, "flair", FLAIR0)
    with pytest.raises(DimensionError):
        fit_tissue_model(img[0], {t: f[0] for t, f in fractions.items()}, "flair", FLAIR0)
    with pytest.raises(GeometryError):
        fit_tissue_model(img, {**fractions, "GM": fractions["GM"][:-1]}, "flair", FLAIR0)
    vol = Volume(img, spacing=(1, 1, 1))
    shifted = {t: Volume(f, spacing=(1, 1, 1), origin=(5, 0, 0)) for t, f in fractions.items()}
    with pytest.raises(GeometryError, match="origin"):
        fit_tissue_model(vol, shifted, "flair", FLAIR0)
    with pytest.raises(InputError, match="outside"):
        fit_tissue_model(img, {**fractions, "GM": fractions["GM"] * 2}, "flair", FLAIR0)
    with pytest.raises(InputError, match="zero everywhere"):
        fit_tissue_model(img, {t: np.zeros_like(f) for t, f in fractions.items()}, "flair", FLAIR0)
    with pytest.raises(InputError):
        fit_tissue_model(img, fractions, "epi", FLAIR0)
    with pytest.raises(InputError, match="unknown tissue"):
        fit_tissue_model(img, {"bone": fractions["GM"]}, "flair", FLAIR0)
    model = fit_tissue_model(img, fractions, "flair", FLAIR0)
    with pytest.raises(InputError):
        model.simulate(AcquisitionParams(TE_ms=100, TI_ms=9500))  # TI > TR


def test_simulate_volume_keeps_geometry_and_rewrites_tags(fractions):
    img, _, _ = make_image(fractions)
    vol = Volume(img, spacing=(0.9, 1.1, 3.0), origin=(10, -20, 30),
                 meta={"dicom:EchoTime": "112", "dicom:InversionTime": "2500"})
    fr = {t: vol.with_data(f) for t, f in fractions.items()}
    out = simulate_derivative(vol, fr, "flair", FLAIR0, "TE=150,TI=2900")
    assert out.same_grid(vol, atol_mm=0)
    assert out.meta["dicom:EchoTime"] == "150" and out.meta["dicom:InversionTime"] == "2900"
    assert out.meta["dicom:RepetitionTime"] == "9000"


def test_field_change_uses_prior_ratios(fractions):
    img, _, _ = make_image(fractions)
    model = fit_tissue_model(img, fractions, "flair", FLAIR0)
    at15 = model.simulate(AcquisitionParams(field_T=1.5))
    truth = analytic(fractions, "flair", FLAIR0, LIT[1.5], model.scale_c)
    wm = fractions["WM"] > 0.99
    assert at15[wm].mean() == pytest.approx(truth[wm].mean(), rel=1e-3)
    assert not np.allclose(at15, img)


def test_torch_and_volume_inputs(fractions):
    torch = pytest.importorskip("torch")
    img, _, _ = make_image(fractions)
    model = fit_tissue_model(torch.from_numpy(img), {t: torch.from_numpy(f) for t, f in fractions.items()},
                             "flair", FLAIR0)
    assert np.array_equal(model.simulate(FLAIR0), img)


@pytest.mark.parametrize("layout", ["box", "slab"])
def test_both_memory_layouts_give_the_same_derivative(layout):
    """Small brain in a large field of view -> bounding-box update; dense tissue -> one sgemv per slab."""
    if layout == "box":
        fr = synthetic_fractions((40, 60, 60), brain_semi_axes_mm=(8, 12, 10), n_lesions=2, seed=4)
    else:
        rng = np.random.default_rng(0)
        raw = rng.random((4, 20, 24, 22)).astype(np.float32) + 0.05
        raw /= raw.sum(0)
        fr = {t: raw[i] for i, t in enumerate(ORDER)}
    img, _, tex = make_image(fr, noise=2.0, c=900.0)
    model = fit_tissue_model(img, fr, "flair", FLAIR0)
    assert (model._joint is not None) == (layout == "slab")
    assert np.array_equal(model.simulate(FLAIR0), img)
    target = AcquisitionParams(TE_ms=150, TI_ms=2200)
    expected = img + analytic(fr, "flair", FLAIR0.merged(target), {t: model.tissues[t] for t in ORDER}, model.scale_c) \
        - analytic(fr, "flair", FLAIR0, {t: model.tissues[t] for t in ORDER}, model.scale_c)
    np.testing.assert_allclose(model.simulate(target), expected, rtol=0, atol=1e-4 * img.max())
    buf = np.empty_like(img)
    assert model.simulate(target, out=buf) is buf
    np.testing.assert_array_equal(buf, model.simulate(target))
    np.testing.assert_allclose(model.texture, img - model.signal(FLAIR0), atol=1e-5 * img.max())
