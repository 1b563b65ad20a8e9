"""Volume I/O with geometry, acquisition parameters, and atomic writes."""

from .files import read_volume, write_volume
from .volume import Volume

__all__ = ["Volume", "read_volume", "write_volume"]
