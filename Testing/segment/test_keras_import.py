"""Keras .h5 import (h5py only): outputs match Keras to 1e-4 on fixtures saved by real Keras.

The fixtures are made by ``dev/make_keras_fixture.py`` (Keras 3 files; Keras 2 files when tf-keras was
available) and hold the Keras output for a fixed input of a size not divisible by 16.
"""

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from neuroshift.errors import InputError, IntegrityError, UnreadableFileError
from neuroshift.segment.keras_import import (group_by_view, import_keras, infer_unet_config, load_keras_unet,
                                             read_keras_convs)
from neuroshift.segment.package import load_package

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras"
H5_FILES = sorted(FIXTURES.glob("*.h5"))


def _expected(h5: Path):
    stem = h5.name.split("_weights")[0].removesuffix(".h5")
    data = np.load(FIXTURES / f"{stem}.npz")
    return data["x"], data["y"]


def _run(net, x_nhwc):
    with torch.inference_mode():
        y = net(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2))
    return y.permute(0, 2, 3, 1).numpy()


def test_fixtures_are_present():
    names = {p.name for p in H5_FILES}
    assert {"claustrum_w8_keras3.h5", "claustrum_w8_keras3_weights.weights.h5", "wmh_w16_keras3.h5"} <= names


@pytest.mark.parametrize("h5", H5_FILES, ids=[p.name for p in H5_FILES])
def test_outputs_match_keras(h5):
    x, y_keras = _expected(h5)
    net = load_keras_unet(h5)
    y = _run(net, x)
    assert y.shape == y_keras.shape
    np.testing.assert_allclose(y, y_keras, atol=1e-4, rtol=0)


def test_inferred_configs():
    cfg = infer_unet_config(read_keras_convs(FIXTURES / "claustrum_w8_keras3.h5"))
    assert cfg == {"in_channels": 1, "encoder": [4, 8, 12, 16, 32], "decoder": [16, 12, 8, 4], "first_kernel": 3,
                   "kernel": 3, "bottleneck_kernel": 4, "out_channels": 1}
    cfg = infer_unet_config(read_keras_convs(FIXTURES / "wmh_w16_keras3.h5"))
    assert cfg["in_channels"] == 2 and cfg["first_kernel"] == 5 and cfg["bottleneck_kernel"] == 4


def test_released_architecture_round_trip_through_keras2_layout(tmp_path):
    """Full-size claustrum weights written in the Keras 2 weights-only layout (``kernel:0``) import exactly."""
    from neuroshift.segment.unet import claustrum_unet, count_parameters

    torch.manual_seed(0)
    ref = claustrum_unet().eval()
    path = tmp_path / "axial_0.h5"
    names = [f"conv2d_{i + 1}" for i in range(19)]
    with h5py.File(path, "w") as fh:
        fh.attrs["layer_names"] = np.array([b"input_1"] + [n.encode() for n in names])
        fh.attrs["backend"], fh.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        fh.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
        for name, conv in zip(names, ref.conv_layers()):
            g = fh.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()])
            g.create_dataset(f"{name}/kernel:0", data=conv.weight.detach().numpy().transpose(2, 3, 1, 0))
            g.create_dataset(f"{name}/bias:0", data=conv.bias.detach().numpy())
    net = load_keras_unet(path)
    assert count_parameters(net) == 2_494_529 and net.config() == ref.config()
    x = torch.randn(1, 1, 49, 67)
    with torch.inference_mode():
        assert torch.equal(net(x), ref(x))
    with pytest.raises(IntegrityError):
        load_keras_unet(path, {"preset": "wmh", "in_channels": 1})


def test_import_to_package_and_load(tmp_path):
    src = FIXTURES / "claustrum_w8_keras3.h5"
    files = []
    for view in ("coronal", "axial"):
        for i in range(3):
            dst = tmp_path / f"{view}_{i}.h5"
            dst.write_bytes(src.read_bytes())
            files.append(dst)
    out = import_keras(files, tmp_path / "pkg", task="claustrum")
    pkg = load_package(out)
    m = pkg.manifest
    assert m["task"] == "claustrum" and m["views"] == ["axial", "coronal"] and m["models_per_view"] == 3
    assert m["threshold"] == pytest.approx(0.40) and m["slab_fraction"] == pytest.approx(0.20)
    assert m["preprocessing"]["crop_hw"] == [180, 180] and m["input_channels"] == ["T1w"]
    assert m["training"]["keras_files"]["coronal"][0]["name"] == "coronal_0.h5"
    x, y_keras = _expected(src)
    np.testing.assert_allclose(_run(pkg.models["coronal"][2], x), y_keras, atol=1e-4, rtol=0)


def test_wmh_import_names_channels(tmp_path):
    out = import_keras([FIXTURES / "wmh_w16_keras3.h5"], tmp_path / "wmh", task="wmh")
    assert load_package(out).input_channels == ["FLAIR", "T1"]
    with pytest.raises(InputError, match="channel"):
        import_keras([FIXTURES / "wmh_w16_keras3.h5"], tmp_path / "bad", task="wmh", input_channels=["FLAIR"])
    assert not (tmp_path / "bad").exists()


