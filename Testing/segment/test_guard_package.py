"""Guards from the mutation audit (issue 13, round 2): the manifest checks of model packages.

Hand-written manifests (no weights needed: :func:`validate_manifest` checks keys and types only).
"""

from __future__ import annotations

import copy

import pytest

from neuroshift.segment.package import SUPPORTED_ARCHITECTURES, IntegrityError, validate_manifest

DIGEST = "0" * 64


def manifest(**over):
    doc = {"format": "neuroshift-model/1", "task": "wmh", "architecture": {"name": SUPPORTED_ARCHITECTURES[0],
                                                                         "params": {"in_channels": 2}},
           "input_channels": ["FLAIR", "T1"], "views": ["axial"], "models_per_view": 2,
           "files": {"axial_0.safetensors": DIGEST, "axial_1.safetensors": DIGEST}}
    doc.update(over)
    return doc


def test_the_reference_manifest_is_valid():
    validate_manifest(manifest())


@pytest.mark.parametrize("n", [0, -1, True, 1.0])
def test_models_per_view_must_be_a_positive_integer(n):
    with pytest.raises(IntegrityError, match="models_per_view"):
        validate_manifest(manifest(models_per_view=n))


def test_explicit_weight_lists_must_have_models_per_view_files():
    files = {"a.safetensors": DIGEST, "b.safetensors": DIGEST, "c.safetensors": DIGEST}
    with pytest.raises(IntegrityError, match="lists 3 weight files, models_per_view is 2"):
        validate_manifest(manifest(weights={"axial": list(files)}, files=files))
    with pytest.raises(IntegrityError, match="lists 1 weight files"):
        validate_manifest(manifest(weights={"axial": ["a.safetensors"]}, files=files))
    validate_manifest(manifest(weights={"axial": ["a.safetensors", "c.safetensors"]}, files=files))


def test_channel_names_must_match_the_network_inputs_both_ways():
    arch = copy.deepcopy(manifest()["architecture"])
    arch["params"]["in_channels"] = 1
    with pytest.raises(IntegrityError, match="2 input channel name\\(s\\) but the network takes 1"):
        validate_manifest(manifest(architecture=arch))
    arch["params"]["in_channels"] = 3
    with pytest.raises(IntegrityError, match="but the network takes 3"):
        validate_manifest(manifest(architecture=arch))
