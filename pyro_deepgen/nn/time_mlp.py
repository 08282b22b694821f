"""A multilayer perceptron conditioned on a diffusion time step through a sinusoidal embedding."""
import math
from typing import Sequence, Tuple, Union

import torch
from torch import nn

from .mlp import Activation, get_activation


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    r"""Transformer-style embedding of (integer or real) times ``t`` of shape ``(N,)``.

    .. math:: e(t) = [\cos(t\,\omega_1), \dots, \cos(t\,\omega_{d/2}),
              \sin(t\,\omega_1), \dots, \sin(t\,\omega_{d/2})],\quad
              \omega_i = P^{-(i-1)/(d/2)}

    with ``P = max_period``; an odd ``dim`` gets one trailing zero. Returns ``(N, dim)`` in the
    default dtype (or ``t``'s floating dtype) on ``t``'s device.
    """
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / max(half, 1)
    )
    args = t.to(dtype)[:, None] * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(len(t), 1)], dim=-1)
    return emb


class TimeMLP(nn.Module):
    r"""MLP for vectors ``x`` of shape ``(N, x_dim)`` and time steps ``t`` of shape ``(N,)``.

    Each hidden layer adds a learned projection of the sinusoidal time embedding,
    :math:`h_{l+1} = \mathrm{act}(W_l h_l + U_l\, e(t) + b_l)`. The output layer starts at zero
    and is split into ``out_dims``; the default ``(x_dim, x_dim)`` fits
    :class:`~pyro_deepgen.models.GaussianDiffusion`'s ``net(x_t, t) -> (mean_param, var_param)``.

    :param int x_dim: input size.
    :param hidden_dims: hidden layer sizes, default ``(128, 128, 128)``.
    :param int time_dim: size of the sinusoidal embedding, default 32.
    :param out_dims: int or tuple of ints (then a tuple of outputs); default ``(x_dim, x_dim)``.
    :param activation: default ``"silu"``.
    """

    def __init__(
        self,
        x_dim: int,
        hidden_dims: Sequence[int] = (128, 128, 128),
        time_dim: int = 32,
        out_dims: Union[int, Sequence[int], None] = None,
        activation: Activation = "silu",
    ) -> None:
        super().__init__()
        if x_dim < 1 or not hidden_dims:
            raise ValueError("x_dim must be positive and hidden_dims non-empty")
        out_dims = (x_dim, x_dim) if out_dims is None else out_dims
        self.split = None if isinstance(out_dims, int) else tuple(int(d) for d in out_dims)
        self.time_dim = int(time_dim)
        dims = [x_dim, *(int(h) for h in hidden_dims)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.time_layers = nn.ModuleList(nn.Linear(self.time_dim, b) for b in dims[1:])
        self.activation = get_activation(activation)
        self.out = nn.Linear(dims[-1], out_dims if self.split is None else sum(self.split))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
        emb = sinusoidal_embedding(t, self.time_dim).to(x.dtype)
        h = x
        for layer, time_layer in zip(self.layers, self.time_layers):
            h = self.activation(layer(h) + time_layer(emb))
        out = self.out(h)
        return out if self.split is None else tuple(out.split(self.split, dim=-1))
