"""MONAI glue for :mod:`neuroshift.simulate.transforms`, imported only when MONAI is already in use.

``monai.transforms.Compose.set_random_state`` seeds only members that are ``monai.transforms.Randomizable``.
The random transforms are plain classes (MONAI is optional), so when MONAI has been imported,
creating one creates an instance of its subclass below, which also derives from ``Randomizable``. The
subclasses live at module level under their own names, so they pickle (DataLoader workers).
Our own ``R``, ``set_random_state`` and ``randomize`` come first in the method order.
"""

from __future__ import annotations

from monai.transforms import Randomizable

from .transforms import RandAcquisitionShift, RandAcquisitionShiftd


class MonaiRandAcquisitionShift(RandAcquisitionShift, Randomizable):
    """:class:`~neuroshift.simulate.transforms.RandAcquisitionShift` as a MONAI ``Randomizable``."""

    _monai = True


class MonaiRandAcquisitionShiftd(RandAcquisitionShiftd, Randomizable):
    """:class:`~neuroshift.simulate.transforms.RandAcquisitionShiftd` as a MONAI ``Randomizable``."""

    _monai = True


_CLASSES = {RandAcquisitionShift: MonaiRandAcquisitionShift, RandAcquisitionShiftd: MonaiRandAcquisitionShiftd}


def monai_class(cls: type) -> type:
    """The MONAI subclass of one of the random transforms (``cls`` itself for a user's own subclass)."""
    return _CLASSES.get(cls, cls)


__all__ = ["MonaiRandAcquisitionShift", "MonaiRandAcquisitionShiftd", "monai_class"]
