"""What the three panels ask for, validated, and the ``neuroshift`` command lines that do it.

Each request validates itself (clear messages naming the input and the parameter) before anything is
written or started, and builds the CLI argument lists for the background run: the module calls exactly
the commands a user would type (``neuroshift mrf dictionary|match|predict``, ``neuroshift qmri fit|synth``).
Times in ms, flip angles in degrees, probabilities in percent, field in tesla.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from neuroshift.sequences import SIGNAL_SEQUENCES

#: Sequences of the fit and synth panels: the engine's table (no numpy import).
SEQUENCE_CHOICES = list(SIGNAL_SEQUENCES)
#: Device choices (``--device`` of the mrf commands).
DEVICES = ("auto", "cpu", "cuda")
#: ``qmri fit --method`` choices.
FIT_METHODS = ("auto", "closed", "nlls")
#: Paper 001's binarisation threshold of the lesion probability (percent).
LESION_THRESHOLD_PERCENT = 33.0
#: Fixed image rows of the fit panel (more images: the CLI).
FIT_ROWS = 4


class MRFMethod(enum.Enum):
    """How the MRF panel maps frames (bound to its combo box by Slicer's enum connector, which shows ``label``)."""

    unet = "unet"
    match = "match"
    both = "both"

    def label(self) -> str:
        return {"unet": "U-Net (T1, T2*, NAWM/GM/lesion probability)",
                "match": "Dictionary matching (T1, T2*, B1, PD, match quality)",
                "both": "Both"}[self.value]


def _input_error(message: str):
    from neuroshift.errors import InputError

    return InputError(message)


def _existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise _input_error(f"{what} '{path}' does not exist or is not a file")
    return p


@dataclass
class MRFRequest:
    """MRF panel: U-Net and/or dictionary matching of one frame stack."""

    method: str = "unet"
    schedule: str = ""  #: schedule JSON; empty: the one beside the frames' file
    model: str = ""  #: U-Net package folder; empty: the shipped SYNTHETIC-trained demo
    dictionary: str = ""  #: dictionary .npz; empty: the cached one of this schedule, else built first (tens of s)
    dictionary_cache: str = ""  #: folder of built dictionaries (``<schedule hash>.npz``); empty: no cache
    denoise: bool = False  #: MP-PCA (dipy) before matching
    svd_energy: float | None = None  #: SVD compression keeping this energy fraction (None: off)
    device: str = "auto"
    lesion_threshold_percent: float | None = LESION_THRESHOLD_PERCENT  #: None: no lesion segmentation

    @property
    def runs_unet(self) -> bool:
        return self.method in ("unet", "both")

    @property
    def runs_match(self) -> bool:
        return self.method in ("match", "both")

    def validate(self) -> None:
        if self.method not in {m.value for m in MRFMethod}:
            raise _input_error(f"unknown MRF method '{self.method}'; use unet, match or both")
        if self.device not in DEVICES:
            raise _input_error(f"unknown device '{self.device}'; use {', '.join(DEVICES)}")
        if self.svd_energy is not None and not 0.0 < self.svd_energy <= 1.0:
            raise _input_error(f"SVD energy must be in (0, 1], got {self.svd_energy}")
        if self.lesion_threshold_percent is not None and not 0.0 <= self.lesion_threshold_percent <= 100.0:
            raise _input_error(f"lesion threshold must be in [0, 100] %, got {self.lesion_threshold_percent}")
        if self.runs_unet and self.model and not Path(self.model).is_dir():
            raise _input_error(f"U-Net package folder '{self.model}' does not exist")
        if self.runs_match and self.dictionary:
            _existing_file(self.dictionary, "dictionary")

    def dictionary_path(self, workdir: str | Path, schedule_hash: str = "") -> tuple[Path, bool]:
        """(dictionary file, whether it must be built first): the chosen file; else the cache's file of this
        schedule (built into the cache when missing); else one built in ``workdir``."""
        if self.dictionary:
            return Path(self.dictionary), False
        if self.dictionary_cache and schedule_hash:
            path = Path(self.dictionary_cache) / f"{schedule_hash[:16]}.npz"
            return path, not path.is_file()
        return Path(workdir) / "dictionary.npz", True

    def commands(self, frames: str | Path, schedule: str | Path, workdir: str | Path,
                 schedule_hash: str = "") -> tuple[list[list[str]], dict]:
        """Argument lists (run in order) and the output folders ``{"match": ..., "unet": ...}``."""
        self.validate()
        work = Path(workdir)
        commands, outputs = [], {}
        if self.runs_match:
            path, build = self.dictionary_path(work, schedule_hash)
            dictionary = str(path)
            if build:
                commands.append(["mrf", "dictionary", "--schedule", str(schedule), "--out", dictionary,
                                 "--device", self.device])
            outputs["match"] = work / "match"
            cmd = ["mrf", "match", str(frames), "--dictionary", str(dictionary), "--schedule", str(schedule),
                   "--out", str(outputs["match"]), "--device", self.device]
            if self.denoise:
                cmd.append("--denoise")
            if self.svd_energy is not None:
                cmd += ["--svd-energy", repr(float(self.svd_energy))]
            commands.append(cmd)
        if self.runs_unet:
            outputs["unet"] = work / "unet"
            cmd = ["mrf", "predict", str(frames), "--schedule", str(schedule), "--out", str(outputs["unet"]),
                   "--device", self.device]
            if self.model:
                cmd += ["--model", str(self.model)]
            commands.append(cmd)
        return commands, outputs


def default_dictionary_cache() -> Path:
    """``~/.neuroshift/mrf-dictionaries``: dictionaries the MRF panel built, one per schedule hash."""
    return Path.home() / ".neuroshift" / "mrf-dictionaries"


def parse_params(text: str, sequence: str, what: str):
    """``"TE=15,TR=3000"`` -> :class:`AcquisitionParams`, checked for everything ``sequence`` needs."""
    from neuroshift.errors import InputError
    from neuroshift.io.params import AcquisitionParams

    try:
        params = AcquisitionParams.parse(text)
        params.require("se" if sequence == "fse" else sequence, context=what)
    except InputError as exc:
        raise type(exc)(f"{what}: {exc}") from None
    return params


@dataclass
class FitRequest:
    """qMRI fit panel: two or more images, one sequence and parameter text (``TE=15,TR=3000``) each."""

    sequences: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)  #: one ``KEY=VALUE,...`` text per image (ms, degrees)
    names: list[str] = field(default_factory=list)  #: image names for messages
    method: str = "auto"

    def validate(self) -> None:
        n = len(self.sequences)
        if n < 2:
            raise _input_error(f"qMRI fit needs two or more images, got {n}")
        if len(self.params) != n:
            raise _input_error(f"{len(self.params)} parameter sets for {n} images")
        if self.method not in FIT_METHODS:
            raise _input_error(f"unknown fit method '{self.method}'; use {', '.join(FIT_METHODS)}")
        names = self.names or [f"image {i + 1}" for i in range(n)]
        for seq, text, name in zip(self.sequences, self.params, names):
            if seq not in SIGNAL_SEQUENCES:
                raise _input_error(f"{name}: unknown sequence '{seq}'; choose one of {', '.join(SIGNAL_SEQUENCES)}")
            if not text.strip():
                raise _input_error(f"{name}: give its acquisition parameters (for example TE=15,TR=3000; ms, "
                                   "degrees) or load it from a file with a BIDS sidecar or DICOM header")
            parse_params(text, seq, name)

    def command(self, images: list[str | Path], outdir: str | Path, mask: str | Path | None = None,
                b1: str | Path | None = None) -> list[str]:
        self.validate()
        if len(images) != len(self.sequences):
            raise _input_error(f"{len(images)} images for {len(self.sequences)} sequences")
        cmd = ["qmri", "fit", *map(str, images), "--sequence", ",".join(self.sequences),
               "--params", ";".join(t.strip() for t in self.params), "--method", self.method]
        if mask is not None:
            cmd += ["--mask", str(mask)]
        if b1 is not None:
            cmd += ["--b1", str(b1)]
        return [*cmd, str(outdir)]


