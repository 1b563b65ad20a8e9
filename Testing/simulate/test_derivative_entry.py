"""The one-call derivative of the block layout (``block_layout.derive_target``, issue 9): merging the target with the
source, the checks, the increments and the pass in one compiled call give exactly what the general path gives
(``resolve_target`` then ``BlockLayout.derive``), bit for bit, for every sequence; it refuses exactly the targets
``AcquisitionParams.merged(...)._meets`` refuses, and ``simulate`` then raises the general path's error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroshift.errors import InputError
from neuroshift.io.params import AcquisitionParams
from neuroshift.physics.scalar_signal import SEQUENCE_CODES
from neuroshift.simulate import block_kernels as K
from neuroshift.simulate import block_layout as BL
from neuroshift.simulate.tissuewise import fit_tissue_model
from test_derivative_labels import _fractions, _image

pytestmark = pytest.mark.skipif(not BL.available(), reason="numba not installed")

SOURCES = {"se": "TE=80,TR=3000", "ir": "TE=12,TI=800,TR=2500", "flair": "TE=112,TI=2500,TR=9000,field=3",
           "dir": "TE=100,TI1=3000,TI2=500,TR=11000", "gre": "TE=5,TR=20,FA=20",
           "mprage": "TE=3,TI=900,TR=2300,FA=9,TX=7,N=176"}
# per field: values inside and outside each sequence's ranges (0 and 90+ flip angles, TE ≥ TR, TI > TR, TI1 ≤ TI2)
VALUES = {"TE_ms": (0.0, 3, 15.5, 112, 4000.0), "TI_ms": (0.0, 400, 2500.0, 9500), "TR_ms": (10, 2300.0, 9000),
          "FA_deg": (0.0, 9, 45.5, 90, 120.0), "TI1_ms": (450, 3000.0), "TI2_ms": (500.0, 3500),
          "TX_ms": (0.0, 7, 9.5), "N": (0, 128, 176.0), "Trec_ms": (5000.0, 8000)}


def _reference(model, target):
    """The general path: resolve_target (raises) then BlockLayout.derive with the Python-packed parameters."""
    params = model.resolve_target(target)
    return model._blocks.derive(model._image, None, model.sequence, params, model._table(params), model._s0_pad,
                                model.scale_c)


def _targets(seq, n, seed):
    """Random targets: each field known (int or float) or unknown, so that merged targets pass and fail."""
    g = np.random.default_rng(seed)
    for _ in range(n):
        values = {}
        for name, choices in VALUES.items():
            if g.random() < 0.5:
                values[name] = choices[g.integers(len(choices))]
        try:
            yield AcquisitionParams(**values)
        except Exception:  # outside the physical ranges: not a target anyone can build
            continue


@pytest.mark.parametrize("seq", list(SOURCES))
def test_one_call_path_equals_the_general_path(seq):
    fr = _fractions((7, 9, 11), seed=11)  # 693 voxels: a partial last block
    img = _image(fr)
    model = fit_tissue_model(img, fr, seq, SOURCES[seq], estimator="priors")
    assert model._consts is not None and model._consts.size == K.C_SIZE
    code = SEQUENCE_CODES[seq]
    passed = refused = 0
    for target in _targets(seq, 120, seed=len(seq)):
        fast = BL.derive_target(model._image, model._spans, model._blocks.records, model._consts, code, target, None)
        meets = model.source.merged(target)._meets(seq)
        assert (fast is not None) == meets, target
        if fast is None:
            refused += 1
            with pytest.raises(Exception) as general:
                _reference(model, target)
            with pytest.raises(type(general.value), match=_escaped(general.value)):
                model.simulate(target)  # the same error as the general path
            continue
        passed += 1
        ref = _reference(model, target)
        assert fast.shape == img.shape and fast.dtype == np.float32 and fast.ctypes.data % 64 == 0
        assert fast.tobytes() == ref.tobytes(), target
        assert model.simulate(target).tobytes() == ref.tobytes()
        buf = np.full_like(img, np.nan)
        assert model.simulate(target, out=buf) is buf and buf.tobytes() == ref.tobytes()
    assert passed >= 10 and refused >= 10, (passed, refused)
    assert model.simulate(model.source).tobytes() == img.tobytes()  # θ_0: the input bit for bit
    assert model.simulate(AcquisitionParams()).tobytes() == img.tobytes()  # nothing changed: θ_0 too


def _escaped(err) -> str:
    import re

    return re.escape(str(err))


def test_other_field_strength_and_bad_out_take_the_general_path():
    fr = _fractions((6, 8, 10), seed=4)
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SOURCES["flair"], estimator="priors")
    target = AcquisitionParams(TE_ms=140, TI_ms=2300, field_T=1.5)  # other tables (at 1.5 T)
    assert model.simulate(target).tobytes() == _reference(model, target).tobytes()
    same = AcquisitionParams(TE_ms=140, TI_ms=2300, field_T=3.0)
    assert model.simulate(same).tobytes() == _reference(model, same).tobytes()
    assert model.simulate(target).tobytes() != model.simulate(same).tobytes()
    with pytest.raises(InputError, match="C-contiguous float32"):
        model.simulate(same, out=np.zeros(img.shape, np.float64))
    with pytest.raises(InputError, match="C-contiguous float32"):
        model.simulate(same, out=np.zeros((6, 8, 11), np.float32))
    frozen = np.zeros(img.shape, np.float32)
    frozen.flags.writeable = False  # the compiled entry skips numba's type checks: it must not write here
    with pytest.raises(InputError, match="writeable C-contiguous float32"):
        model.simulate(same, out=frozen)
    assert not frozen.any()


def test_entry_constants_layout():
    table = np.arange(12, dtype=np.float64).reshape(3, 4)
    src = AcquisitionParams(TE_ms=90, TR_ms=3000)
    c = BL.entry_constants(table, np.array([1.0, 2.0, 3.0, 4.0]), 0.5, "se", src)
    assert c[K.C_TABLE:K.C_TABLE + 12].tolist() == list(range(12))
    assert c[K.C_S0:K.C_S0 + 4].tolist() == [1.0, 2.0, 3.0, 4.0] and c[K.C_SCALE] == 0.5
    source = c[K.C_SOURCE:K.C_SOURCE + len(K.TARGET_FIELDS)]
    assert source[0] == 90 and source[2] == 3000 and all(math.isnan(v) for i, v in enumerate(source) if i not in (0, 2))
    checks = c[K.C_CHECKS:].reshape(len(K.TARGET_FIELDS), 4)
    assert checks[:, 0].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0]  # SE needs TE and TR only
    assert checks[0, 1:].tolist() == [0.0, 5000.0, 1.0]  # TE in (0, 5000] ms


def test_compiled_entry_with_shared_and_read_only_models(tmp_path):
    """The entry called without numba's type dispatch (block_layout._ENTRY) gives the dispatcher's numbers, also for
    a model handed to stress-test workers (rebuilt from a pickle-free file) and for read-only model arrays."""
    from neuroshift.simulate.block_kernels import derive_target as dispatcher
    from neuroshift.stress.share import load_shared, save_shared

    fr = _fractions((6, 9, 10), seed=8)
    img = _image(fr)
    model = fit_tissue_model(img, fr, "flair", SOURCES["flair"], estimator="priors")
    target = AcquisitionParams(TE_ms=140, TI_ms=2300)
    out = model.simulate(target)
    assert (3, True, "H") in BL._ENTRY and BL._ENTRY[(3, True, "H")] is not dispatcher
    raw = np.empty(img.size + 15, np.float32)
    off = dispatcher(model._image, raw, model._spans, model._blocks.records, model._consts, True, 2, 140.0, 2300.0,
                     *([math.nan] * 7))
    assert raw[off:off + img.size].tobytes() == out.tobytes()
    shared = load_shared(save_shared(tmp_path / "model.npz", model))
    assert shared._consts is not None and shared.simulate(target).tobytes() == out.tobytes()
    for a in (model._image, model._spans, model._blocks.records, model._consts):
        a.flags.writeable = False
    assert model.simulate(target).tobytes() == out.tobytes()
    buf = np.zeros_like(img)
    assert model.simulate(target, out=buf) is buf and buf.tobytes() == out.tobytes()
