"""segment_volume: the whole inference chain on small phantoms with deterministic tiny models.

Acceptance checks 2 (output geometry), 4 (slab removal in the output), 5 (member order), 8
(orientation invariance) and 9 (resampling to the model grid and back) of docs/segmentation.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroshift.errors import InputError
from neuroshift.io.volume import Volume
from neuroshift.segment.inference import segment_volume
from neuroshift.segment.package import LoadedPackage, load_package
from neuroshift.segment.qc import histogram_distance, intensity_histogram
from neuroshift.segment.preprocess import prepare_inputs

from helpers.seg_helpers import (ShiftThreshold, dice, dice_physical, phantom_ras, stored_as, threshold_package,
                                 tiny_unet_package, truth_mask)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------ check 8
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.9, 1.2, 1.6)])
def test_orientation_invariance_ras_lps_and_permuted_axes(spacing):
    pkg = threshold_package(views=("axial", "coronal"), slab_fraction=0.2)
    ras = phantom_ras(spacing=spacing)
    ref = segment_volume(ras, pkg, device="cpu")
    assert ref.label.data.sum() > 100
    for code in ("LPS", "LAS", "SAL", "PIR", "ILA"):
        other = stored_as(ras, code)
        assert other.data.shape != ras.data.shape or not np.allclose(other.direction, ras.direction)
        res = segment_volume(other, pkg, device="cpu")
        assert res.label.same_grid(other)
        assert dice_physical(ref.label, res.label) >= 0.99, code
        assert res.volumes_mm3["claustrum"] == pytest.approx(ref.volumes_mm3["claustrum"], rel=0.01)


def test_orientation_invariance_of_a_real_unet_package(tmp_path):
    pkg = load_package(tiny_unet_package(tmp_path / "pkg"), "cpu")
    ras = phantom_ras()
    ref = segment_volume(ras, pkg, device="cpu", threshold=float(np.float32(0.0)))
    probs = {}
    for code in ("RAS", "LPS", "SAR"):
        res = segment_volume(stored_as(ras, code), pkg, device="cpu")
        back = stored_as(res.probability, "RAS")
        probs[code] = back.data
    np.testing.assert_allclose(probs["LPS"], probs["RAS"], atol=1e-5)
    np.testing.assert_allclose(probs["SAR"], probs["RAS"], atol=1e-5)
    assert ref.label.data.dtype == np.uint8


# ------------------------------------------------------------------ check 9 and check 2
@pytest.mark.parametrize("spacing", [0.8, 1.2])
def test_inputs_are_resampled_to_the_model_grid_and_labels_come_back_on_the_input_grid(spacing):
    pkg = threshold_package(views=("axial",), slab_fraction=0.0, members=1)
    pkg.models["axial"] = [ShiftThreshold(1, shift=0).eval()]
    vol = stored_as(phantom_ras(spacing=(spacing,) * 3, origin_shift=(1.3, -2.1, 0.7)), "LPS")
    res = segment_volume(vol, pkg, device="cpu")
    assert res.info["resampled"] is True
    assert res.info["model_spacing_mm"] == [1.0, 1.0, 1.0]
    n_model = np.array(res.info["model_grid_shape_kji"])
    np.testing.assert_array_equal(n_model, np.round(np.array(vol.data.shape) * spacing))
    for out in (res.label, res.probability, res.uncertainty):  # check 2: the input's geometry exactly
        assert out.data.shape == vol.data.shape
        np.testing.assert_array_equal(out.spacing, vol.spacing)
        np.testing.assert_array_equal(out.origin, vol.origin)
        np.testing.assert_array_equal(out.direction, vol.direction)
    assert res.label.data.dtype == np.uint8 and set(np.unique(res.label.data)) <= {0, 1}
    assert dice(res.label.data, truth_mask(vol)) > 0.85
    voxel = spacing ** 3
    assert res.volumes_mm3["claustrum"] == pytest.approx(res.label.data.sum() * voxel)


def test_label_is_the_nearest_neighbour_image_of_the_model_grid_label():
    """The label equals nearest-neighbour resampling of the thresholded model-grid probability."""
    pkg = threshold_package(views=("axial",), slab_fraction=0.0, members=1)
    vol = phantom_ras(spacing=(1.2, 1.2, 1.2))
    res = segment_volume(vol, pkg, device="cpu")
    prep = prepare_inputs({"T1": vol}, pkg.manifest)
    with torch.no_grad():
        x = torch.from_numpy(prep.channels[:, :, None].transpose(1, 0, 2, 3, 4)[:, :, 0].copy())
        p = pkg.models["axial"][0](x)[:, 0].numpy()
    # crop_hw (64, 64) pads these slices: no pixel lost, so the model-grid probability is p itself
    model_label = (p > 0.5).astype(np.uint8)
    expected = prep.to_input_grid(model_label, interpolation="nearest", dtype=np.uint8)
    assert dice(res.label.data, expected.data) > 0.999


# ------------------------------------------------------------------ check 4 and check 5 end to end
def test_slabs_are_empty_in_the_output_and_fusion_does_not_depend_on_member_order():
    vol = phantom_ras()
    vol = vol.with_data(np.where(vol.data > 0, 200.0, 0.0).astype(np.float32) + (vol.data > 150) * 50)
    pkg = threshold_package(views=("axial", "coronal"), slab_fraction=0.2, members=3, threshold=0.05)
    # three different members per view
    for v in pkg.models:
        pkg.models[v] = [ShiftThreshold(1, level=lv) for lv in (-0.5, 0.0, 0.5)]
    res = segment_volume(vol, pkg, device="cpu")
    canon = stored_as(res.label, "RAS").data  # the phantom is RAS already: canonical = stored
    k, j, _ = canon.shape
    kc, jc = int(k * 0.2), int(j * 0.2)
    assert canon[kc:k - kc, jc:j - jc].any()
    assert not canon[:kc].any() and not canon[k - kc:].any()
    assert not canon[:, :jc].any() and not canon[:, j - jc:].any()
    assert not res.probability.data[:kc].any()
    reordered = threshold_package(views=("coronal", "axial"), slab_fraction=0.2, members=3, threshold=0.05)
    for v in reordered.models:
        reordered.models[v] = [ShiftThreshold(1, level=lv) for lv in (0.5, -0.5, 0.0)]
    res2 = segment_volume(vol, reordered, device="cpu")
    np.testing.assert_allclose(res2.probability.data, res.probability.data, atol=1e-6)
    np.testing.assert_array_equal(res2.label.data, res.label.data)


def test_wmh_slab_is_10_percent_of_axial_slices():
    vol = phantom_ras(fov_mm=(48, 52, 60))
    vol = vol.with_data(np.where(vol.data > 0, 300.0, 0.0).astype(np.float32))
    vol.data[vol.data > 0] += np.random.default_rng(0).random(int((vol.data > 0).sum())).astype(np.float32)
    pkg = threshold_package(task="wmh", channels=("FLAIR",), views=("axial",), slab_fraction=0.1,
                            threshold=0.0, members=1)
    res = segment_volume({"FLAIR": vol}, pkg, device="cpu")
    n = vol.data.shape[0]
    cut = int(n * 0.1)
    assert cut >= 1
    assert not res.label.data[:cut].any() and not res.label.data[n - cut:].any()
    assert res.segment_name == "WMH" and "WMH" in res.volumes_mm3
    assert "WMH_left" not in res.volumes_mm3  # not a bilateral structure


# ------------------------------------------------------------------ TTA, uncertainty, QC, errors
def test_tta_and_uncertainty_kinds():
    vol = phantom_ras()
    pkg = threshold_package(views=("axial", "coronal"), members=2)
    plain = segment_volume(vol, pkg, device="cpu", uncertainty="variance")
    assert plain.uncertainty_kind == "variance"
    assert float(plain.uncertainty.data.max()) == pytest.approx(0.0, abs=1e-6)  # identical members agree
    tta = segment_volume(vol, pkg, device="cpu", tta=True)
    assert tta.info["tta"] is True
    assert float(tta.uncertainty.data.max()) > 0.01  # the flipped copies disagree with the shifted model
    ent = segment_volume(vol, pkg, device="cpu", uncertainty="entropy")
    assert 0.0 <= float(ent.uncertainty.data.min()) and float(ent.uncertainty.data.max()) <= 1.0 + 1e-6
    from neuroshift.segment.uncertainty import binary_entropy
    np.testing.assert_allclose(ent.uncertainty.data, binary_entropy(ent.probability.data), atol=1e-5)
    assert float(ent.uncertainty.data.max()) > 0.01
    with pytest.raises(InputError):
        segment_volume(vol, pkg, device="cpu", uncertainty="magic")


def test_qc_warnings_neonate_hemisphere_contrast_spacing():
    vol = phantom_ras()
    pkg = threshold_package(views=("axial", "coronal"))
    res = segment_volume(vol, pkg, device="cpu", age_weeks=33.5)
    assert any("35" in w for w in res.warnings)
    assert res.volumes_mm3["claustrum_left"] > 0 and res.volumes_mm3["claustrum_right"] > 0
    # remove the left sheet: empty hemisphere
    ras = vol.data.copy()
    from helpers.seg_helpers import physical_ras
    x = physical_ras(vol)[..., 0]
    ras[(x < -2) & (ras > 150)] = 100.0
    one_sided = segment_volume(vol.with_data(ras), pkg, device="cpu")
    assert one_sided.volumes_mm3["claustrum_left"] == 0
    assert any("empty hemisphere" in w and "left" in w for w in one_sided.warnings)
    # contrast far from the training histogram
    prep = prepare_inputs({"T1": vol}, pkg.manifest)
    hist = intensity_histogram(prep)
    assert histogram_distance(hist["channels"]["T1"], hist["channels"]["T1"], hist["edges"]) == 0
    pkg.manifest["qc"] = {"intensity_histogram": hist}
    same = segment_volume(vol, pkg, device="cpu")
    assert not any("training contrast" in w for w in same.warnings)
    inverted = vol.with_data(np.where(vol.data > 0, 400.0 - vol.data, 0.0).astype(np.float32))
    far = segment_volume(inverted, pkg, device="cpu")
    assert any("training contrast" in w for w in far.warnings)
    # input spacing far from the model's
    coarse = segment_volume(phantom_ras(spacing=(1.0, 1.0, 2.5)), pkg, device="cpu")
    assert any("spacing" in w for w in coarse.warnings)


def test_missing_channel_and_demo_warning():
    vol = phantom_ras()
    pkg = threshold_package(task="wmh", channels=("FLAIR", "T1"), views=("axial",), slab_fraction=0.1, demo=True)
    with pytest.raises(InputError, match="T1"):
        segment_volume({"FLAIR": vol}, pkg, device="cpu")
    res = segment_volume({"FLAIR": vol, "T1w": vol.with_data(vol.data * 0.4)}, pkg, device="cpu")
    assert any("DEMO" in w for w in res.warnings)


def test_co_registered_channel_on_another_grid_is_resampled_with_a_warning():
    flair = phantom_ras()
    t1 = phantom_ras(spacing=(1.1, 1.1, 1.1))
    pkg = threshold_package(task="wmh", channels=("FLAIR", "T1"), views=("axial",), slab_fraction=0.1)
    res = segment_volume({"FLAIR": flair, "T1": t1}, pkg, device="cpu")
    assert res.label.same_grid(flair)
    assert any("not on the grid" in w for w in res.warnings)


def test_progress_reports_monotonically_to_one():
    seen = []
    segment_volume(phantom_ras(), threshold_package(), device="cpu", progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert all(b >= a for a, b in zip(seen, seen[1:]))


def test_package_by_path_and_external_brain_mask(tmp_path):
    path = tiny_unet_package(tmp_path / "pkg")
    vol = phantom_ras()
    mask = vol.with_data((vol.data > 0).astype(np.uint8))
    res = segment_volume({"T1": vol}, str(path), device="cpu", brain_mask=mask)
    assert isinstance(res.label, Volume) and res.label.same_grid(vol)
    assert res.info["model"] == str(path)
    assert isinstance(load_package(path, "cpu"), LoadedPackage)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_matches_cpu(tmp_path):
    pkg_path = tiny_unet_package(tmp_path / "pkg")
    vol = phantom_ras()
    cpu = segment_volume(vol, str(pkg_path), device="cpu")
    gpu = segment_volume(vol, str(pkg_path), device="cuda")
    assert gpu.info["precision"] == "float16"
    np.testing.assert_allclose(gpu.probability.data, cpu.probability.data, atol=2e-2)


def test_cpu_bfloat16_is_close_to_float32_and_fp16_needs_cuda(tmp_path):
    pkg = load_package(tiny_unet_package(tmp_path / "pkg"), "cpu")
    vol = phantom_ras()
    fp32 = segment_volume(vol, pkg, device="cpu", precision="fp32")
    bf16 = segment_volume(vol, pkg, device="cpu", precision="bf16")
    assert fp32.info["precision"] == "float32" and bf16.info["precision"] == "bfloat16"
    np.testing.assert_allclose(bf16.probability.data, fp32.probability.data, atol=2e-2)
    assert np.abs(bf16.probability.data - fp32.probability.data).max() > 0  # really ran in bfloat16
    with pytest.raises(InputError, match="fp16 needs a CUDA"):
        segment_volume(vol, pkg, device="cpu", precision="fp16")


def test_precision_auto_is_bf16_only_where_the_cpu_runs_it_natively(monkeypatch):
    from neuroshift.segment import precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    assert precision.autocast_dtype("auto", cpu) is torch.bfloat16
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert precision.autocast_dtype("auto", cpu) is None
    assert precision.autocast_dtype("auto", torch.device("cuda")) is torch.float16
    assert precision.autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(InputError, match="unknown precision"):
        precision.autocast_dtype("int4", cpu)
    with pytest.raises(InputError, match="segmentation networks only"):
        precision.autocast_dtype("int8", cpu)  # callers other than the U-Net path refuse it
    with pytest.raises(InputError, match="runs on the CPU"):
        precision.autocast_dtype("int8", torch.device("cuda"), int8=True)
    assert precision.autocast_dtype("auto", cpu, int8=True) is None  # auto never picks int8


def test_native_bf16_follows_the_cpuinfo_flags(monkeypatch, tmp_path):
    from pathlib import Path

    from neuroshift.segment import precision

    flags = {"with": "flags\t\t: fpu avx2 avx512f avx512_bf16\n", "amx": "flags\t: fpu amx_bf16 amx_tile\n",
             "without": "flags\t\t: fpu avx2 avx512f avx512_vnni\n"}
    real_read = Path.read_text
    for name, text in flags.items():
        monkeypatch.setattr(Path, "read_text", lambda self, *a, _t=text, **k:
                            _t if str(self) == "/proc/cpuinfo" else real_read(self, *a, **k))
        precision.native_bf16.cache_clear()
        assert precision.native_bf16() is (name != "without")
    precision.native_bf16.cache_clear()


def test_precision_agreement_numbers():
    from neuroshift.segment.precision import agreement

    ref = torch.tensor([[0.10, 0.39, 0.41, 0.90]])
    low = torch.tensor([[0.10, 0.41, 0.41, 0.85]])
    out = agreement(low, ref, 0.40)
    assert out["max_abs_probability_difference"] == pytest.approx(0.05, abs=1e-6)
    assert out["threshold_flip_fraction"] == pytest.approx(0.25)  # 0.39 -> 0.41 crosses 0.40
    assert out["pixels"] == 4


def test_bf16_run_records_its_agreement_with_fp32(tmp_path):
    pkg = load_package(tiny_unet_package(tmp_path / "pkg"), "cpu")
    res = segment_volume(phantom_ras(), pkg, device="cpu", precision="bf16")
    check = res.info["precision_check"]
    assert check["reference"] == "float32" and 1 <= check["slices"] <= 4
    assert 0.0 < check["max_abs_probability_difference"] < 2e-2
    assert "precision_check" not in segment_volume(phantom_ras(), pkg, device="cpu", precision="fp32").info


def test_thread_policy(monkeypatch):
    from neuroshift import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setattr(threads, "_cgroup_quota_cores", lambda: None)
    assert threads.available_cores() == 6
    monkeypatch.setattr(threads, "_cgroup_quota_cores", lambda: 2.5)  # a container limited to 2.5 CPUs
    assert threads.available_cores() == 2
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    assert threads.requested_threads() == 2
    assert threads.requested_threads(3) == 3
    monkeypatch.setenv(threads.THREADS_ENV, "5")
    assert threads.requested_threads() == 5
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a user's own choice is kept
    threads.prepare_environment()
    assert threads.os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert threads.prepare_environment() is False  # torch is already imported in this process
    assert threads.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    info = threads.configure(1)
    assert info["torch_threads"] == 1 == torch.get_num_threads()


def test_stored_orientation_keeps_the_array_order_and_a_channel_mask_is_shared():
    from neuroshift.segment.preprocess import BrainMaskSpec, reorient

    lps = stored_as(phantom_ras(), "LPS")
    same, ro = reorient(lps, "stored")
    assert ro.identity and ro.original_code == "LPS"
    np.testing.assert_array_equal(same.data, lps.data)
    np.testing.assert_allclose(same.direction, lps.direction)
    flair = phantom_ras()
    flair = flair.with_data((flair.data + np.linspace(0, 1, flair.data.size).reshape(flair.data.shape)).astype(np.float32))
    t1 = flair.with_data((0.5 * flair.data + 7.0).astype(np.float32))  # would give another mask of its own
    manifest = {"task": "wmh", "input_channels": ["FLAIR", "T1"],
                "preprocessing": {"spacing_mm": None, "brain_mask": {"thresholds": {"FLAIR": 150, "T1": 1}, "channel": "FLAIR",
                                                                     "largest_component": False, "fill_holes": False}}}
    prepared = prepare_inputs({"FLAIR": flair, "T1": t1}, manifest)
    np.testing.assert_array_equal(prepared.channel_masks["FLAIR"], prepared.channel_masks["T1"])
    assert prepared.channel_masks["T1"].sum() == int((flair.data >= 150).sum()) > 0  # FLAIR >= 150 only, not T1 >= 1
    assert BrainMaskSpec.from_manifest(manifest["preprocessing"]["brain_mask"], "wmh").channel == "FLAIR"


def test_cpu_bf16_copy_follows_weight_updates():
    from neuroshift.segment.predict import cpu_bf16_copy
    from neuroshift.segment.unet import build_unet

    net = build_unet({"in_channels": 1, "encoder": [2, 2, 2], "decoder": [2, 2]}).eval()
    low = cpu_bf16_copy(net)
    assert cpu_bf16_copy(net) is low and low.head.weight.dtype == torch.bfloat16
    with torch.no_grad():
        net.head.bias.add_(1.0)  # an optimiser step changes weights in place
    fresh = cpu_bf16_copy(net)
    assert fresh is not low
    assert float(fresh.head.bias.float()[0]) == pytest.approx(float(net.head.bias.detach()[0]), abs=1e-2)
