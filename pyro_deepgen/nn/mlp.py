"""A plain multilayer perceptron with an optional split of its output."""
from typing import Callable, Sequence, Union

import torch
from torch import nn

_ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}

Activation = Union[str, Callable[[], nn.Module]]


def get_activation(activation: Activation) -> nn.Module:
    """Return a fresh activation module from a name (``"tanh"``, ``"relu"``, ...) or a factory."""
    if isinstance(activation, str):
        try:
            return _ACTIVATIONS[activation]()
        except KeyError:
            raise ValueError(
                f"activation={activation!r} is not known; use one of {sorted(_ACTIVATIONS)} "
                "or pass a callable that returns an nn.Module"
            ) from None
    if callable(activation):
        return activation()
    raise TypeError(f"activation must be a name or a callable, got {type(activation).__name__}")


class MLP(nn.Module):
    r"""Multilayer perceptron ``in_dim -> hidden_dims -> sum(out_dims)``.

    :param int in_dim: input size.
    :param hidden_dims: sizes of the hidden layers (may be empty).
    :param out_dims: an int, or a tuple of ints in which case the output is split into a
        tuple of tensors of those sizes.
    :param activation: activation between layers (not after the last one).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dims: Union[int, Sequence[int]],
        activation: Activation = "tanh",
    ) -> None:
        super().__init__()
        self.split = None if isinstance(out_dims, int) else tuple(int(d) for d in out_dims)
        total = out_dims if self.split is None else sum(self.split)
        layers = []
        prev = in_dim
        for h in hidden_dims:
            layers += [nn.Linear(prev, h), get_activation(activation)]
            prev = h
        layers.append(nn.Linear(prev, total))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor):
        out = self.net(x)
        if self.split is None:
            return out
        return tuple(out.split(self.split, dim=-1))
