"""Data safety of writes and reads: verified atomic writes (disk full / ulimit -f), truncated inputs refused,
stale temporaries of killed runs cleaned up (and nothing else)."""

from __future__ import annotations

import gzip
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from neuroshift.errors import UnreadableFileError, WriteFailedError
from neuroshift.io import atomic
from neuroshift.io.atomic import atomic_path, stale_temporaries, write_text_atomic
from neuroshift.io.files import read_volume, write_volume
from neuroshift.io.volume import Volume

from helpers.safety_helpers import part_files, run_cli

SIM_ARGS = ("--sequence", "flair", "--target", "TE=150,TI=2900")


# --------------------------------------------------------------------------- 1. verified writes
def test_simulate_under_file_size_limit_fails_and_leaves_nothing(phantom, tmp_path):
    """ulimit -f 500 kB: SimpleITK writes a short .nii.gz without raising; the write must be refused."""
    out = tmp_path / "out"
    r = run_cli("simulate", phantom / "FLAIR.nii.gz", out / "sim.nii.gz", *SIM_ARGS,
                "--tissues", phantom / "tissue_labels.nii.gz", fsize_bytes=500_000)
    assert r.returncode == 1, r.stderr
    assert f"writing {out / 'sim.nii.gz'} failed" in r.stderr
    assert "nothing was written" in r.stderr
    assert sorted(os.listdir(out)) == []  # no image, no sidecar, no hidden .part file


def test_simulate_sidecar_over_limit_leaves_nothing(phantom, tmp_path):
    """A limit so small that even the 3.5 kB JSON sidecar cannot be written (EFBIG from Python)."""
    r = run_cli("simulate", phantom / "FLAIR.nii.gz", tmp_path / "sim.nii.gz", *SIM_ARGS,
                "--tissues", phantom / "tissue_labels.nii.gz", fsize_bytes=2_000)
    assert r.returncode == 1, r.stderr
    assert "File too large" in r.stderr and "sim.json" in r.stderr
    assert sorted(os.listdir(tmp_path)) == []


def test_write_volume_short_write_is_detected(tmp_path, monkeypatch):
    """A writer that silently stops half-way (as ITK does on ENOSPC) is caught by the read-back."""
    import SimpleITK as sitk

    real = sitk.WriteImage

    def short_write(img, path, *a, **k):
        real(img, path, *a, **k)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])

    vol = Volume(np.arange(8 * 9 * 10, dtype=np.float32).reshape(8, 9, 10))
    monkeypatch.setattr(sitk, "WriteImage", short_write)
    for name in ("v.nii.gz", "v.nii", "v.nrrd"):
        with pytest.raises(WriteFailedError, match=name):
            write_volume(vol, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_write_volume_changed_voxels_are_detected(tmp_path, monkeypatch):
    """A complete file with other voxel values (an uncompressed file with its tail zeroed) fails the comparison."""
    import SimpleITK as sitk

    real = sitk.WriteImage

    def zero_tail(img, path, *a, **k):
        real(img, path, *a, **k)
        data = bytearray(Path(path).read_bytes())
        data[-40:] = bytes(40)
        Path(path).write_bytes(bytes(data))

    monkeypatch.setattr(sitk, "WriteImage", zero_tail)
    with pytest.raises(WriteFailedError, match="differ"):
        write_volume(Volume(np.full((4, 5, 6), 3.5, np.float32)), tmp_path / "v.nii")
    assert os.listdir(tmp_path) == []


def test_verified_write_round_trip_and_atomic_text(tmp_path):
    vol = Volume(np.linspace(0, 1, 4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6), spacing=(0.5, 1, 2))
    write_volume(vol, tmp_path / "v.nii.gz")
    back = read_volume(tmp_path / "v.nii.gz")
    assert np.array_equal(back.data, vol.data) and back.same_grid(vol, atol_mm=1e-6)
    write_text_atomic(tmp_path / "t.json", "ä{}\n")
    assert (tmp_path / "t.json").read_bytes() == "ä{}\n".encode("utf-8")
    assert part_files(tmp_path) == []


def test_gz_output_with_bad_trailer_is_refused(tmp_path):
    """Any .gz written through atomic_path gets the full gzip CRC/length check, whatever the writer."""
    payload = gzip.compress(b"x" * 10000)
    with pytest.raises(WriteFailedError, match="gzip"):
        with atomic_path(tmp_path / "a.csv.gz") as tmp:
            tmp.write_bytes(payload[:-4])  # ISIZE missing
    with pytest.raises(WriteFailedError, match="gzip"):
        with atomic_path(tmp_path / "a.csv.gz") as tmp:
            tmp.write_bytes(payload[:-8] + b"\0\0\0\0" + payload[-4:])  # CRC wrong
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- 3. truncated inputs
def _truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_truncated_nii_gz_refused_by_reader(phantom, tmp_path):
    cut = _truncate(phantom / "FLAIR.nii.gz", tmp_path / "cut.nii.gz")
    with pytest.raises(UnreadableFileError, match="gzip stream is truncated") as e:
        read_volume(cut)
    assert str(cut) in str(e.value)


def test_truncated_uncompressed_nii_refused_by_reader(phantom, tmp_path):
    raw = gzip.decompress((phantom / "FLAIR.nii.gz").read_bytes())
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UnreadableFileError, match=f"announces {len(raw)} bytes"):
        read_volume(tmp_path / "cut.nii")
    (tmp_path / "full.nii").write_bytes(raw)
    assert read_volume(tmp_path / "full.nii").data.shape == read_volume(phantom / "FLAIR.nii.gz").data.shape


