"""MR physics: signal equations (numpy/torch), relaxation tables, noise, sequence sampling."""

from .relaxation import TISSUES, TissueParameters, relaxation_table
from .signal import (
    double_inversion_recovery,
    flair,
    inversion_recovery,
    mprage,
    mprage_eq6_paper002,
    mprage_steady_state,
    sequence_signal,
    spin_echo,
    spoiled_gre,
)

__all__ = [
    "TISSUES", "TissueParameters", "relaxation_table",
    "spin_echo", "inversion_recovery", "flair", "double_inversion_recovery", "spoiled_gre", "mprage",
    "mprage_eq6_paper002", "mprage_steady_state", "sequence_signal",
]
