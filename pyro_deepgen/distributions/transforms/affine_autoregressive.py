"""Inverse autoregressive flow (Kingma et al. 2016): Pyro's transform with a dtype-safe inverse."""
from functools import partial
from typing import Optional, Sequence

import torch
from pyro.distributions.transforms import AffineAutoregressive as _PyroAffineAutoregressive
from pyro.distributions.transforms import (
    ConditionalAffineAutoregressive as _PyroConditionalAffineAutoregressive,
)
from pyro.distributions.transforms.utils import clamp_preserve_gradients
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN

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
    """An :class:`AffineAutoregressive` layer on a :class:`~pyro.nn.AutoRegressiveNN`.

    :param hidden_dims: MADE hidden sizes, default ``[10 * input_dim]``.
    :param permutation: the autoregressive order, default the identity (mix orders between
        layers with :class:`~pyro_deepgen.distributions.transforms.Permutation`).
    """
    order = torch.arange(input_dim) if permutation is None else permutation
    arn = AutoRegressiveNN(
        input_dim, _hidden(input_dim, hidden_dims), permutation=order,
        nonlinearity=torch.nn.ReLU(),  # Pyro's default ReLU() instance is shared by all networks
    )
    return AffineAutoregressive(arn, **kwargs)


def conditional_affine_autoregressive(
    input_dim: int,
    context_dim: int,
    hidden_dims: Optional[Sequence[int]] = None,
    permutation: Optional[torch.Tensor] = None,
    **kwargs,
) -> ConditionalAffineAutoregressive:
    """A :class:`ConditionalAffineAutoregressive` on a
    :class:`~pyro.nn.ConditionalAutoRegressiveNN` (same defaults as
    :func:`affine_autoregressive`)."""
    order = torch.arange(input_dim) if permutation is None else permutation
    hidden_dims = _hidden(input_dim, hidden_dims)
    arn = ConditionalAutoRegressiveNN(
        input_dim, context_dim, hidden_dims, permutation=order, nonlinearity=torch.nn.ReLU()
    )
    return ConditionalAffineAutoregressive(arn, **kwargs)


#: IAF: :class:`AffineAutoregressive` layers on MADE networks, with a
#: :class:`~pyro_deepgen.distributions.transforms.Permutation` between consecutive layers (each
#: layer orders the coordinates; the reversal flips the order from one layer to the next).
IAF = FlowFamily(
    layer=affine_autoregressive, conditional=conditional_affine_autoregressive,
    mixing=_permutation, min_dim=2,
)
