"""Model packages: safetensors + manifest, SHA-256 verification, no pickle, path-escape protection."""

import json

import pytest
import torch

from neuroshift.errors import IntegrityError, PathEscapeError
from neuroshift.segment.package import (UnknownArchitectureError, load_package, load_state_dicts, read_manifest,
                                        safe_member, save_package, verify_package)
from neuroshift.segment.registry import ModelNotFoundError, find_model, list_models
from neuroshift.segment.unet import demo_unet


def _manifest():
    return {"task": "wmh", "input_channels": ["FLAIR", "T1"], "threshold": 0.45, "slab_fraction": 0.1,
            "preprocessing": {"spacing_mm": None, "crop_hw": [200, 200], "zscore": True, "brain_mask": "threshold"},
            "training": {"data": "unit test"}, "demo": True, "description": "test package"}


@pytest.fixture
def package(tmp_path):
    torch.manual_seed(0)
    nets = {"axial": [demo_unet(2) for _ in range(2)], "coronal": [demo_unet(2) for _ in range(2)]}
    path = save_package(tmp_path / "pkg", _manifest(), nets)
    return path, nets


def test_round_trip_gives_identical_outputs(package):
    path, nets = package
    loaded = load_package(path, device="cpu")
    m = loaded.manifest
    assert m["views"] == ["axial", "coronal"] and m["models_per_view"] == 2
    assert m["architecture"]["name"] == "unet2d" and m["architecture"]["params"]["in_channels"] == 2
    assert set(m["files"]) == {"axial_0.safetensors", "axial_1.safetensors", "coronal_0.safetensors",
                               "coronal_1.safetensors"}
    assert loaded.threshold == 0.45 and loaded.input_channels == ["FLAIR", "T1"]
    x = torch.randn(1, 2, 33, 40)
    with torch.inference_mode():
        for view in ("axial", "coronal"):
            for a, b in zip(nets[view], loaded.models[view]):
                assert not b.training
                assert torch.equal(a.eval()(x), b(x))
    assert not list(path.parent.glob(".pkg.*"))  # no temporary folder left behind


def test_tampered_weight_names_the_file(package):
    path, _ = package
    f = path / "coronal_1.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="coronal_1.safetensors"):
        load_package(path)


def test_missing_file_and_unknown_architecture(package):
    path, _ = package
    m = json.loads((path / "manifest.json").read_text())
    m["architecture"]["name"] = "vnet3d"
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(UnknownArchitectureError, match="vnet3d"):
        load_package(path)
    m["architecture"]["name"] = "unet2d"
    (path / "manifest.json").write_text(json.dumps(m))
    (path / "axial_0.safetensors").unlink()
    with pytest.raises(IntegrityError, match="axial_0.safetensors"):
        verify_package(path)


@pytest.mark.parametrize("name", ["../evil.safetensors", "/etc/passwd", "a/../../x", "C:\\x", "..\\x", ""])
def test_path_escape_is_refused(package, name):
    path, _ = package
    m = json.loads((path / "manifest.json").read_text())
    m["files"][name] = "0" * 64
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PathEscapeError):
        verify_package(path)


def test_symlink_escape_is_refused(tmp_path):
    root = tmp_path / "pkg"
    root.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"x")
    (root / "link.safetensors").symlink_to(tmp_path / "outside.bin")
    with pytest.raises(PathEscapeError):
        safe_member(root, "link.safetensors")
    assert safe_member(root, "sub/ok.safetensors") == root / "sub" / "ok.safetensors"


def test_pickle_files_are_never_read(package):
    """A pickle disguised as a weight file (with a matching hash) is rejected by safetensors, not unpickled."""
    import hashlib
    import pickle

    path, _ = package

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    blob = pickle.dumps({"w": Boom()})
    (path / "axial_0.safetensors").write_bytes(blob)
    m = json.loads((path / "manifest.json").read_text())
    m["files"]["axial_0.safetensors"] = hashlib.sha256(blob).hexdigest()
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IntegrityError, match="safetensors"):
        load_state_dicts(path)


def test_wrong_architecture_shapes_refused(tmp_path):
    from neuroshift.errors import InputError
    from neuroshift.segment.unet import wmh_unet

    with pytest.raises(InputError):  # state dicts that do not fit the declared architecture
        save_package(tmp_path / "bad", {**_manifest(), "architecture": {"name": "unet2d",
                                                                          "params": {"preset": "wmh"}}},
                     {"axial": [demo_unet(2).state_dict()]})
    with pytest.raises(InputError):  # networks of different architectures in one package
        save_package(tmp_path / "bad", _manifest(), {"axial": [wmh_unet(2), demo_unet(2)]})
    assert not (tmp_path / "bad").exists()
    # the recorded architecture is the network's full config, even if the manifest named a preset
    path = save_package(tmp_path / "ok", {**_manifest(), "architecture": {"name": "unet2d",
                                                                           "params": {"preset": "wmh"}}},
                        {"axial": [demo_unet(2)]})
    assert read_manifest(path)["architecture"]["params"]["encoder"] == [8, 16, 24, 32, 64]


def test_registry_finds_named_packages(package, tmp_path, monkeypatch):
    path, _ = package
    monkeypatch.setenv("NEUROSHIFT_MODELS", str(path.parent))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert find_model("pkg") == path
    assert find_model(path) == path and find_model(path / "manifest.json") == path
    names = {m["name"]: m for m in list_models()}
    assert names["pkg"]["source"] == "env" and names["pkg"]["task"] == "wmh" and names["pkg"]["demo"] is True
    with pytest.raises(ModelNotFoundError, match="nope"):
        find_model("nope")
    assert read_manifest(path)["task"] == "wmh"
