"""RealNVP's affine coupling: Pyro's transforms, with factories that give each layer its own
activation module."""
from typing import Optional, Sequence

import torch
from pyro.distributions.transforms import AffineCoupling as _PyroAffineCoupling
from pyro.distributions.transforms import ConditionalAffineCoupling
from pyro.nn import ConditionalDenseNN, DenseNN

from .additive_coupling import _split_and_hidden
from .family import FlowFamily
from .permutation import permutation
from .pyro_module import DropCacheOnPickle


class AffineCoupling(DropCacheOnPickle, _PyroAffineCoupling):
    r"""Pyro's :class:`~pyro.distributions.transforms.AffineCoupling` (RealNVP), which can be
    deep-copied and pickled after use (its cached values are dropped).

    **References**: [1] L. Dinh, J. Sohl-Dickstein, S. Bengio, *Density estimation using
    Real NVP*, arXiv:1605.08803.
    """


def affine_coupling(
    input_dim: int,
    hidden_dims: Optional[Sequence[int]] = None,
    split_dim: Optional[int] = None,
    **kwargs,
) -> AffineCoupling:
    r"""A RealNVP :class:`~pyro.distributions.transforms.AffineCoupling` layer,
    :math:`\mathbf{y}_{(d+1):D} = \boldsymbol\mu(\mathbf{x}_{1:d}) +
    \exp(\mathbf{s}(\mathbf{x}_{1:d}))\odot\mathbf{x}_{(d+1):D}`, with
    :math:`\log|\det J| = \sum_i s_i`.

    Same as Pyro's ``affine_coupling`` except that every layer gets its own ReLU module (Pyro's
    ``DenseNN`` shares one default ``ReLU()`` instance between all networks, which breaks
    :func:`~pyro.nn.module.to_pyro_module_` naming once a flow is attached to a guide that has
    already run).

    :param int input_dim: dimension :math:`D` of the input.
    :param hidden_dims: hidden sizes of the network; default ``[10 * input_dim]``.
    :param split_dim: coordinates passed through; default ``input_dim // 2``.
    :param kwargs: for ``AffineCoupling`` (``log_scale_min_clip``, ``log_scale_max_clip``).

    **References**: [1] L. Dinh, J. Sohl-Dickstein, S. Bengio, *Density estimation using
    Real NVP*, arXiv:1605.08803.
    """
    split_dim, hidden_dims = _split_and_hidden(input_dim, hidden_dims, split_dim)
    out = input_dim - split_dim
    hypernet = DenseNN(split_dim, hidden_dims, [out, out], nonlinearity=torch.nn.ReLU())
    return AffineCoupling(split_dim, hypernet, **kwargs)


def conditional_affine_coupling(
    input_dim: int,
    context_dim: int,
    hidden_dims: Optional[Sequence[int]] = None,
    split_dim: Optional[int] = None,
    **kwargs,
) -> ConditionalAffineCoupling:
    """A :class:`~pyro.distributions.transforms.ConditionalAffineCoupling` whose network
    takes ``(x[..., :d], context=h)`` (same defaults as :func:`affine_coupling`)."""
    split_dim, hidden_dims = _split_and_hidden(input_dim, hidden_dims, split_dim)
    out = input_dim - split_dim
    hypernet = ConditionalDenseNN(
        split_dim, context_dim, hidden_dims, [out, out], nonlinearity=torch.nn.ReLU()
    )
    return ConditionalAffineCoupling(split_dim, hypernet, **kwargs)


#: RealNVP, :class:`AffineCoupling` layers with a
#: :class:`~pyro_deepgen.distributions.transforms.Permutation` between consecutive layers.
REALNVP = FlowFamily(
    layer=affine_coupling, conditional=conditional_affine_coupling,
    mixing=permutation, min_dim=2,
)
