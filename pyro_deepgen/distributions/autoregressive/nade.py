r"""NADE, the neural autoregressive distribution estimator (Larochelle & Murray 2011)."""
from typing import Optional

import torch
from torch.nn import functional as F

from ..._checks import positive_int
from .base import AutoregressiveModule


class NADE(AutoregressiveModule):
    r"""NADE over ``dim`` binary variables with ``hidden`` sigmoid units shared by all conditionals:

    .. math:: h_d = \sigma\Big(c + \sum_{j<d} W_{:,j} x_j\Big), \qquad
              p(x_d = 1 \mid x_{<d}) = \sigma(b_d + V_d^\top h_d),

    (in the order ``order``, default ``0..dim-1``). The pre-activations share their prefix sums,
    :math:`a_{d+1} = a_d + W_{:,d} x_d`, so every logit costs :math:`O(DH)` in all, computed
    here at once by an exclusive cumulative sum. With ``context_dim``, :math:`c` becomes
    :math:`c + U z` (a conditional NADE, e.g. the decoder :math:`p(x|z)` of a VAE).

    ``NADE(...)(context)`` is its :class:`~.AutoregressiveBernoulli`.

    :param int dim: number of binary variables :math:`D`.
    :param int hidden: hidden units :math:`H` (500 in the paper on MNIST).
    :param int context_dim: size of the conditioning input, or ``None``.
    :param str name: the prefix of its parameters in Pyro's param store (see :meth:`model`).
    :param order: a permutation of ``range(dim)``: the dimensions in sampling order.

    **Reference**: H. Larochelle, I. Murray, *The Neural Autoregressive Distribution Estimator*,
    AISTATS 2011.
    """

    def __init__(self, dim: int, hidden: int = 500, context_dim: Optional[int] = None,
                 order: Optional[torch.Tensor] = None, name: str = "nade") -> None:
        super().__init__()
        self.name = name
        self.dim = positive_int(dim, "dim")
        self.hidden = positive_int(hidden, "hidden")
        self.context_dim = None if context_dim is None else positive_int(context_dim, "context_dim")
        order = torch.arange(dim) if order is None else torch.as_tensor(order, dtype=torch.long)
        if not torch.equal(order.sort().values, torch.arange(dim)):
            raise ValueError(f"order must be a permutation of range(dim) = range({dim}), got {order.tolist()}")
        self.register_buffer("_order", order)
        self.register_buffer("_inverse", order.argsort())
        self.W = torch.nn.Parameter(torch.randn(dim, hidden) * 0.01)  # row j: W_{:,j}
        self.c = torch.nn.Parameter(torch.zeros(hidden))
        self.V = torch.nn.Parameter(torch.randn(dim, hidden) * 0.01)
        self.b = torch.nn.Parameter(torch.zeros(dim))
        self.context_net = None if context_dim is None else torch.nn.Linear(context_dim, hidden)

    def order(self, mask: int = 0) -> torch.Tensor:
        return self._order

    def _bias(self, context: Optional[torch.Tensor]) -> torch.Tensor:
        return self.c if context is None else self.c + self.context_net(context)

    def logits(self, x: torch.Tensor, context: Optional[torch.Tensor] = None, mask: int = 0) -> torch.Tensor:
        o = self._order
        xo = x[..., o]
        a = (xo.unsqueeze(-1) * self.W[o]).cumsum(-2)  # (..., D, H): inclusive prefix sums
        a = torch.cat([torch.zeros_like(a[..., :1, :]), a[..., :-1, :]], -2)  # exclusive
        h = torch.sigmoid(a + self._bias(context).unsqueeze(-2))
        logits_o = (h * self.V[o]).sum(-1) + self.b[o]
        return logits_o[..., self._inverse]

    def _sample(self, shape: torch.Size, context: Optional[torch.Tensor], mask: int) -> torch.Tensor:
        x = torch.zeros(shape + (self.dim,), device=self.W.device, dtype=self.W.dtype)
        a = self._bias(context).expand(shape + (self.hidden,)).clone()
        for d in self._order.tolist():
            logit = F.linear(torch.sigmoid(a), self.V[d]) + self.b[d]
            x[..., d] = torch.bernoulli(torch.sigmoid(logit))
            a += x[..., d:d + 1] * self.W[d]
        return x
