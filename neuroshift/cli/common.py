"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse

from ..errors import InputError


def plain(text: str | None) -> str | None:
    """A docstring as ``--help`` text: reStructuredText literal quotes (double backquotes) removed."""
    return None if text is None else text.replace("``", "")


def params_arg(text: str):
    """argparse type for ``TE=150,TI=2900[,TR=..]`` (ms, degrees, tesla) -> AcquisitionParams.

    The import is deferred so that building the parser (``--help``) does not load numpy.
    """
    from ..io.params import AcquisitionParams

    try:
        return AcquisitionParams.parse(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def key_value_arg(text: str) -> dict[str, str]:
    """argparse type for ``A=x,B=y`` -> ``{'A': 'x', 'B': 'y'}``."""
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"'{item}' is not NAME=VALUE")
        if key.strip().lower() in {k.lower() for k in out}:
            raise argparse.ArgumentTypeError(f"{key.strip()} is given twice in '{text}'; give each name once")
        out[key.strip()] = value.strip()
    return out


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where torch runs: auto picks CUDA when available (default: auto)")


def refuse_overwriting_inputs(inputs, outputs, *, replaced_folders=()) -> None:
    """Exit 2 before any work when an output would write over an input (see :mod:`neuroshift.io.guard`)."""
    from ..io.guard import refuse_overwriting_inputs as _refuse

    _refuse(inputs, outputs, replaced_folders=replaced_folders)


def is_folder_output(path) -> bool:
    """An output path without a volume suffix is written as a DICOM series folder (replaced as a whole)."""
    from pathlib import Path

    from ..io.files import VOLUME_SUFFIXES

    return not Path(path).name.lower().endswith(VOLUME_SUFFIXES) and not Path(path).suffix
