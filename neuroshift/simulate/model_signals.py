"""Tissue signals of a :class:`~neuroshift.simulate.tissuewise.TissueModel` (methods of the model, kept here by job).

``S_t(θ)`` per tissue with the model's apparent parameters (moved to the target's field strength when it
differs), from the scalar signal equations of :mod:`neuroshift.physics.scalar_signal` (times in ms): compiled
(:mod:`.block_kernels`) when the model uses the block layout, so every path of the model (``simulate``,
``deltas``, ``S_t(θ_0)``) uses the same numbers, plain Python otherwise. The model is not modified after
fitting; the per-field parameter tables are cached on it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..io.params import AcquisitionParams

__all__ = ["parameter_table", "scalar_signals", "at_field"]


def parameter_table(self, params: AcquisitionParams) -> np.ndarray:
    """``(3, max(T, 4))`` float64 rows PD, T1, T2 (T2* for GRE/MPRAGE) in ms of the apparent parameters at the
    target's field (zero columns pad to 4 tissues: signal 0); cached per field strength."""
    field_new = params.field_T if params.field_T is not None else self.field_T
    key = self.field_T if abs(field_new - self.field_T) <= 1e-9 else float(field_new)
    table = self._params.get(key)
    if table is None:
        src = self.tissues if key == self.field_T else self._at_field(key)
        t2 = "t2star_ms" if self.sequence in ("gre", "mprage") else "t2_ms"
        table = np.zeros((3, max(len(self._order), 4)), np.float64)
        for i, t in enumerate(self._order):
            table[:, i] = src[t].pd, src[t].t1_ms, getattr(src[t], t2)
        if len(self._params) > 8:
            self._params.clear()
        self._params[key] = table
    return table


def scalar_signals(self, params: AcquisitionParams) -> list[float]:
    """``S_t(θ)`` per tissue (stack order) as floats: the scalar equations
    (:mod:`neuroshift.physics.scalar_signal`, equal to the array path to 1e-12), compiled when the block
    layout is in use so that every path of this model (``simulate``, ``deltas``, ``S_t(θ_0)``) uses the
    same numbers."""
    from ..physics.scalar_signal import SEQUENCE_CODES, pack, signal_one

    table, n = self._table(params), len(self._order)
    p = pack(self.sequence, params)
    code = SEQUENCE_CODES[self.sequence]
    if self._blocks is not None:
        out = np.empty(table.shape[1])
        self._blocks.kernels().tissue_signals(code, *p, table, out)
        return out[:n].tolist()
    return [signal_one(code, *p, *table[:, i]) for i in range(n)]


def at_field(self, field_T: float) -> dict:
    """Apparent parameters moved to another field strength by the ratio of the literature priors."""
    from ..physics.relaxation import relaxation_table

    src = relaxation_table(self.field_T, self.relaxation)
    dst = relaxation_table(field_T, self.relaxation)
    out = {}
    for t, p in self.tissues.items():
        out[t] = replace(p, t1_ms=p.t1_ms * dst[t].t1_ms / src[t].t1_ms,
                         t2_ms=p.t2_ms * dst[t].t2_ms / src[t].t2_ms,
                         t2star_ms=p.t2star_ms * dst[t].t2star_ms / src[t].t2star_ms)
    return out
