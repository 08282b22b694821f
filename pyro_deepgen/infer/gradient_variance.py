r"""Monte Carlo statistics of an ELBO's gradient estimator: mean, variance and signal-to-noise."""
import math
from typing import Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Union

import torch
from pyro import poutine
from pyro.infer.elbo import ELBO


class GradientStats(NamedTuple):
    """Statistics of one parameter's gradient over ``num_draws`` independent draws.

    ``mean`` and ``variance`` (unbiased, over draws) have the parameter's shape;
    ``snr`` is :math:`|\\mathrm{mean}|/\\mathrm{std}` per element (``inf`` where the gradient
    is constant and non-zero, ``nan`` where it is constantly zero); ``snr_mean`` averages the
    finite entries of ``snr`` into one number (``nan`` if there are none).
    """

    mean: torch.Tensor
    variance: torch.Tensor
    snr: torch.Tensor
    snr_mean: float
    num_draws: int


def _trace_params(
    elbo: ELBO, model: Callable, guide: Callable, args, kwargs
) -> Dict[str, torch.Tensor]:
    """The unconstrained leaf tensors of every ``pyro.param`` that one loss evaluation touches."""
    with poutine.trace(param_only=True) as tr:
        elbo.loss(model, guide, *args, **kwargs)
    params = {}
    for name, site in tr.trace.nodes.items():
        value = site["value"]
        unconstrained = getattr(value, "unconstrained", None)
        leaf = unconstrained() if callable(unconstrained) else value
        if torch.is_tensor(leaf) and leaf.requires_grad:
            params[name] = leaf
    return params


def gradient_variance(
    elbo: ELBO,
    model: Callable,
    guide: Callable,
    *args,
    num_draws: int = 100,
    params: Optional[Union[Mapping[str, torch.Tensor], Iterable[str]]] = None,
    **kwargs,
) -> Dict[str, GradientStats]:
    r"""Mean, variance and signal-to-noise ratio of ``elbo``'s gradient estimator.

    Calls ``elbo.differentiable_loss(model, guide, *args, **kwargs)`` ``num_draws`` times and
    differentiates each draw with :func:`torch.autograd.grad`. The gradient is that of the
    *loss* (the negative bound), with respect to the unconstrained parameters, the tensors an
    optimizer updates. Per element,

    .. math:: \mathrm{SNR} = \frac{|\mathbb E[\hat g]|}{\sqrt{\mathrm{Var}[\hat g]}},

    the quantity whose decay as :math:`O(1/\sqrt K)` for the IWAE inference-network gradient
    is shown by Rainforth et al. [1] (DReG's does not decay [2]); and the score-function
    gradient's variance, much larger than the reparameterization gradient's, is the usual
    argument for the reparameterization trick (Kingma & Welling, arXiv:1312.6114).

    :param elbo: any ELBO with ``differentiable_loss`` (e.g. :class:`~pyro.infer.Trace_ELBO`,
        :class:`~pyro_deepgen.infer.TraceIWAE_ELBO`).
    :param int num_draws: independent gradient draws (default 100; at least 2).
    :param params: ``None`` (default: every ``pyro.param`` the loss touches, by name, as
        unconstrained tensors), an iterable of such names, or a mapping ``name -> tensor`` of
        leaf tensors (e.g. ``dict(module.named_parameters())``).
    :returns: ``{name: GradientStats}``; a parameter the loss does not depend on gets zeros.

    **References**: [1] T. Rainforth et al., *Tighter Variational Bounds are Not Necessarily
    Better*, arXiv:1802.04537. [2] G. Tucker et al., *Doubly Reparameterized Gradient
    Estimators for Monte Carlo Objectives*, arXiv:1810.04152.
    """
    if not isinstance(num_draws, int) or num_draws < 2:
        raise ValueError(
            f"num_draws must be an integer >= 2 (a variance needs two draws), got {num_draws!r}"
        )
    if not hasattr(elbo, "differentiable_loss"):
        raise TypeError(f"elbo must provide differentiable_loss; got {type(elbo).__name__}")
    if params is None or not isinstance(params, Mapping):
        found = _trace_params(elbo, model, guide, args, kwargs)
        if params is not None:
            names = list(params)
            missing = [n for n in names if n not in found]
            if missing:
                raise ValueError(
                    f"params {missing} are not touched by the loss; known: {sorted(found)}"
                )
            found = {n: found[n] for n in names}
        params = found
    if not params:
        raise ValueError("no parameters to differentiate: the loss touches no pyro.param")
    names = list(params)
    tensors = [params[n] for n in names]
    means = [torch.zeros_like(t) for t in tensors]
    sq_dev = [torch.zeros_like(t) for t in tensors]  # Welford's running sums of squares
    for draw in range(1, num_draws + 1):
        loss = elbo.differentiable_loss(model, guide, *args, **kwargs)
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        for i, g in enumerate(grads):
            g = torch.zeros_like(tensors[i]) if g is None else g.detach()
            delta = g - means[i]
            means[i] += delta / draw
            sq_dev[i] += delta * (g - means[i])
    stats = {}
    for name, mean, m2 in zip(names, means, sq_dev):
        variance = m2 / (num_draws - 1)
        snr = mean.abs() / variance.sqrt()
        finite = snr[torch.isfinite(snr)]
        snr_mean = finite.mean().item() if finite.numel() else math.nan
        stats[name] = GradientStats(mean, variance, snr, snr_mean, num_draws)
    return stats
