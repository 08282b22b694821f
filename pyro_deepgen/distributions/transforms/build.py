"""One factory for every flow of the package: ``build_flow(kind, dim, depth, ...)``."""
from typing import List, Optional, Sequence, Union

import torch
from pyro.distributions.conditional import ConditionalTransform
from torch.distributions import Transform

from .affine_autoregressive import affine_autoregressive, conditional_affine_autoregressive
from .additive_coupling import additive_coupling, conditional_additive_coupling
from .affine_coupling import affine_coupling, conditional_affine_coupling
from .permutation import permutation
from .planar import Planar, conditional_planar
from .radial import Radial, conditional_radial
from .scaling import Scaling

FLOW_KINDS = ("planar", "radial", "nice", "realnvp", "iaf")


def build_flow(
    kind: str,
    dim: int,
    depth: int,
    context_dim: Optional[int] = None,
    hidden_dims: Optional[Sequence[int]] = None,
    **kw,
) -> torch.nn.ModuleList:
    r"""A stack of ``depth`` flow layers of one family, as a :class:`torch.nn.ModuleList`.

    The flow maps a base sample :math:`\mathbf{z}_0` to
    :math:`\mathbf{z}_K = f_K\circ\cdots\circ f_1(\mathbf{z}_0)` with density

    .. math::

        \log q_K(\mathbf{z}_K) = \log q_0(\mathbf{z}_0)
            - \sum_{k=1}^K \log\left|\det \frac{\partial f_k}{\partial \mathbf{z}_{k-1}}\right|.

    Use it as ``dist.TransformedDistribution(base, list(flow))``, or, with a context,
    ``dist.TransformedDistribution(base, condition(flow, h))`` (see :func:`condition`).

    Layers and the cost of scoring an arbitrary value (sampling is one pass for all):

    - ``planar``: :class:`Planar` x K, :math:`O(D)` each; the inverse is a scalar root find.
    - ``radial``: :class:`Radial` x K, :math:`O(D)` each; closed-form inverse.
    - ``nice``: :class:`AdditiveCoupling` layers (volume preserving) and a final
      :class:`Scaling`; inverse in one pass.
    - ``realnvp``: :class:`AffineCoupling` layers; inverse in one pass.
    - ``iaf``: :class:`AffineAutoregressive` layers with ``stable=True`` (the gated update of
      the IAF paper) on MADE networks; inverse in :math:`D` passes.

    A :class:`Permutation` (reversal by default) sits between consecutive coupling or
    autoregressive layers so that every coordinate is transformed and depends on every other.
    ``depth=0`` gives an empty list (the identity: the base distribution itself).

    Example usage:

    >>> flow = build_flow("iaf", dim=4, depth=3, hidden_dims=[16])
    >>> [type(t).__name__ for t in flow]  # doctest: +NORMALIZE_WHITESPACE
    ['AffineAutoregressive', 'Permutation', 'AffineAutoregressive', 'Permutation',
     'AffineAutoregressive']
    >>> q = dist.TransformedDistribution(dist.Normal(torch.zeros(4), 1.0).to_event(1), list(flow))
    >>> q.log_prob(q.sample((5,))).shape
    torch.Size([5])
    >>> cflow = build_flow("planar", dim=4, depth=2, context_dim=3)
    >>> h = torch.randn(5, 3)  # one context per data point
    >>> base = dist.Normal(torch.zeros(5, 4), 1.0).to_event(1)
    >>> dist.TransformedDistribution(base, condition(cflow, h)).rsample().shape
    torch.Size([5, 4])

    :param str kind: one of ``"planar"``, ``"radial"``, ``"nice"``, ``"realnvp"``, ``"iaf"``.
    :param int dim: event dimension :math:`D` (at least 2 for the coupling and
        autoregressive kinds).
    :param int depth: number :math:`K` of flow layers (permutations and NICE's scaling layer
        are not counted).
    :param context_dim: if given, the layers are ``Conditional*`` transforms whose parameters
        depend on a context of this size (call ``.condition(h)``); the permutations and the
        NICE scaling layer stay unconditional.
    :param hidden_dims: hidden sizes of each layer's network. Default ``[10 * dim]`` for
        nice, realnvp and iaf (Pyro's default for its couplings); for conditional planar and
        radial it is the hypernetwork from the context to the layer's parameters, default
        ``()`` (linear, as in Rezende & Mohamed 2015). Unused by unconditional planar/radial.
    :param kw: ``permutation="reverse"`` or ``"random"`` for the mixing layers; any other
        keyword goes to the layer constructor (e.g. ``stable``, ``sigmoid_bias``,
        ``log_scale_min_clip`` for iaf; ``log_scale_min_clip`` for realnvp; ``split_dim``
        for nice and realnvp).

    **References**: [1] D. J. Rezende, S. Mohamed, arXiv:1505.05770. [2] L. Dinh, D. Krueger,
    Y. Bengio, arXiv:1410.8516. [3] L. Dinh, J. Sohl-Dickstein, S. Bengio, arXiv:1605.08803.
    [4] D. P. Kingma et al., arXiv:1606.04934.
    """
    if kind not in FLOW_KINDS:
        raise ValueError(f"kind={kind!r} is not a flow; use one of {FLOW_KINDS}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative int, got {depth!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    if context_dim is not None and (not isinstance(context_dim, int) or context_dim < 1):
        raise ValueError(f"context_dim must be a positive int or None, got {context_dim!r}")
    if kind in ("nice", "realnvp", "iaf") and dim < 2:
        raise ValueError(
            f"flow {kind!r} needs dim >= 2 (got dim={dim}); use 'planar' or 'radial' in 1-D"
        )
    mixing = kw.pop("permutation", "reverse")
    if hidden_dims is not None:
        hidden_dims = [int(h) for h in hidden_dims]
    layers: List[torch.nn.Module] = []
    if kind in ("planar", "radial"):
        if kw:
            raise TypeError(f"{kind} takes no extra keyword arguments, got {sorted(kw)}")
        for _ in range(depth):
            if context_dim is None:
                layers.append(Planar(dim) if kind == "planar" else Radial(dim))
            else:
                make = conditional_planar if kind == "planar" else conditional_radial
                layers.append(make(dim, context_dim, () if hidden_dims is None else hidden_dims))
        return torch.nn.ModuleList(layers)

    if hidden_dims is None:
        hidden_dims = [10 * dim]
    if not hidden_dims:
        raise ValueError(f"flow {kind!r} needs at least one hidden layer, got hidden_dims=()")
    for k in range(depth):
        if k > 0:
            layers.append(permutation(dim, mixing))
        if kind == "iaf":
            if context_dim is None:
                layers.append(affine_autoregressive(dim, hidden_dims, **kw))
            else:
                layers.append(conditional_affine_autoregressive(dim, context_dim, hidden_dims, **kw))
        elif kind == "nice":
            if context_dim is None:
                layers.append(additive_coupling(dim, hidden_dims, **kw))
            else:
                layers.append(conditional_additive_coupling(dim, context_dim, hidden_dims, **kw))
        elif context_dim is None:  # realnvp
            layers.append(affine_coupling(dim, hidden_dims, **kw))
        else:
            layers.append(conditional_affine_coupling(dim, context_dim, hidden_dims, **kw))
    if kind == "nice" and depth > 0:
        layers.append(Scaling(dim))
    return torch.nn.ModuleList(layers)


def condition(
    flow: Sequence[Union[Transform, ConditionalTransform]], context: Optional[torch.Tensor]
) -> List[Transform]:
    """The transforms of ``flow`` with every conditional one conditioned on ``context``.

    Unconditional layers (permutations, scaling) pass through unchanged, as in
    :class:`~pyro.distributions.ConditionalTransformedDistribution`.
    """
    out = []
    for t in flow:
        if isinstance(t, ConditionalTransform):
            if context is None:
                raise ValueError(f"{type(t).__name__} is conditional: pass a context tensor")
            t = t.condition(context)
        out.append(t)
    return out
