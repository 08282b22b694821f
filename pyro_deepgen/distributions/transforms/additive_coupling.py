"""NICE's additive coupling layer (Pyro has only RealNVP's affine coupling)."""
from functools import partial
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from pyro.distributions import constraints
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.torch_transform import TransformModule
from pyro.nn import ConditionalDenseNN, DenseNN

from .family import FlowFamily
from .permutation import permutation
from .pyro_module import DropCacheOnPickle
from .scaling import scaling


class AdditiveCoupling(DropCacheOnPickle, TransformModule):
    r"""The additive coupling layer of NICE,

        :math:`\mathbf{y}_{1:d} = \mathbf{x}_{1:d},\qquad
        \mathbf{y}_{(d+1):D} = \mathbf{x}_{(d+1):D} + m(\mathbf{x}_{1:d})`,

    where :math:`m` is any function (a neural network). The Jacobian is unit lower
    triangular, so the layer is volume preserving, :math:`\log|\det J| = 0`, and its inverse
    :math:`\mathbf{x}_{(d+1):D} = \mathbf{y}_{(d+1):D} - m(\mathbf{y}_{1:d})` costs one
    network evaluation, like the forward pass. Stack layers with a
    :class:`~pyro_deepgen.distributions.transforms.Permutation` in between so that every
    coordinate gets transformed, and end with a
    :class:`~pyro_deepgen.distributions.transforms.Scaling` layer to change volume (NICE).
    With :math:`m\equiv 0` it is the identity; adding a learned log-scale to the second half
    gives RealNVP's :class:`~pyro.distributions.transforms.AffineCoupling`.

    Example usage:

    >>> from pyro.nn import DenseNN
    >>> input_dim, split_dim = 4, 2
    >>> base_dist = dist.Normal(torch.zeros(input_dim), torch.ones(input_dim)).to_event(1)
    >>> transform = AdditiveCoupling(split_dim, DenseNN(split_dim, [16], [input_dim - split_dim]))
    >>> pyro.module("my_transform", transform)  # doctest: +SKIP
    >>> flow_dist = dist.TransformedDistribution(base_dist, [transform])
    >>> flow_dist.sample().shape
    torch.Size([4])

    :param int split_dim: the number :math:`d` of coordinates passed through unchanged.
    :param callable hypernet: maps ``x[..., :d]`` to the shift, of last dimension
        :math:`D-d`.

    **References**: [1] L. Dinh, D. Krueger, Y. Bengio, *NICE: Non-linear Independent
    Components Estimation*, arXiv:1410.8516. [2] L. Dinh, J. Sohl-Dickstein, S. Bengio,
    *Density estimation using Real NVP*, arXiv:1605.08803.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    volume_preserving = True

    def __init__(self, split_dim: int, hypernet: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__(cache_size=1)
        if split_dim < 1:
            raise ValueError(f"split_dim must be positive, got {split_dim}")
        self.split_dim = int(split_dim)
        self.nn = hypernet

    def _split(self, x: torch.Tensor):
        if x.size(-1) <= self.split_dim:
            raise ValueError(
                f"input of size {x.size(-1)} cannot be split at split_dim={self.split_dim}"
            )
        return x[..., : self.split_dim], x[..., self.split_dim :]

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self._split(x)
        return torch.cat([x1, x2 + self.nn(x1)], dim=-1)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = self._split(y)
        return torch.cat([y1, y2 - self.nn(y1)], dim=-1)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[:-1])

    __repr__ = nn.Module.__repr__  # torch Transform.__repr__ would hide extra_repr

    def extra_repr(self) -> str:
        return f"split_dim={self.split_dim}"


class ConditionalAdditiveCoupling(ConditionalTransformModule):
    r"""NICE's additive coupling conditioned on a context :math:`\mathbf{h}`,

        :math:`\mathbf{y}_{1:d} = \mathbf{x}_{1:d},\qquad
        \mathbf{y}_{(d+1):D} = \mathbf{x}_{(d+1):D} + m(\mathbf{x}_{1:d}, \mathbf{h})`.

    ``condition(h)`` returns an :class:`AdditiveCoupling`; the context broadcasts over the
    batch dimensions of the input (e.g. one ``h`` per data point, several particles each).

    Example usage:

    >>> from pyro.nn import ConditionalDenseNN
    >>> input_dim, split_dim, context_dim = 4, 2, 3
    >>> base_dist = dist.Normal(torch.zeros(5, input_dim), 1.0).to_event(1)  # one per context
    >>> hypernet = ConditionalDenseNN(split_dim, context_dim, [16], [input_dim - split_dim])
    >>> transform = ConditionalAdditiveCoupling(split_dim, hypernet)
    >>> h = torch.randn(5, context_dim)
    >>> flow_dist = dist.ConditionalTransformedDistribution(base_dist, [transform]).condition(h)
    >>> flow_dist.sample().shape
    torch.Size([5, 4])

    :param int split_dim: the number :math:`d` of coordinates passed through unchanged.
    :param callable hypernet: called as ``hypernet(x[..., :d], context=h)``, returns the shift
        of last dimension :math:`D-d`.

    **References**: [1] L. Dinh, D. Krueger, Y. Bengio, *NICE: Non-linear Independent
    Components Estimation*, arXiv:1410.8516.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, split_dim: int, hypernet: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        if split_dim < 1:
            raise ValueError(f"split_dim must be positive, got {split_dim}")
        self.split_dim = int(split_dim)
        self.nn = hypernet

    def condition(self, context: torch.Tensor) -> AdditiveCoupling:
        return AdditiveCoupling(self.split_dim, partial(self.nn, context=context))

    __repr__ = nn.Module.__repr__  # torch Transform.__repr__ would hide extra_repr

    def extra_repr(self) -> str:
        return f"split_dim={self.split_dim}"


