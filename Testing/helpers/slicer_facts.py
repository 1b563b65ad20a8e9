"""Facts of Slicer's Python layer, read from Slicer's source (github.com/Slicer/Slicer), kept as data.

``BUILTIN_CONNECTORS[version]``: the built-in parameter-node GUI connectors in registration order
(``Base/Python/slicer/parameterNodeWrapper/guiConnectors.py``; ``createGuiConnector`` returns the
first whose ``canRepresent(widget, datatype)`` is true). Each entry: (class name, widget classes
compared with ``type(widget) ==``/``in``, accepted field kinds, what ``create`` additionally requires).
Tags read: v5.4.0 (= v5.6.x except qMRMLSliderWidget), v5.8.0, v5.10.0 (= v5.12.x and main, Aug 2026).
"""

from __future__ import annotations

PATH = "path"
NODE = "node"
ENUM = "enum"
RANGE = "FloatRange"
COLOR = "QColor"

_V54 = [
    ("QCheckBoxToBoolConnector", {"QCheckBox"}, {"bool"}, None),
    ("QCheckablePushButtonToBoolConnector", {"QPushButton"}, {"bool"}, None),
    ("QSliderOrSpinBoxToIntConnector", {"QSlider", "QSpinBox"}, {"int"}, "bounded if QSlider"),
    ("QDoubleSpinBoxCtkSliderWidgetToFloatConnector", {"QDoubleSpinBox", "ctkSliderWidget"}, {"float"},
     "bounded if ctkSliderWidget"),
    ("QComboBoxToStringableConnector", {"QComboBox"}, {"int", "float", "str", "bool"}, "Choice"),
    ("QComboBoxToEnumConnector", {"QComboBox"}, {ENUM}, None),
    ("QLineEditToStrConnector", {"QLineEdit"}, {"str"}, None),
    ("QTextEditPlainTextToStrConnector", {"QTextEdit"}, {"str"}, None),
    ("ctkRangeWidgetToRangeConnector", {"ctkRangeWidget"}, {RANGE}, None),
    ("ctkPathLineEditToPathConnector", {"ctkPathLineEdit"}, {PATH}, None),
    ("ctkDirectoryButtonToPathConnector", {"ctkDirectoryButton"}, {PATH}, None),
    ("qMRMLNodeComboBoxToNodeConnector", {"qMRMLNodeComboBox"}, {NODE}, None),
]

_V58 = [
    ("QCheckBoxToBoolConnector", {"QCheckBox", "ctkCheckBox"}, {"bool"}, None),
    ("QCheckablePushButtonToBoolConnector", {"QPushButton"}, {"bool"}, None),
    ("QSliderOrSpinBoxToIntConnector", {"QSlider", "QSpinBox"}, {"int"}, "bounded if QSlider"),
    ("QDoubleSpinBoxCtkSliderWidgetToFloatConnector",
     {"QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox",
      "qMRMLSpinBox"}, {"float"}, "bounded if ctkSliderWidget"),
    # since v5.8.0 this claims ctkComboBox too, and raises in create() without a Choice annotation
    ("QComboBoxToStringableConnector", {"QComboBox", "ctkComboBox"}, {"int", "float", "str", "bool"}, "Choice"),
    ("QComboBoxToEnumConnector", {"QComboBox", "ctkComboBox"}, {ENUM}, None),
    ("QLineEditToStrConnector", {"QLineEdit"}, {"str"}, None),
    ("QLabelToStrConnector", {"QLabel"}, {"str"}, None),
    ("QTextEditPlainTextToStrConnector", {"QTextEdit"}, {"str"}, None),
    ("ctkRangeWidgetToRangeConnector", {"ctkRangeWidget", "ctkDoubleRangeSlider", "qMRMLRangeWidget"}, {RANGE}, None),
    ("ctkPathLineEditToPathConnector", {"ctkPathLineEdit"}, {PATH}, None),
    ("ctkDirectoryButtonToPathConnector", {"ctkDirectoryButton"}, {PATH}, None),
    ("qMRMLNodeComboBoxToNodeConnector", {"qMRMLNodeComboBox"}, {NODE}, None),
]

_V510 = [
    ("QCheckBoxToBoolConnector", {"QCheckBox", "ctkCheckBox"}, {"bool"}, None),
    ("QCheckablePushButtonToBoolConnector", {"QPushButton"}, {"bool"}, None),
    ("ctkCheckablePushButtonToBoolConnector", {"ctkCheckablePushButton"}, {"bool"}, None),
    ("QSliderOrSpinBoxToIntConnector", {"QSlider", "QSpinBox"}, {"int"}, "bounded if QSlider"),
    ("QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector",
     {"QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider", "ctkDoubleSpinBox",
      "qMRMLSpinBox"}, {"float", "int"}, "bounded if ctkSliderWidget"),
    ("QComboBoxToStringableConnector", {"QComboBox", "ctkComboBox"}, {"int", "float", "str", "bool"}, "Choice"),
    ("QComboBoxToEnumConnector", {"QComboBox", "ctkComboBox"}, {ENUM}, None),
    ("QLineEditToStrConnector", {"QLineEdit"}, {"str"}, None),
    ("QLabelToStrConnector", {"QLabel"}, {"str"}, None),
    ("QTextEditPlainTextToStrConnector", {"QTextEdit"}, {"str"}, None),
    ("ctkRangeWidgetToRangeConnector", {"ctkRangeWidget", "ctkDoubleRangeSlider", "qMRMLRangeWidget"}, {RANGE}, None),
    ("ctkPathLineEditToPathConnector", {"ctkPathLineEdit"}, {PATH}, None),
    ("ctkDirectoryButtonToPathConnector", {"ctkDirectoryButton"}, {PATH}, None),
    ("qMRMLNodeComboBoxToNodeConnector", {"qMRMLNodeComboBox"}, {NODE}, None),
    ("ctkColorPickerButtonToQColorConnector", {"ctkColorPickerButton"}, {COLOR}, None),
]

BUILTIN_CONNECTORS = {"5.4": _V54, "5.8": _V58, "5.10": _V510}

#: Python of each Slicer release (top-level CMakeLists.txt, Slicer_REQUIRED_PYTHON_VERSION).
SLICER_PYTHON = {"5.4": (3, 9), "5.6": (3, 9), "5.8": (3, 9), "5.10": (3, 12), "5.12": (3, 12)}

#: Top-level packages Slicer 5.10 bundles (SuperBuild/External_python-*.cmake, External_SimpleITK.cmake)
#: that the engine uses; everything the engine needs beyond these must be installed by the modules.
BUNDLED = {"numpy", "scipy", "SimpleITK", "requests", "pydicom", "PIL", "packaging", "vtk", "qt", "ctk", "slicer"}
#: Engine dependencies Slicer does not bundle (pyproject.toml).
NOT_BUNDLED = {"torch", "yaml", "nibabel", "safetensors", "matplotlib", "tqdm", "h5py", "psutil", "monai"}

#: Qt/CTK properties (Qt 5 / CTK documentation) that widget code may assign; any other attribute assigned on a
#: wrapped Qt object is a new Python attribute, which PythonQt refuses ("setattro").
QT_PROPERTIES = {"text", "enabled", "toolTip", "value", "currentIndex", "maximum", "minimum", "format", "visible",
                 "currentPath", "checked", "decimals", "singleStep", "editable", "plainText"}
