"""Inverse autoregressive flow (Kingma et al. 2016): Pyro's transform with a dtype-safe inverse."""
from functools import partial
from typing import Optional, Sequence

import torch
from pyro.distributions.transforms import AffineAutoregressive as _PyroAffineAutoregressive
from pyro.distributions.transforms import (
    ConditionalAffineAutoregressive as _PyroConditionalAffineAutoregressive,
)
from pyro.distributions.transforms.utils import clamp_preserve_gradients
from torch.nn import functional as F

from ...nn.masks import made_degrees, made_masks
from .family import FlowFamily
from .permutation import permutation as _permutation
from .pyro_module import DropCacheOnPickle


class AffineAutoregressive(DropCacheOnPickle, _PyroAffineAutoregressive):
    r"""Pyro's :class:`~pyro.distributions.transforms.AffineAutoregressive` (IAF) whose inverse
    follows the input's dtype.

    With ``stable=True`` (the default here, as in the IAF paper's numerically stable LSTM-like
    update) the layer is

        :math:`\mathbf{y} = \sigma_t\odot\mathbf{x} + (1 - \sigma_t)\odot\mathbf{m}_t`,
        :math:`\sigma_t = \mathrm{sigmoid}(\mathbf{s}_t + b_\sigma)`,
        :math:`\log|\det J| = \sum_i \log\sigma_{t,i}`,

    where :math:`(\mathbf{m}_t, \mathbf{s}_t)` come from a MADE network of :math:`\mathbf{x}`;
    sampling costs one network pass, scoring an arbitrary value :math:`D` passes.

    Pyro's inverse starts from ``torch.zeros(...)`` in the *default* dtype, so scoring a
    float64 value that was not just sampled fails with a dtype error in Pyro 1.9; here the
    zeros follow ``y.dtype``. Everything else is Pyro's.

    Example usage:

    >>> transform = affine_autoregressive(4, hidden_dims=[16])
    >>> base_dist = dist.Normal(torch.zeros(4), torch.ones(4)).to_event(1)
    >>> flow_dist = dist.TransformedDistribution(base_dist, [transform])
    >>> flow_dist.log_prob(torch.zeros(4)).shape
    torch.Size([])

    :param autoregressive_nn: a MADE network returning ``(mean, log_scale)`` (or logit scale).
    :param kwargs: ``stable`` (default ``True``), ``sigmoid_bias``, ``log_scale_min_clip``,
        ``log_scale_max_clip``, as in Pyro.

    **References**: [1] D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever,
    M. Welling, *Improving Variational Inference with Inverse Autoregressive Flow*,
    arXiv:1606.04934. [2] M. Germain, K. Gregor, I. Murray, H. Larochelle, *MADE: Masked
    Autoencoder for Distribution Estimation*, arXiv:1502.03509.
    """

    def __init__(self, autoregressive_nn, **kwargs) -> None:
        kwargs.setdefault("stable", True)
        super().__init__(autoregressive_nn, **kwargs)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = [y.new_zeros(y.shape[:-1])] * y.size(-1)
        for idx in self.arn.permutation:
            mean, log_scale = self.arn(torch.stack(x, dim=-1))
            log_scale = clamp_preserve_gradients(
                log_scale, min=self.log_scale_min_clip, max=self.log_scale_max_clip
            )
            x[idx] = (y[..., idx] - mean[..., idx]) * torch.exp(-log_scale[..., idx])
        self._cached_log_scale = log_scale
        return torch.stack(x, dim=-1)

    def _inverse_stable(self, y: torch.Tensor) -> torch.Tensor:
        x = [y.new_zeros(y.shape[:-1])] * y.size(-1)
        for idx in self.arn.permutation:
            mean, logit_scale = self.arn(torch.stack(x, dim=-1))
            inverse_scale = 1 + torch.exp(-logit_scale[..., idx] - self.sigmoid_bias)
            x[idx] = inverse_scale * y[..., idx] + (1 - inverse_scale) * mean[..., idx]
        self._cached_log_scale = self.logsigmoid(logit_scale + self.sigmoid_bias)
        return torch.stack(x, dim=-1)


class ConditionalAffineAutoregressive(_PyroConditionalAffineAutoregressive):
    r"""IAF conditioned on a context :math:`\mathbf{h}` (Kingma et al. 2016 feed the encoder's
    :math:`\mathbf{h}` to every step): the MADE network takes ``(x, context=h)``.
    ``condition(h)`` returns an :class:`AffineAutoregressive`; ``stable=True`` by default.

    Example usage:

    >>> transform = conditional_affine_autoregressive(4, context_dim=3, hidden_dims=[16])
    >>> base_dist = dist.Normal(torch.zeros(10, 4), 1.0).to_event(1)  # one per context
    >>> h = torch.randn(10, 3)
    >>> dist.TransformedDistribution(base_dist, [transform.condition(h)]).rsample().shape
    torch.Size([10, 4])

    **References**: [1] D. P. Kingma et al., *Improving Variational Inference with Inverse
    Autoregressive Flow*, arXiv:1606.04934.
    """

    def __init__(self, autoregressive_nn, **kwargs) -> None:
        kwargs.setdefault("stable", True)
        super().__init__(autoregressive_nn, **kwargs)

    def condition(self, context: torch.Tensor) -> AffineAutoregressive:
        cond_nn = partial(self.nn, context=context)
        cond_nn.permutation = cond_nn.func.permutation
        cond_nn.get_permutation = cond_nn.func.get_permutation
        return AffineAutoregressive(cond_nn, **self.kwargs)


