"""RandAcquisitionShiftd: reproducible, identity at the source, numpy/torch/MONAI compatible."""

import numpy as np
import pytest

from neuroshift.errors import InputError, MissingParameterError
from neuroshift.io.params import AcquisitionParams
from neuroshift.physics.relaxation import relaxation_table
from neuroshift.simulate import estimate as est
from neuroshift.simulate.synthetic import synthetic_fractions
from neuroshift.simulate.transforms import RandAcquisitionShiftd

ORDER = ("CSF", "GM", "WM", "lesion")
SRC = AcquisitionParams(TE_ms=112, TI_ms=2500, TR_ms=9000)


@pytest.fixture(scope="module")
def sample():
    fr = synthetic_fractions((24, 32, 28), brain_semi_axes_mm=(10, 14, 12), n_lesions=2, seed=1)
    s = est.tissue_signals("flair", SRC, *est.param_arrays(ORDER, relaxation_table(3.0)))
    img = sum(1000 * s[i] * fr[t] for i, t in enumerate(ORDER)).astype(np.float32)
    img += np.random.default_rng(0).normal(0, 2, img.shape).astype(np.float32)
    labels = (fr["lesion"] > 0.5).astype(np.uint8)
    return {"flair": img[None], "pv": np.stack([fr[t] for t in ORDER]), "label": labels[None]}


def make(**kw):
    args = dict(keys="flair", sequence="flair", source=SRC, fractions_key="pv",
                ranges={"TE": (84, 150), "TI": (2200, 2900)}, seed=5)
    args.update(kw)
    return RandAcquisitionShiftd(**args)


def test_same_seed_same_output_and_labels_untouched(sample):
    a = make(noise=(0, 5), bias=(0, 0.2), slice_mm=(1, 3))(sample)
    b = make(noise=(0, 5), bias=(0, 0.2), slice_mm=(1, 3))(sample)
    np.testing.assert_array_equal(a["flair"], b["flair"])
    assert a["flair"].shape == sample["flair"].shape and a["flair"].dtype == np.float32
    assert a["label"] is sample["label"] and a["pv"] is sample["pv"]
    assert not np.allclose(a["flair"], sample["flair"])
    c = make().set_random_state(6)(sample)
    assert not np.allclose(c["flair"], a["flair"])


def test_successive_calls_differ_but_replay_after_reseed(sample):
    t = make()
    first, second = t(sample)["flair"], t(sample)["flair"]
    p = t.last_parameters
    assert p["applied"] and 84 <= p["target"]["TE"] <= 150 and 2200 <= p["target"]["TI"] <= 2900
    assert not np.array_equal(first, second)
    t.set_random_state(5)
    np.testing.assert_array_equal(t(sample)["flair"], first)


def test_source_parameters_give_identity(sample):
    t = make(ranges={"TE": (112, 112), "TI": (2500, 2500)})
    np.testing.assert_array_equal(t(sample)["flair"], sample["flair"])
    assert make(prob=0.0)(sample)["flair"] is sample["flair"]


def test_torch_and_separate_tissue_keys(sample):
    torch = pytest.importorskip("torch")
    d = {"img": torch.from_numpy(sample["flair"].copy()),
         **{f"pv_{t}": torch.from_numpy(sample["pv"][i][None].copy()) for i, t in enumerate(ORDER)}}
    t = RandAcquisitionShiftd("img", "flair", "TE=112,TI=2500,TR=9000",
                              tissue_keys={t: f"pv_{t}" for t in ORDER}, ranges={"TE": (140, 150)}, seed=0)
    out = t(d)
    assert isinstance(out["img"], torch.Tensor) and out["img"].shape == d["img"].shape
    ref = make(ranges={"TE": (140, 150)}, seed=0)(sample)["flair"]
    np.testing.assert_allclose(out["img"].numpy(), ref, rtol=1e-6)


def test_monai_compose(sample):
    monai = pytest.importorskip("monai")
    from monai.transforms import Compose, Randomizable

    t = make()
    assert isinstance(t, Randomizable)
    pipe = Compose([t])
    pipe.set_random_state(seed=11)
    a = pipe(dict(sample))["flair"]
    pipe.set_random_state(seed=11)
    b = pipe(dict(sample))["flair"]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    from monai.data import MetaTensor

    mt = MetaTensor(sample["flair"].copy(), meta={"filename_or_obj": "x.nii.gz"})
    out = make()({**sample, "flair": mt})["flair"]
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "x.nii.gz"


def test_2d_slices(sample):
    d = {"flair": sample["flair"][:, 12], "pv": sample["pv"][:, 12]}
    out = make()(d)
    assert out["flair"].shape == d["flair"].shape


def test_refusals(sample):
    with pytest.raises(MissingParameterError):
        RandAcquisitionShiftd("flair", "flair", "TE=112,TR=9000", fractions_key="pv")
    with pytest.raises(InputError):
        RandAcquisitionShiftd("flair", "flair", SRC)
    with pytest.raises(InputError):
        make(ranges={"TE": (150, 84)})
    with pytest.raises(KeyError):
        make(keys="t1")(sample)
    assert make(keys=["t1", "flair"], allow_missing_keys=True)(sample)["flair"].shape == sample["flair"].shape


def test_torchio_like_subject(sample):
    """A TorchIO Subject is a dict subclass whose images carry ``.data`` (C, W, H, D) and ``set_data``."""
    torch = pytest.importorskip("torch")

    class FakeImage(dict):
        def __init__(self, tensor):
            super().__init__(data=tensor)

        @property
        def data(self):
            return self["data"]

        def set_data(self, tensor):
            self["data"] = tensor

    class FakeSubject(dict):
        pass

    subj = FakeSubject(flair=FakeImage(torch.from_numpy(sample["flair"].copy())),
                       pv=FakeImage(torch.from_numpy(sample["pv"].copy())))
    out = make()(subj)
    assert type(out) is FakeSubject and isinstance(out["flair"], FakeImage)
    assert out["flair"] is not subj["flair"]
    np.testing.assert_array_equal(subj["flair"].data.numpy(), sample["flair"])  # input untouched
    np.testing.assert_allclose(out["flair"].data.numpy(), make()(sample)["flair"], rtol=1e-6)
