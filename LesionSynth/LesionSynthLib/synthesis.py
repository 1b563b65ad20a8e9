"""Synthesis panel logic (Qt-free): volume nodes in, ``neuroshift synthesize`` in a child process, SYNTHETIC nodes out.

Inputs are any subset of FLAIR / T1 / T2 (DiamondGAN: any non-empty subset; synthDIR: FLAIR and T1) and, for
the virtual T1c model, ADC and low-dose T1c as well. They are exported as NIfTI (geometry exact) in the
order of the CLI's flags; the first one's grid is the output's. The model is a package folder
(``manifest.json`` + ``weights.safetensors``); with none chosen the module takes the first installed or
bundled package of the target that accepts the given inputs (``synthdir-demo``, ``dir-demo``, ``vt1c-demo``
first when present).
"""

from __future__ import annotations

import enum
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from neuroshift.segment.registry import SYNTHESIS_TASKS  # no torch: the task names of synthesis packages

from .nodes import (export_volumes, load_into_node, require_one_grid, require_untransformed,
                    show_uncertainty_overlay, tag_synthetic, volumes_of)

#: Input keys in the order of ``neuroshift synthesize``'s flags (its first given input is the reference grid).
INPUT_FLAGS = {"flair": "--flair", "t1": "--t1", "t2": "--t2", "adc": "--adc", "low_dose": "--low-dose"}
INPUT_LABELS = {"flair": "FLAIR", "t1": "T1", "t2": "T2", "adc": "ADC", "low_dose": "low-dose T1c"}
DEVICES = ("auto", "cpu", "cuda")
#: Preferred packages per target (the bundled demo models), tried before any other: synthDIR first for DIR
#: (held-out phantom SSIM 0.956), the barely trained DiamondGAN demo only for input subsets synthDIR cannot take.
PREFERRED_MODELS = {"dir": ("synthdir-demo", "dir-demo"), "t1c": ("vt1c-demo",)}


class SynthesisTarget(enum.Enum):
    """The contrast to synthesise (bound to a combo box by Slicer's enum connector, which shows ``label``)."""

    dir = "dir"
    t1c = "t1c"

    def label(self) -> str:
        return {"dir": "DIR (double inversion recovery)", "t1c": "T1c (contrast-enhanced T1)"}[self.value]


@dataclass
class SynthesisParameters:
    """The panel's choices (mirrors ``neuroshift synthesize``'s options). ``model``: package folder or ''."""

    target: str = "dir"
    model: str = ""
    device: str = "auto"
    uncertainty: bool = False
    mc_samples: int = 20
    tta: bool = False
    seed: int = 0
    histogram_match: bool = True  # the papers' matching to the model's reference histogram (when it has one)

    def validate(self) -> None:
        from neuroshift.errors import InputError

        if self.target not in ("dir", "t1c"):
            raise InputError(f"unknown target '{self.target}'; use dir or t1c")
        if self.device not in DEVICES:
            raise InputError(f"unknown device '{self.device}'; use {', '.join(DEVICES)}")
        if self.uncertainty and int(self.mc_samples) < 2:
            raise InputError(f"MC-dropout uncertainty needs at least 2 samples, got {self.mc_samples}")


@dataclass
class SynthesisJob:
    run: Any  # BackgroundRun
    workdir: Path
    outputs: dict[str, Path]
    params: SynthesisParameters
    reference_name: str
    model: str


@dataclass
class SynthesisOutputs:
    synthetic: Any
    uncertainty: Any = None
    sidecar: dict = field(default_factory=dict)


def read_model_manifest(folder: str | Path) -> dict:
    """The manifest of a synthesis package; :class:`InputError` naming the folder when it is not one."""
    from neuroshift.errors import InputError

    path = Path(folder).expanduser() / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: not a synthesis model package (manifest.json: {exc})") from None
    task = manifest.get("task") if isinstance(manifest, dict) else None
    if task not in SYNTHESIS_TASKS:
        raise InputError(f"{folder}: not a synthesis model package (task must be one of "
                         f"{', '.join(SYNTHESIS_TASKS)}, not {task!r})")
    return manifest


