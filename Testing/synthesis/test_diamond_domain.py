"""DiamondGAN's domain matrix as released (neuroshift.synthesis.diamond_domain): the authors' 0/1 patterns
reproduced bit for bit, the per-model ``domain_encoding`` option, the legacy dir-demo package unchanged, and
the inference cache correct with the new encoding."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.diamond_helpers import float64_twin, trained_like

from neuroshift.errors import InputError
from neuroshift.synthesis.diamond_domain import (RELEASED_ORDER, RELEASED_SHA256, domain_matrix, pattern_matrix,
                                                 released_patterns, subset_index)
from neuroshift.synthesis.diamond_infer import DiamondInference
from neuroshift.synthesis.diamondgan import DiamondGenerator, all_subsets, availability_tensor

# SHA-256 of hongweilibran/DiamondGAN@22a69c39 domain_matrix.npy's array data (float64, 240x240x7, C order),
# computed from the authors' file (not shipped), independently of this package's code.
AUTHORS_SHA256 = "553bb48cf9db0c8836e268989dc22ccd987f7e7cbda0f9327585ade6bfb0d48c"


def test_released_patterns_are_the_authors_file_bit_for_bit():
    p = released_patterns()
    assert p.shape == (7, 240, 240)
    data = np.ascontiguousarray(p.permute(1, 2, 0).double().numpy()).tobytes()
    assert hashlib.sha256(data).hexdigest() == AUTHORS_SHA256 == RELEASED_SHA256
    # ones per plane, counted in the authors' file
    assert p.sum((1, 2)).tolist() == [9520, 4740, 48, 12480, 7080, 7488, 18640]
    assert set(p.unique().tolist()) == {0.0, 1.0}
    # every plane a rank-1 lattice; FLAIR only: even rows x every third column
    for plane in p:
        assert torch.equal(plane, torch.outer(plane.amax(1), plane.amax(0)))
    assert p[0, 0, 0] == 1 and p[0, 0, 3] == 1 and p[0, 0, 1] == 0 and p[0, 1, 0] == 0 and p[0, 236, 0] == 1
    assert p[0, 238].sum() == 0


def test_subset_order_is_the_authors_dictionary():
    assert RELEASED_ORDER == ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1), (1, 1, 1))
    assert subset_index(availability_tensor(list(RELEASED_ORDER))).tolist() == list(range(7))
    assert set(RELEASED_ORDER) == set(all_subsets(3))
    with pytest.raises(ValueError, match="3 sources"):
        subset_index(torch.ones(1, 2))


def test_other_sizes_align_bottom_right_and_extend_periodically():
    codes = availability_tensor(list(RELEASED_ORDER))
    p = released_patterns()
    big = pattern_matrix(codes, (480, 260))[:, 0]
    assert torch.equal(big[:, 240:, 20:], p)  # the canvas sits in the bottom-right corner
    assert torch.equal(big[:, :240, 20:], p)  # rows repeat with period 240
    assert torch.equal(big[:, 240:, :20], p[:, :, 220:])  # columns wrap
    small = pattern_matrix(codes, (40, 48))[:, 0]
    assert torch.equal(small, p[:, 200:, 192:])
    # every plane still varies in space, the T2-only one included (its one row, 236, is row 36 here)
    assert all(float(small[k].std()) > 0 for k in range(7))
    assert small[2].sum(1).nonzero().flatten().tolist() == [36]
    tiny = pattern_matrix(codes, (8, 8))[:, 0]  # the smallest size where all 7 vary (generator input: H, W % 4 == 0)
    assert all(float(tiny[k].std()) > 0 for k in range(7))


def _trained_like(encoding: str, seed: int = 0) -> DiamondGenerator:
    return trained_like(1, seed, base=8, n_blocks=1, encoding=encoding)


def _pairwise_min_difference(feats: torch.Tensor) -> float:
    return min(float((feats[i] - feats[j]).abs().max()) for i, j in itertools.combinations(range(len(feats)), 2))


def test_codes_give_different_domain_stream_outputs_with_the_released_patterns():
    """The point of the option: with the released patterns each of the 7 subsets gives its own
    domain-stream output; with the legacy constant map all 7 are the same (float64: to 1e-6)."""
    codes = availability_tensor(list(RELEASED_ORDER))
    x = torch.zeros(7, 3, 240, 240, dtype=torch.float64)
    with torch.no_grad():
        released = _trained_like("patterns").double().domain_features(codes, x)
        legacy = _trained_like("constant").double().domain_features(codes, x)
    assert _pairwise_min_difference(released) > 1e-2
    assert _pairwise_min_difference(legacy) < 1e-6  # float64 rounding through 1/sqrt(eps) amplification


def test_inference_cache_equals_eager_for_each_subset_with_patterns():
    g = _trained_like("patterns")
    g64 = float64_twin(g)
    torch.manual_seed(1)
    x = torch.rand(2, 3, 40, 48) * 2 - 1
    fast = DiamondInference(g)
    outs = []
    with torch.no_grad():
        for code in all_subsets(3):
            c = availability_tensor(code, 2)
            y = fast(x, c)
            assert float((y - g(x, c)).abs().max()) < 1e-5
            assert float((y.double() - g64(x.double(), c)).abs().max()) < 1e-5
            outs.append(y)
        # the cache serves every code again (now from its entries) with the same numbers
        assert len(fast._cache) == 7
        again = fast(x, availability_tensor((0, 1, 1), 2))
    assert torch.equal(again, outs[all_subsets(3).index((0, 1, 1))])
    assert _pairwise_min_difference(torch.stack(outs)) > 1e-3


def test_constant_and_patterns_matrices_differ_and_validate():
    c = availability_tensor((1, 0, 0))
    values = domain_matrix(c, (4, 4), "constant").unique().tolist()
    assert len(values) == 1 and abs(values[0] - (-1.0 + 2.0 / 7)) < 1e-7
    assert torch.equal(domain_matrix(c, (4, 6), "patterns")[0, 0], released_patterns()[0, 236:, 234:])
    with pytest.raises(ValueError, match="domain_encoding"):
        DiamondGenerator(domain_encoding="random")
    with pytest.raises(ValueError, match="3 sources"):
        DiamondGenerator(2, 1, code_width=2)
    assert DiamondGenerator(2, 1, code_width=2, domain_encoding="constant").domain_encoding == "constant"
    assert DiamondGenerator(n_blocks=1, base=8).domain_encoding == "patterns"  # new models: as released


def test_packages_record_the_encoding_and_old_ones_load_as_constant(tmp_path):
    from neuroshift.synthesis.inference import load_package, save_package
    arch = {"in_channels": 3, "out_channels": 1, "n_blocks": 1, "code_width": 3, "base": 8}
    pkg = save_package(tmp_path / "new", "diamondgan", "dir", ("flair", "t1", "t2"), arch,
                       _trained_like("patterns"), {"trained_on": "test"})
    assert json.loads((pkg / "manifest.json").read_text())["architecture"]["domain_encoding"] == "patterns"
    assert load_package(pkg).net.domain_encoding == "patterns"
    with pytest.raises(ValueError, match="domain_encoding"):
        save_package(tmp_path / "bad", "diamondgan", "dir", ("flair", "t1", "t2"),
                     {**arch, "domain_encoding": "constant"}, _trained_like("patterns"), {})
    manifest = json.loads((pkg / "manifest.json").read_text())
    del manifest["architecture"]["domain_encoding"]  # a package written before the option
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    assert load_package(pkg).net.domain_encoding == "constant"
    manifest["architecture"]["domain_encoding"] = "random"
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="domain_encoding"):
        load_package(pkg)


def test_training_step_uses_the_released_patterns_in_both_generators():
    from neuroshift.synthesis.train_steps import DiamondGANStep
    step = DiamondGANStep(torch.zeros(2, 3, 16, 16), torch.zeros(2, 1, 16, 16), n_blocks=1, base=8, d_base=8)
    assert step.models["g1"].domain_encoding == step.models["g2"].domain_encoding == "patterns"
