"""What a flow family is: the layers :func:`~pyro_deepgen.distributions.transforms.build_flow`
stacks, and what it puts between and after them."""
from dataclasses import dataclass
from typing import Callable, Optional

from pyro.distributions.conditional import ConditionalTransform
from torch.distributions import Transform


@dataclass(frozen=True)
class FlowFamily:
    r"""One family of normalizing flows, as
    :func:`~pyro_deepgen.distributions.transforms.build_flow` assembles it: ``depth`` layers
    :math:`f_1, \dots, f_K`, a mixing layer :math:`P` between consecutive ones, and an optional
    final layer :math:`g`,

    .. math::

        f = g \circ f_K \circ P \circ f_{K-1} \circ \cdots \circ P \circ f_1,

    (no :math:`P` and no :math:`g` for ``depth=0``: the identity). With a context
    :math:`\mathbf h` the layers :math:`f_k` are ``Conditional*`` transforms (Pyro's
    convention: ``layer.condition(h)`` is a transform); :math:`P` and :math:`g` stay
    unconditional.

    The contract of the callables (every argument after ``input_dim`` has a default):

    - ``layer(input_dim, hidden_dims=None, **kwargs)`` returns a
      :class:`~pyro.distributions.torch_transform.TransformModule`, a bijection of
      :math:`\mathbb R^D` (``domain`` and ``codomain`` ``real_vector``) with
      ``log_abs_det_jacobian`` and an inverse. ``hidden_dims=None`` means the family's default
      network; a family without a network accepts and ignores it. ``kwargs`` are the
      family's own options (e.g. ``split_dim``), passed through from ``build_flow``.
    - ``conditional(input_dim, context_dim, hidden_dims=None, **kwargs)`` returns a
      :class:`~pyro.distributions.conditional.ConditionalTransformModule` whose
      ``condition(h)`` is such a transform (the context broadcasts over batch dimensions).
    - ``mixing(input_dim, kind)``, e.g. :func:`~pyro_deepgen.distributions.transforms.permutation`,
      returns a fixed volume-preserving layer; ``kind`` is ``build_flow``'s ``permutation``
      keyword (``"reverse"`` or ``"random"``). ``None``: the layers follow one another
      directly (planar, radial: each already mixes every coordinate).
    - ``final(input_dim)``, e.g. NICE's :class:`~pyro_deepgen.distributions.transforms.Scaling`;
      ``None``: no final layer.

    A family lives in its own module next to its layer classes, e.g. ``PLANAR =
    FlowFamily(planar, conditional_planar)``, and is registered with one line in
    :data:`~pyro_deepgen.distributions.transforms.registry.FLOWS`.

    Example usage:

    >>> from pyro_deepgen.distributions.transforms import FLOWS, build_flow
    >>> FLOWS["nice"].final.__name__
    'scaling'
    >>> [type(t).__name__ for t in build_flow("nice", dim=4, depth=2)]
    ['AdditiveCoupling', 'Permutation', 'AdditiveCoupling', 'Scaling']

    :param layer: factory of one unconditional layer.
    :param conditional: factory of one context-dependent layer.
    :param mixing: factory of the layer between consecutive layers, or ``None``.
    :param final: factory of the layer after the last one, or ``None``.
    :param int min_dim: the smallest dimension :math:`D` the layers accept (2 for a
        coupling layer, which splits :math:`\mathbf z` in two; 1 by default).
    """

    layer: Callable[..., Transform]
    conditional: Callable[..., ConditionalTransform]
    mixing: Optional[Callable[[int, str], Transform]] = None
    final: Optional[Callable[[int], Transform]] = None
    min_dim: int = 1
