"""Deprecated: moved to :mod:`pyro_deepgen.energy.rbm` (removed in release 0.3)."""
from .._compat import moved_module

__getattr__ = moved_module(__name__, "pyro_deepgen.energy.rbm")
