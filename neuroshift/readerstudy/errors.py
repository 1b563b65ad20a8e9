"""Exception types of the reader-study engine (all bad input: CLI exit code 2)."""

from __future__ import annotations

from ..errors import InputError, PathEscapeError

__all__ = [
    "StudyDefinitionError",
    "InvalidAnswerError",
    "UnknownReaderError",
    "NotScheduledError",
    "DuplicateReadError",
    "WashoutError",
    "StudyDatabaseError",
    "PathEscapeError",
]


class StudyDefinitionError(InputError):
    """The study YAML is malformed or inconsistent (the message names the field)."""


class InvalidAnswerError(InputError):
    """A submitted answer or lesion does not satisfy the study's task definition."""


class UnknownReaderError(InvalidAnswerError):
    """A read names a reader who is not part of the study."""


class NotScheduledError(InvalidAnswerError):
    """A read (reader, case, image set, phase) is not in the study's schedule."""


class DuplicateReadError(InvalidAnswerError):
    """A read was already submitted; submitted reads are immutable."""


class WashoutError(InputError):
    """A phase is not open yet for a reader (previous phase unfinished or washout not elapsed)."""


class StudyDatabaseError(InputError):
    """The file is not a reader-study database of a schema version this software reads."""
