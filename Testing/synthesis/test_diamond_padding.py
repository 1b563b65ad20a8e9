"""DiamondGAN padding as released (neuroshift.synthesis.diamond_padding) vs the packages that predate it.

What the authors' release does, hongweilibran/DiamondGAN@22a69c399812882093206632ff8f8c5f172f5037 (read in
the mirror with ``git show 22a69c39:train.py``; ``test.py`` repeats the same layer functions at the same
lines):

* train.py:257 and :261 (``Rk``): ``Conv2D(filters=k, kernel_size=3, strides=1, padding='same')``: the
  residual blocks ZERO-pad (ours reflected before the ``residual_padding`` option).
* train.py:249 (``dk``): ``Conv2D(kernel_size=3, strides=2, padding='same')``: TensorFlow pads 0 before and
  1 after at even sizes (ours padded 1 / 1 before ``resample_padding``).
* train.py:274 (``uk``): ``Conv2DTranspose(kernel_size=3, strides=2, padding='same')``: the adjoint of that
  conv, i.e. the full transposed conv's first 2n rows (ours cropped the first row: ``padding=1,
  output_padding=1``).
* train.py:319-322, 242-243 and 351-353 (``c7Ak``, last layer): ``ReflectionPadding2D((3, 3))`` (train.py:857-868,
  ``tf.pad(..., 'REFLECT')``) then a 7x7 ``'valid'`` conv: the same as ours all along (no option).
* train.py:235 (``ck``) and :306: the discriminator's 4x4 stride-2 / stride-1 ``'same'`` convs.

The index rules are checked here against literal TensorFlow definitions written independently of the product
code (a direct loop for the conv, the adjoint identity for the transposed conv); the Keras layers themselves
were compared when this was written (2.4e-7, TensorFlow 3.15 in /tmp/tfenv, no TensorFlow in this venv).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from helpers.diamond_helpers import float64_twin, trained_like

from neuroshift.errors import InputError
from neuroshift.synthesis.diamond_infer import DiamondInference
from neuroshift.synthesis.diamond_padding import SameConv2d, SameConvTranspose2d, same_pads
from neuroshift.synthesis.diamondgan import (DiamondGenerator, PatchDiscriminator, ResidualBlock, all_subsets,
                                             availability_tensor, count_parameters)

COMBOS = list(itertools.product(("zero", "reflect"), ("keras_same", "symmetric")))


def _tf_same_conv_loop(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """TensorFlow's 'same' conv written out: out = ceil(n / s), pad_before = total // 2 with
    total = max((out - 1) s + k - n, 0); zeros outside the image (cross-correlation, no bias)."""
    cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    top = max((oh - 1) * stride + k - h, 0) // 2
    left = max((ow - 1) * stride + k - wd, 0) // 2
    out = np.zeros((cout, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a in range(k):
                for b in range(k):
                    r, c = i * stride + a - top, j * stride + b - left
                    if 0 <= r < h and 0 <= c < wd:
                        out[:, i, j] += w[:, :, a, b] @ x[:, r, c]
    return out


def test_same_pads_literals():
    assert same_pads(240, 3, 2) == (0, 1)  # dk at every size this network sees: bottom/right only
    assert same_pads(120, 3, 2) == (0, 1)
    assert same_pads(60, 3, 1) == (1, 1)  # Rk: symmetric
    assert same_pads(240, 4, 2) == (1, 1)  # discriminator ck at even sizes = torch padding 1
    assert same_pads(15, 4, 2) == (1, 2) and same_pads(15, 4, 1) == (1, 2)  # odd sizes / the last 4x4 conv
    assert same_pads(7, 3, 2) == (1, 1)


@pytest.mark.parametrize("size,k,stride", [((12, 10), 3, 2), ((9, 7), 3, 2), ((8, 8), 4, 2), ((7, 6), 4, 1),
                                           ((6, 5), 3, 1)])
def test_same_conv_is_tensorflow_same(size, k, stride):
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, k, stride).double()
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    with torch.no_grad():
        y = conv(x)[0] - conv.bias.view(-1, 1, 1)
    ref = _tf_same_conv_loop(x[0].numpy(), conv.weight.detach().numpy(), stride)
    assert y.shape == ref.shape
    assert np.abs(y.numpy() - ref).max() < 1e-12
    if stride == 2 and size == (12, 10):  # torch's symmetric padding reads other pixels
        sym = torch.nn.functional.conv2d(x, conv.weight, None, stride, k // 2)[0].detach().numpy()
        assert sym.shape == ref.shape and np.abs(sym - ref).max() > 0.1


@pytest.mark.parametrize("size", [(6, 5), (9, 12)])
def test_same_transposed_conv_is_the_adjoint_of_the_same_conv(size):
    """Keras Conv2DTranspose(padding='same') is the gradient of Conv2D(padding='same') for an output of
    stride x n: <conv(u), v> = <convT(v), u> with the same weight tensor, output size exactly 2n."""
    torch.manual_seed(1)
    h, w = size
    up = SameConvTranspose2d(3, 2, 3, 2).double()  # weight (in=3, out=2, 3, 3)
    down = SameConv2d(2, 3, 3, 2).double()  # weight (out=3, in=2, 3, 3): the same layout
    with torch.no_grad():
        down.weight.copy_(up.weight)
        v = torch.randn(1, 3, h, w, dtype=torch.float64)
        u = torch.randn(1, 2, 2 * h, 2 * w, dtype=torch.float64)
        tv = up(v) - up.bias.view(1, -1, 1, 1)
        cu = down(u) - down.bias.view(1, -1, 1, 1)
    assert tv.shape == (1, 2, 2 * h, 2 * w) and cu.shape == v.shape
    assert abs(float((cu * v).sum() - (tv * u).sum())) < 1e-10
    # torch's padding=1, output_padding=1 is the adjoint of the symmetric conv: not the same function
    sym = torch.nn.functional.conv_transpose2d(v, up.weight.detach(), None, 2, 1, 1)
    assert sym.shape == tv.shape and float((sym - tv).abs().max()) > 0.1


def test_residual_padding_literals():
    """All-ones 3x3 kernel on an all-ones 6x6 map: zero padding sums 4 at corners, 6 on edges, 9 inside;
    reflection 9 everywhere."""
    for padding, corner, edge in (("zero", 4.0, 6.0), ("reflect", 9.0, 9.0)):
        conv = ResidualBlock(1, padding).body[0]
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.bias.zero_()
            y = conv(torch.ones(1, 1, 6, 6))[0, 0]
        assert float(y[0, 0]) == corner and float(y[0, 3]) == edge and float(y[3, 3]) == 9.0


def test_discriminator_padding():
    for padding in ("symmetric", "keras_same"):
        assert count_parameters(PatchDiscriminator(3, padding=padding)) == 2_766_529
    x = torch.randn(1, 3, 64, 64)
    assert PatchDiscriminator(3, base=8)(x).shape == (1, 1, 3, 3)  # 64 -> 32 -> 16 -> 8 -> 4 -> 3
    released = PatchDiscriminator(3, base=8, padding="keras_same")
    assert released(x).shape == (1, 1, 4, 4)  # [R]: the last 'same' conv keeps 4
    sym = PatchDiscriminator(3, base=8)
    sym.load_state_dict(released.state_dict())  # same parameter names: one state dict for both
    with pytest.raises(ValueError, match="padding"):
        PatchDiscriminator(3, padding="reflect")


@pytest.mark.parametrize("residual,resample", COMBOS)
def test_counts_and_names_do_not_depend_on_the_options(residual, resample):
    g = DiamondGenerator(residual_padding=residual, resample_padding=resample)
    assert count_parameters(g) == 7_218_987
    small = DiamondGenerator(3, 1, n_blocks=1, base=8, residual_padding=residual, resample_padding=resample)
    DiamondGenerator(3, 1, n_blocks=1, base=8).load_state_dict(small.state_dict())


def test_defaults_are_the_released_behaviour_and_values_are_checked():
    g = DiamondGenerator(n_blocks=1, base=8)
    assert g.options() == {"domain_encoding": "patterns", "residual_padding": "zero",
                           "resample_padding": "keras_same"}
    assert isinstance(g.image_stream[3], SameConv2d) and isinstance(g.decoder[0], SameConvTranspose2d)
    assert g.image_stream[9].body[0].padding_mode == "zeros"
    assert g.image_stream[0].padding_mode == "reflect" and g.decoder[-2].padding_mode == "reflect"  # c7s1
    with pytest.raises(ValueError, match="residual_padding"):
        DiamondGenerator(residual_padding="replicate")
    with pytest.raises(ValueError, match="resample_padding"):
        DiamondGenerator(resample_padding="same")


@pytest.mark.parametrize("residual,resample", COMBOS)
def test_fast_path_equals_float64_eager_for_every_option_and_subset(residual, resample):
    """DiamondInference (the product path) = the eager generator in float64 within 1e-5, all 7 subsets, a
    slice whose quarter size is odd (36x44 -> 9x11) and 1 / 3 output channels."""
    torch.manual_seed(2)
    x = torch.rand(2, 3, 36, 44) * 2 - 1
    for out_channels in (1, 3):
        g = trained_like(out_channels, seed=3, base=8, n_blocks=2, residual_padding=residual,
                         resample_padding=resample)
        g64, fast = float64_twin(g), DiamondInference(g)
        for code in all_subsets(3):
            c = availability_tensor(code, 2)
            with torch.no_grad():
                y, ref = fast(x, c), g64(x.double(), c)
            assert y.shape == (2, out_channels, 36, 44)
            assert float((y.double() - ref).abs().max()) < 1e-5, code


def test_each_option_changes_the_function():
    torch.manual_seed(4)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    c = availability_tensor((1, 0, 1))
    ref = trained_like(1, seed=5, base=8, n_blocks=2)
    outs = {}
    for residual, resample in COMBOS:
        g = trained_like(1, seed=5, base=8, n_blocks=2, residual_padding=residual, resample_padding=resample)
        g.load_state_dict(ref.state_dict())
        with torch.no_grad():
            outs[residual, resample] = float64_twin(g)(x.double(), c)
    for a, b in itertools.combinations(COMBOS, 2):
        assert float((outs[a] - outs[b]).abs().max()) > 1e-2, (a, b)


def test_packages_record_the_options_and_old_ones_load_with_the_legacy_padding(tmp_path):
    from neuroshift.synthesis.inference import load_package, save_package
    arch = {"in_channels": 3, "out_channels": 1, "n_blocks": 1, "code_width": 3, "base": 8}
    g = trained_like(1, base=8, n_blocks=1)
    pkg = save_package(tmp_path / "new", "diamondgan", "dir", ("flair", "t1", "t2"), arch, g, {"trained_on": "test"})
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["architecture"]["residual_padding"] == "zero"
    assert manifest["architecture"]["resample_padding"] == "keras_same"
    loaded = load_package(pkg).net
    assert loaded.options() == g.options()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    c = availability_tensor((0, 1, 1))
    with torch.no_grad():
        assert torch.equal(loaded(x, c), g(x, c))
    with pytest.raises(ValueError, match="residual_padding"):
        save_package(tmp_path / "bad", "diamondgan", "dir", ("flair", "t1", "t2"),
                     {**arch, "residual_padding": "reflect"}, g, {})
    for key in ("residual_padding", "resample_padding"):  # a package written before the options
        del manifest["architecture"][key]
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    old = load_package(pkg).net
    assert (old.residual_padding, old.resample_padding) == ("reflect", "symmetric")
    assert old.domain_encoding == "patterns"  # recorded, so kept
    manifest["architecture"]["resample_padding"] = "valid"
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="resample_padding"):
        load_package(pkg)


def test_training_step_builds_the_released_generators_and_discriminators():
    from neuroshift.synthesis.train_steps import DiamondGANStep
    step = DiamondGANStep(torch.zeros(2, 3, 16, 16), torch.zeros(2, 1, 16, 16), n_blocks=1, base=8, d_base=8)
    for name in ("g1", "g2"):
        assert (step.models[name].residual_padding, step.models[name].resample_padding) == ("zero", "keras_same")
    assert step.models["d1"].padding == step.models["d2"].padding == "keras_same"