def test_imported_packages_follow_the_authors_releases(tmp_path):
    """Settings of the released inference scripts, each with its source (segmentation.md; issue 15)."""
    wmh = load_package(import_keras([FIXTURES / "wmh_w16_keras3.h5"], tmp_path / "wmh", task="wmh")).manifest
    pre = wmh["preprocessing"]
    assert pre["orientation"] == "LPS" and pre["spacing_mm"] is None and pre["crop_hw"] == [200, 200]
    assert pre["brain_mask"] == {"mode": "absolute", "thresholds": {"FLAIR": 30}, "channel": "FLAIR",
                                 "largest_component": False, "fill_holes": True}
    assert (wmh["threshold"], wmh["slab_fraction"], wmh["slab_fill"]) == (0.45, 0.125, "zero")
    assert "test_tf2.py" in wmh["settings_source"]["release"]
    files = [FIXTURES / "claustrum_w8_keras3.h5"] * 2
    cl = load_package(import_keras(files, tmp_path / "cl", task="claustrum")).manifest
    assert cl["preprocessing"]["orientation"] == "stored" and cl["preprocessing"]["pad_value"] == "min"
    assert (cl["threshold"], cl["slab_fraction"], cl["slab_fill"]) == (0.40, 0.20, "view-min")
    assert "test_two_views.py" in cl["settings_source"]["release"]
    las = load_package(import_keras(files, tmp_path / "las", task="claustrum", orientation="las")).manifest
    assert las["preprocessing"]["orientation"] == "LAS" and "set at import" in las["settings_source"]["orientation"]
    with pytest.raises(InputError, match="orientation code"):
        import_keras(files, tmp_path / "bad", task="claustrum", orientation="XYZ")
    assert not (tmp_path / "bad").exists()


def test_group_by_view():
    g = group_by_view(["coronal_1.h5", "axial_0.h5", "coronal_0.h5", "axial_1.h5"], ["axial", "coronal"])
    assert [p.name for p in g["coronal"]] == ["coronal_0.h5", "coronal_1.h5"]
    g = group_by_view(["0.h5", "1.h5", "2.h5", "3.h5"], ["axial", "coronal"])
    assert [p.name for p in g["coronal"]] == ["2.h5", "3.h5"]
    with pytest.raises(InputError):
        group_by_view(["0.h5", "1.h5", "2.h5"], ["axial", "coronal"])


def test_not_a_keras_file(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(UnreadableFileError):
        read_keras_convs(bad)
    with h5py.File(tmp_path / "y.h5", "w") as fh:
        fh.create_dataset("a", data=np.zeros(3))
    with pytest.raises(UnreadableFileError):
        read_keras_convs(tmp_path / "y.h5")


def test_models_cli_import_list_verify(tmp_path, monkeypatch, capsys):
    from neuroshift.cli.main import main

    monkeypatch.setenv("NEUROSHIFT_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    files = []
    for i in range(2):
        for view in ("axial", "coronal"):
            dst = tmp_path / f"{view}_{i}.h5"
            dst.write_bytes((FIXTURES / "claustrum_w8_keras2.h5").read_bytes())
            files.append(str(dst))
    assert main(["models", "import-keras", *files, "--task", "claustrum", "--out",
                 str(tmp_path / "models" / "cl")]) == 0
    assert main(["models", "import-keras", *files, "--task", "claustrum", "--out",
                 str(tmp_path / "models" / "cl")]) == 2  # exists, no --force
    assert main(["models", "list"]) == 0
    assert "cl " in capsys.readouterr().out
    assert main(["models", "verify", "cl"]) == 0
    assert "SHA-256 verified" in capsys.readouterr().out
    with open(tmp_path / "models" / "cl" / "coronal_1.safetensors", "ab") as fh:
        fh.write(b"\0")
    assert main(["models", "verify", "cl"]) == 2
    assert "coronal_1.safetensors" in capsys.readouterr().err
    assert main(["models", "import-keras", str(FIXTURES / "wmh_w16_keras3.h5"), "--task", "wmh",
                 "--channels", "FLAIR"]) == 2  # 2-channel network, 1 name


def test_keras1_names_are_read_by_rank(tmp_path):
    """Keras 1 (TensorFlow ordering) names weights <layer>_W / <layer>_b; the rank tells kernel from bias."""
    src = read_keras_convs(FIXTURES / "claustrum_w8_keras2.h5")
    path = tmp_path / "k1.h5"
    with h5py.File(path, "w") as fh:
        names = [f"convolution2d_{i + 1}" for i in range(len(src))]
        fh.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name, conv in zip(names, src):
            g = fh.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}_W".encode(), f"{name}_b".encode()])
            g.create_dataset(f"{name}_W", data=conv.kernel)
            g.create_dataset(f"{name}_b", data=conv.bias)
    x, y_keras = _expected(FIXTURES / "claustrum_w8_keras2.h5")
    np.testing.assert_allclose(_run(load_keras_unet(path), x), y_keras, atol=1e-4, rtol=0)
