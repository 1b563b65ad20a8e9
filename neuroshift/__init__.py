"""NeuroShift: neuroimaging AI under acquisition shift.

The engine behind the NeuroShift 3D Slicer extension. It never imports
``slicer`` or Qt; heavy libraries (torch, SimpleITK) are imported lazily.
"""

__version__ = "0.1.0"
