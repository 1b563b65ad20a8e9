"""Phantom contrasts for LesionSynth and physics-based lesion insertion (docs/synthesis.md sections 4-5;
issue 11 checks: nothing changes outside the mask dilated by 2 voxels, lesion/WM contrast within 5 % of the
analytic value per contrast, mask equals the inserted lesions, deterministic per seed)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from neuroshift.errors import InputError
from neuroshift.phantom import build_phantom
from neuroshift.phantom.contrasts import (ADC_UM2_PER_S, GD_CONCENTRATION_MM, GD_R1_PER_MM_PER_S,
                                          LOW_DOSE_FRACTION, build_contrasts, dir_null_times)
from neuroshift.physics.relaxation import relaxation_table
from neuroshift.physics.signal import double_inversion_recovery, mprage
from neuroshift.synthesis.insertion import generate_lesions, insert_lesions


@pytest.fixture(scope="module")
def subject():
    ph = build_phantom(seed=0)
    return ph, build_contrasts(ph, seed=0)


def test_dir_null_times_null_csf_and_wm():
    tab = relaxation_table(3.0)
    ti1, ti2 = dir_null_times(tab["CSF"].t1_ms, tab["WM"].t1_ms)
    for t in ("CSF", "WM"):
        s = double_inversion_recovery(1.0, tab[t].t1_ms, tab[t].t2_ms, te_ms=25.0, ti1_ms=ti1, ti2_ms=ti2,
                                      tr_ms=7500.0)
        assert abs(float(s)) < 1e-9
    gm = double_inversion_recovery(1.0, tab["GM"].t1_ms, tab["GM"].t2_ms, te_ms=25.0, ti1_ms=ti1, ti2_ms=ti2,
                                   tr_ms=7500.0)
    assert float(gm) > 0.05


def test_contrasts_follow_tissue_physics(subject):
    ph, cs = subject
    assert set(cs.images) == {"T1w", "T2w", "FLAIR", "DIR", "T1c", "T1c_low"}
    s = cs.tissue_signal
    assert s["DIR"]["WM"] == pytest.approx(0, abs=1e-6) and s["DIR"]["CSF"] == pytest.approx(0, abs=1e-6)
    assert s["T1w"]["WM"] > s["T1w"]["GM"] > s["T1w"]["CSF"]
    assert s["T2w"]["CSF"] > s["T2w"]["GM"] > s["T2w"]["WM"]
    # gadolinium: 1/T1post = 1/T1pre + r1 C, same c as T1w, through the MPRAGE equation
    tab = relaxation_table(3.0)
    les = tab["lesion"]
    p = cs.params["T1c"]
    for name, dose in (("T1c", 1.0), ("T1c_low", LOW_DOSE_FRACTION)):
        t1 = 1 / (1 / les.t1_ms + GD_R1_PER_MM_PER_S[3.0] * GD_CONCENTRATION_MM * dose / 1000)
        expect = cs.scale_c["T1w"] * float(mprage(les.pd, t1, les.t2star_ms, te_ms=p.TE_ms, ti_ms=p.TI_ms,
                                                  tr_ms=p.TR_ms, fa_deg=p.FA_deg, tx_ms=p.TX_ms, n=p.N))
        assert s[name]["lesion_enhancing"] == pytest.approx(expect, rel=1e-9)
        assert s[name]["WM"] == pytest.approx(s["T1w"]["WM"], rel=1e-12)  # BBB intact: no change
    assert s["T1c"]["lesion_enhancing"] > s["T1c_low"]["lesion_enhancing"] > s["T1w"]["lesion"]
    # clean T1c differs from clean T1w only where lesions enhance
    diff = cs.clean_images["T1c"].data != cs.clean_images["T1w"].data
    enh_support = ndi.binary_dilation(cs.enhancing_mask.data.astype(bool), iterations=2)
    assert diff.any() and not (diff & ~enh_support).any()
    # ADC: pure-tissue voxels carry the tabulated value
    wm = ph.fractions["WM"].data >= 0.999
    assert np.allclose(cs.adc.data[wm], ADC_UM2_PER_S["WM"], rtol=1e-3)
    assert "SYNTHETIC" in cs.meta["description"]


def test_contrasts_deterministic_per_seed(subject):
    ph, cs = subject
    again = build_contrasts(ph, seed=0)
    assert np.array_equal(again.images["DIR"].data, cs.images["DIR"].data)
    other = build_contrasts(ph, seed=1)
    assert not np.array_equal(other.images["DIR"].data, cs.images["DIR"].data)


@pytest.fixture(scope="module")
def inserted(subject):
    ph, cs = subject
    wm = ph.fractions["WM"].data
    allowed = ndi.binary_erosion((wm >= 0.95) & (ph.fractions["lesion"].data == 0), iterations=2)
    fl = generate_lesions(wm.shape, ph.fractions["WM"].ijk_to_ras(), allowed, count=3,
                          diameter_range_mm=(8, 12), seed=1)
    fr = {k: v.data for k, v in ph.fractions.items()}
    imgs = {n: (cs.images[n], cs.sequences[n], cs.params[n]) for n in ("T1w", "T2w", "FLAIR", "DIR")}
    return fl, insert_lesions(imgs, fr, fl, brain_mask=ph.brain_mask.data)


def test_nothing_changes_outside_dilated_mask(subject, inserted):
    _, cs = subject
    fl, res = inserted
    assert np.array_equal(res.mask, (fl >= 0.5).astype(np.uint8)) and res.mask.sum() > 50
    outside = ~ndi.binary_dilation(res.mask.astype(bool), iterations=2)
    for name, r in res.images.items():
        assert np.array_equal(r.image[outside], cs.images[name].data[outside]), name
        assert (r.image[fl > 0.99] != cs.images[name].data[fl > 0.99]).all(), name


def test_lesion_wm_contrast_matches_analytic(subject, inserted):
    ph, cs = subject
    fl, res = inserted
    core = fl >= 0.999
    pure_wm = (ph.fractions["WM"].data >= 0.99) & (fl == 0) & (ph.fractions["lesion"].data == 0)
    for name, r in res.images.items():
        truth = cs.tissue_signal[name]           # c_true * S_t with the table values
        analytic = truth["lesion"] - truth["WM"]
        measured = float(r.image[core].mean() - cs.images[name].data[pure_wm].mean())
        assert measured == pytest.approx(analytic, rel=0.05), name
        if truth["WM"] > 0:
            ratio = float(r.image[core].mean() / cs.images[name].data[pure_wm].mean())
            assert ratio == pytest.approx(truth["lesion"] / truth["WM"], rel=0.05), name


def test_fractions_updated_and_sum_preserved(subject, inserted):
    ph, _ = subject
    fl, res = inserted
    before = sum(v.data.astype(np.float64) for v in ph.fractions.values())
    after = sum(v.astype(np.float64) for v in res.fractions.values())
    assert np.allclose(before, after, atol=1e-5)
    assert np.allclose(res.fractions["lesion"][fl >= 0.999], 1.0)


def test_generation_deterministic_and_refusals(subject):
    ph, _ = subject
    wm = ph.fractions["WM"].data
    allowed = wm >= 0.95
    a2r = ph.fractions["WM"].ijk_to_ras()
    a = generate_lesions(wm.shape, a2r, allowed, count=2, seed=5)
    b = generate_lesions(wm.shape, a2r, allowed, count=2, seed=5)
    c = generate_lesions(wm.shape, a2r, allowed, count=2, seed=6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not (a[~ndi.binary_dilation(allowed, iterations=2)] > 0).any()
    with pytest.raises(InputError, match="location mask is empty"):
        generate_lesions(wm.shape, a2r, np.zeros_like(allowed), seed=0)
    with pytest.raises(InputError, match="empty"):
        insert_lesions({}, {"WM": wm}, np.zeros_like(wm))
    with pytest.raises(InputError, match="within \\[0, 1\\]"):
        insert_lesions({}, {"WM": wm}, np.full_like(wm, 2.0))


def test_seeded_transform_reproducible(subject):
    from neuroshift.synthesis.insertion import RandomLesionInsertion
    ph, cs = subject
    sample = {"images": {"FLAIR": (cs.images["FLAIR"], "flair", cs.params["FLAIR"])},
              "fractions": {k: v.data for k, v in ph.fractions.items()},
              "ijk_to_ras": ph.fractions["WM"].ijk_to_ras(), "brain": ph.brain_mask.data}
    a = RandomLesionInsertion(count=1, diameter_range_mm=(6, 8), seed=4)(sample)
    b = RandomLesionInsertion(count=1, diameter_range_mm=(6, 8), seed=4)(sample)
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.images["FLAIR"].image, b.images["FLAIR"].image)
    t = RandomLesionInsertion(count=1, diameter_range_mm=(6, 8), seed=4)
    first, second = t(sample), t(sample)
    assert np.array_equal(first.mask, a.mask) and not np.array_equal(second.mask, first.mask)
