"""Small helpers shared by every estimator in :mod:`pyro_deepgen.infer`."""
import math

import torch


def value_with_surrogate_grad(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    r"""Return a tensor whose *value* is ``value`` and whose *gradient* is that of ``surrogate``.

    .. math:: \mathrm{out} = \mathrm{value}_{\perp} + (s - s_{\perp})

    where :math:`\perp` denotes ``detach()``. Every estimator in this package returns the exact
    objective as its loss and carries its (possibly variance-reduced) gradient estimator in the
    surrogate, so printed losses never depend on the gradient estimator chosen.
    """
    return value.detach() + (surrogate - surrogate.detach())


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    r""":math:`\log\frac1K\sum_k e^{x_k}` along ``dim`` (stable): the multi-sample bound of a set
    of log importance weights."""
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])