@dataclass
class SynthRequest:
    """qMRI synth panel: a sequence and its parameters; maps come as nodes."""

    sequence: str = "flair"
    target: str = "TE=112,TI=2500,TR=9000"  #: ms, degrees
    field_T: float | None = None  #: None: unknown (no MagneticFieldStrength)
    noise_sigma: float = 0.0  #: Rician noise standard deviation in signal units
    seed: int | None = None
    t2star_for_t2: bool = False

    def validate(self) -> None:
        if self.sequence not in SIGNAL_SEQUENCES:
            raise _input_error(f"unknown sequence '{self.sequence}'; choose one of {', '.join(SIGNAL_SEQUENCES)}")
        parse_params(self.target, self.sequence, "target parameters")
        if not self.noise_sigma >= 0.0:
            raise _input_error(f"noise sigma must be >= 0, got {self.noise_sigma}")
        if self.field_T is not None and not self.field_T > 0.0:
            raise _input_error(f"field strength must be > 0 T, got {self.field_T}")

    def command(self, mapdir: str | Path, output: str | Path) -> list[str]:
        self.validate()
        cmd = ["qmri", "synth", str(mapdir), str(output), "--sequence", self.sequence, "--target",
               self.target.strip()]
        if self.field_T is not None:
            cmd += ["--field", repr(float(self.field_T))]
        if self.noise_sigma > 0:
            cmd += ["--noise", repr(float(self.noise_sigma))]
            if self.seed is not None:
                cmd += ["--seed", str(int(self.seed))]
        if self.t2star_for_t2:
            cmd.append("--t2star-for-t2")
        return cmd


__all__ = ["DEVICES", "FIT_METHODS", "FIT_ROWS", "LESION_THRESHOLD_PERCENT", "FitRequest", "MRFMethod",
           "MRFRequest", "SEQUENCE_CHOICES", "SynthRequest", "default_dictionary_cache",
           "parse_params"]
