r"""Conservative sampling-based log-likelihood (CSL) of a Markov-chain sampler (Bengio, Yao,
Alain & Vincent 2013, *Bounding the Test Log-Likelihood of Generative Models*, arXiv:1311.6184;
used for GSNs in Bengio et al. 2014).

Let a generative Markov chain visit latent states :math:`h_1, \ldots, h_S` (for a GSN, the
corrupted or hidden state from which the next visible sample is reconstructed) and let
:math:`P(x \mid h)` be the chain's reconstruction distribution. Then

.. math:: \log \hat p(x) = \log \frac1S \sum_{s=1}^S P(x \mid h_s)

estimates :math:`\log p(x)` of the chain's stationary distribution
:math:`p(x) = \mathbb E_{h \sim \pi}[P(x \mid h)]`. By Jensen's inequality its expectation is
**below** :math:`\log p(x)` (conservative) and the gap shrinks as :math:`S` grows; unlike the
Parzen window it needs no bandwidth and sees the model's own conditional. For a Bernoulli
reconstruction with means :math:`\mu_s`, :math:`\log P(x \mid h_s) = \sum_d x_d \log \mu_{s,d} +
(1 - x_d)\log(1 - \mu_{s,d})`, which :func:`bernoulli_csl` evaluates for all pairs with one
matrix product per chunk.
"""
import math
from typing import Callable

import torch

from ..data.checks import check_finite


def csl(log_prob_given_state: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], states: torch.Tensor,
        x: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """:math:`\\log\\hat p(x_i)` for each row of ``x``: ``log_prob_given_state(h, x)`` must return
    the ``(len(h), len(x))`` matrix :math:`\\log P(x_i \\mid h_s)`; the states are taken ``chunk``
    at a time with a running log-sum-exp."""
    if not isinstance(states, torch.Tensor) or states.shape[0] < 1:
        raise ValueError(f"states must be a tensor of S >= 1 chain states, got {getattr(states, 'shape', None)}")
    check_finite(x, "x")
    acc = None
    for j in range(0, states.shape[0], chunk):
        lp = log_prob_given_state(states[j:j + chunk], x)
        if lp.shape != (min(chunk, states.shape[0] - j), x.shape[0]):
            raise ValueError(f"log_prob_given_state must return (states, points) = "
                             f"({min(chunk, states.shape[0] - j)}, {x.shape[0]}), got {tuple(lp.shape)}")
        part = torch.logsumexp(lp.to(torch.float64), dim=0)
        acc = part if acc is None else torch.logaddexp(acc, part)
    return acc - math.log(states.shape[0])


def bernoulli_log_prob_matrix(means: torch.Tensor, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """:math:`\\log P(x_i \\mid \\mu_s)` of independent Bernoulli pixels, ``(S, N)``."""
    mu = means.to(torch.float64).clamp(eps, 1 - eps)
    x = x.to(mu)
    return mu.log() @ x.T + (1 - mu).log() @ (1 - x).T


def bernoulli_csl(means: torch.Tensor, x: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """CSL with a Bernoulli reconstruction: ``means`` ``(S, D)`` are the reconstruction means
    :math:`\\mu_s` along the chain, ``x`` ``(N, D)`` binary (or in [0, 1]) test points."""
    if means.dim() != 2 or x.dim() != 2 or means.shape[1] != x.shape[1]:
        raise ValueError(f"means (S, D) and x (N, D) must share D, got {tuple(means.shape)} and {tuple(x.shape)}")
    check_finite(means, "means")
    return csl(bernoulli_log_prob_matrix, means, x, chunk)
