"""The ``neuroshift`` command line: one module per command group."""
