"""The bundled LesionSynth demo packages: found by name, say phantom-trained / not clinical, small; the
synthDIR demo reproduces its manifest's held-out single-pass scores on phantom seed 3 (SSIM >= 0.9 over the
brain), gives an MC-dropout SD inside the mask only and an error-model SD that ranks its error; dir-demo reproduces its recorded per-subset scores."""

from __future__ import annotations

import numpy as np
import pytest

from neuroshift.segment.registry import BUNDLED_DIR
from neuroshift.synthesis.inference import load_package, synthesize

DEMOS = sorted(p.name for p in BUNDLED_DIR.iterdir() if p.name in ("dir-demo", "synthdir-demo", "vt1c-demo"))


def test_demo_packages_are_labelled_and_small():
    assert "synthdir-demo" in DEMOS
    total = 0
    for name in DEMOS:
        m = load_package(name)  # by name, like segmentation packages
        text = (m.manifest.get("description", "") + m.manifest.get("trained_on", "")).upper()
        assert "NOT FOR CLINICAL USE" in text and "PHANTOM" in text and m.manifest.get("demo") is True
        assert "held_out_scores" in m.manifest
        total += sum(f.stat().st_size for f in (BUNDLED_DIR / name).glob("*.safetensors"))
    assert total <= 6 * 2 ** 20


@pytest.fixture(scope="module")
def held_out():
    """The held-out phantom (seed 3) of every demo package: contrasts and brain mask."""
    from neuroshift.phantom import build_phantom
    from neuroshift.phantom.contrasts import build_contrasts

    ph = build_phantom(seed=3)
    return build_contrasts(ph, seed=3), ph.brain_mask.data > 0


def test_synthdir_demo_reproduces_its_held_out_scores(held_out):
    from neuroshift.synthesis import metrics

    cs, brain = held_out
    model = load_package("synthdir-demo")
    inputs = {"flair": cs.images["FLAIR"].data, "t1": cs.images["T1w"].data}
    pred, sd = synthesize(model, inputs, brain)  # one pass, dropout off: as held_out_scores["single_pass"]
    assert sd is None
    r = metrics.region_metrics(np.asarray(cs.images["DIR"].data), pred, {"brain": brain})["brain"]
    want = model.manifest["held_out_scores"]["single_pass"]
    assert r["ssim"] >= 0.9 and r["psnr_db"] >= 20.0
    assert r["ssim"] == pytest.approx(want["ssim_brain"], abs=0.01)
    assert r["psnr_db"] == pytest.approx(want["psnr_brain_db"], abs=0.5)
    # MC dropout (3 full passes over a 5-slice slab, to stay fast): SD > 0 inside the mask, 0 outside
    k = int(np.flatnonzero(brain.any(axis=(1, 2))).mean())
    slab = np.zeros_like(brain)
    slab[k - 2:k + 3] = brain[k - 2:k + 3]
    _, sd = synthesize(model, inputs, slab, mc_samples=3)
    assert sd is not None and sd[slab].mean() > 0 and not sd[~slab].any()


def test_synthdir_demo_error_model_ranks_the_error_of_the_held_out_phantom(held_out):
    """The shipped error model (trained on varied subjects 301-337; the generator on phantoms 0-2, 4, 5), one
    pass on phantom seed 3: Spearman(SD, |error|) over brain voxels vs the acquired DIR is 0.503 (the MC-dropout
    SD: 0.155; the expected-error oracle over 8 noise draws: 0.518, dev/synthesis_uncertainty.py --noise-draws)."""
    from neuroshift.synthesis import metrics
    from neuroshift.synthesis.inference import RESIDUAL, uncertainty_kind

    cs, brain = held_out
    model = load_package("synthdir-demo")
    assert uncertainty_kind(model) == RESIDUAL
    img, sd = synthesize(model, {"flair": cs.images["FLAIR"].data, "t1": cs.images["T1w"].data}, brain,
                         uncertainty="residual")
    ref, syn = metrics.normalise_pair(cs.images["DIR"].data, img, brain)
    assert metrics.spearman(sd[brain], np.abs(ref - syn)[brain]) == pytest.approx(0.503, abs=0.01)
    assert sd[brain].min() > 0 and not sd[~brain].any()


def test_dir_demo_reproduces_its_held_out_scores(held_out, subset="flair+t1+t2"):
    """dir-demo (DiamondGAN, released padding): the product path gives the brain PSNR / SSIM its manifest
    records for that input subset on the held-out phantom (as written by dev/train_demo_synthesis.py)."""
    from neuroshift.synthesis import metrics

    cs, brain = held_out
    model = load_package("dir-demo")
    names = {"flair": "FLAIR", "t1": "T1w", "t2": "T2w"}
    pred, _ = synthesize(model, {n: cs.images[names[n]].data for n in subset.split("+")}, brain)
    r = metrics.region_metrics(np.asarray(cs.images["DIR"].data), pred, {"brain": brain})["brain"]
    want = model.manifest["held_out_scores"]["per_subset"][subset]
    assert r["ssim"] == pytest.approx(want["ssim_brain"], abs=2e-3)
    assert r["psnr_db"] == pytest.approx(want["psnr_brain_db"], abs=0.05)
