"""Deprecated: the 2-D flow benchmark moved to :mod:`pyro_deepgen.experiments.flows2d`."""
from ._compat import moved_module

__getattr__ = moved_module(__name__, "pyro_deepgen.experiments.flows2d")