def _split_and_hidden(input_dim, hidden_dims, split_dim):
    if input_dim < 2:
        raise ValueError(f"a coupling layer needs input_dim >= 2, got {input_dim}")
    split_dim = input_dim // 2 if split_dim is None else int(split_dim)
    if not 1 <= split_dim < input_dim:
        raise ValueError(f"split_dim must be in [1, {input_dim - 1}], got {split_dim}")
    hidden_dims = [10 * input_dim] if hidden_dims is None else [int(h) for h in hidden_dims]
    if not hidden_dims:
        raise ValueError("hidden_dims must name at least one hidden layer")
    return split_dim, hidden_dims


def additive_coupling(
    input_dim: int,
    hidden_dims: Optional[Sequence[int]] = None,
    split_dim: Optional[int] = None,
) -> AdditiveCoupling:
    """An :class:`AdditiveCoupling` with a :class:`~pyro.nn.DenseNN` shift network.

    :param int input_dim: dimension :math:`D` of the input.
    :param hidden_dims: hidden sizes of the network; default ``[10 * input_dim]``.
    :param split_dim: coordinates passed through; default ``input_dim // 2``.
    """
    split_dim, hidden_dims = _split_and_hidden(input_dim, hidden_dims, split_dim)
    return AdditiveCoupling(split_dim, DenseNN(
        split_dim, hidden_dims, [input_dim - split_dim], nonlinearity=nn.ReLU()
    ))


def conditional_additive_coupling(
    input_dim: int,
    context_dim: int,
    hidden_dims: Optional[Sequence[int]] = None,
    split_dim: Optional[int] = None,
) -> ConditionalAdditiveCoupling:
    """A :class:`ConditionalAdditiveCoupling` with a :class:`~pyro.nn.ConditionalDenseNN`.

    :param int input_dim: dimension :math:`D` of the input.
    :param int context_dim: dimension of the context.
    :param hidden_dims: hidden sizes of the network; default ``[10 * input_dim]``.
    :param split_dim: coordinates passed through; default ``input_dim // 2``.
    """
    split_dim, hidden_dims = _split_and_hidden(input_dim, hidden_dims, split_dim)
    hypernet = ConditionalDenseNN(
        split_dim, context_dim, hidden_dims, [input_dim - split_dim], nonlinearity=nn.ReLU()
    )
    return ConditionalAdditiveCoupling(split_dim, hypernet)


#: NICE: :class:`AdditiveCoupling` layers (volume preserving) with a
#: :class:`~pyro_deepgen.distributions.transforms.Permutation` between consecutive layers and a
#: final :class:`~pyro_deepgen.distributions.transforms.Scaling` that changes volume.
NICE = FlowFamily(
    layer=additive_coupling, conditional=conditional_additive_coupling,
    mixing=permutation, final=scaling, min_dim=2,
)