@pytest.mark.parametrize("command", ["simulate", "evaluate"])
def test_truncated_input_exit_2_naming_file(phantom, tmp_path, command):
    cut = _truncate(phantom / "FLAIR.nii.gz", tmp_path / "cut.nii.gz")
    shutil.copy(phantom / "FLAIR.json", tmp_path / "cut.json")
    if command == "simulate":
        r = run_cli("simulate", cut, tmp_path / "o.nii.gz", *SIM_ARGS, "--tissues", phantom / "tissue_labels.nii.gz")
    else:
        cut = _truncate(phantom / "lesion_mask.nii.gz", tmp_path / "cut_mask.nii.gz", 0.6)
        r = run_cli("evaluate", cut, phantom / "lesion_mask.nii.gz")
    assert r.returncode == 2, r.stderr
    assert str(cut) in r.stderr and "truncated" in r.stderr
    assert not (tmp_path / "o.nii.gz").exists()


# --------------------------------------------------------------------------- 4. stale temporaries
def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _dead_pid() -> int:
    pid = 4_000_000  # above the kernel's pid_max (4194304 at most): never a live process here
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid += 1


def test_stale_temporaries_of_killed_runs_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "sim.nii.gz"
    host = atomic._host_tag()
    dead = _dead_pid()
    stale_dead = tmp_path / f".sim.ns-{host}-{dead}-abcd1234.part.nii.gz"          # killed run, 20 min old
    fresh_dead = tmp_path / f".sim.ns-{host}-{dead}-abcd5678.part.nii.gz"          # 1 min old: maybe NFS clock skew
    live = tmp_path / f".sim.ns-{host}-{os.getpid()}-abcd0000.part.nii.gz"         # a live writer (this process)
    other_host = tmp_path / f".sim.ns-ffffff-{dead}-abcd9999.part.nii.gz"           # another machine's writer
    legacy_old = tmp_path / ".sim.k2j4h5g6.part.nii.gz"                             # old name, 2 days old
    legacy_new = tmp_path / ".sim.q2w3e4r5.part.nii.gz"                             # old name, fresh
    other_target = tmp_path / f".sim2.ns-{host}-{dead}-abcd1234.part.nii.gz"       # another output's temporary
    user_file = tmp_path / ".sim.notes.part.nii.gz"                                # not our pattern
    stale_dir = tmp_path / f".sim.nii.gz.ns-{host}-{dead}-abcd1234.part"           # killed atomic_dir
    for p in (stale_dead, fresh_dead, live, other_host, legacy_old, legacy_new, other_target, user_file):
        p.write_bytes(b"partial")
    stale_dir.mkdir()
    (stale_dir / "slice0001.dcm").write_bytes(b"x")
    for p in (stale_dead, other_host, other_target, user_file, stale_dir, live):
        _age(p, 20 * 60)
    _age(fresh_dead, 60)
    _age(legacy_old, 2 * 24 * 3600)
    assert stale_temporaries(target) == sorted([stale_dead, legacy_old, stale_dir])

    write_volume(Volume(np.ones((3, 4, 5), np.float32)), target)
    assert target.is_file()
    left = set(os.listdir(tmp_path))
    assert left == {p.name for p in (target, fresh_dead, live, other_host, legacy_new, other_target, user_file)}


