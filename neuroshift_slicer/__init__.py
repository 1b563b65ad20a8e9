"""Slicer-side helpers shared by the NeuroShift modules (imports slicer/vtk, never Qt).

The engine (``neuroshift``) never imports ``slicer``; this package is the thin
bridge between MRML nodes and engine volumes, tested against a real
``vtkMRMLScene`` from slicer-core.
"""
