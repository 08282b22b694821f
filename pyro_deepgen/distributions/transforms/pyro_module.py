"""Make flows Pyro modules: :func:`pyro.nn.module.to_pyro_module_` for conditional transforms too."""
from abc import ABC, ABCMeta
from typing import Type

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.nn import PyroModule
from pyro.nn import module as pyro_module


class _PyroABCMeta(pyro_module._PyroModuleMeta, ABCMeta):
    """The metaclass of a PyroModule that is also an ABC (``ConditionalTransformModule``)."""


class _NewConditional(ABC):
    """Unpickling helper (like Pyro's ``_PyroModuleMeta._New``): an empty object of type
    ``PyroModule[Module]``. It derives from ``ABC`` so that its instance layout matches that of
    the conditional transforms, which Python requires for the ``__class__`` assignment."""

    def __init__(self, Module: Type[torch.nn.Module]) -> None:
        self.__class__ = pyro_class(Module)


def pyro_class(cls: Type[torch.nn.Module]) -> Type[PyroModule]:
    """``PyroModule[cls]``, also for subclasses of
    :class:`~pyro.distributions.conditional.ConditionalTransformModule` (an ``abc.ABC``, whose
    metaclass conflicts with ``PyroModule``'s in Pyro's own ``PyroModule[cls]``)."""
    cache = pyro_module._PyroModuleMeta._pyro_mixin_cache
    if cls in cache or not issubclass(cls, ConditionalTransformModule):
        return PyroModule[cls]
    bases = tuple(pyro_class(b) for b in cls.__bases__ if issubclass(b, torch.nn.Module))

    def __reduce__(self):
        state = getattr(self, "__getstate__", self.__dict__.copy)()
        return _NewConditional, (cls,), state

    result = _PyroABCMeta(
        "Pyro" + cls.__name__, (cls,) + bases, {"__reduce__": __reduce__, "__module__": __name__}
    )
    cache[cls] = result
    return result


def to_pyro_module_(module: torch.nn.Module) -> torch.nn.Module:
    """:func:`pyro.nn.module.to_pyro_module_` (in place, recursive) that also converts
    ``Conditional*`` transforms, and returns ``module``.

    Every parameter, those of the flow layers included, is then registered with ``pyro.param``
    whenever the module runs (inside a ``PyroModule`` call), so it appears as a param site in
    traces and is trained by ``SVI``/``train.fit``. Pyro 1.9's own ``to_pyro_module_`` fails on
    any :class:`~pyro.distributions.conditional.ConditionalTransformModule` (e.g.
    ``ConditionalPlanar``) with "TypeError: metaclass conflict", because that class is an
    ``abc.ABC`` and ``PyroModule`` has its own metaclass; here those classes get a metaclass
    deriving from both (and pickle/deepcopy support).
    """
    for m in module.modules():
        if isinstance(m, ConditionalTransformModule):
            pyro_class(type(m))
    pyro_module.to_pyro_module_(module)
    return module


class DropCacheOnPickle:
    """Mixin for transforms: pickle and ``copy.deepcopy`` without the values cached by the last
    call (``_cached_x_y``, cached log-dets), which may be non-leaf tensors that ``deepcopy``
    refuses. Put it first among the bases."""

    def __getstate__(self):
        state = super().__getstate__()
        for key in state:
            if key.startswith("_cached_"):
                state[key] = (None, None) if key == "_cached_x_y" else None
        return state
