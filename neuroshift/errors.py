"""Exception types: one per kind of failure, each with a message a user can act on.

Rule: :class:`InputError` (and every subclass) = the user's input cannot be used, CLI exit code 2;
any other :class:`NeuroShiftError` = the run failed (exit code 1); a plain ``ValueError``/``TypeError``
= a caller's programming error (a bug, not bad input). :data:`ERROR_INDEX` lists every error class of the
engine with its module and exit code (a test checks that it is complete); :func:`exit_code` gives the code.

==========================================  ============================  ====
module                                      class                         exit
==========================================  ============================  ====
neuroshift.errors                           NeuroShiftError               1
neuroshift.errors                           InputError                    2
neuroshift.errors                           UnreadableFileError           2
neuroshift.errors                           MissingParameterError         2
neuroshift.errors                           ParameterRangeError           2
neuroshift.errors                           GeometryError                 2
neuroshift.errors                           DimensionError                2
neuroshift.errors                           NonFiniteError                2
neuroshift.errors                           IntegrityError                2
neuroshift.errors                           PathEscapeError               2
neuroshift.errors                           OutputPathError               2
neuroshift.errors                           WriteFailedError              1
neuroshift.progress                         Cancelled                     1
neuroshift.readerstudy.errors               StudyDefinitionError          2
neuroshift.readerstudy.errors               InvalidAnswerError            2
neuroshift.readerstudy.errors               UnknownReaderError            2
neuroshift.readerstudy.errors               NotScheduledError             2
neuroshift.readerstudy.errors               DuplicateReadError            2
neuroshift.readerstudy.errors               WashoutError                  2
neuroshift.readerstudy.errors               StudyDatabaseError            2
neuroshift.segment.inference                DeviceMemoryError             1
neuroshift.segment.package                  UnknownArchitectureError      2
neuroshift.segment.registry                 ModelNotFoundError            2
neuroshift.simulate.estimate                EstimationError               2
neuroshift.stress.models                    ModelRunError                 1
neuroshift.stress.store                     RunMismatchError              2
neuroshift.stress.surface                   SurfaceFitError               2
neuroshift.tissues.maps                     FractionError                 2
==========================================  ============================  ====
"""

#: ``(module, class, CLI exit code)`` of every error class of the engine (the table above).
ERROR_INDEX: tuple[tuple[str, str, int], ...] = (
    ("neuroshift.errors", "NeuroShiftError", 1),
    ("neuroshift.errors", "InputError", 2),
    ("neuroshift.errors", "UnreadableFileError", 2),
    ("neuroshift.errors", "MissingParameterError", 2),
    ("neuroshift.errors", "ParameterRangeError", 2),
    ("neuroshift.errors", "GeometryError", 2),
    ("neuroshift.errors", "DimensionError", 2),
    ("neuroshift.errors", "NonFiniteError", 2),
    ("neuroshift.errors", "IntegrityError", 2),
    ("neuroshift.errors", "PathEscapeError", 2),
    ("neuroshift.errors", "OutputPathError", 2),
    ("neuroshift.errors", "WriteFailedError", 1),
    ("neuroshift.progress", "Cancelled", 1),
    ("neuroshift.readerstudy.errors", "StudyDefinitionError", 2),
    ("neuroshift.readerstudy.errors", "InvalidAnswerError", 2),
    ("neuroshift.readerstudy.errors", "UnknownReaderError", 2),
    ("neuroshift.readerstudy.errors", "NotScheduledError", 2),
    ("neuroshift.readerstudy.errors", "DuplicateReadError", 2),
    ("neuroshift.readerstudy.errors", "WashoutError", 2),
    ("neuroshift.readerstudy.errors", "StudyDatabaseError", 2),
    ("neuroshift.segment.inference", "DeviceMemoryError", 1),
    ("neuroshift.segment.package", "UnknownArchitectureError", 2),
    ("neuroshift.segment.registry", "ModelNotFoundError", 2),
    ("neuroshift.simulate.estimate", "EstimationError", 2),
    ("neuroshift.stress.models", "ModelRunError", 1),
    ("neuroshift.stress.store", "RunMismatchError", 2),
    ("neuroshift.stress.surface", "SurfaceFitError", 2),
    ("neuroshift.tissues.maps", "FractionError", 2),
)


def exit_code(error: BaseException | type) -> int:
    """The CLI exit code of an engine error (class or instance): 2 for bad input, 1 for a failed run."""
    cls = error if isinstance(error, type) else type(error)
    return 2 if issubclass(cls, InputError) else 1


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
