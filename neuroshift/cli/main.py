"""Entry point of the ``neuroshift`` command.

Each command lives in its own module under ``neuroshift.cli`` and exposes
``register(subparsers)``, which adds its parser(s) and sets ``func`` to a
callable ``(args) -> int``. Heavy imports stay inside those callables so that
``neuroshift --help`` is instant.

Exit codes: 0 success, 1 failure, 2 bad input (message names the problem),
130 interrupted.

Errors the engine does not translate itself are mapped here, each only where
the path can be named: an ``OSError`` that carries a file name (permission
denied, read-only file system, a file where a folder is needed...: exit 2; no
space or over the file-size limit: exit 1), an SQLite error of a ``--db``
database, and a ``UnicodeDecodeError`` while a command reads one known text
input. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sqlite3
import sys
import warnings

from .. import __version__
from ..errors import InputError, NeuroShiftError

#: Command modules, in the order their commands appear in ``--help``.
COMMAND_MODULES = (
    "neuroshift.cli.simulate",
    "neuroshift.cli.tissues",
    "neuroshift.cli.qmri",
    "neuroshift.cli.sample_data",
    "neuroshift.cli.segment",
    "neuroshift.cli.train",
    "neuroshift.cli.evaluate",
    "neuroshift.cli.stress_test",
    "neuroshift.cli.validate_simulation",
    "neuroshift.cli.demo",
    "neuroshift.cli.reader_study",
    "neuroshift.cli.models",
    "neuroshift.cli.mrf",
    "neuroshift.cli.insert_lesions",
    "neuroshift.cli.synthesize",
)


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 2 and a one-line message for usage errors."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(2, f"neuroshift: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neuroshift", description="Neuroimaging AI under acquisition shift.")
    parser.add_argument("--version", action="version", version=f"neuroshift {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..threads import prepare_environment

    prepare_environment()  # OMP_WAIT_POLICY=PASSIVE before any command imports torch (OpenMP reads it once)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except InputError as exc:
        print(f"neuroshift: error: {exc}", file=sys.stderr)
        return 2
    except NeuroShiftError as exc:
        print(f"neuroshift: failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.filename is None:
            raise
        return _os_error(exc)
    except sqlite3.DatabaseError as exc:
        db = getattr(args, "db", None)
        if db is None:
            raise
        from ..readerstudy.store import database_problem

        print(f"neuroshift: error: {database_problem(db, exc)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        source = _single_text_input(args)
        if source is None:
            raise
        print(f"neuroshift: error: {source} is not UTF-8 text (byte offset {exc.start}); save it as UTF-8",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neuroshift: interrupted; finished results are kept", file=sys.stderr)
        return 130


#: errno values that mean the machine ran out of room, not that the user asked for something impossible.
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


_DEFAULT_SHOWWARNING = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """NeuroShift's own warnings (e.g. tissue maps summing to less than 1) as one line, without a source path."""
    if category.__module__.startswith("neuroshift"):
        print(f"neuroshift: warning: {message}", file=sys.stderr if file is None else file)
    else:
        _DEFAULT_SHOWWARNING(message, category, filename, lineno, file, line)


def _os_error(exc: OSError) -> int:
    where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    why = exc.strerror or type(exc).__name__
    if exc.errno in _NO_ROOM:
        print(f"neuroshift: failed: {where}: {why}", file=sys.stderr)
        return 1
    hint = " (a read-only folder or file?)" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else ""
    print(f"neuroshift: error: {where}: {why}{hint}", file=sys.stderr)
    return 2


def _single_text_input(args) -> str | None:
    """The one text file (CSV, YAML, JSON) a command reads, when it has exactly one; else None."""
    candidates = [getattr(args, name, None) for name in ("cases", "config", "study", "relaxation")]
    csvs = getattr(args, "csv", None) or []
    found = [str(c) for c in [*candidates, *csvs] if c is not None and str(c).lower().endswith(
        (".csv", ".tsv", ".yaml", ".yml", ".json"))]
    return found[0] if len(found) == 1 else None


if __name__ == "__main__":
    sys.exit(main())
