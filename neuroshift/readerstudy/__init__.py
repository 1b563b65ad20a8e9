"""Blinded, randomised reader studies of real and synthetic images (engine of the ReaderStudy Slicer module).

One job per module: :mod:`.definition` (study YAML), :mod:`.schedule` (seeded
balanced schedules, washout), :mod:`.blinding` (neutral names, no revealing
metadata), :mod:`.store` (SQLite WAL, immutable reads), :mod:`.answers`
(validation), :mod:`.exchange` (CSV import/export), :mod:`.matching` (lesion
matching), :mod:`.stats` (tests, intervals, display rounding), :mod:`.analysis`
and :mod:`.report`. NumPy, SciPy and PyYAML only.
"""

from .answers import Lesion, Read, lesion_from_axes, validate_read
from .definition import StudyDefinition, load_study, parse_study
from .schedule import ScheduledRead, build_schedule
from .store import StudyStore

__all__ = ["Lesion", "Read", "lesion_from_axes", "validate_read", "StudyDefinition", "load_study", "parse_study",
           "ScheduledRead", "build_schedule", "StudyStore"]
