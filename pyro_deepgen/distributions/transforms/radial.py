"""Radial flows (Rezende & Mohamed 2015): Pyro's transforms, with an MLP hypernetwork helper."""
from typing import Sequence

from pyro.distributions.transforms import ConditionalRadial, Radial, radial  # noqa: F401

from ...nn import MLP


def conditional_radial(
    input_dim: int, context_dim: int, hidden_dims: Sequence[int] = ()
) -> ConditionalRadial:
    r"""A :class:`~pyro.distributions.transforms.ConditionalRadial` whose parameters
    :math:`(\mathbf{x}_0, \alpha', \beta')` are outputs of an :class:`~pyro_deepgen.nn.MLP` of
    the context (linear by default, as in Rezende & Mohamed 2015). Invertibility,
    :math:`\beta > -\alpha`, holds for any outputs: :math:`\alpha = \mathrm{softplus}(\alpha')`,
    :math:`\beta = -\alpha + \mathrm{softplus}(\beta')` (appendix A.2 of [1]).

    **References**: [1] D. J. Rezende, S. Mohamed, *Variational Inference with Normalizing
    Flows*, arXiv:1505.05770.
    """
    return ConditionalRadial(MLP(context_dim, hidden_dims, (input_dim, 1, 1)))
