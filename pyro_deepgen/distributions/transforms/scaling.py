"""NICE's diagonal scaling layer."""
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_transform import TransformModule
from torch import nn

from .pyro_module import DropCacheOnPickle


class Scaling(DropCacheOnPickle, TransformModule):
    r"""The diagonal scaling layer of NICE,

        :math:`\mathbf{y} = \exp(\mathbf{s})\odot\mathbf{x}`, with
        :math:`\log|\det J| = \sum_i s_i`,

    with a learnable :math:`\mathbf{s}\in\mathbb{R}^D`. Additive coupling layers are volume
    preserving; this last layer lets a NICE flow change volume, one scale per dimension. At
    :math:`\mathbf{s}=0` (the initial value) it is the identity.

    Example usage:

    >>> base_dist = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
    >>> flow_dist = dist.TransformedDistribution(base_dist, [Scaling(3)])
    >>> flow_dist.log_prob(torch.zeros(3))  # doctest: +SKIP

    :param int input_dim: the dimension :math:`D` of the input (and output).

    **References**: [1] L. Dinh, D. Krueger, Y. Bengio, *NICE: Non-linear Independent
    Components Estimation*, arXiv:1410.8516 (section 3.3).
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, input_dim: int) -> None:
        super().__init__(cache_size=1)
        if input_dim < 1:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        self.input_dim = int(input_dim)
        self.log_scale = nn.Parameter(torch.empty(self.input_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.log_scale.data.zero_()

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.log_scale.exp()

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * (-self.log_scale).exp()

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.log_scale.sum().expand(x.shape[:-1])

    __repr__ = nn.Module.__repr__  # torch Transform.__repr__ would hide extra_repr

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}"


def scaling(input_dim: int) -> Scaling:
    """A :class:`Scaling` layer of dimension ``input_dim`` (initialised to the identity)."""
    return Scaling(input_dim)
