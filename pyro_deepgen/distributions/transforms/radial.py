"""Radial flows (Rezende & Mohamed 2015): Pyro's transforms plus the inverse Pyro lacks."""
from functools import partial
from typing import Optional, Sequence, Tuple

import torch
from pyro.distributions.transforms import Radial as _PyroRadial
from pyro.distributions.transforms import ConditionalRadial as _PyroConditionalRadial
from pyro.distributions.transforms.radial import ConditionedRadial as _PyroConditionedRadial
from torch.nn import functional as F

from ..._checks import positive_int, positive_ints
from ...nn import MLP
from .family import FlowFamily
from .pyro_module import DropCacheOnPickle


class ConditionedRadial(DropCacheOnPickle, _PyroConditionedRadial):
    r"""Pyro's :class:`~pyro.distributions.transforms.radial.ConditionedRadial` with an inverse.

    Pyro's radial transform can only score the value it has just sampled (its ``_inverse``
    raises ``KeyError``). The inverse has a closed form: with :math:`r = \|\mathbf{x} -
    \mathbf{x}_0\|` and :math:`\rho = \|\mathbf{y} - \mathbf{x}_0\| = r\,(\alpha + \beta + r)
    / (\alpha + r)`, :math:`r` is the positive root of :math:`r^2 + (\alpha + \beta - \rho)r -
    \alpha\rho = 0` (computed without cancellation), and :math:`\mathbf{x} = \mathbf{x}_0 +
    (\mathbf{y} - \mathbf{x}_0)(\alpha + r)/(\alpha + \beta + r)`.
    """

    def constrained_params(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""The parameters :math:`(\mathbf{x}_0, \alpha, \beta)` actually used, with
        :math:`\alpha \ge 0` and :math:`\beta \ge -\alpha`."""
        x0, alpha_prime, beta_prime = self._params() if callable(self._params) else self._params
        alpha = F.softplus(alpha_prime)
        return x0, alpha, -alpha + F.softplus(beta_prime)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x0, alpha, beta = self.constrained_params()
        diff = y - x0
        rho = diff.norm(dim=-1, keepdim=True)
        b = alpha + beta - rho
        c = alpha * rho
        s = (b.pow(2) + 4 * c).sqrt()
        positive = b > 0
        r = torch.where(positive, 2 * c / torch.where(positive, b + s, torch.ones_like(b)),
                        (s - b) / 2)
        x = x0 + diff * (alpha + r) / (alpha + beta + r)
        self._call(x)  # refresh the cached log-det, which log_abs_det_jacobian(x, y) reads
        return x


class Radial(ConditionedRadial, _PyroRadial):
    r"""A radial flow layer, :math:`\mathbf{y} = \mathbf{x} + \beta h(\alpha, r)(\mathbf{x} -
    \mathbf{x}_0)` with :math:`r = \|\mathbf{x} - \mathbf{x}_0\|`, :math:`h = 1/(\alpha + r)`,

    .. math::

        \log|\det J| = (D - 1)\log(1 + \beta h) + \log(1 + \beta h + \beta h' r),

    at :math:`O(D)` cost, with :math:`\alpha = \mathrm{softplus}(\alpha')` and
    :math:`\beta = -\alpha + \mathrm{softplus}(\beta')`, so :math:`\beta \ge -\alpha`
    (invertibility) for any parameter values. With :math:`\beta = 0` it is the identity.

    This is Pyro's :class:`~pyro.distributions.transforms.Radial` (an instance of it) plus a
    closed-form inverse, see :class:`ConditionedRadial`, so that any value can be scored.

    Example usage:

    >>> base_dist = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
    >>> flow_dist = dist.TransformedDistribution(base_dist, [Radial(3)])
    >>> flow_dist.log_prob(torch.zeros(3)).shape  # no cached sample needed
    torch.Size([])

    :param int input_dim: the dimension :math:`D` of the input (and output).

    **References**: [1] D. J. Rezende, S. Mohamed, *Variational Inference with Normalizing
    Flows*, arXiv:1505.05770.
    """

    def __init__(self, input_dim: int) -> None:
        super().__init__(positive_int(input_dim, "input_dim"))


class ConditionalRadial(_PyroConditionalRadial):
    r"""A radial layer whose parameters :math:`(\mathbf{x}_0, \alpha', \beta')` are the output
    of a network of a context :math:`\mathbf{h}`; ``condition(h)`` returns a
    :class:`ConditionedRadial` (invertible); :math:`\beta \ge -\alpha` for any output.

    Example usage:

    >>> transform = conditional_radial(3, context_dim=5)
    >>> base_dist = dist.Normal(torch.zeros(10, 3), 1.0).to_event(1)  # one per context
    >>> h = torch.randn(10, 5)
    >>> flow_dist = dist.TransformedDistribution(base_dist, [transform.condition(h)])
    >>> flow_dist.rsample().shape
    torch.Size([10, 3])

    :param callable nn: maps the context to a triple of shapes :math:`(D, 1, 1)`.

    **References**: [1] D. J. Rezende, S. Mohamed, *Variational Inference with Normalizing
    Flows*, arXiv:1505.05770.
    """

    def condition(self, context: torch.Tensor) -> ConditionedRadial:
        return ConditionedRadial(partial(self._params, context))


def radial(input_dim: int, hidden_dims: Optional[Sequence[int]] = None) -> Radial:
    """A :class:`Radial` layer of dimension ``input_dim`` (``hidden_dims`` is ignored: the layer
    has no network; it is accepted as by every layer factory of a
    :class:`~pyro_deepgen.distributions.transforms.family.FlowFamily`)."""
    return Radial(positive_int(input_dim, "input_dim"))


def conditional_radial(
    input_dim: int, context_dim: int, hidden_dims: Optional[Sequence[int]] = None
) -> ConditionalRadial:
    r"""A :class:`ConditionalRadial` whose parameters are outputs of an
    :class:`~pyro_deepgen.nn.MLP` of the context (linear by default, as in Rezende & Mohamed)."""
    positive_int(input_dim, "input_dim")
    positive_int(context_dim, "context_dim")
    hidden_dims = () if hidden_dims is None else positive_ints(hidden_dims, "hidden_dims")
    return ConditionalRadial(MLP(context_dim, hidden_dims, (input_dim, 1, 1)))


#: Layers of :class:`Radial` one after another (each mixes every coordinate: no permutation).
RADIAL = FlowFamily(layer=radial, conditional=conditional_radial)
