"""Entry point of the ``neuroshift`` command.

Each command lives in its own module under ``neuroshift.cli`` and exposes
``register(subparsers)``, which adds its parser(s) and sets ``func`` to a
callable ``(args) -> int``. Heavy imports stay inside those callables so that
``neuroshift --help`` is instant.

Exit codes: 0 success, 1 failure, 2 bad input (message names the problem),
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"neuroshift: error: {exc}", file=sys.stderr)
        return 2
    except NeuroShiftError as exc:
        print(f"neuroshift: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("neuroshift: interrupted; finished results are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
