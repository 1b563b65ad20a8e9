"""Helpers shared by the tests (issue 16): import them as ``from helpers.<module> import ...``.

Testing/ is importable through pytest's ``pythonpath`` option (pyproject.toml); data files
stay under ``Testing/fixtures/``."""
