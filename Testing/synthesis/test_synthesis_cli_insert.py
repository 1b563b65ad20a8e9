"""``neuroshift insert-lesions`` on the written phantom: outputs read back, mask = inserted, nothing outside
the dilated mask changes, deterministic per seed, bad input exits 2 before writing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from neuroshift.cli.main import main
from neuroshift.io.files import read_volume
from neuroshift.phantom import make_phantom


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("phantom")
    make_phantom(d, seed=0, quantitative=False)
    return d


def _run(phantom_dir, out, seed=1, extra=()):
    return main(["insert-lesions", str(out), "--image", f"{phantom_dir / 'T1w.nii.gz'}:mprage",
                 "--image", f"{phantom_dir / 'FLAIR.nii.gz'}:flair", "--pv", str(phantom_dir),
                 "--brain-mask", str(phantom_dir / "brain_mask.nii.gz"), "--count", "2", "--diameter", "8,12",
                 "--seed", str(seed), *extra])


def test_insert_lesions_cli(phantom_dir, tmp_path):
    out = tmp_path / "a"
    assert _run(phantom_dir, out) == 0
    mask = read_volume(out / "lesion_mask.nii.gz").data
    frac = read_volume(out / "pv_lesion_inserted.nii.gz").data
    assert np.array_equal(mask, (frac >= 0.5).astype(mask.dtype)) and mask.sum() > 20
    outside = ~ndi.binary_dilation(mask > 0, iterations=2)
    for name in ("T1w", "FLAIR"):
        before = read_volume(phantom_dir / f"{name}.nii.gz")
        after = read_volume(out / f"{name}_lesions.nii.gz")
        assert after.same_grid(before)
        assert np.array_equal(after.data[outside], before.data[outside])
        assert not np.array_equal(after.data[frac > 0.99], before.data[frac > 0.99])
    summary = json.loads((out / "insert_lesions.json").read_text())
    assert "SYNTHETIC" in summary["description"] and summary["lesion_voxels"] == int(mask.sum())
    # FLAIR lesions brighter than WM, T1w darker (lesion relaxation values through the sequences)
    wm = read_volume(phantom_dir / "pv_WM.nii.gz").data >= 0.99
    flair = read_volume(out / "FLAIR_lesions.nii.gz").data
    t1w = read_volume(out / "T1w_lesions.nii.gz").data
    core = frac >= 0.999
    assert flair[core].mean() > 1.3 * flair[wm & (frac == 0)].mean()
    assert t1w[core].mean() < 0.8 * t1w[wm & (frac == 0)].mean()
    # deterministic per seed
    assert _run(phantom_dir, tmp_path / "b") == 0
    assert np.array_equal(read_volume(tmp_path / "b" / "lesion_mask.nii.gz").data, mask)
    assert _run(phantom_dir, tmp_path / "c", seed=2) == 0
    assert not np.array_equal(read_volume(tmp_path / "c" / "lesion_mask.nii.gz").data, mask)


def test_insert_lesions_bad_input_exit_2(phantom_dir, tmp_path, capsys):
    out = tmp_path / "bad"
    rc = main(["insert-lesions", str(out), "--image", f"{phantom_dir / 'T1w.nii.gz'}:nosuchseq",
               "--pv", str(phantom_dir)])
    assert rc == 2 and "PATH:SEQUENCE" in capsys.readouterr().err and not out.exists()
    rc = main(["insert-lesions", str(out), "--image", f"{phantom_dir / 'T1w.nii.gz'}:mprage",
               "--pv", str(tmp_path)])
    assert rc == 2 and "pv_CSF" in capsys.readouterr().err and not out.exists()
