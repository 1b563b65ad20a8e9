"""Models under test: what the stress test asks to segment each simulated image.

A model is anything with the :class:`SegmentationModel` shape — a name, the
input channel that the simulation replaces (``image_channel``, e.g. ``FLAIR``),
the other channels it needs from the case (``extra_inputs``, passed unchanged)
and ``predict(inputs) -> Volume`` returning a binary lesion mask on the input
grid. :func:`resolve_model` turns a ``--model`` text into one:

* ``wmh-demo`` or any other package name/folder -> :class:`PackageModel`
  (NeuroShift model package, run with ``neuroshift.segment.inference.segment_volume``);
* ``cmd:"tool --flair {input} --output {output}"`` -> :class:`CommandModel`, an
  external tool (LST-AI, nnU-Net, your own script). The template is split with
  :func:`shlex.split` first and placeholders are substituted inside each
  argument afterwards, so paths with spaces stay one argument and nothing is
  ever run through a shell. Placeholders: ``{input}`` (the image file),
  ``{output}`` (the mask file the tool must write), ``{input_dir}`` /
  ``{output_dir}`` (nnU-Net style: inputs are ``case_0000.nii.gz``,
  ``case_0001.nii.gz`` ... in channel order; the tool writes one volume into the
  output folder), ``{<channel>}`` for each extra channel (``{T1w}``) and
  ``{case}``. Any voxel > 0 of the tool's output counts as lesion.

Models are picklable (packages are loaded lazily in the process that predicts)
so the same object runs in local worker processes and on Dask workers.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import GeometryError, InputError, NeuroShiftError, UnreadableFileError
from ..io.volume import Volume


class ModelRunError(NeuroShiftError):
    """A model under test failed on one image (its message carries the tool's stderr tail)."""


@runtime_checkable
class SegmentationModel(Protocol):
    """What the stress-test runner needs from a model under test."""

    name: str
    image_channel: str
    extra_inputs: tuple[str, ...]

    def predict(self, inputs: dict[str, Volume], *, case_id: str = "") -> Volume:
        """Binary lesion mask (uint8 0/1) on the grid of ``inputs[self.image_channel]``."""
        ...


def describe(model: Any) -> str:
    """A short, stable text naming the model (stored with the results to refuse mixing two runs)."""
    return str(getattr(model, "spec", None) or getattr(model, "name", None) or type(model).__name__)


# --------------------------------------------------------------------------- neuroshift packages
@dataclass
class PackageModel:
    """A NeuroShift model package (bundled ``wmh-demo``, a trained or imported package)."""

    path: str
    device: str = "auto"
    tta: bool = False
    name: str = ""
    spec: str = ""
    image_channel: str = "FLAIR"
    extra_inputs: tuple[str, ...] = ()
    _package: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_spec(cls, spec: str, *, device: str = "auto", sequence: str = "flair") -> "PackageModel":
        from ..segment.package import read_manifest
        from ..segment.registry import find_model

        path = find_model(spec)
        manifest = read_manifest(path)
        channels = [str(c) for c in manifest.get("input_channels") or ["FLAIR"]]
        image_channel = _pick_image_channel(channels, sequence)
        extra = tuple(c for c in channels if c != image_channel)
        return cls(path=str(path), device=device, name=Path(path).name, spec=spec,
                   image_channel=image_channel, extra_inputs=extra)

    def __getstate__(self):  # the loaded torch modules stay in their process
        state = dict(self.__dict__)
        state["_package"] = None
        return state

    def load(self) -> None:
        """Load the package's networks and the inference modules now (a stress-test worker does it while the
        parent fits the first case)."""
        if self._package is None:
            from ..segment import inference  # noqa: F401  (imported here rather than at the first point)
            from ..segment.package import load_package

            self._package = load_package(self.path, self.device)

    def predict(self, inputs: dict[str, Volume], *, case_id: str = "") -> Volume:
        from ..segment.inference import segment_volume

        self.load()
        result = segment_volume(dict(inputs), self._package, device=self.device, tta=self.tta)
        label = result.label
        return label.with_data((np.asarray(label.data) > 0).astype(np.uint8))


def _pick_image_channel(channels: list[str], sequence: str) -> str:
    from .cases import IMAGE_STEMS

    wanted = [s.lower() for s in IMAGE_STEMS.get(sequence.lower(), ())]
    for c in channels:
        if c.lower() in wanted:
            return c
    return channels[0]


# --------------------------------------------------------------------------- external tools
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class CommandModel:
    """An external segmentation tool run per image through a command template (no shell)."""

    template: str
    timeout_s: float = 3600.0
    name: str = ""
    spec: str = ""
    image_channel: str = "FLAIR"
    extra_inputs: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.argv = shlex.split(self.template)
        except ValueError as exc:
            raise InputError(f"command template {self.template!r}: {exc}") from None
        if not self.argv:
            raise InputError("the command template is empty; give for example cmd:\"tool --in {input} --out {output}\"")
        used = {m for a in self.argv for m in _PLACEHOLDER.findall(a)}
        known = {"input", "output", "input_dir", "output_dir", "case", *self.extra_inputs}
        unknown = used - known
        if unknown:
            self.extra_inputs = tuple(self.extra_inputs) + tuple(sorted(unknown))
        if not ({"output", "output_dir"} & used):
            raise InputError(f"command template {self.template!r} has no {{output}} or {{output_dir}} placeholder; "
                             "the stress test cannot find the tool's result")
        if not ({"input", "input_dir"} & used):
            raise InputError(f"command template {self.template!r} has no {{input}} or {{input_dir}} placeholder")
        self.name = self.name or Path(self.argv[0]).name
        self.spec = self.spec or f"cmd:{self.template}"

    def command(self, mapping: dict[str, str]) -> list[str]:
        """The argument list for one run: placeholders substituted inside each argument."""
        def sub(m: re.Match) -> str:
            return mapping[m.group(1)] if m.group(1) in mapping else m.group(0)
        return [_PLACEHOLDER.sub(sub, a) for a in self.argv]

    def predict(self, inputs: dict[str, Volume], *, case_id: str = "") -> Volume:
        from ..io.files import read_volume, write_volume

        image = inputs[self.image_channel]
        with tempfile.TemporaryDirectory(prefix="neuroshift-tool-") as tmp:
            tmp = Path(tmp)
            in_dir, out_dir = tmp / "input", tmp / "output"
            in_dir.mkdir()
            out_dir.mkdir()
            mapping = {"input_dir": str(in_dir), "output_dir": str(out_dir), "case": case_id or "case",
                       "output": str(out_dir / "prediction.nii.gz")}
            channels = [self.image_channel, *[c for c in self.extra_inputs if c != self.image_channel]]
            for idx, name in enumerate(channels):
                if name not in inputs:
                    raise InputError(f"the command template needs input '{name}', which the case does not have")
                path = write_volume(inputs[name], in_dir / f"case_{idx:04d}.nii.gz")
                mapping[name] = str(path)
            mapping["input"] = mapping[self.image_channel]
            argv = self.command(mapping)
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s,
                                      stdin=subprocess.DEVNULL, env={**os.environ, **self.env}, check=False)
            except FileNotFoundError:
                raise ModelRunError(f"{self.name}: program '{argv[0]}' not found; check the command template "
                                    "or the PATH") from None
            except PermissionError:
                raise ModelRunError(f"{self.name}: program '{argv[0]}' is not executable") from None
            except subprocess.TimeoutExpired as exc:
                raise ModelRunError(f"{self.name}: no result after {self.timeout_s:g} s (timeout); "
                                    f"stderr tail:\n{_tail(exc.stderr)}") from None
            if proc.returncode != 0:
                raise ModelRunError(f"{self.name} exited with code {proc.returncode} on case {case_id or '?'}; "
                                    f"stderr tail:\n{_tail(proc.stderr) or _tail(proc.stdout)}")
            out_path = self._find_output(out_dir, mapping["output"], proc)
            try:
                pred = read_volume(out_path)
            except InputError as exc:
                raise ModelRunError(f"{self.name}: cannot read its output: {exc}") from None
        if not image.same_grid(pred):
            try:
                image.require_same_grid(pred, f"{self.name}: input image and the tool's output")
            except GeometryError as exc:
                raise ModelRunError(str(exc)) from None
        return pred.with_data((np.asarray(pred.data) > 0).astype(np.uint8))

    def _find_output(self, out_dir: Path, output: str, proc) -> Path:
        from .cases import SUFFIXES

        if Path(output).is_file():
            return Path(output)
        found = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES))
        if len(found) == 1:
            return found[0]
        what = "no volume" if not found else f"{len(found)} volumes ({', '.join(p.name for p in found[:4])})"
        raise ModelRunError(f"{self.name} finished but wrote {what} in its output; expected one mask file. "
                            f"stderr tail:\n{_tail(proc.stderr)}")


