"""One factory for every flow of the package: ``build_flow(kind, dim, depth, ...)``, a lookup in
:data:`~pyro_deepgen.distributions.transforms.registry.FLOWS`."""
import inspect
from typing import Callable, List, Optional, Sequence, Union

import torch
from pyro.distributions.conditional import ConditionalTransform
from torch.distributions import Transform

from ..._checks import non_negative_int, positive_int, positive_ints
from .registry import FLOW_KINDS, FLOWS, flow_family  # noqa: F401  (FLOW_KINDS: old path)


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

    The family ``FLOWS[kind]`` (a :class:`~pyro_deepgen.distributions.transforms.family.FlowFamily`,
    see :data:`~pyro_deepgen.distributions.transforms.registry.FLOWS`) gives the layers, the
    mixing layer put between consecutive ones and an optional final layer:
    :math:`f = g\circ f_K\circ P\circ\cdots\circ P\circ f_1`. The families of the package,
    with the cost of scoring an arbitrary value (sampling is one pass for all):

    - ``planar``: :class:`~.planar.Planar` x K, :math:`O(D)` each; the inverse is a scalar root find.
    - ``radial``: :class:`~.radial.Radial` x K, :math:`O(D)` each; closed-form inverse.
    - ``iaf``: :class:`~.affine_autoregressive.AffineAutoregressive` layers with ``stable=True`` (the gated update of
      the IAF paper) on MADE networks; inverse in :math:`D` passes.
    - ``nice``: :class:`~.additive_coupling.AdditiveCoupling` layers (volume preserving) and a final
      :class:`~.scaling.Scaling`; inverse in one pass.
    - ``realnvp``: :class:`~.affine_coupling.AffineCoupling` layers; inverse in one pass.

    A :class:`~.permutation.Permutation` (reversal by default) sits between consecutive coupling or
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

    :param str kind: a name in :data:`~pyro_deepgen.distributions.transforms.registry.FLOWS`:
        ``"planar"``, ``"radial"``, ``"iaf"``, ``"nice"``, ``"realnvp"``, or one registered later.
    :param int dim: event dimension :math:`D`, at least the family's ``min_dim`` (2 for the
        coupling and autoregressive kinds).
    :param int depth: number :math:`K` of flow layers (permutations and NICE's scaling layer
        are not counted).
    :param context_dim: if given, the layers are ``Conditional*`` transforms whose parameters
        depend on a context of this size (call ``.condition(h)``); the permutations and the
        NICE scaling layer stay unconditional.
    :param hidden_dims: hidden sizes of each layer's network, ``None`` for the family's default:
        ``[10 * dim]`` for nice, realnvp and iaf (Pyro's default for its couplings); for
        conditional planar and radial it is the hypernetwork from the context to the layer's
        parameters, default ``()`` (linear, as in Rezende & Mohamed 2015). Unused by
        unconditional planar/radial.
    :param kw: ``permutation="reverse"`` or ``"random"`` for the mixing layers (ignored by a
        family without them); any other keyword goes to the layer factory (e.g. ``stable``,
        ``sigmoid_bias``, ``log_scale_min_clip`` for iaf; ``log_scale_min_clip`` for realnvp;
        ``split_dim`` for nice and realnvp), and a ``TypeError`` names the keywords a factory
        without ``**kwargs`` does not take.

    **References**: [1] D. J. Rezende, S. Mohamed, arXiv:1505.05770. [2] L. Dinh, D. Krueger,
    Y. Bengio, arXiv:1410.8516. [3] L. Dinh, J. Sohl-Dickstein, S. Bengio, arXiv:1605.08803.
    [4] D. P. Kingma et al., arXiv:1606.04934.
    """
    family = flow_family(kind)
    depth = non_negative_int(depth, "depth")
    dim = positive_int(dim, "dim")
    if context_dim is not None:
        context_dim = positive_int(context_dim, "context_dim")
    if dim < family.min_dim:
        fits = tuple(name for name, f in FLOWS.items() if f.min_dim <= dim)
        raise ValueError(f"flow {kind!r} needs dim >= {family.min_dim} (got dim={dim}); use one of {fits}")
    mixing = kw.pop("permutation", "reverse")
    if hidden_dims is not None:
        hidden_dims = list(positive_ints(hidden_dims, "hidden_dims"))
    if context_dim is None:
        factory, args = family.layer, (dim,)
    else:
        factory, args = family.conditional, (dim, context_dim)
    _check_keywords(kind, factory, len(args), kw)
    layers: List[torch.nn.Module] = []
    for k in range(depth):
        if k > 0 and family.mixing is not None:
            layers.append(family.mixing(dim, mixing))
        layers.append(factory(*args, hidden_dims=hidden_dims, **kw))
    if depth > 0 and family.final is not None:
        layers.append(family.final(dim))
    return torch.nn.ModuleList(layers)


def _check_keywords(kind: str, factory: Callable, num_positional: int, kw: dict) -> None:
    """A ``TypeError``, before any layer is built, naming the keywords of ``kw`` that ``factory``
    does not take (a factory with ``**kwargs`` checks its own)."""
    params = inspect.signature(factory).parameters
    if not kw or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [name for name in list(params)[num_positional:] if name != "hidden_dims"]
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise TypeError(
            f"{kind} takes no extra keyword arguments {unknown}; its layers take {accepted or 'none'}"
        )


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
