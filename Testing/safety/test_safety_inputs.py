"""Wrong answers no longer accepted silently (issue 8): unknown labels, meaningless flip angles,
duplicate parameters, PV maps summing to less than 1, the percent hint only near 100."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from neuroshift.cli.main import main
from neuroshift.errors import ParameterRangeError
from neuroshift.io.files import read_volume, write_volume
from neuroshift.io.params import AcquisitionParams
from neuroshift.io.volume import Volume
from neuroshift.tissues.maps import (FractionError, FractionWarning, fractions_from_labels, fractions_from_pv,
                                     sum_deficit)


# --------------------------------------------------------------------------- unknown label values
def _labels(values_counts: dict[int, int]) -> Volume:
    flat = np.concatenate([np.full(n, v, np.uint8) for v, n in values_counts.items()])
    return Volume(flat.reshape(2, 5, -1))


def test_unknown_labels_with_default_mapping_are_an_error_naming_values_and_counts():
    lab = _labels({0: 30, 1: 10, 2: 20, 3: 20, 5: 7, 9: 3})
    with pytest.raises(FractionError) as e:
        fractions_from_labels(lab)
    msg = str(e.value)
    assert "5 (7 voxels)" in msg and "9 (3 voxels)" in msg
    assert "10 of 60 labelled voxels (16.7%)" in msg


def test_unknown_labels_with_explicit_mapping_warn_with_counts():
    lab = _labels({0: 30, 1: 10, 2: 20, 3: 20, 24: 10})  # e.g. an aseg's CSF label left out on purpose
    with pytest.warns(FractionWarning, match=r"24 \(10 voxels\); 10 of 60 labelled voxels \(16.7%\)"):
        fr = fractions_from_labels(lab, {"CSF": 1, "GM": 2, "WM": 3})
    assert fr["GM"].data.sum() == 20 and fr["CSF"].data.sum() == 10
    with pytest.raises(FractionError, match="24"):
        fractions_from_labels(lab, {"CSF": 1, "GM": 2, "WM": 3}, unknown="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fractions_from_labels(_labels({0: 10, 1: 10, 2: 10, 3: 10, 4: 10}))  # all known: no warning, no error


def test_simulate_with_lesions_labelled_5_exit_2(phantom, tmp_path, capsys):
    lab = read_volume(phantom / "tissue_labels.nii.gz")
    n_lesion = int(np.count_nonzero(lab.data == 4))
    write_volume(lab.with_data(np.where(lab.data == 4, 5, lab.data).astype(np.uint8)), tmp_path / "lab5.nii.gz")
    rc = main(["simulate", str(phantom / "FLAIR.nii.gz"), str(tmp_path / "o.nii.gz"), "--sequence", "flair",
               "--target", "TE=150", "--tissues", str(tmp_path / "lab5.nii.gz")])
    assert rc == 2
    assert f"5 ({n_lesion} voxels)" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()


# --------------------------------------------------------------------------- flip angle and other ranges
@pytest.mark.parametrize("seq,params", [
    ("mprage", dict(TE_ms=3, TI_ms=900, TR_ms=2300, FA_deg=0, TX_ms=7, N=176)),
    ("mprage", dict(TE_ms=3, TI_ms=900, TR_ms=2300, FA_deg=120, TX_ms=7, N=176)),
    ("gre", dict(TE_ms=5, TR_ms=20, FA_deg=0)),
    ("gre", dict(TE_ms=5, TR_ms=20, FA_deg=95)),
])
def test_flip_angle_outside_the_sequence_range_refused(seq, params):
    with pytest.raises(ParameterRangeError, match=r"FA = \d+ .*meaningful range \(0, 90\] degrees"):
        AcquisitionParams(**params).require(seq)
    ok = dict(params, FA_deg=9)
    assert AcquisitionParams(**ok).require(seq).FA_deg == 9  # the same parameters with FA 9 are accepted


@pytest.mark.parametrize("seq,params,name", [
    ("flair", dict(TE_ms=0, TI_ms=2500, TR_ms=9000), "TE = 0"),
    ("flair", dict(TE_ms=100, TI_ms=0, TR_ms=9000), "TI = 0"),
    ("mprage", dict(TE_ms=3, TI_ms=900, TR_ms=2300, FA_deg=9, TX_ms=0, N=176), "TX = 0"),
    ("se", dict(TE_ms=100, TR_ms=80), "shorter than TR"),
])
def test_other_meaningless_times_refused(seq, params, name):
    with pytest.raises(ParameterRangeError, match=name):
        AcquisitionParams(**params).require(seq)


def test_simulate_mprage_fa0_exit_2(phantom, tmp_path, capsys):
    rc = main(["simulate", str(phantom / "T1w.nii.gz"), str(tmp_path / "o.nii.gz"), "--sequence", "mprage",
               "--target", "FA=0", "--tissues", str(phantom / "tissue_labels.nii.gz")])
    assert rc == 2
    assert "FA = 0" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()


# --------------------------------------------------------------------------- duplicate keys
@pytest.mark.parametrize("text", ["TE=100,TE=120", "TE=100,te=100", "TE=100,TE_ms=120", "FA=9,FLIP=9"])
def test_duplicate_parameters_refused(text):
    with pytest.raises(ParameterRangeError, match="given twice"):
        AcquisitionParams.parse(text)


@pytest.mark.parametrize("option", ["--target", "--source"])
def test_simulate_duplicate_target_or_source_exit_2(phantom, tmp_path, capsys, option):
    extra = ["--target", "TE=150"] if option == "--source" else []
    with pytest.raises(SystemExit) as e:
        main(["simulate", str(phantom / "FLAIR.nii.gz"), str(tmp_path / "o.nii.gz"), "--sequence", "flair",
              option, "TE=100,TE=120", *extra, "--tissues", str(phantom / "tissue_labels.nii.gz")])
    assert e.value.code == 2
    assert "TE is given twice" in capsys.readouterr().err


def test_duplicate_pv_tissue_refused(phantom, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["simulate", str(phantom / "FLAIR.nii.gz"), str(tmp_path / "o.nii.gz"), "--sequence", "flair",
              "--target", "TE=150", "--pv", f"GM={phantom / 'pv_GM.nii.gz'},GM={phantom / 'pv_WM.nii.gz'}"])
    assert e.value.code == 2
    assert "GM is given twice" in capsys.readouterr().err


# --------------------------------------------------------------------------- PV sums and the percent hint
def test_pv_sum_deficit_counts_brain_voxels():
    """A 10^3 brain (sum 1) with a 2^3 hole where CSF is missing: 8 of the 8^3 eroded brain voxels."""
    gm = np.zeros((12, 12, 12), np.float32)
    gm[1:11, 1:11, 1:11] = 1.0
    gm[5:7, 5:7, 5:7] = 0.0  # the ventricles: the CSF map was forgotten
    n, n_brain, median = sum_deficit({"GM": Volume(gm)})
    assert (n, n_brain, median) == (8, 512, 0.0)
    half = gm * 0.5  # every fraction halved: the whole brain sums to 0.5
    n, n_brain, median = sum_deficit({"GM": Volume(half)})
    assert (n, median) == (n_brain, 0.5) and n_brain == 512


def test_phantom_pv_maps_sum_to_one_and_missing_csf_warns(phantom, tmp_path, capsys):
    pv = {t: phantom / f"pv_{t}.nii.gz" for t in ("CSF", "GM", "WM", "lesion")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fractions_from_pv(pv)  # the phantom's maps sum to 1 in the brain: no warning
    no_csf = {t: p for t, p in pv.items() if t != "CSF"}
    n, n_brain, _ = sum_deficit(_quiet_pv(no_csf))
    assert 0.05 < n / n_brain < 0.5  # the CSF share of the phantom's brain
    share = 100.0 * n / n_brain
    with pytest.warns(FractionWarning, match=rf"in {share:.1f}% of the voxels inside the brain \({n} of {n_brain}"):
        fractions_from_pv(no_csf)
    rc = main(["simulate", str(phantom / "FLAIR.nii.gz"), str(tmp_path / "o.nii.gz"), "--sequence", "flair",
               "--target", "TE=150", "--pv", ",".join(f"{t}={p}" for t, p in no_csf.items())])
    assert rc == 0
    err = capsys.readouterr().err
    assert f"neuroshift: warning: the tissue fractions sum to less than 0.98 in {share:.1f}%" in err


def _quiet_pv(paths):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FractionWarning)
        return fractions_from_pv(paths)


@pytest.mark.parametrize("peak,hint", [(100.0, "percent"), (95.0, "percent"), (255.0, "8-bit"),
                                       (1.5, None), (40.0, None), (150.0, None)])
def test_percent_hint_only_near_100(tmp_path, peak, hint):
    data = np.linspace(0, peak, 27, dtype=np.float32).reshape(3, 3, 3)
    write_volume(Volume(data), tmp_path / "gm.nii.gz")
    with pytest.raises(FractionError, match="must lie in") as e:
        fractions_from_pv({"GM": tmp_path / "gm.nii.gz"})
    msg = str(e.value)
    assert ("looks like percent" in msg) == (hint == "percent")
    assert ("looks like 8-bit" in msg) == (hint == "8-bit")
