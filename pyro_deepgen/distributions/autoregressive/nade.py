r"""NADE, the neural autoregressive distribution estimator (Larochelle & Murray 2011)."""
from typing import Optional

import torch
from torch.nn import functional as F

from ..._checks import positive_int
from .base import AutoregressiveModule


class _NADELogits(torch.autograd.Function):
    """Logits of NADE in its own order: ``(x (N, D), c (N, H), W (D, H), V (D, H), b (D,)) ->
    (N, D)``, with the O(DH) hand-derived backward pass (see :class:`NADE`)."""

    @staticmethod
    def forward(ctx, x, c, W, V, b):
        n, d = x.shape
        a = c.clone()
        out = x.new_empty(d, n)
        for j in range(d):
            torch.mv(torch.sigmoid(a), V[j], out=out[j])
            a.addr_(x[:, j], W[j])
        ctx.save_for_backward(x, W, V, a)
        return out.t() + b

    @staticmethod
    def backward(ctx, g):
        x, W, V, a = ctx.saved_tensors
        d = x.shape[1]
        a = a.clone()
        need_x = ctx.needs_input_grad[0]
        gx = x.new_empty(d, x.shape[0]) if need_x else None
        gW, gV = torch.empty_like(W), torch.empty_like(V)
        carry = torch.zeros_like(a)  # dL/da_j summed over the later dimensions
        gt, xt = g.t().contiguous(), x.t().contiguous()
        for j in range(d - 1, -1, -1):
            torch.mv(carry.t(), xt[j], out=gW[j])
            if need_x:
                torch.mv(carry, W[j], out=gx[j])
            a.addr_(xt[j], W[j], alpha=-1)  # a_j
            h = torch.sigmoid(a)
            torch.mv(h.t(), gt[j], out=gV[j])
            carry.addcmul_(h.sub_(h * h), torch.outer(gt[j], V[j]))
        return (gx.t() if need_x else None), carry, gW, gV, g.sum(0)


class NADE(AutoregressiveModule):
    r"""NADE over ``dim`` binary variables with ``hidden`` sigmoid units shared by all conditionals:

    .. math:: h_d = \sigma\Big(c + \sum_{j<d} W_{:,j} x_j\Big), \qquad
              p(x_d = 1 \mid x_{<d}) = \sigma(b_d + V_d^\top h_d),

    (in the order ``order``, default ``0..dim-1``). The pre-activations share their prefix sums,
    :math:`a_{d+1} = a_d + W_{:,d} x_d`, so all :math:`D` logits cost :math:`O(DH)`. ``logits``
    runs this recurrence in a custom autograd function: the forward pass keeps only
    :math:`a_{D}` (no :math:`D \times H` activations per example), and the backward pass walks
    the dimensions in reverse, recovering :math:`a_d = a_{d+1} - W_{:,d} x_d` and accumulating
    :math:`\partial/\partial a` in one ``(batch, H)`` buffer, the :math:`O(DH)` gradient of
    Larochelle & Murray (2011, sec. 3). Every step is a rank-one update or a matrix-vector
    product over the batch, so memory is :math:`O(BH)` and the working set stays in cache.
    With ``context_dim``, :math:`c` becomes :math:`c + U z` (a conditional NADE, e.g. the
    decoder :math:`p(x|z)` of a VAE).

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
        self._identity = bool(torch.equal(order, torch.arange(dim)))
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
        bias = self._bias(context)
        batch = torch.broadcast_shapes(x.shape[:-1], bias.shape[:-1])
        n = batch.numel()
        identity = self._identity
        xo = x if identity else x[..., self._order]
        o = self._order
        W, V, b = (self.W, self.V, self.b) if identity else (self.W[o], self.V[o], self.b[o])
        logits_o = _NADELogits.apply(xo.expand(batch + x.shape[-1:]).reshape(n, self.dim).to(W.dtype),
                                     bias.expand(batch + bias.shape[-1:]).reshape(n, self.hidden), W, V, b)
        logits_o = logits_o.reshape(batch + (self.dim,))
        return logits_o if identity else logits_o[..., self._inverse]

    def _sample(self, shape: torch.Size, context: Optional[torch.Tensor], mask: int) -> torch.Tensor:
        x = torch.zeros(shape + (self.dim,), device=self.W.device, dtype=self.W.dtype)
        a = self._bias(context).expand(shape + (self.hidden,)).clone()
        for d in self._order.tolist():
            logit = F.linear(torch.sigmoid(a), self.V[d]) + self.b[d]
            x[..., d] = torch.bernoulli(torch.sigmoid(logit))
            a += x[..., d:d + 1] * self.W[d]
        return x