def available_models(target: str | None = None) -> list[dict[str, Any]]:
    """Synthesis packages in the model search folders (``$NEUROSHIFT_MODELS``, ``~/.neuroshift/models``, bundled),
    optionally of one target; each ``{name, path, source, task, target, inputs, trained_on}``, preferred first."""
    from neuroshift.segment.registry import search_dirs

    seen, out = set(), []
    for source, folder in search_dirs():
        if not folder.is_dir():
            continue
        for sub in sorted(folder.iterdir()):
            if sub.name in seen or not (sub / "manifest.json").is_file():
                continue
            try:
                m = read_model_manifest(sub)
            except Exception:  # noqa: BLE001 - segmentation packages and broken folders are not listed
                continue
            seen.add(sub.name)
            if target and m.get("target") != target:
                continue
            out.append({"name": sub.name, "path": str(sub), "source": source, "task": m["task"],
                        "target": m.get("target"), "inputs": list(m.get("inputs", [])),
                        "trained_on": m.get("trained_on", "")})
    order = {n: i for i, n in enumerate(PREFERRED_MODELS.get(target or "", ()))}
    return sorted(out, key=lambda m: order.get(m["name"], len(order)))


def input_problem(manifest: Mapping[str, Any], given: list[str], uncertainty: bool) -> str | None:
    """Why a package cannot take the ``given`` inputs (or give uncertainty); None when it can."""
    accepted = list(manifest.get("inputs", []))
    unknown = [k for k in given if k not in accepted]
    if unknown:
        return (f"takes {', '.join(INPUT_LABELS.get(k, k) for k in accepted)}, not "
                f"{', '.join(INPUT_LABELS.get(k, k) for k in unknown)}")
    if manifest.get("task") != "diamondgan":
        missing = [k for k in accepted if k not in given]
        if missing:
            return f"needs every input; missing {', '.join(INPUT_LABELS.get(k, k) for k in missing)}"
    if uncertainty and manifest.get("task") != "synthdir":
        return "gives no MC-dropout uncertainty (only synthDIR models have dropout)"
    return None


def resolve_model(params: SynthesisParameters, given: list[str]) -> str:
    """The package folder to run: the chosen one (checked), else the first fitting installed/bundled one."""
    from neuroshift.errors import InputError

    if params.model:
        manifest = read_model_manifest(params.model)
        if manifest.get("target") != params.target:
            raise InputError(f"model {params.model} synthesises {manifest.get('target')}, not {params.target}")
        problem = input_problem(manifest, given, params.uncertainty)
        if problem:
            raise InputError(f"model {Path(params.model).name} {problem}")
        return str(Path(params.model).expanduser())
    candidates = available_models(params.target)
    for m in candidates:
        if input_problem(m, given, params.uncertainty) is None:
            return m["path"]
    why = "; ".join(f"{m['name']} {input_problem(m, given, params.uncertainty)}" for m in candidates)
    raise InputError(f"no installed {params.target.upper()} model takes "
                     f"{', '.join(INPUT_LABELS[k] for k in given) or 'no inputs'}"
                     f"{' with uncertainty' if params.uncertainty else ''}"
                     f"{(': ' + why) if why else ' (none is installed)'}; choose a model package folder")


def build_command(input_paths: Mapping[str, str | Path], params: SynthesisParameters, model: str,
                  workdir: Path) -> tuple[list[str], dict[str, Path]]:
    """``neuroshift synthesize`` arguments (a list, never a shell string) and the files it will write."""
    params.validate()
    workdir = Path(workdir)
    outputs = {"synthetic": workdir / "synthetic.nii.gz", "sidecar": workdir / "synthetic.json"}
    args = ["synthesize", str(outputs["synthetic"]), "--target", params.target, "--model", str(model)]
    for key, flag in INPUT_FLAGS.items():
        if key in input_paths:
            args += [flag, str(input_paths[key])]
    if "brain_mask" in input_paths:
        args += ["--brain-mask", str(input_paths["brain_mask"])]
    if params.uncertainty:
        outputs["uncertainty"] = workdir / "uncertainty.nii.gz"
        args += ["--uncertainty", str(outputs["uncertainty"]), "--mc-samples", str(int(params.mc_samples)),
                 "--seed", str(int(params.seed))]
    if params.tta:
        args.append("--tta")
    if not params.histogram_match:
        args.append("--no-histogram-match")
    args += ["--device", params.device]
    return args, outputs


