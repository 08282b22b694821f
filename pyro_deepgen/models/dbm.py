"""Deprecated: moved to :mod:`pyro_deepgen.energy.dbm` (``MeanFieldPCD`` to
:mod:`pyro_deepgen.energy.cd`); removed in release 0.3."""
from .._compat import moved_attributes, moved_module

_moved_loss = moved_attributes(__name__, {"MeanFieldPCD": "pyro_deepgen.energy.cd"})
_moved_module = moved_module(__name__, "pyro_deepgen.energy.dbm")


def __getattr__(name: str):
    return _moved_loss(name) if name == "MeanFieldPCD" else _moved_module(name)
