"""Never write over an input: one check every command runs before it computes anything.

Two paths are "the same file" when they resolve to the same path (``..``,
symbolic links) or, when both exist, name the same inode on the same device
(hard links, bind mounts, case-insensitive file systems): ``os.stat``'s
``(st_dev, st_ino)``. An output *folder* that is replaced as a whole (a DICOM
series, a ``qmri fit`` map folder) must not contain an input either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Union

from ..errors import OutputPathError

PathLike = Union[str, os.PathLike]
#: ``{description: path}`` or an iterable of ``(description, path)``; ``None`` paths are skipped.
Named = Union[Mapping[str, Union[PathLike, None]], Iterable[tuple[str, Union[PathLike, None]]]]


def _items(named: Named) -> list[tuple[str, Path]]:
    pairs = named.items() if isinstance(named, Mapping) else named
    return [(str(label), Path(p)) for label, p in pairs if p is not None and str(p) != ""]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve(strict=False)
    except (OSError, RuntimeError):  # symlink loop: compare the absolute spelling
        return Path(os.path.abspath(path))


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name one file: equal resolved paths, or one inode (hard/symbolic links)."""
    a, b = Path(a), Path(b)
    if _resolved(a) == _resolved(b):
        return True
    ia = _identity(a)
    return ia is not None and ia == _identity(b)


def _inside(child: Path, folder: Path) -> bool:
    c, f = _resolved(child), _resolved(folder)
    if c == f or f in c.parents:
        return True
    # hard-linked / bind-mounted folders: walk up the child's real parents by inode
    fid = _identity(f)
    return fid is not None and any(_identity(p) == fid for p in c.parents)


def refuse_overwriting_inputs(inputs: Named, outputs: Named, *, replaced_folders: Named = ()) -> None:
    """Raise :class:`OutputPathError` (exit 2) when an output is an input, or two outputs are one file.

    ``inputs`` and ``outputs`` map a description (``"--flair"``, ``"OUTPUT"``) to a path;
    ``replaced_folders`` are output folders that are replaced as a whole, which must
    not contain any input. Run it before any work, so that nothing is computed in vain.
    """
    ins, outs, folders = _items(inputs), _items(outputs), _items(replaced_folders)
    for olabel, out in outs + folders:
        for ilabel, inp in ins:
            if same_file(out, inp):
                how = "" if _resolved(out) == _resolved(inp) else " (a link to it)"
                raise OutputPathError(
                    f"{olabel} {out} is the input {ilabel} {inp}{how}; NeuroShift never writes over an input: "
                    "choose another output name")
    for flabel, folder in folders:
        for ilabel, inp in ins:
            if _inside(inp, folder):
                raise OutputPathError(
                    f"{flabel} {folder} is replaced as a whole but contains the input {ilabel} {inp}; "
                    "choose another output folder")
    everything = outs + folders
    for i, (la, a) in enumerate(everything):
        for lb, b in everything[i + 1:]:
            if same_file(a, b):
                raise OutputPathError(f"{la} {a} and {lb} {b} are the same file; give each output its own name")
    for label, out in outs:
        require_writable(out, label)
    for label, folder in folders:
        require_writable(folder, label, replaced=True)


def require_writable(path: PathLike, label: str = "output", *, replaced: bool = False) -> None:
    """Raise :class:`OutputPathError` unless ``path`` can be written (checked up front, before any work).

    An existing folder that files are written into must itself be writable; a file, or a folder
    ``replaced`` as a whole, needs its nearest existing ancestor folder to be writable.
    """
    p = Path(path).expanduser()
    if p.is_dir() and not replaced:
        if not os.access(p, os.W_OK | os.X_OK):
            raise OutputPathError(f"cannot write into {label} {p}: the folder is read-only for this user")
        return
    folder = Path(os.path.abspath(p)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputPathError(f"cannot write {label} {p}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {label} {p}: the folder {folder} is read-only for this user")
