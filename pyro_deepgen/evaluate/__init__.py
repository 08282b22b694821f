r"""Evaluation of trained models: importance-sampled log-likelihood, ELBO, active units.

The log-likelihood estimator is the importance-weighted bound of Burda et al. (2016)

.. math::

    \hat{\mathcal L}_K(x) = \log \frac1K \sum_{k=1}^K \frac{p(x, z_k)}{q(z_k\mid x)},
    \qquad z_k \sim q(z\mid x),

a stochastic lower bound on :math:`\log p(x)` whose expectation increases to
:math:`\log p(x)` as :math:`K\to\infty`. Particles are vectorized with an outermost
``pyro.plate`` and drawn in chunks whose log-mean-exp is accumulated stably, so memory is
bounded by ``chunk_size``.

**Reference**: Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*,
arXiv:1509.00519.
"""
from typing import Callable, Optional

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from ..data.checks import check_finite
from ..infer.particles import draw_particles, guess_max_plate_nesting, log_weights
from ..infer.util import log_mean_exp_of_chunks

_ELEMENTS_PER_CHUNK = 2**23


def _default_chunk_size(args, num_samples: int) -> int:
    numel = sum(a.numel() for a in args if torch.is_tensor(a)) or 1
    return int(max(1, min(num_samples, _ELEMENTS_PER_CHUNK // numel)))


def _check_counts(num_samples: int, chunk_size: Optional[int]) -> None:
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


def _check_data(args, kwargs) -> None:
    """NaN or inf in any tensor argument (the data) is a ``ValueError`` naming the argument,
    instead of a distribution's "invalid values" deep inside a trace; once per call."""
    for i, a in enumerate(args):
        check_finite(a, f"data argument {i}" if len(args) > 1 else "the data")
    for k, a in kwargs.items():
        check_finite(a, f"argument {k!r}")


def _local_log_weight_chunks(model, guide, args, kwargs, num_samples, chunk_size, plate_name):
    """Yield ``(P_chunk, N)`` per-data-point log weights; every latent must be local."""
    _check_counts(num_samples, chunk_size)
    _check_data(args, kwargs)
    chunk_size = chunk_size or _default_chunk_size(args, num_samples)
    max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
    done = 0
    while done < num_samples:
        p = min(chunk_size, num_samples - done)
        # The first pass above ran with validation; skip the per-chunk argument checks.
        with pyro.validation_enabled(False):
            model_trace, guide_trace = draw_particles(
                model, guide, args, kwargs, p, max_plate_nesting
            )[:2]
        w = log_weights(model_trace, guide_trace, max_plate_nesting, plate_name)
        if w.global_latents:
            raise ValueError(
                f"latent sites {list(w.global_latents)} lie outside the data plate "
                f"{w.data.name!r}: a per-data-point log-likelihood needs every latent inside it"
            )
        yield w.local + w.global_  # global_ holds only observed sites outside the plate (if any)
        done += p


@torch.no_grad()
def log_importance_weights(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    chunk_size: Optional[int] = None,
    plate_name: Optional[str] = "data",
    **kwargs,
) -> torch.Tensor:
    r"""All log importance weights :math:`\log p(x_n, z_{nk}) - \log q(z_{nk}\mid x_n)`,
    shape ``(num_samples, N)``; used for PSIS diagnostics."""
    chunks = _local_log_weight_chunks(model, guide, args, kwargs, num_samples, chunk_size, plate_name)
    return torch.cat(list(chunks), dim=0)


@torch.no_grad()
def log_likelihood(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 5000,
    chunk_size: Optional[int] = None,
    plate_name: Optional[str] = "data",
    **kwargs,
) -> torch.Tensor:
    r"""Importance-sampled estimate of :math:`\log p(x_n)` for each data point, shape ``(N,)``.

    :param model: a Pyro model whose local latents sit inside the data plate.
    :param guide: the proposal :math:`q(z\mid x)`, e.g. the trained guide.
    :param int num_samples: :math:`K`, the number of importance samples (default 5000 as in
        Burda et al.).
    :param int chunk_size: particles drawn at once (default: sized to the data to bound memory).
    :param str plate_name: name of the data plate (default ``"data"``; ``None`` picks the
        outermost plate shared by all observed sites).

    NaN or inf in a tensor argument raises a ``ValueError`` that names it, counts the bad
    entries and gives the first index (checked once per call).
    """
    chunks = _local_log_weight_chunks(model, guide, args, kwargs, num_samples, chunk_size,
                                      plate_name)
    return log_mean_exp_of_chunks(chunks, num_samples)


@torch.no_grad()
def elbo(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1,
    chunk_size: Optional[int] = None,
    plate_name: Optional[str] = "data",
    **kwargs,
) -> torch.Tensor:
    r"""Monte Carlo ELBO :math:`\frac1K\sum_k \log p(x_n,z_k) - \log q(z_k\mid x_n)` per data
    point, shape ``(N,)``."""
    total = 0.0
    for lw in _local_log_weight_chunks(model, guide, args, kwargs, num_samples, chunk_size, plate_name):
        total = total + lw.sum(0)
    return total / num_samples


@torch.no_grad()
def active_units(
    model: Callable,
    guide: Callable,
    *args,
    threshold: float = 0.01,
    num_samples: int = 100,
    **kwargs,
) -> int:
    r"""Number of active latent units (Burda et al. 2016, Sec. 5.2):
    :math:`A_u = \mathrm{Cov}_x\big(\mathbb E_{q(u\mid x)}[u]\big) > 0.01`.

    :math:`\mathbb E_q[u]` is the guide distribution's mean where it has one in closed form and a
    ``num_samples`` Monte Carlo average otherwise. Counts every unit of every latent site inside
    the data plate (leading dimension = data points).
    """
    _check_data(args, kwargs)
    trace = prune_subsample_sites(poutine.trace(guide).get_trace(*args, **kwargs))
    count = 0
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site["infer"].get("is_auxiliary"):
            continue
        try:
            mean = site["fn"].mean
        except NotImplementedError:
            mean = site["fn"].sample((num_samples,)).mean(0)
        if mean.dim() == 0:
            continue
        mean = mean.reshape(mean.shape[0], -1)
        if mean.shape[0] < 2:
            continue
        count += int((mean.var(0) > threshold).sum())
    return count
