"""Argument checks shared by every layer: one-line ``ValueError``\\ s that name the argument.

Constructors call these so that ``VAE(64, 2.5)`` says ``z_dim must be a positive integer, got
2.5`` instead of failing later inside torch. Booleans are not integers here (``True`` is an
``int`` in Python, but ``hidden_dims=(True,)`` is a mistake). Imports nothing of the package.
"""
import math
import numbers
from typing import Any, Optional, Sequence, Tuple


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer >= 1, else a ``ValueError`` naming ``name``."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer >= 0, else a ``ValueError`` naming ``name``."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def positive_ints(values: Any, name: str, allow_empty: bool = True) -> Tuple[int, ...]:
    """``values`` as a tuple of ints if it is a sequence of integers >= 1 (non-empty unless
    ``allow_empty``), else a ``ValueError`` naming ``name``."""
    ok = isinstance(values, Sequence) and not isinstance(values, (str, bytes))
    if ok and all(_is_int(v) and v >= 1 for v in values) and (allow_empty or len(values)):
        return tuple(int(v) for v in values)
    what = "a sequence" if allow_empty else "a non-empty sequence"
    raise ValueError(f"{name} must be {what} of positive integers, got {values!r}")


def finite_float(value: Any, name: str, low: Optional[float] = None, strict: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number (``> low`` with ``strict``, else
    ``>= low``), else a ``ValueError`` naming ``name``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if not ok:
        bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return float(value)


def one_of(value: Any, name: str, allowed: Sequence[Any]) -> Any:
    """``value`` if it is in ``allowed``, else a ``ValueError`` naming ``name`` and the choices."""
    if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
        raise ValueError(f"{name}={value!r} is not known; use one of {tuple(allowed)}")
    return value
