"""The shared Slicer-side environment helpers: missing wheels and the background interpreter."""

import subprocess

from neuroshift_slicer.environment import ENGINE_REQUIREMENTS, engine_process, missing_requirements


def test_nothing_is_missing_in_the_test_environment_and_unknown_modules_are_reported():
    assert missing_requirements() == []
    assert missing_requirements({"no_such_module_xyz": "no-such-wheel"}) == ["no-such-wheel"]
    assert ENGINE_REQUIREMENTS["yaml"] == "pyyaml"  # import name differs from the wheel name


def test_engine_process_runs_the_engine_cli(tmp_path):
    python, env = engine_process()
    out = subprocess.run([python, "-m", "neuroshift", "--version"], capture_output=True, text=True,
                         env={**__import__("os").environ, **env}, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("neuroshift ")