def test_killed_write_leaves_part_file_that_next_run_removes(tmp_path):
    """SIGKILL during the write leaves a .part; it is removed by the next write of the same target once stale."""
    import subprocess
    import sys
    import textwrap

    target = tmp_path / "out.json"
    code = textwrap.dedent(f"""
        import os, time
        from neuroshift.io.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("partial")
            print(tmp, flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    part = Path(proc.stdout.readline().strip())
    proc.kill()
    proc.wait()
    assert part.is_file() and not target.exists()
    write_text_atomic(target, "{}\n")
    assert part.is_file()  # the writer is gone but the file is fresh: kept (another host may share the folder)
    _age(part, 11 * 60)
    write_text_atomic(target, "{}\n")
    assert not part.exists() and sorted(os.listdir(tmp_path)) == ["out.json"]


def test_expect_bytes_read_back(tmp_path):
    """Writers that go through atomic_path with expect_bytes (simulate's sidecar, CSV exports) are compared."""
    from neuroshift.io.atomic import expect_bytes

    with pytest.raises(WriteFailedError, match="differs from what was written"):
        with atomic_path(tmp_path / "s.json", verify=expect_bytes('{"a": 1}\n')) as tmp:
            tmp.write_text('{"a": 2}\n')
    with pytest.raises(WriteFailedError, match="wrote 3 of 9 bytes"):
        with atomic_path(tmp_path / "s.json", verify=expect_bytes('{"a": 1}\n')) as tmp:
            tmp.write_text('{"a')
    assert os.listdir(tmp_path) == []
    with atomic_path(tmp_path / "s.json", verify=expect_bytes('{"a": 1}\n')) as tmp:
        tmp.write_text('{"a": 1}\n')
    assert (tmp_path / "s.json").read_text() == '{"a": 1}\n'


def test_dicom_series_with_a_cut_slice_is_refused(tmp_path, monkeypatch):
    """A DICOM output folder is read back (grid and voxels within one quantisation step) before it is renamed."""
    from neuroshift.io import files

    real = files._write_dicom_series

    def cut_last_slice(vol, folder):
        real(vol, folder)
        last = sorted(Path(folder).iterdir())[-1]
        last.write_bytes(last.read_bytes()[:-60])  # the slice is lost: the series is one slice short

    def zero_pixels(vol, folder):
        real(vol, folder)
        last = sorted(Path(folder).iterdir())[-1]
        data = bytearray(last.read_bytes())
        data[-60:] = bytes(60)  # the tail of the pixel data is zeros, as after a short write
        last.write_bytes(bytes(data))

    vol = Volume(np.linspace(0, 500, 4 * 6 * 7, dtype=np.float32).reshape(4, 6, 7) + 1.0)
    write_volume(vol, tmp_path / "ok_series")  # the untouched writer passes its own check
    back = read_volume(tmp_path / "ok_series")
    assert np.max(np.abs(back.data - vol.data)) <= 500 / 32000
    monkeypatch.setattr(files, "_write_dicom_series", cut_last_slice)
    with pytest.raises(WriteFailedError, match=r"reads back with shape \(3, 6, 7\)"):
        write_volume(vol, tmp_path / "series")
    monkeypatch.setattr(files, "_write_dicom_series", zero_pixels)
    with pytest.raises(WriteFailedError, match="voxels read back differ"):
        write_volume(vol, tmp_path / "series")
    assert sorted(os.listdir(tmp_path)) == ["ok_series"]
