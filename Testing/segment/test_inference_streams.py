"""Speed paths of segment inference that must not change the numbers: bit-identical slices predicted once,
and CPU batches run as concurrent single-threaded streams (docs/segmentation.md, issue 9)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import neuroshift.segment.inference as inference
from neuroshift.segment.package import load_package
from neuroshift.segment.predict import chunks, predict_slices
from neuroshift.segment.preprocess import prepare_inputs
from neuroshift.segment.views import identical_slices, view_slices

from helpers.seg_helpers import phantom_ras, tiny_unet_package


def test_identical_slices_groups_bit_identical_slices_only():
    a = np.zeros((2, 3), np.float32)
    b = np.arange(6, dtype=np.float32).reshape(2, 3)
    neg = a.copy()
    neg[0, 0] = -0.0  # equal as numbers, different bits: not reused
    stack = np.stack([a, b, a, neg, b.copy(), a])
    first, inverse = identical_slices(stack)
    assert first.tolist() == [0, 1, 3]
    assert inverse.tolist() == [0, 1, 0, 2, 1, 0]
    np.testing.assert_array_equal(stack[first][inverse], stack)
    first, inverse = identical_slices(stack[1:2])
    assert first.tolist() == [0] and inverse.tolist() == [0]


def test_chunks_cover_the_slices_in_a_multiple_of_the_streams_and_near_equal_sizes():
    assert [(c.start, c.stop) for c in chunks(10, 4, 1)] == [(0, 4), (4, 8), (8, 10)]
    sizes = [c.stop - c.start for c in chunks(34, 4, 2)]
    assert len(sizes) == 10 and sum(sizes) == 34 and set(sizes) == {3, 4}
    assert [c.stop - c.start for c in chunks(24, 4, 2)] == [4] * 6
    assert [c.stop - c.start for c in chunks(3, 4, 2)] == [2, 1]
    assert [c.stop - c.start for c in chunks(1, 4, 3)] == [1]
    parts = chunks(57, 5, 3)
    assert parts[0].start == 0 and parts[-1].stop == 57 and len(parts) % 3 == 0
    assert all(p.stop == q.start for p, q in zip(parts[:-1], parts[1:]))
    assert max(p.stop - p.start for p in parts) <= 5


@pytest.mark.parametrize("flip", [None, -1])
def test_streams_give_the_one_stream_probabilities_and_report_progress_in_the_caller_thread(tmp_path, flip):
    pkg = load_package(tiny_unet_package(tmp_path / "pkg"), "cpu")
    net = pkg.models["axial"][0].to(memory_format=torch.channels_last)
    x = np.random.default_rng(0).normal(size=(11, 1, 48, 48)).astype(np.float32)
    one = predict_slices(net, x, device=torch.device("cpu"), batch_size=2, precision="fp32", flip_axis=flip,
                         streams=1)
    calls = []
    two = predict_slices(net, x, device=torch.device("cpu"), batch_size=2, precision="fp32", flip_axis=flip,
                         streams=2, on_batch=lambda f: calls.append((f, threading.get_ident())))
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-6)
    assert len(calls) == 6  # 11 slices, batches of <= 2, a multiple of 2 streams: 6 chunks
    assert [f for f, _ in calls] == pytest.approx([(i + 1) / 6 for i in range(6)])
    assert {t for _, t in calls} == {threading.get_ident()}
    # the direct per-slice result, independently of any batching
    with torch.inference_mode():
        xs = torch.from_numpy(x[3:4])
        ref = net(torch.flip(xs, (-1,)) if flip else xs)
        ref = torch.flip(ref, (-1,)) if flip else ref
    np.testing.assert_allclose(two[3], ref[0, 0].numpy(), rtol=0, atol=1e-5)


def test_stream_threads_run_single_threaded_and_leave_other_threads_their_count():
    from concurrent.futures import ThreadPoolExecutor

    from neuroshift.segment.predict import cpu_streams

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        pool = cpu_streams(3)
        assert sorted(pool.map(lambda _: torch.get_num_threads(), range(6))) == [1] * 6
        assert torch.get_num_threads() == 3  # the caller
        with ThreadPoolExecutor(1) as other:  # a thread started afterwards (e.g. the next background run)
            assert other.submit(torch.get_num_threads).result() == 3
    finally:
        torch.set_num_threads(before)


def test_background_slices_are_predicted_once_with_the_same_result(tmp_path, monkeypatch):
    """80 mm FOV along z, brain |z| <= 18 mm: of the 48 kept axial slices (k 16-63 of 80) 12 are background
    (k 16-21, 58-63: one prediction) and k 38-40 near the equator sample the same ellipse section (one
    prediction): 35 predicted, 13 reused. The grid is shifted 0.3 mm along z so that slices mirrored about the
    centre are not bit-identical as well. Cross-check: numpy's row-wise unique over the same slices."""
    pkg = load_package(tiny_unet_package(tmp_path / "pkg"), "cpu")
    vol = phantom_ras(fov_mm=(48.0, 52.0, 80.0), origin_shift=(0.0, 0.0, 0.3))
    prepared = prepare_inputs({"T1": vol}, pkg.manifest)
    stack, _ = view_slices(prepared.channels, "axial", (48, 48), prepared.pad_value, indices=np.arange(16, 64))
    assert len(np.unique(stack.reshape(48, -1), axis=0)) == 35
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.delenv("NEUROSHIFT_CPU_STREAMS", raising=False)
    try:
        fast = inference.segment_volume(vol, pkg, device="cpu", precision="fp32")
    finally:
        torch.set_num_threads(before)
    assert fast.info["threads"]["torch_threads"] == 2 == fast.info["threads"]["cpu_streams"]
    monkeypatch.setattr(inference, "identical_slices", lambda s: (np.arange(len(s)), np.arange(len(s))))
    full = inference.segment_volume(vol, pkg, device="cpu", precision="fp32")
    assert fast.info["slices"]["axial"] == {"kept": 48, "predicted": 35, "reused_identical": 13}
    assert full.info["slices"]["axial"] == {"kept": 48, "predicted": 48, "reused_identical": 0}
    # equal up to float32 rounding (the batches hold other slices, so oneDNN may block them differently)
    np.testing.assert_allclose(fast.probability.data, full.probability.data, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast.uncertainty.data, full.uncertainty.data, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(fast.label.data, full.label.data)


def test_stream_count_follows_the_threads_and_the_environment(monkeypatch):
    from neuroshift import threads

    monkeypatch.delenv(threads.STREAMS_ENV, raising=False)
    assert threads.cpu_streams(4) == 4 and threads.cpu_streams(1) == 1
    monkeypatch.setenv(threads.STREAMS_ENV, "1")  # one batch at a time over all threads
    assert threads.cpu_streams(4) == 1
    monkeypatch.setenv(threads.STREAMS_ENV, "8")  # never more streams than threads
    assert threads.cpu_streams(4) == 4
    monkeypatch.setenv(threads.STREAMS_ENV, "two")
    assert threads.cpu_streams(3) == 3
