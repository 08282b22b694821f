r"""The distribution shared by the autoregressive models over binary vectors, and their base module.

An autoregressive model factors :math:`p(x) = \prod_{i=1}^D p(x_{o_i} \mid x_{o_{<i}})` in an
ordering :math:`o`, each factor a Bernoulli whose logit :math:`\ell_{o_i}(x_{o_{<i}})` a network
computes. One pass of the network gives every logit, so

.. math:: \log p(x) = \sum_d x_d \ell_d - \log(1 + e^{\ell_d})

is exact and vectorized; sampling is sequential, one dimension at a time (batched over samples).
A model trained over :math:`K` orderings/masks (order-agnostic training, Uria et al. 2014;
Germain et al. 2015) is scored at test time as the equal mixture of its :math:`K` models,

.. math:: \log p(x) = \log \frac1K \sum_{k=1}^K p_k(x),

a normalized distribution (sampling picks a mask uniformly, then draws from it).
"""
import math
from typing import Optional, Sequence, Tuple

import pyro
import torch
from pyro.distributions import TorchDistribution, constraints
from torch.nn import functional as F

from ...plates import data_plate


class AutoregressiveModule(torch.nn.Module):
    """Base of :class:`~.NADE`, :class:`~.MADE` and :class:`~.PixelCNN`: a network over
    ``dim`` binary variables that returns every Bernoulli logit in one pass.

    Subclasses implement ``logits(x, context=None, mask=0) -> (..., dim)`` (logit ``d`` a
    function of the inputs before ``d`` in ``order(mask)`` and of ``context`` only) and
    ``order(mask=0)`` (the dimensions in sampling order); they may override ``_sample`` with
    something faster than ``dim`` full passes. ``num_masks`` > 1 makes an ensemble
    (see :meth:`ensemble`).

    ``module(context)`` is the :class:`AutoregressiveBernoulli` (batch shape ``context.shape[:-1]``,
    or ``()``), so ``pyro.sample("x", module(), obs=x)`` scores data in any Pyro program;
    :meth:`model` is that site inside ``pyro.plate("data")``, for
    :func:`~pyro_deepgen.train.fit` with an empty guide; it registers the parameters with
    ``pyro.module(self.name, self, update_module_params=True)`` (the module takes the param
    store's values, so a restored param store and the module stay one set of tensors), as any
    other Pyro program that trains the module should.
    """

    name: str = "autoregressive"

    dim: int
    context_dim: Optional[int] = None
    num_masks: int = 1

    def order(self, mask: int = 0) -> torch.Tensor:
        return torch.arange(self.dim)

    def logits(self, x: torch.Tensor, context: Optional[torch.Tensor] = None, mask: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def ensemble(self) -> Tuple[int, ...]:
        """The masks ``log_prob`` averages over: all of them in ``eval()`` mode, the current one in
        training (a one-mask draw of the order-agnostic objective)."""
        return (self.current_mask(),) if self.training else tuple(range(self.num_masks))

    def current_mask(self) -> int:
        return 0

    def step_masks(self) -> None:
        """Called once per training step by :meth:`model`; order-agnostic models advance their
        mask here."""

    def forward(self, context: Optional[torch.Tensor] = None,
                masks: Optional[Sequence[int]] = None) -> "AutoregressiveBernoulli":
        return AutoregressiveBernoulli(self, context, masks)

    def model(self, x: torch.Tensor, context: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None) -> None:
        """``x ~ self(context)`` inside ``pyro.plate("data")`` (``num_data``: the full data size,
        to scale a minibatch); advances an order-agnostic model's mask when gradients are on."""
        if self.training and torch.is_grad_enabled():
            self.step_masks()
        pyro.module(self.name, self, update_module_params=True)
        with data_plate(x, num_data):
            pyro.sample("x", self(context), obs=x)

    def guide(self, x: torch.Tensor, context: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None) -> None:
        """The empty guide (nothing is latent)."""

    def _check_context(self, context: Optional[torch.Tensor]) -> None:
        if self.context_dim is None and context is not None:
            raise ValueError(f"{type(self).__name__} was built without context_dim; pass context=None "
                             "or build it with context_dim")
        if self.context_dim is not None and (context is None or context.shape[-1] != self.context_dim):
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"context must have shape (..., {self.context_dim}) (context_dim), got {got}")

    def _sample(self, shape: torch.Size, context: Optional[torch.Tensor], mask: int) -> torch.Tensor:
        """``shape + (dim,)`` draws by ``dim`` full passes, one new dimension each."""
        p = next(self.parameters())
        x = torch.zeros(shape + (self.dim,), device=p.device, dtype=p.dtype)
        for d in self.order(mask).tolist():
            logit = self.logits(x, context, mask)[..., d]
            x[..., d] = torch.bernoulli(torch.sigmoid(logit))
        return x


