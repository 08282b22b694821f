"""Deprecated import paths, kept importable for one release.

Release 0.2 moved several modules (the Boltzmann family to :mod:`pyro_deepgen.energy`, the 2-D
flow benchmark to :mod:`pyro_deepgen.experiments`, ...). Each old path still resolves, by name
and lazily, to the object at its new home and emits a :class:`DeprecationWarning` that names the
new path. The aliases are removed in release :data:`REMOVED_IN`.

An old *module* file becomes two lines::

    from .._compat import moved_module
    __getattr__ = moved_module(__name__, "pyro_deepgen.energy.gibbs")

and a package whose public names moved adds, after its own imports::

    from .._compat import moved_attributes
    __getattr__ = moved_attributes(__name__, {"RBM": "pyro_deepgen.energy"})

The new modules are imported by name (``importlib``) on first use, so an alias adds no import
edge between the layers (see ``docs/architecture.rst``).
"""
import importlib
import warnings
from typing import Any, Callable, Dict

REMOVED_IN = "0.3"


def warn_moved(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` (a dotted path) now lives at ``new``."""
    warnings.warn(
        f"{old} has moved to {new}; import it from there (the old path is removed in "
        f"pyro_deepgen {REMOVED_IN})",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` (a dotted path) is deprecated in favour of ``new``."""
    warnings.warn(
        f"{old} is deprecated; use {new} (the old name is removed in pyro_deepgen {REMOVED_IN})",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def moved_attributes(module_name: str, table: Dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) resolving each ``name`` of ``table`` to
    ``getattr(import_module(table[name]), name)`` with a :class:`DeprecationWarning`."""

    def __getattr__(name: str) -> Any:
        try:
            new = table[name]
        except KeyError:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}") from None
        warn_moved(f"{module_name}.{name}", f"{new}.{name}")
        return getattr(importlib.import_module(new), name)

    return __getattr__


def moved_module(module_name: str, new: str) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for a module that moved whole to ``new``: every public
    name resolves there, with a :class:`DeprecationWarning`."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = importlib.import_module(new)
        if not hasattr(target, name):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        warn_moved(f"{module_name}.{name}", f"{new}.{name}")
        return getattr(target, name)

    return __getattr__