class MADEConditioner(torch.nn.Module):
    r"""The MADE network behind :class:`AffineAutoregressive`: a ReLU MLP whose weights are
    multiplied by the masks of :func:`~pyro_deepgen.nn.masks.made_masks` (the same utility as
    :class:`~pyro_deepgen.distributions.MADE`), with ``param_dims`` outputs per coordinate,

    .. math:: h^l = \mathrm{relu}\big((W^l \odot M^l) h^{l-1} + b^l\big), \qquad
              (\mu, s) = (W^{\mathrm{out}} \odot M^{\mathrm{out}}) h^L + b^{\mathrm{out}},

    so output :math:`i` of each parameter depends only on the coordinates before :math:`i` in
    ``permutation``. The hidden degrees are spread cyclically (deterministic; Pyro draws them at
    random), and any widths work, narrower than ``input_dim`` included, where
    ``pyro.nn.AutoRegressiveNN`` raises a ``ValueError``. With ``context_dim`` the context
    enters the first hidden layer through an unmasked linear map (every unit may see it).

    ``forward(x, context=None)`` returns the tuple of ``len(param_dims)`` tensors of shape
    ``x.shape`` (``(mean, log_scale)`` by default), the interface of Pyro's
    ``AutoRegressiveNN`` that Pyro's ``AffineAutoregressive`` calls.

    **Reference**: M. Germain, K. Gregor, I. Murray, H. Larochelle, *MADE: Masked Autoencoder for
    Distribution Estimation*, arXiv:1502.03509.
    """

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], permutation: Optional[torch.Tensor] = None,
                 context_dim: Optional[int] = None, param_dims: Sequence[int] = (1, 1)) -> None:
        super().__init__()
        self.input_dim, self.param_dims = int(input_dim), tuple(int(p) for p in param_dims)
        permutation = torch.arange(input_dim) if permutation is None else torch.as_tensor(permutation).long()
        if not torch.equal(permutation.sort().values, torch.arange(input_dim)):
            raise ValueError(f"permutation must be a permutation of range(input_dim) = range({input_dim})")
        self.register_buffer("permutation", permutation)
        degrees = permutation.argsort() + 1
        masks = made_masks(degrees, made_degrees(degrees, hidden_dims))
        masks[-1] = masks[-1].repeat(sum(self.param_dims), 1)
        sizes = (input_dim,) + tuple(hidden_dims) + (sum(self.param_dims) * input_dim,)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        for i, mask in enumerate(masks):
            self.register_buffer(f"mask{i}", mask)
        self.context_net = None if context_dim is None else torch.nn.Linear(context_dim, hidden_dims[0])

    def get_permutation(self) -> torch.Tensor:
        return self.permutation

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None):
        h = x
        for i, layer in enumerate(self.layers):
            h = F.linear(h, layer.weight * getattr(self, f"mask{i}"), layer.bias)
            if i == 0 and context is not None:
                h = h + self.context_net(context)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        h = h.reshape(h.shape[:-1] + (sum(self.param_dims), self.input_dim))
        out = tuple(p.squeeze(-2) if p.shape[-2] == 1 else p for p in h.split(self.param_dims, dim=-2))
        return out[0] if len(out) == 1 else out


def _hidden(input_dim, hidden_dims):
    if input_dim < 2:
        raise ValueError(f"IAF needs input_dim >= 2, got {input_dim}")
    hidden_dims = [10 * input_dim] if hidden_dims is None else [int(h) for h in hidden_dims]
    if not hidden_dims:
        raise ValueError("hidden_dims must name at least one hidden layer")
    return hidden_dims


def affine_autoregressive(
    input_dim: int,
    hidden_dims: Optional[Sequence[int]] = None,
    permutation: Optional[torch.Tensor] = None,
    **kwargs,
) -> AffineAutoregressive:
    """An :class:`AffineAutoregressive` layer on a :class:`MADEConditioner`.

    :param hidden_dims: MADE hidden sizes, default ``[10 * input_dim]``.
    :param permutation: the autoregressive order, default the identity (mix orders between
        layers with :class:`~pyro_deepgen.distributions.transforms.Permutation`).
    """
    order = torch.arange(input_dim) if permutation is None else permutation
    arn = MADEConditioner(input_dim, _hidden(input_dim, hidden_dims), permutation=order)
    return AffineAutoregressive(arn, **kwargs)


def conditional_affine_autoregressive(
    input_dim: int,
    context_dim: int,
    hidden_dims: Optional[Sequence[int]] = None,
    permutation: Optional[torch.Tensor] = None,
    **kwargs,
) -> ConditionalAffineAutoregressive:
    """A :class:`ConditionalAffineAutoregressive` on a :class:`MADEConditioner` with
    ``context_dim`` (same defaults as :func:`affine_autoregressive`)."""
    order = torch.arange(input_dim) if permutation is None else permutation
    hidden_dims = _hidden(input_dim, hidden_dims)
    arn = MADEConditioner(input_dim, hidden_dims, permutation=order, context_dim=context_dim)
    return ConditionalAffineAutoregressive(arn, **kwargs)


#: IAF: :class:`AffineAutoregressive` layers on MADE networks, with a
#: :class:`~pyro_deepgen.distributions.transforms.Permutation` between consecutive layers (each
#: layer orders the coordinates; the reversal flips the order from one layer to the next).
IAF = FlowFamily(
    layer=affine_autoregressive, conditional=conditional_affine_autoregressive,
    mixing=_permutation, min_dim=2,
)
