"""The shape of the engine: every module imports, layers only import downwards, no import-time cycles,
every error class is indexed in errors.py, no private names imported across modules."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import neuroshift
from neuroshift.errors import ERROR_INDEX, NeuroShiftError, exit_code

ROOT = Path(neuroshift.__file__).resolve().parent

#: Subpackage (or top-level module) -> layer; a module may import only from lower layers (or its own package).
LAYERS = {
    "errors": 0, "sequences": 0,
    "threads": 1, "torch_device": 1, "heap": 1, "progress": 1, "references": 1, "_optional": 1, "io": 1,
    "physics": 2,
    "tissues": 3, "qmri": 3, "training": 3,
    "phantom": 4, "simulate": 4,
    "qsynth": 4.5,  # label-to-image synthesis: uses phantom anatomy, used by segment training
    "segment": 5, "readerstudy": 5,
    "synthesis": 5.5,  # LesionSynth: uses phantom, simulate, training; its Turing-test builder writes reader studies
    "stress": 6, "mrf": 6,
    "cli": 7,
    "__main__": 8,
}
FORBIDDEN_IN_ENGINE = ("slicer", "qt", "ctk", "vtk", "neuroshift_slicer")


def module_files() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def imports(name: str, path: Path, *, top_level_only: bool) -> set[str]:
    """Absolute names imported by a module (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also imports under module-level if/try blocks
        nodes = [n for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 for n in ast.walk(top)]
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def layer_of(module: str) -> tuple[str, int]:
    part = module.split(".")[1] if "." in module else "__init__"
    return part, LAYERS.get(part, -1)


def test_every_module_imports_and_is_layered():
    files = module_files()
    for name in sorted(files):
        if name == "neuroshift.__main__":
            continue
        importlib.import_module(name)
    unknown = sorted({layer_of(m)[0] for m in files if m != "neuroshift" and layer_of(m)[1] < 0})
    assert not unknown, f"subpackages without a layer: {unknown} (add them to LAYERS)"
    wrong = []
    for name, path in files.items():
        if name == "neuroshift":
            continue
        sub, layer = layer_of(name)
        for target in imports(name, path, top_level_only=False):
            top = target.split(".")[0]
            if top in FORBIDDEN_IN_ENGINE:
                wrong.append(f"{name} imports {target} (the engine never imports Slicer or Qt)")
            if top != "neuroshift" or target not in files or target == "neuroshift":
                continue
            tsub, tlayer = layer_of(target)
            if tsub != sub and tlayer >= layer:
                wrong.append(f"{name} (layer {layer}) imports {target} (layer {tlayer})")
    assert not wrong, "\n".join(wrong)


def test_training_never_imports_a_capability_the_cli_or_slicer():
    files = module_files()
    for name, path in files.items():
        if name.startswith("neuroshift.training"):
            for target in imports(name, path, top_level_only=False):
                sub = target.split(".")[1] if target.startswith("neuroshift.") else ""
                assert sub not in ("segment", "simulate", "stress", "qmri", "phantom", "tissues", "readerstudy",
                                   "cli"), (name, target)


def test_no_import_time_cycles():
    files = module_files()
    graph = {name: {t for t in imports(name, path, top_level_only=True)
                    if t in files and t != name and not (path.name == "__init__.py" and t.startswith(name + "."))}
             for name, path in files.items()}
    # a package's __init__ importing its own submodules is the normal shape, not a cycle
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        state[v] = 1
        stack.append(v)
        for w in graph.get(v, ()):
            if state.get(w) == 1:
                cycles.append(stack[stack.index(w):] + [w])
            elif w not in state:
                visit(w)
        stack.pop()
        state[v] = 2

    for v in sorted(graph):
        if v not in state:
            visit(v)
    assert not cycles, cycles


def all_error_classes() -> set[type]:
    for info in pkgutil.walk_packages(neuroshift.__path__, "neuroshift."):
        if info.name != "neuroshift.__main__":
            importlib.import_module(info.name)
    seen, todo = set(), [NeuroShiftError]
    while todo:
        cls = todo.pop()
        if cls not in seen and cls.__module__.startswith("neuroshift"):
            seen.add(cls)
            todo.extend(cls.__subclasses__())
    return seen


def test_every_error_class_is_indexed_with_its_exit_code():
    found = {(c.__module__, c.__name__, exit_code(c)) for c in all_error_classes()
             if not c.__module__.startswith("neuroshift.simulate.monai_glue")}
    assert found == set(ERROR_INDEX), {"missing from the index": sorted(found - set(ERROR_INDEX)),
                                       "stale in the index": sorted(set(ERROR_INDEX) - found)}
    doc = inspect.getdoc(importlib.import_module("neuroshift.errors"))
    for module, name, code in ERROR_INDEX:  # the table in the module docstring says the same
        assert any(line.split() == [module, name, str(code)] for line in doc.splitlines()), (module, name)


def private_uses(path: Path, module: str) -> list[str]:
    """``from X import _name`` and ``mod._name`` where X / mod is another neuroshift module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out, module_aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("neuroshift")):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    out.append(f"{path.name}:{node.lineno} imports {a.name}")
                target = f"{node.module}.{a.name}" if not node.level else a.name
                if target in module_files() or (node.level and not node.module):  # `from . import mod as m`
                    module_aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("neuroshift") and a.asname:
                    module_aliases.add(a.asname)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            out.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return out


def test_no_private_names_used_across_modules():
    """Public accessors instead: no ``from X import _name`` / ``X._name`` between neuroshift modules."""
    bad = []
    for name, path in sorted(module_files().items()):
        bad += [f"{name}: {b}" for b in private_uses(path, name)]
    assert not bad, "\n".join(bad)


def test_every_sequence_list_comes_from_the_one_table():
    from neuroshift import sequences
    from neuroshift.cli import qmri, stress_test
    from neuroshift.io import params
    from neuroshift.physics import sampling, signal
    from neuroshift.simulate import tissuewise

    assert sequences.SEQUENCES == tuple(sequences.SEQUENCE_PARAMETERS) == ("se", "ir", "flair", "dir", "gre", "mprage")
    assert sequences.SIGNAL_SEQUENCES == ("se", "fse", "ir", "flair", "dir", "gre", "mprage")
    assert params.SEQUENCE_PARAMETERS is sequences.SEQUENCE_PARAMETERS
    assert tissuewise.SEQUENCES == sequences.SEQUENCES and signal.SEQUENCES is sequences.SIGNAL_SEQUENCES
    assert qmri.SEQUENCES is sequences.SIGNAL_SEQUENCES and stress_test.SEQUENCES is sequences.SEQUENCES
    assert set(sampling.SEQUENCES_002) <= set(sequences.SEQUENCES)  # paper 002's sampled subset
