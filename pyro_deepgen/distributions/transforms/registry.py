"""The flow families by name: :data:`FLOWS`, read by
:func:`~pyro_deepgen.distributions.transforms.build_flow`, the guides, the flow densities, the
examples and the command line."""
from importlib import import_module
from typing import Dict, Tuple

from .family import FlowFamily


def _family(module: str, name: str) -> FlowFamily:
    """The :class:`FlowFamily` ``name`` of this package's module ``module`` (so that a registry
    entry is one line, with no import line beside it)."""
    family = getattr(import_module(f".{module}", __package__), name)
    if not isinstance(family, FlowFamily):
        raise TypeError(f"{module}.{name} is a {type(family).__name__}, not a FlowFamily")
    return family


#: Every flow family by name, in the order the command line lists them (``planar``, ``radial``,
#: ``iaf``, ``nice``, ``realnvp``; see the ``PLANAR``, ... constants of the families' modules).
#: Add a family by defining ``MYFLOW = FlowFamily(...)`` in its own module of this package and
#: adding its line here; :func:`~pyro_deepgen.distributions.transforms.build_flow`, the guides,
#: the flow densities, the choices of the command line and examples, and the property test over
#: every flow then accept it. The dict is read at call time, so a family registered at run time
#: (``FLOWS["myflow"] = family``) works as well.
#:
#: :meta hide-value:
FLOWS: Dict[str, FlowFamily] = {
    "planar": _family("planar", "PLANAR"),
    "radial": _family("radial", "RADIAL"),
    "iaf": _family("affine_autoregressive", "IAF"),
    "nice": _family("additive_coupling", "NICE"),
    "realnvp": _family("affine_coupling", "REALNVP"),
}

#: The names of :data:`FLOWS` at import time, ``tuple(FLOWS)``.
FLOW_KINDS: Tuple[str, ...] = tuple(FLOWS)


def flow_family(name: str, arg: str = "kind") -> FlowFamily:
    """The family ``FLOWS[name]``; a ``ValueError`` naming the argument ``arg`` and the
    choices if there is none."""
    try:
        return FLOWS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        raise ValueError(f"{arg}={name!r} is not a flow; use one of {tuple(FLOWS)}") from None
