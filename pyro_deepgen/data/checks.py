"""Checks of data at the edges of the library (``fit``, ``log_likelihood``, the models).

Each raises a one-line :class:`ValueError` that names the tensor, counts the bad entries and
gives the index of the first one, so that a NaN in the data is reported as such and not as a
distribution's "invalid values" deep inside a trace. They cost one reduction over the tensor:
call them once per call of the public function, not once per step.
"""
from typing import Tuple

import torch


def _first_index(bad: torch.Tensor) -> Tuple[int, ...]:
    flat = int(bad.reshape(-1).nonzero()[0, 0])
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), bad.shape))


def check_finite(x: torch.Tensor, name: str) -> None:
    """Reject NaN or infinite entries of a floating-point ``x`` (integer tensors pass)."""
    if not torch.is_tensor(x) or not x.is_floating_point() or x.numel() == 0:
        return
    bad = ~torch.isfinite(x)
    count = int(bad.sum())
    if count:
        raise ValueError(
            f"{name} has {count} NaN or infinite entr{'y' if count == 1 else 'ies'} (the first at "
            f"index {_first_index(bad)}); remove or impute them before training or evaluation"
        )


def check_unit_interval(x: torch.Tensor, name: str) -> None:
    """Reject entries outside ``[0, 1]`` (and NaN), as a Bernoulli likelihood needs."""
    if not torch.is_tensor(x) or x.numel() == 0:
        return
    check_finite(x, name)
    bad = (x < 0) | (x > 1)
    count = int(bad.sum())
    if count:
        raise ValueError(
            f"{name} has {count} entr{'y' if count == 1 else 'ies'} outside [0, 1] (the first at "
            f"index {_first_index(bad)}, value {float(x[_first_index(bad)]):.4g}); a Bernoulli "
            "likelihood needs values in [0, 1]: rescale the data (e.g. x / 255) or use "
            "likelihood='gaussian'"
        )
