"""Exception types: one per kind of failure, each with a message a user can act on.

Every subclass of :class:`InputError` is bad input (exit code 2 on the CLI).
"""


class NeuroShiftError(Exception):
    """Base class of all errors raised by the engine."""


class InputError(NeuroShiftError, ValueError):
    """The user's input cannot be used; the CLI exits with code 2."""


class UnreadableFileError(InputError):
    """A file is missing, unreadable or not of a supported format."""


class MissingParameterError(InputError):
    """An acquisition parameter that the sequence needs is not known."""


class ParameterRangeError(InputError):
    """A parameter is outside its physically meaningful range."""


class GeometryError(InputError):
    """Volumes that must share a grid (size, spacing, origin, direction) do not."""


class DimensionError(InputError):
    """An array has the wrong number of dimensions or channels."""


class NonFiniteError(InputError):
    """An input contains NaN or infinite values."""


class IntegrityError(InputError):
    """A file's content does not match its recorded checksum or schema."""


class PathEscapeError(InputError):
    """A path points outside the folder a study or dataset declares."""


class OutputPathError(InputError):
    """An output cannot go where it was asked for: a read-only folder, a file in the way, or one of the inputs."""


class WriteFailedError(NeuroShiftError):
    """Writing an output failed or the written file did not read back intact (disk full, file-size limit).

    Nothing is left under the output's name; the CLI exits with code 1.
    """
