"""Synthesis training through the shared engine: every subset per epoch, pool of 25, losses fall, resume."""

from __future__ import annotations

import math

import pytest
import torch

from neuroshift.synthesis.diamondgan import all_subsets
from neuroshift.synthesis.train_steps import POOL_SIZE, DiamondGANStep, SynthDIRStep, VirtualT1cStep
from neuroshift.training.distributed import DistInfo
from neuroshift.training.loop import EpochContext, LoopSettings, run_loop


def _toy(n=4, h=32, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, h, generator=g) * 2 - 1
    t = x.mean(1, keepdim=True).tanh()
    return x, t


def test_diamondgan_every_subset_each_epoch_and_pool_25():
    x, t = _toy()
    step = DiamondGANStep(x, t, n_blocks=1, batch_size=2)
    assert POOL_SIZE == 25 and all(p.size == 25 for p in step.pools.values())
    ctx = EpochContext(epoch=0, seed=3, dist=DistInfo(), device=torch.device("cpu"))
    batches = list(step.batches(ctx))
    assert len(batches) == 2 * 7
    per_batch = {}
    for idx, code in batches:
        per_batch.setdefault(tuple(idx.tolist()), []).append(code)
    assert all(sorted(codes) == sorted(all_subsets(3)) for codes in per_batch.values())
    out = step.step(batches[0], ctx)
    assert all(math.isfinite(v) for v in out.losses.values()) and len(step.pools["t"]) == 2


def test_diamondgan_trains_through_run_loop(tmp_path):
    x, t = _toy(n=2)
    res = run_loop(DiamondGANStep(x, t, n_blocks=1, batch_size=2, val=(x, t)),
                   LoopSettings(epochs=1, directory=tmp_path / "g", seed=1, verbose=False))
    assert set(res.states) == {"g1", "g2", "d1", "d2"} and res.steps == 7
    assert {"val_psnr", "val_psnr_111", "val_psnr_100"} <= set(res.history[-1])
    assert (tmp_path / "g" / "log.csv").is_file()


def test_synthdir_and_vt1c_losses_fall():
    torch.manual_seed(0)
    x, _ = _toy(n=4, h=32, c=2)
    y = x[:, :1].clone()
    les = (x[:, 1:] > 0.5).float()
    st = SynthDIRStep(x, y, les, base=8, depth=3, dropout=0.3, lr=2e-3, batch_size=4)
    ctx = EpochContext(epoch=0, seed=0, dist=DistInfo(), device=torch.device("cpu"))
    first = st.step(torch.arange(4), ctx).losses["loss_g"]
    for _ in range(5):
        last = st.step(torch.arange(4), ctx).losses["loss_g"]
    assert last < first
    v_in = torch.rand(2, 4, 32, 32, 32)
    v_t = v_in[:, 3:]
    vs = VirtualT1cStep(v_in, v_t, features=(4, 4, 8, 8, 8, 4), lr=3e-3, batch_size=2)
    f = vs.step(torch.arange(2), ctx).losses["loss_l2"]
    for _ in range(5):
        l = vs.step(torch.arange(2), ctx).losses["loss_l2"]
    assert l < f


def test_vt1c_random_crops_seeded_and_in_bounds():
    v = torch.rand(3, 4, 48, 64, 48)
    st = VirtualT1cStep(v, v[:, 3:], features=(4, 4, 8, 8, 8, 4), crop=32, steps_per_epoch=5, batch_size=2)
    ctx = EpochContext(epoch=0, seed=4, dist=DistInfo(), device=torch.device("cpu"))
    a = list(st.batches(ctx))
    b = list(st.batches(EpochContext(epoch=0, seed=4, dist=DistInfo(), device=torch.device("cpu"))))
    assert len(a) == 5 and all(torch.equal(i, j) and c == d for (i, c), (j, d) in zip(a, b))
    assert all(0 <= c[k] <= (48, 64, 48)[k] - 32 for _, c in a for k in range(3))
    assert math.isfinite(st.step(a[0], ctx).losses["loss_l2"])
    with pytest.raises(ValueError, match="multiple of 16"):
        list(VirtualT1cStep(v, v[:, 3:], features=(4, 4, 8, 8, 8, 4), crop=24).batches(ctx))
