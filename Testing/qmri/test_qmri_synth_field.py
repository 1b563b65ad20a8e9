"""qmri synth: the sidecar's MagneticFieldStrength comes from --field, --target or the maps' qmri.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuroshift.cli.main import main
from neuroshift.io.volume import Volume
from neuroshift.qmri import QMRIMaps, write_maps


@pytest.fixture
def mapdir(tmp_path):
    ref = Volume(np.zeros((4, 5, 6), np.float32), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0))
    shape = ref.data.shape
    maps = QMRIMaps.from_arrays(ref, PD=np.full(shape, 0.8), T1=np.full(shape, 1000.0), T2=np.full(shape, 80.0),
                                T2star=np.full(shape, 50.0))
    write_maps(maps, tmp_path / "maps")
    return tmp_path / "maps"


def _synth(mapdir, out, *extra):
    return main(["qmri", "synth", str(mapdir), str(out), "--sequence", "se", "--target", "TE=20,TR=2000", *extra])


def test_field_option_target_and_map_folder(tmp_path, mapdir, capsys):
    assert _synth(mapdir, tmp_path / "a.nii.gz", "--field", "1.5") == 0
    assert json.loads((tmp_path / "a.json").read_text())["MagneticFieldStrength"] == 1.5
    assert main(["qmri", "synth", str(mapdir), str(tmp_path / "b.nii.gz"), "--sequence", "se",
                 "--target", "TE=20,TR=2000,field=7"]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["MagneticFieldStrength"] == 7.0
    # unknown: written without it, and the user is told
    assert _synth(mapdir, tmp_path / "c.nii.gz") == 0
    assert "MagneticFieldStrength" not in json.loads((tmp_path / "c.json").read_text())
    assert "field strength unknown" in capsys.readouterr().err
    # recorded by the map folder (as qmri fit and sample-data write it)
    (mapdir / "qmri.json").write_text(json.dumps({"field_T": 3.0}))
    assert _synth(mapdir, tmp_path / "d.nii.gz") == 0
    assert json.loads((tmp_path / "d.json").read_text())["MagneticFieldStrength"] == 3.0
    (mapdir / "qmri.json").write_text(json.dumps({"inputs": [{"params_ms_deg": {"field_T": 1.5}}] * 2}))
    assert _synth(mapdir, tmp_path / "e.nii.gz") == 0
    assert json.loads((tmp_path / "e.json").read_text())["MagneticFieldStrength"] == 1.5


def test_bad_field_is_refused_without_output(tmp_path, mapdir, capsys):
    assert _synth(mapdir, tmp_path / "f.nii.gz", "--field", "-3") == 2
    assert "field" in capsys.readouterr().err
    assert not (tmp_path / "f.nii.gz").exists() and not (tmp_path / "f.json").exists()
