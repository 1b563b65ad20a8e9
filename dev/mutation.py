"""A small, repeatable mutation audit: plant one realistic bug at a time and run the relevant tests.

Each mutant in :mod:`dev.mutants` (``MUTANTS``) names a source file, an exact snippet, its mutated
replacement and the test files that should catch it. The runner copies the working tree (without
``.git``, virtual environments and caches) to a temporary folder, checks that the tests pass on the
unmutated copy, then for every mutant: writes the mutated file into the copy, runs the tests with a
timeout (``python -m pytest -x -q``), and restores the file. **The checkout itself is never modified**
(other people work in it); the copy is deleted at the end unless ``--keep``.

A mutant is *caught* when the tests fail (or time out), *survived* when they pass, and *stale* when
its snippet is no longer found exactly once (the code was refactored: update the list).

Usage::

    python dev/mutation.py                      # the whole audit, score per area
    python dev/mutation.py --area stress        # one area (substring match)
    python dev/mutation.py --id hd95-min,vs-    # mutants by id (substring match, comma-separated)
    python dev/mutation.py --issue13            # the 21 survivors of the first audit (issue 13)
    python dev/mutation.py --list               # list the mutants and whether their snippets exist
    python dev/mutation.py --json audit.json    # also write the results as JSON

Exit status: 0 when every non-stale mutant is caught, 1 otherwise, 2 when the unmutated tests fail.
The runtime is dominated by pytest start-up and the tests themselves (~5-20 s per mutant on a
2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "dev"))

from mutants import MUTANTS, Mutant  # noqa: E402

#: Folders and files never copied (large, private, or regenerated).
IGNORE = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info",
                                "build", "dist", ".mypy_cache", ".ruff_cache")


def copy_tree(dest: Path) -> Path:
    """Copy the working tree (with uncommitted changes) to ``dest/repo``."""
    repo = dest / "repo"
    shutil.copytree(ROOT, repo, ignore=IGNORE, symlinks=True)
    return repo


def run_tests(repo: Path, tests: list[str], timeout_s: float) -> tuple[str, float, str]:
    """Run ``tests`` in the copy; returns (outcome 'pass'|'fail'|'timeout', seconds, last output lines)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(repo)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0, ""
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    return ("pass" if proc.returncode == 0 else "fail"), time.monotonic() - t0, tail


def snippet_count(repo: Path, m: Mutant) -> int:
    path = repo / m.file
    return path.read_text(encoding="utf-8").count(m.original) if path.is_file() else 0


def select(area: str | None, ident: str | None, issue13: bool = False) -> list[Mutant]:
    idents = [i for i in (ident or "").split(",") if i]
    out = [m for m in MUTANTS if (area is None or area in m.area) and (not idents or any(i in m.id for i in idents))
           and (m.issue13 or not issue13)]
    if not out:
        raise SystemExit(f"no mutant matches area={area!r} id={ident!r}")
    return out


def check_imports_from_copy(repo: Path) -> None:
    """Refuse to run when ``neuroshift`` would be imported from anywhere but the copy."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    out = subprocess.run([sys.executable, "-c", "import neuroshift, sys; sys.stdout.write(neuroshift.__file__)"],
                         cwd=repo, env=env, capture_output=True, text=True, check=True).stdout
    if not Path(out).resolve().is_relative_to(repo.resolve()):
        raise SystemExit(f"neuroshift is imported from {out}, not from the copy {repo}: refusing to mutate")


def audit(mutants: list[Mutant], timeout_s: float, keep: bool) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="neuroshift-mutation-"))
    results: list[dict] = []
    try:
        repo = copy_tree(tmp)
        check_imports_from_copy(repo)
        baseline_tests = sorted({t for m in mutants for t in m.tests})
        outcome, secs, tail = run_tests(repo, baseline_tests, timeout_s * 4)
        print(f"baseline: {len(baseline_tests)} test files {outcome} in {secs:.0f} s", flush=True)
        if outcome != "pass":
            print(tail)
            raise SystemExit(2)
        for m in mutants:
            path = repo / m.file
            n = snippet_count(repo, m)
            if n != 1:
                results.append({**m.as_dict(), "outcome": "stale", "seconds": 0.0,
                                "detail": f"snippet found {n} times"})
                print(f"  STALE    {m.area:<22} {m.id:<34} snippet found {n} times", flush=True)
                continue
            original = path.read_text(encoding="utf-8")
            try:
                path.write_text(original.replace(m.original, m.mutated, 1), encoding="utf-8")
                outcome, secs, tail = run_tests(repo, list(m.tests), timeout_s)
            finally:
                path.write_text(original, encoding="utf-8")
            status = "survived" if outcome == "pass" else "caught"
            results.append({**m.as_dict(), "outcome": status, "seconds": round(secs, 1),
                            "detail": outcome if outcome == "timeout" else ""})
            print(f"  {status.upper():<8} {m.area:<22} {m.id:<34} {secs:5.1f} s", flush=True)
    finally:
        if keep:
            print(f"copy kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def summary(results: list[dict]) -> str:
    areas: OrderedDict[str, list[dict]] = OrderedDict()
    for r in results:
        areas.setdefault(r["area"], []).append(r)
    lines = [f"{'area':<22} caught / tested  (stale)"]
    for area, rs in areas.items():
        tested = [r for r in rs if r["outcome"] != "stale"]
        caught = sum(r["outcome"] == "caught" for r in tested)
        lines.append(f"{area:<22} {caught:>6} / {len(tested):<6}  ({len(rs) - len(tested)})")
    tested = [r for r in results if r["outcome"] != "stale"]
    caught = sum(r["outcome"] == "caught" for r in tested)
    score = 100.0 * caught / len(tested) if tested else float("nan")
    lines.append(f"{'TOTAL':<22} {caught:>6} / {len(tested):<6}  ({len(results) - len(tested)})  score {score:.0f} %")
    survivors = [r for r in tested if r["outcome"] == "survived"]
    if survivors:
        lines.append("survivors: " + ", ".join(f"{r['area']}:{r['id']}" for r in survivors))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--area", help="only mutants whose area contains this text")
    ap.add_argument("--id", help="only mutants whose id contains this text (several: comma-separated)")
    ap.add_argument("--issue13", action="store_true", help="only the 21 survivors of the first audit (issue 13)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant (default 300)")
    ap.add_argument("--list", action="store_true", help="list the mutants and whether their snippets exist")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = ap.parse_args(argv)
    mutants = select(args.area, args.id, args.issue13)
    if args.list:
        for m in mutants:
            n = snippet_count(ROOT, m)
            print(f"{m.area:<22} {m.id:<34} {'ok' if n == 1 else f'STALE ({n})':<10} {m.file}  [{', '.join(m.tests)}]")
        return 0
    results = audit(mutants, args.timeout, args.keep)
    text = summary(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": text}, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["outcome"] != "survived" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
