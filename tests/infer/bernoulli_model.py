"""A tiny Bernoulli-latent model whose ELBO and multi-sample bound are computed exactly.

Three binary latents per data point, Gaussian observations of a linear map of them, and a
factorized Bernoulli guide with logits parameters. Every data point gets its *own copy* of the
model and guide parameters (all rows initialized equal), so that one vectorized call over N
replicated data points yields N independent draws of a gradient estimator, one per row.
"""
import itertools
import math
from typing import Optional, Tuple

import pyro
import pyro.distributions as dist
import torch

D = 3
W = torch.tensor([[1.0, -0.5, 0.8], [0.3, 1.2, -1.0]])
X0 = torch.tensor([0.7, -0.4])
PRIOR_LOGITS = torch.tensor([0.2, -0.3, 0.5])
GUIDE_LOGITS = torch.tensor([-0.4, 0.6, 0.1])
PARAMS = ("prior_logits", "logits")


def model(x: torch.Tensor) -> None:
    prior_logits = pyro.param("prior_logits", PRIOR_LOGITS.expand(len(x), D).clone())
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Bernoulli(logits=prior_logits).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T, 1.0).to_event(1), obs=x)


def guide(x: torch.Tensor) -> None:
    logits = pyro.param("logits", GUIDE_LOGITS.expand(len(x), D).clone())
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Bernoulli(logits=logits).to_event(1))


def data(n: int) -> torch.Tensor:
    return X0.expand(n, 2).clone()


def exact(k: Optional[int] = None) -> Tuple[float, Tuple[torch.Tensor, torch.Tensor]]:
    """The ELBO (``k=None``) or :math:`E[\\log\\frac1k\\sum_i w_i]` of one data point and its
    gradient w.r.t. (prior_logits, logits), by enumerating all 8 states (all 8**k k-tuples)."""
    prior = PRIOR_LOGITS.clone().requires_grad_()
    logits = GUIDE_LOGITS.clone().requires_grad_()
    z = torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)))
    log_q = dist.Bernoulli(logits=logits).log_prob(z).sum(-1)
    log_p = dist.Bernoulli(logits=prior).log_prob(z).sum(-1)
    log_p = log_p + dist.Normal(z @ W.T, 1.0).log_prob(X0).sum(-1)
    f = log_p - log_q
    if k is None:
        value = (log_q.exp() * f).sum()
    else:
        idx = torch.tensor(list(itertools.product(range(len(z)), repeat=k)))
        value = (log_q[idx].sum(-1).exp() * (torch.logsumexp(f[idx], -1) - math.log(k))).sum()
    grads = torch.autograd.grad(value, [prior, logits])
    return value.item(), grads


def gradient_draws(elbo, n: int, seed: int = 0, warmup: int = 0):
    """``n`` independent draws of the estimator of the *bound's* gradient (one per row), for
    (prior_logits, logits), each of shape ``(n, D)``."""
    x = data(n)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    for _ in range(warmup):  # lets decaying-average baselines settle
        loss = elbo.differentiable_loss(model, guide, x)
        loss.backward()
    loss = elbo.differentiable_loss(model, guide, x)
    params = [pyro.param(name).unconstrained() for name in PARAMS]
    return [-g for g in torch.autograd.grad(loss, params)]


def assert_unbiased(draws, exact_grads, num_se: float = 4.0) -> None:
    """Mean of the draws within ``num_se`` standard errors (+1e-3) of the exact gradient."""
    for g, e in zip(draws, exact_grads):
        se = g.std(0) / math.sqrt(len(g))
        err = (g.mean(0) - e).abs()
        assert (err < num_se * se + 1e-3).all(), (g.mean(0), e, se)