class AutoregressiveBernoulli(TorchDistribution):
    r"""The distribution of an :class:`~.base.AutoregressiveModule` over binary vectors: event shape
    ``(dim,)``, batch shape ``context.shape[:-1]`` (or ``()``), exact ``log_prob`` (the
    log-mean-exp over ``masks`` when there are several), sequential ``sample``, no ``rsample``.

    :param net: the module.
    :param context: ``(..., context_dim)`` conditioning input (e.g. :math:`z` of a VAE decoder),
        or ``None``.
    :param masks: the mask indices to average over (default ``net.ensemble()``).
    """

    arg_constraints = {}
    support = constraints.independent(constraints.boolean, 1)
    has_rsample = False

    def __init__(self, net: AutoregressiveModule, context: Optional[torch.Tensor] = None,
                 masks: Optional[Sequence[int]] = None, batch_shape: Optional[torch.Size] = None,
                 validate_args=None) -> None:
        net._check_context(context)
        self.net, self.context = net, context
        self.masks = tuple(net.ensemble() if masks is None else masks)
        if not self.masks or any(not 0 <= k < net.num_masks for k in self.masks):
            raise ValueError(f"masks must be indices in [0, {net.num_masks}) (num_masks), got {masks!r}")
        if batch_shape is None:
            batch_shape = context.shape[:-1] if context is not None else torch.Size()
        super().__init__(torch.Size(batch_shape), torch.Size((net.dim,)), validate_args=False)

    def expand(self, batch_shape, _instance=None) -> "AutoregressiveBernoulli":
        batch_shape = torch.Size(batch_shape)
        context = None if self.context is None else self.context.expand(batch_shape + self.context.shape[-1:])
        return AutoregressiveBernoulli(self.net, context, self.masks, batch_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        terms = [F.binary_cross_entropy_with_logits(
            *torch.broadcast_tensors(self.net.logits(value, self.context, k), value), reduction="none").sum(-1).neg()
            for k in self.masks]
        lp = terms[0] if len(terms) == 1 else torch.stack(terms).logsumexp(0) - math.log(len(terms))
        return lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape))

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        context = None if self.context is None else self.context.expand(shape + self.context.shape[-1:])
        if len(self.masks) == 1:
            return self.net._sample(shape, context, self.masks[0])
        n = shape.numel()
        flat = None if context is None else context.reshape(n, -1)
        p = next(self.net.parameters())
        x = torch.empty(n, self.net.dim, device=p.device, dtype=p.dtype)
        which = torch.randint(len(self.masks), (n,), device=p.device)
        for i, k in enumerate(self.masks):
            idx = (which == i).nonzero().squeeze(-1)
            if idx.numel():
                x[idx] = self.net._sample(torch.Size((idx.numel(),)), None if flat is None else flat[idx], k)
        return x.reshape(shape + (self.net.dim,))

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError("the mean of an autoregressive model has no closed form; average samples")
