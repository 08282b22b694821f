"""Small helpers shared by every estimator in :mod:`pyro_deepgen.infer`."""
import math
from typing import Callable, Iterable, Optional

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


#: samples x data points x units held at once by the chunked importance-sampling estimates
MAX_CHUNK_ELEMENTS = 1 << 24


def log_mean_exp_of_chunks(chunks: Iterable[torch.Tensor], num_samples: int) -> torch.Tensor:
    r""":func:`log_mean_exp` over dim 0 of ``num_samples`` log importance weights that arrive as
    ``(k, N)`` chunks, accumulated with ``logaddexp`` so that only one chunk is held at once."""
    total = None
    for chunk in chunks:
        chunk = torch.logsumexp(chunk, 0)
        total = chunk if total is None else torch.logaddexp(total, chunk)
    return total - math.log(num_samples)


def chunked_log_mean_exp(log_weights: Callable[[int], torch.Tensor], num_samples: int,
                         chunk_size: Optional[int] = None,
                         elements_per_sample: Optional[int] = None) -> torch.Tensor:
    r""":func:`log_mean_exp` of ``num_samples`` log importance weights drawn ``chunk_size`` at a
    time by ``log_weights(k) -> (k, N)``, so that memory is bounded by one chunk: the
    importance-sampled estimate :math:`\log\frac1K\sum_k w_k` for each of N data points. The
    default chunk holds :data:`MAX_CHUNK_ELEMENTS` / ``elements_per_sample`` samples (all of
    them when ``elements_per_sample`` is not given)."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if chunk_size is None:
        chunk_size = (num_samples if elements_per_sample is None
                      else MAX_CHUNK_ELEMENTS // max(1, int(elements_per_sample)))
    chunk_size = max(1, int(chunk_size))
    sizes = (min(chunk_size, num_samples - start) for start in range(0, num_samples, chunk_size))
    return log_mean_exp_of_chunks((log_weights(k) for k in sizes), num_samples)
