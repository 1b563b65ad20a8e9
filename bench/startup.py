"""Start-up time of ``neuroshift --help`` and of every (sub)command's ``--help`` (goal < 0.5 s each).

Runs the installed console script (the program users type) once per command per round, in fresh
processes, interleaved over rounds; prints the median wall time per command, the slowest one and the
heavy modules (torch, monai, scipy, SimpleITK, numba...) a ``--help`` imports (should be none).

    python bench/startup.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HEAVY = ("torch", "monai", "scipy", "SimpleITK", "numba", "numpy", "nibabel", "matplotlib", "h5py")


def _command_paths() -> list[tuple[str, ...]]:
    from neuroshift.cli.main import build_parser

    def walk(parser, path=()):
        yield path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, path + (name,))

    return list(walk(build_parser()))


def _heavy_imported(path: tuple[str, ...]) -> list[str]:
    code = ("import sys, io, contextlib, json\nfrom neuroshift.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    try:\n"
            f"        main({list(path) + ['--help']!r})\n    except SystemExit:\n        pass\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _name(path: tuple[str, ...]) -> str:
    return " ".join(("neuroshift", *path, "--help"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all commands (default 3)")
    args = ap.parse_args()
    exe = shutil.which("neuroshift") or os.path.join(os.path.dirname(sys.executable), "neuroshift")
    paths = _command_paths()
    times: dict[tuple, list[float]] = {p: [] for p in paths}
    for _ in range(args.rounds):
        for p in paths:
            t0 = time.perf_counter()
            r = subprocess.run([exe, *p, "--help"], capture_output=True)
            times[p].append(time.perf_counter() - t0)
            if r.returncode != 0:
                print(f"neuroshift {' '.join(p)} --help: exit {r.returncode}", file=sys.stderr)
                return 1
    med = {p: sorted(v)[len(v) // 2] for p, v in times.items()}
    for p in sorted(med, key=med.get, reverse=True):
        print(f"  {med[p]:.3f} s  {_name(p)}")
    worst = max(med, key=med.get)
    heavy = sorted({m for p in paths for m in _heavy_imported(p)})
    print(f"commands: {len(paths)}; rounds: {args.rounds}; load (1/5/15 min): "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"slowest --help: {_name(worst)} {med[worst]:.3f} s (goal < 0.5 s: "
          f"{'met' if med[worst] < 0.5 else 'NOT met'}); median over commands "
          f"{sorted(med.values())[len(med) // 2]:.3f} s")
    print(f"heavy modules imported by any --help: {heavy or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
