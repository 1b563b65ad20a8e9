"""Write files so that a crash, a full disk or an error never leaves a partial output behind.

Every write goes to a hidden temporary beside the target
(``.NAME.ns-HOST-PID-<8 random characters>.part.SUFFIX``), is flushed to disk (``fsync``),
verified, and only then renamed onto the target (the folder is fsynced after
the rename). Verification always includes a complete gzip check (CRC-32 and
length trailer) for ``.gz`` targets; callers add a format-specific read-back
(``verify=``), e.g. :func:`neuroshift.io.files.write_volume` re-reads the image
and compares every voxel. A write that fails (ENOSPC, EFBIG under ``ulimit -f``)
or does not verify raises :class:`~neuroshift.errors.WriteFailedError` naming
the target, and the temporary is removed.

A run that is killed (SIGKILL, power loss) cannot remove its temporary. The
next atomic write of the same target removes temporaries of that target that
are provably stale: the process id and host in the name are this host's and
that process is gone (and the file is untouched for :data:`STALE_DEAD_PID_S`),
or the file is older than :data:`STALE_ANY_S`. Nothing else is ever deleted.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable, Iterator

from ..errors import OutputPathError, WriteFailedError

#: A temporary whose writer (same host) is gone is removed once untouched for this long (s).
STALE_DEAD_PID_S = 600.0
#: Any temporary of the target (also legacy names without a process id) untouched this long (s) is removed.
STALE_ANY_S = 24 * 3600.0

#: errno values that mean "no space / over the size limit": a failed write, not a bad path.
_SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def split_suffix(path: Path) -> tuple[str, str]:
    """Split ``name.nii.gz`` into ``('name', '.nii.gz')`` (double suffixes kept whole)."""
    name = path.name
    for double in (".nii.gz", ".tar.gz", ".mnc.gz"):
        if name.lower().endswith(double):
            return name[: -len(double)], name[-len(double):]
    stem, dot, ext = name.rpartition(".")
    return (stem, "." + ext) if dot and stem else (name, "")


# --------------------------------------------------------------------------- stale temporaries
def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a real pid: never claim it is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep
    return True


def _temp_patterns(prefix_name: str, tail: str) -> tuple[re.Pattern, re.Pattern]:
    """(current, legacy) name patterns of our temporaries for ``prefix_name`` ending in ``tail``."""
    name = re.escape(prefix_name)
    tail = re.escape(tail)
    current = re.compile(rf"^\.{name}\.ns-(?P<host>[0-9a-f]{{6}})-(?P<pid>\d+)-[a-z0-9_]{{8}}{tail}$")
    legacy = re.compile(rf"^\.{name}\.[a-z0-9_]{{8}}{tail}$")
    return current, legacy


def stale_temporaries(target: str | os.PathLike, *, now: float | None = None) -> list[Path]:
    """Temporaries of ``target`` left by killed runs (see the module docstring for the rule); nothing else."""
    target = Path(target)
    folder = target.parent
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    stem, suffix = split_suffix(target)
    patterns = [_temp_patterns(stem, f".part{suffix}"),       # files of atomic_path
                _temp_patterns(target.name, ".part")]         # folders of atomic_dir
    if target.exists():
        patterns.append(_temp_patterns(target.name, ".old"))  # backups of atomic_dir (only once the target is back)
    host = _host_tag()
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        for current, legacy in patterns:
            m = current.match(entry.name)
            if m is None and not legacy.match(entry.name):
                continue
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                break
            if entry.is_symlink():
                break  # we never create links: not ours
            stale = age > STALE_ANY_S
            if m is not None and m["host"] == host and not _pid_alive(int(m["pid"])):
                stale = stale or age > STALE_DEAD_PID_S
            if stale:
                found.append(folder / entry.name)
            break
    return sorted(found)


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove :func:`stale_temporaries` of ``target``; returns what was removed (errors are ignored)."""
    removed = []
    for p in stale_temporaries(target):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


# --------------------------------------------------------------------------- checks
def check_gzip(path: str | os.PathLike, *, label: str | os.PathLike | None = None) -> int:
    """Read a whole gzip file; raise ``ValueError`` naming it when it is truncated or fails its CRC/length check.

    Returns the number of decompressed bytes.
    """
    p = Path(path)
    name = label if label is not None else p
    n = 0
    try:
        with gzip.open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                n += len(chunk)
    except EOFError:
        raise ValueError(f"{name}: the gzip stream is truncated (the file ends before its end marker)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{name}: the gzip stream is corrupt ({exc})") from None
    return n


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not possible on every platform / file system
        _fsync_path(folder)


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for f in files:
            _fsync_path(Path(root) / f)
        _fsync_dir(Path(root))


