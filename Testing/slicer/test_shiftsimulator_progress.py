"""The progress display shared by ShiftSimulator's simulation and stress-test panels (plain objects for the Qt
widgets): percent on the bar, the message kept when empty, bar and Cancel shown only while a run is going."""

from __future__ import annotations

import types

from ShiftSimulatorLib.progress_display import show_busy, show_progress


class _Bar(types.SimpleNamespace):
    def setVisible(self, visible: bool) -> None:
        self.visible = visible


def _widgets():
    return _Bar(value=-1, visible=None), types.SimpleNamespace(text="idle"), types.SimpleNamespace(enabled=None)


def test_progress_is_percent_and_an_empty_message_keeps_the_label():
    bar, label, _cancel = _widgets()
    show_progress(bar, label, 0.426, "fitting")
    assert (bar.value, label.text) == (42, "fitting")  # int(42.6): truncated, as the panels did before
    show_progress(bar, label, 1.0, "")
    assert (bar.value, label.text) == (100, "fitting")


def test_busy_shows_bar_and_cancel_only_while_running():
    bar, label, cancel = _widgets()
    bar.value = 73
    show_busy(bar, label, cancel, True, "Running...")
    assert (bar.visible, bar.value, cancel.enabled, label.text) == (True, 0, True, "Running...")
    label.text = "Created FLAIR_TE150"
    bar.value = 100
    show_busy(bar, label, cancel, False, "Running...")
    assert (bar.visible, bar.value, cancel.enabled, label.text) == (False, 0, False, "Created FLAIR_TE150")
