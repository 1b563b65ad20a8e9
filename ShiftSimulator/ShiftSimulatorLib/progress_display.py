"""Progress display shared by the ShiftSimulator panels (simulation and stress test).

A panel shows a run with three widgets: a progress bar that is visible only while a run is going, a status
label and a Cancel button. The widgets are duck-typed (``value``, ``setVisible``, ``text``, ``enabled``), so
this file imports no Qt and is tested with plain objects. Fractions are 0-1; the bar shows percent (0-100).
"""

from __future__ import annotations


def show_progress(bar, label, fraction: float, message: str) -> None:
    """The bar at ``fraction`` (0-1) of the run in percent, and ``message`` (when not empty) in the label."""
    bar.value = int(100 * fraction)
    if message:
        label.text = message


def show_busy(bar, label, cancel_button, busy: bool, running_text: str) -> None:
    """Start (``busy``) or end of a run: the bar shown at 0 only while running, Cancel enabled only while
    running, and ``running_text`` (already translated by the caller) in the label when a run starts."""
    bar.setVisible(busy)
    bar.value = 0
    cancel_button.enabled = busy
    if busy:
        label.text = running_text
