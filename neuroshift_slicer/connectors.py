"""The one parameter-node GUI connector the NeuroShift modules add to Slicer's built-in ones.

Imported only inside Slicer (it needs ``qt``/``ctk`` and ``slicer.parameterNodeWrapper``); every
other binding in the modules uses Slicer's own connectors with plain types.

Why a custom connector: a ``str`` path in a ``ctkPathLineEdit``, where empty means "not chosen".
No built-in connector represents ``(ctkPathLineEdit, str)`` in any release (5.4-5.12: the built-in
``ctkPathLineEditToPathConnector`` takes ``pathlib`` types only, and ``pathlib.Path("")`` is ``"."``,
so an unset path would show "." and read back as the current directory).

Why it is moved to the front of the registry: ``createGuiConnector`` returns the first registered
connector whose ``canRepresent`` is true, and ``@parameterNodeGuiConnector`` appends, so a built-in
that starts claiming ``(ctkPathLineEdit, str)`` in a later release would silently win over ours (this
is how ``QComboBoxToStringableConnector`` took editable ``ctkComboBox`` bindings in 5.8.0).
"""

from __future__ import annotations

import typing
from typing import Annotated

import ctk
from slicer.parameterNodeWrapper import GuiConnector, parameterNodeGuiConnector


def _is_plain_str(datatype) -> bool:
    if typing.get_origin(datatype) is Annotated:
        datatype = typing.get_args(datatype)[0]
    return datatype is str


def register_first(connector_class):
    """Register ``connector_class`` and move it to the front of Slicer's connector list (see module docstring)."""
    from slicer.parameterNodeWrapper import guiConnectors

    parameterNodeGuiConnector(connector_class)
    registry = guiConnectors._registeredGuiConnectors  # the list createGuiConnector walks in order (5.4-5.12)
    registry.remove(connector_class)
    registry.insert(0, connector_class)
    return connector_class


@register_first
class PathLineEditToStrConnector(GuiConnector):
    """``str`` <-> ``ctkPathLineEdit.currentPath``; empty text is the empty string (not ".")."""

    @staticmethod
    def canRepresent(widget, datatype) -> bool:
        return type(widget) == ctk.ctkPathLineEdit and _is_plain_str(datatype)

    @staticmethod
    def create(widget, datatype):
        if PathLineEditToStrConnector.canRepresent(widget, datatype):
            return PathLineEditToStrConnector(widget)
        return None

    def __init__(self, widget) -> None:
        super().__init__()
        self._widget = widget

    def _connect(self):
        self._widget.currentPathChanged.connect(self.changed)

    def _disconnect(self):
        self._widget.currentPathChanged.disconnect(self.changed)

    def widget(self):
        return self._widget

    def read(self) -> str:
        return self._widget.currentPath

    def write(self, value: str) -> None:
        if self._widget.currentPath != value:
            self._widget.currentPath = value