def _tail(text: str | bytes | None, lines: int = 20) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- resolution
def resolve_model(spec: Any, *, device: str = "auto", sequence: str = "flair", timeout_s: float = 3600.0,
                  inputs: tuple[str, ...] = ()) -> SegmentationModel:
    """A model object from ``--model`` text (package name/folder or ``cmd:TEMPLATE``), or ``spec`` itself."""
    if not isinstance(spec, (str, os.PathLike)):
        if not isinstance(spec, SegmentationModel):
            raise InputError(f"{type(spec).__name__} is not a segmentation model (needs name, image_channel, "
                             "extra_inputs and predict)")
        return spec
    text = str(spec).strip()
    if text.lower().startswith("cmd:"):
        template = text[4:].strip()
        if len(template) >= 2 and template[0] == template[-1] and template[0] in "\"'":
            template = template[1:-1]
        from .cases import IMAGE_STEMS

        channel = IMAGE_STEMS.get(sequence.lower(), ("image",))[0]
        return CommandModel(template, timeout_s=timeout_s, image_channel=channel, extra_inputs=tuple(inputs),
                            spec=text)
    try:
        return PackageModel.from_spec(text, device=device, sequence=sequence)
    except UnreadableFileError as exc:
        raise UnreadableFileError(f"{exc}; or give an external tool as cmd:\"tool {{input}} {{output}}\"") from None
