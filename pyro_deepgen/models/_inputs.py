"""Checks of the data that a model's ``model()`` / ``guide()`` receives, once per call.

The common case costs one reduction over ``x`` (``torch.isfinite(x.sum())`` or
``torch.aminmax(x)``) and one host sync; only when it fails does the full check of
:mod:`pyro_deepgen.data.checks` run, to count the bad entries and name the first one.
"""
import weakref

import torch

from ..data.checks import check_finite, check_unit_interval


def check_data(
    x: torch.Tensor, name: str, dtype: torch.dtype, owner: str, unit_interval: bool = False
) -> None:
    """Reject data whose dtype differs from the model's parameters (``dtype``), data with NaN
    or inf, and (``unit_interval``) values outside [0, 1], with one-line ``ValueError``\\ s
    naming ``name``."""
    if x.dtype != dtype:
        cast = {torch.float32: "x.float()", torch.float64: "x.double()"}.get(dtype, f"x.to({dtype})")
        convert = {torch.float32: ".float()", torch.float64: ".double()"}.get(x.dtype, f".to({x.dtype})")
        raise ValueError(
            f"{name} has dtype {x.dtype} but the {owner}'s parameters are {dtype}; pass "
            f"{cast.replace('x', name, 1)} or convert the model with model{convert}"
        )
    if x.numel() == 0:
        return
    if unit_interval:
        low, high = torch.aminmax(x)
        if not bool((low >= 0) & (high <= 1)):  # NaN fails both comparisons
            check_unit_interval(x, name)
    elif not bool(torch.isfinite(x.sum())):  # any NaN or inf makes the sum non-finite
        check_finite(x, name)


class CheckedOnce:
    """Remembers the last tensor that passed :func:`check_data` (by weak reference and version
    counter), so that the model and the guide of one step check the same batch once."""

    __slots__ = ("_ref", "_version")

    def __init__(self) -> None:
        self._ref, self._version = None, -1

    def seen(self, x: torch.Tensor) -> bool:
        return self._ref is not None and self._ref() is x and x._version == self._version

    def remember(self, x: torch.Tensor) -> None:
        self._ref, self._version = weakref.ref(x), x._version

    def __reduce__(self):  # pickled and deep-copied empty
        return CheckedOnce, ()


def param_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype of the module's first parameter (without a ``pyro.param`` statement)."""
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()


def check_batch(
    module: torch.nn.Module, x: torch.Tensor, name: str, owner: str, unit_interval: bool = False
) -> None:
    """:func:`check_data` against ``module``'s parameter dtype, skipped when ``x`` is the very
    tensor (same version) that ``module`` checked last: a step's guide and model share it."""
    checked = module.__dict__.setdefault("_checked_data", CheckedOnce())
    if not checked.seen(x):
        check_data(x, name, param_dtype(module), owner, unit_interval)
        checked.remember(x)