def _make_parent(target: Path, *, folder: bool = False) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputPathError(f"cannot write {target}: {target.parent} exists and is not a folder") from None
    except OSError as exc:
        raise OutputPathError(f"cannot write {target}: cannot create its folder ({exc.strerror or exc})") from None
    if not target.parent.is_dir():
        raise OutputPathError(f"cannot write {target}: {target.parent} is not a folder")
    if folder and target.exists() and not target.is_dir():
        raise OutputPathError(f"cannot write the folder {target}: a file of that name exists")
    if not folder and target.is_dir() and not target.is_symlink():
        raise OutputPathError(f"cannot write {target}: it is an existing folder")


def _creation_failed(target: Path, exc: OSError) -> Exception:
    if exc.errno in _SPACE_ERRNOS:
        return WriteFailedError(f"cannot write {target}: {exc.strerror or exc}")
    return OutputPathError(f"cannot write {target}: {exc.strerror or exc} (folder {target.parent})")


def _write_failed(target: Path, exc: BaseException) -> WriteFailedError:
    if isinstance(exc, OSError):
        why = exc.strerror or str(exc)
        hint = " (disk full or file-size limit?)" if exc.errno in _SPACE_ERRNOS else ""
    else:
        why, hint = str(exc), " (disk full or file-size limit?)"
        why = why[len(f"{target}: "):] if why.startswith(f"{target}: ") else why
    return WriteFailedError(f"writing {target} failed: {why}{hint}; nothing was written")


# --------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` (same suffix); rename it onto ``target`` on success.

    After the body the temporary is fsynced and checked: it must exist, ``.gz``
    files must pass a complete gzip CRC/length check, and ``verify(tmp)`` (if
    given) must not raise (``ValueError``/``OSError`` from it become
    :class:`WriteFailedError`). On any exception the temporary is removed and
    ``target`` is left untouched.
    """
    target = Path(target)
    _make_parent(target)
    remove_stale_temporaries(target)
    stem, suffix = split_suffix(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.ns-{_host_tag()}-{os.getpid()}-", suffix=f".part{suffix}",
                                   dir=target.parent)
    except OSError as exc:
        raise _creation_failed(target, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as exc:
            if exc.errno in _SPACE_ERRNOS:
                raise _write_failed(target, exc) from None
            raise
        try:
            if not tmp_path.is_file():
                raise ValueError("the temporary file disappeared")
            _fsync_path(tmp_path)
            if target.name.lower().endswith(".gz"):
                check_gzip(tmp_path, label=target)
            if verify is not None:
                verify(tmp_path)
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get normal permissions
        except (OSError, ValueError) as exc:
            raise _write_failed(target, exc) from None
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            raise _creation_failed(target, exc) from None
        _fsync_dir(target.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, *, verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; it replaces ``target`` only on success.

    Before the swap every file is fsynced and ``verify(tmp_folder)`` (if given) must not raise.
    """
    target = Path(target)
    _make_parent(target, folder=True)
    remove_stale_temporaries(target)
    prefix = f".{target.name}.ns-{_host_tag()}-{os.getpid()}-"
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".part", dir=target.parent))
    except OSError as exc:
        raise _creation_failed(target, exc) from None
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in _SPACE_ERRNOS:
                raise _write_failed(target, exc) from None
            raise
        try:
            _fsync_tree(tmp)
            if verify is not None:
                verify(tmp)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        except (OSError, ValueError) as exc:
            raise _write_failed(target, exc) from None
        try:
            if target.exists():
                backup = Path(tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=target.parent))
                backup.rmdir()
                os.replace(target, backup)
                try:
                    os.replace(tmp, target)
                except OSError:
                    os.replace(backup, target)  # the swap failed: the old folder goes back under its name
                    raise
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except OSError as exc:
            raise _creation_failed(target, exc) from None
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def expect_bytes(data: bytes | str) -> Callable[[Path], None]:
    """A ``verify`` for :func:`atomic_path`: the file must hold exactly ``data`` (``str``: UTF-8)."""
    data = data.encode("utf-8") if isinstance(data, str) else bytes(data)

    def verify(tmp: Path) -> None:
        size = tmp.stat().st_size
        if size != len(data):
            raise ValueError(f"wrote {size} of {len(data)} bytes")
        if tmp.read_bytes() != data:
            raise ValueError("the file read back differs from what was written")

    return verify


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    """Write a binary file atomically; the file is read back and compared before the rename."""
    data = bytes(data)
    with atomic_path(target, verify=expect_bytes(data)) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (UTF-8), read back and compared before the rename."""
    write_bytes_atomic(target, text.encode("utf-8"))
