"""Planar flows (Rezende & Mohamed 2015): Pyro's transforms, with an MLP hypernetwork helper."""
from typing import Sequence

from pyro.distributions.transforms import ConditionalPlanar, Planar, planar  # noqa: F401

from ...nn import MLP


def conditional_planar(
    input_dim: int, context_dim: int, hidden_dims: Sequence[int] = ()
) -> ConditionalPlanar:
    r"""A :class:`~pyro.distributions.transforms.ConditionalPlanar` whose parameters
    :math:`(b, \mathbf{u}, \mathbf{w})` are outputs of an :class:`~pyro_deepgen.nn.MLP` of the
    context. With the default ``hidden_dims=()`` they are linear functions of the context, as
    in Rezende & Mohamed (2015), where the inference network outputs them per data point.
    Invertibility, :math:`\mathbf{w}^\top\hat{\mathbf{u}} > -1`, holds for any outputs (Pyro
    maps :math:`\mathbf{u}` to :math:`\hat{\mathbf{u}}`, appendix A.1 of [1]).

    **References**: [1] D. J. Rezende, S. Mohamed, *Variational Inference with Normalizing
    Flows*, arXiv:1505.05770.
    """
    return ConditionalPlanar(MLP(context_dim, hidden_dims, (1, input_dim, input_dim)))
