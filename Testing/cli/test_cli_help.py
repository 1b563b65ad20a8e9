"""--help texts: plain text, examples that work with the bundled model, names as in the README, lazy imports."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "scipy", "SimpleITK", "matplotlib", "nibabel", "numpy", "h5py", "yaml", "monai", "numba")


def _all_parsers(parser: argparse.ArgumentParser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, path + (name,))


def _helps() -> dict[tuple, str]:
    from neuroshift.cli.main import build_parser

    return {path: p.format_help() for path, p in _all_parsers(build_parser())}


def test_every_help_text_is_plain_text():
    helps = _helps()
    assert len(helps) >= 20  # the top level, every command and every sub-action
    raw = {" ".join(k) or "neuroshift": t for k, t in helps.items() if "``" in t}
    assert raw == {}


def test_segment_examples_do_not_give_t1_to_the_flair_only_demo_model():
    text = _helps()[("segment",)]
    examples = [ln for ln in text.splitlines() if ln.strip().startswith("neuroshift segment wmh")]
    assert len(examples) >= 2
    for ln in examples:
        if "--t1" in ln:  # a T1 only goes to a two-channel model named explicitly
            assert "--model" in ln and "wmh-demo" not in ln
    # the bundled model really is FLAIR-only (so the example without --t1 is the right one)
    manifest = json.loads((ROOT / "neuroshift" / "data" / "models" / "wmh-demo" / "manifest.json").read_text())
    assert [c.lower() for c in manifest["input_channels"]] == ["flair"]


def _model_names(text: str) -> set[str]:
    """Model names used in example command lines (lines that run neuroshift)."""
    text = re.sub(r"\\\n\s*", " ", text)  # join continued lines
    text = "\n".join(ln for ln in text.splitlines() if ln.strip().startswith("neuroshift "))
    names = set(re.findall(r"--(?:model|name) ([A-Za-z][\w.-]*)", text))
    names |= set(re.findall(r"models verify ([A-Za-z][\w.-]*)", text))
    return names


def test_model_names_in_help_are_the_readme_names():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    in_help = set().union(*(_model_names(t) for t in _helps().values()))
    assert {"claustrum", "claustrum-neonatal", "my-wmh"} <= in_help
    assert in_help - {"PATH", "NAME", "MODEL"} <= _model_names(readme) | {"wmh-demo"}


def test_help_builds_without_heavy_imports():
    """Structural check of the lazy imports: parser + every --help text, then no heavy module is loaded."""
    code = (
        "import sys, io, contextlib, json\n"
        "from neuroshift.cli.main import build_parser, main\n"
        "import argparse\n"
        "def walk(p):\n"
        "    yield p\n"
        "    for a in p._actions:\n"
        "        if isinstance(a, argparse._SubParsersAction):\n"
        "            for s in a.choices.values():\n"
        "                yield from walk(s)\n"
        "def paths(p, path=()):\n"
        "    yield path\n"
        "    for a in p._actions:\n"
        "        if isinstance(a, argparse._SubParsersAction):\n"
        "            for name, s in a.choices.items():\n"
        "                yield from paths(s, path + (name,))\n"
        "n = 0\n"
        "for p in walk(build_parser()):\n"
        "    p.format_help(); n += 1\n"
        "for argv in [[*path, '--help'] for path in paths(build_parser())]:  # what `neuroshift ... --help` runs\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        f"print(json.dumps([n, sorted(m for m in {HEAVY!r} if m in sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    n, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert n >= 20
    assert loaded == []


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["segment", "wmh", "--help"]])
def test_help_exits_zero_and_names_the_program(argv):
    out = subprocess.run([sys.executable, "-m", "neuroshift", *argv], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0
    assert out.stdout.startswith("usage: neuroshift")


def _commands(block: str, prefix: str) -> list[str]:
    block = re.sub(r"\\\n\s*", " ", block)
    return [ln.strip() for ln in block.splitlines() if ln.strip().startswith(prefix)]


def test_simulate_examples_lead_with_partial_volume_maps():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Simulate an acquisition shift"):]
    block = section[section.index("```bash") + 7:]
    readme_cmds = _commands(block[:block.index("```")], "neuroshift simulate")
    help_cmds = _commands(_helps()[("simulate",)], "neuroshift simulate")
    for cmds in (readme_cmds, help_cmds):
        assert len(cmds) == 3
        assert all("--pv CSF=" in c for c in cmds[:2]) and "--tissues" not in " ".join(cmds[:2])
        assert "--tissues" in cmds[2]  # the label map comes last, flagged as giving edge artefacts
    sample = _commands(_helps()[("sample-data",)], "neuroshift simulate")
    assert sample and all("--pv" in c and "--tissues" not in c for c in sample)
