"""Make flows Pyro modules: :func:`pyro.nn.module.to_pyro_module_` for conditional transforms too."""
from abc import ABCMeta

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.nn import PyroModule
from pyro.nn import module as pyro_module


class _PyroABCMeta(pyro_module._PyroModuleMeta, ABCMeta):
    """The metaclass of a PyroModule that is also an ABC (``ConditionalTransformModule``)."""


def _register_conditional_transform_module() -> None:
    cache = pyro_module._PyroModuleMeta._pyro_mixin_cache
    if ConditionalTransformModule in cache:
        return

    def __reduce__(self):  # the same unpickling helper as Pyro's generated classes
        state = getattr(self, "__getstate__", self.__dict__.copy)()
        return pyro_module._PyroModuleMeta._New, (ConditionalTransformModule,), state

    cls = _PyroABCMeta(
        "PyroConditionalTransformModule",
        (ConditionalTransformModule, PyroModule),
        {"__reduce__": __reduce__, "__module__": __name__},
    )
    cache[ConditionalTransformModule] = cls


def to_pyro_module_(module: torch.nn.Module) -> torch.nn.Module:
    """:func:`pyro.nn.module.to_pyro_module_` (in place, recursive) that also converts
    ``Conditional*`` transforms, and returns ``module``.

    Every parameter, those of the flow layers included, then goes through ``pyro.param``
    on access, so that handlers (e.g. one that detaches guide parameters for the STL and DReG
    gradient estimators) see them. Pyro 1.9's own ``to_pyro_module_`` fails on any
    :class:`~pyro.distributions.conditional.ConditionalTransformModule` (e.g.
    ``ConditionalPlanar``) with "TypeError: metaclass conflict", because that class is an
    ``abc.ABC`` and ``PyroModule`` has its own metaclass; this registers a ``PyroModule``
    version of it whose metaclass derives from both.
    """
    _register_conditional_transform_module()
    pyro_module.to_pyro_module_(module)
    return module