class SynthesisCore:
    """Synthesis on a ``vtkMRMLScene``: start, finish or cancel a background ``neuroshift synthesize``."""

    def __init__(self, scene):
        self.scene = scene

    def start_background(self, inputs: Mapping[str, Any], params: SynthesisParameters, brain_mask=None,
                         python: str | None = None, env: Mapping[str, str] | None = None) -> SynthesisJob:
        """Check and export the inputs (``{"flair": node, ...}``; None = not available) and start the CLI."""
        from neuroshift.errors import InputError
        from neuroshift_slicer.background import BackgroundRun

        params.validate()
        nodes = {k: inputs.get(k) for k in INPUT_FLAGS if inputs.get(k) is not None}
        unknown = sorted(set(k for k, n in inputs.items() if n is not None) - set(INPUT_FLAGS))
        if unknown:
            raise InputError(f"unknown input {', '.join(unknown)}; inputs are {', '.join(INPUT_FLAGS)}")
        if not nodes:
            raise InputError("choose at least one input volume (FLAIR, T1, T2; ADC and low-dose T1c for T1c)")
        for key, node in nodes.items():
            require_untransformed(node, INPUT_LABELS[key])
        model = resolve_model(params, list(nodes))
        grid = dict(nodes, **({"brain_mask": brain_mask} if brain_mask is not None else {}))
        volumes = volumes_of(grid)
        require_one_grid(volumes, {k: n.GetName() for k, n in grid.items()})
        workdir = Path(tempfile.mkdtemp(prefix="LesionSynth-"))
        try:
            paths = export_volumes(volumes, workdir)
            args, outputs = build_command(paths, params, model, workdir)
            run = BackgroundRun(args, python=python, env=dict(env or {}))
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return SynthesisJob(run, workdir, outputs, params, next(iter(nodes.values())).GetName(), model)

    def finish_background(self, job: SynthesisJob, output_node=None, uncertainty_node=None) -> SynthesisOutputs:
        """Load what a finished run wrote into (new or given) nodes tagged SYNTHETIC; raise with its message if
        it failed. The temporary folder is removed either way."""
        state = job.run.poll()
        try:
            state.raise_if_failed("synthesis")
            sidecar = json.loads(job.outputs["sidecar"].read_text(encoding="utf-8"))
            target = job.params.target.upper()
            name = f"{job.reference_name} {target} SYNTHETIC"
            description = (f"{sidecar.get('Description', 'SYNTHETIC')}; model {Path(job.model).name} "
                           f"({sidecar.get('ModelProvenance', 'unknown provenance')}); inputs "
                           f"{', '.join(INPUT_LABELS.get(k, k) for k in sidecar.get('Inputs', {}))}")
            synthetic = load_into_node(self.scene, job.outputs["synthetic"], name, output_node)
            tag_synthetic(synthetic, description, source=job.model)
            unc = None
            if "uncertainty" in job.outputs:
                kind = sidecar.get("UncertaintyKind", "mc_dropout")  # predictive, or residual (error model)
                learned = kind.startswith("residual")
                unc = load_into_node(self.scene, job.outputs["uncertainty"],
                                     f"{name} {'error SD' if learned else 'MC SD'}", uncertainty_node)
                what = "learned SD of the error" if learned else "MC standard deviation"
                tag_synthetic(unc, f"{what}, {kind} ({job.params.mc_samples} MC samples) of "
                                   f"{synthetic.GetName()}; same units (a.u.)", source=job.model)
                show_uncertainty_overlay(self.scene, synthetic, unc)
            return SynthesisOutputs(synthetic, unc, sidecar)
        finally:
            shutil.rmtree(job.workdir, ignore_errors=True)

    @staticmethod
    def cancel_background(job: SynthesisJob) -> None:
        job.run.cancel()
        shutil.rmtree(job.workdir, ignore_errors=True)


__all__ = ["DEVICES", "INPUT_FLAGS", "INPUT_LABELS", "SynthesisCore", "SynthesisJob", "SynthesisOutputs",
           "SynthesisParameters", "SynthesisTarget", "available_models", "build_command", "input_problem",
           "read_model_manifest", "resolve_model"]
