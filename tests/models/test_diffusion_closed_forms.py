"""Schedules, the forward marginal, the forward posterior and the discretized decoder."""
import math

import pytest
import torch
from pyro import poutine
from scipy.stats import norm

from pyro_deepgen.distributions import DiscretizedNormal
from pyro_deepgen.models import GaussianDiffusion
from pyro_deepgen.models.diffusion_schedules import (
    cosine_schedule,
    linear_schedule,
    make_schedule,
    schedule_coefficients,
    sohl_schedule,
)
from pyro_deepgen.nn import TimeMLP


def test_schedules():
    T = 40
    betas = sohl_schedule(T, max_beta=1.0)
    coef = schedule_coefficients(betas)
    t = torch.arange(T + 1, dtype=torch.float64)
    assert torch.allclose(coef["alpha_bar"], 1 - t / T, atol=1e-12)  # constant erasure rate
    assert sohl_schedule(T)[-1] == 0.999 and sohl_schedule(T)[0] == pytest.approx(1 / T)
    lin = linear_schedule(1000)
    assert lin[0] == pytest.approx(1e-4) and lin[-1] == pytest.approx(0.02)
    assert linear_schedule(40)[-1] == pytest.approx(0.5)  # rescaled by 1000 / T
    cos = schedule_coefficients(cosine_schedule(T))["alpha_bar"]
    f = torch.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2
    assert torch.allclose(cos[:-1], (f / f[0])[:-1], atol=1e-10)  # last beta is clipped
    for name in ("sohl", "linear", "cosine"):
        b = make_schedule(name, 7)
        assert b.shape == (7,) and bool(((b > 0) & (b < 1)).all())
    with pytest.raises(ValueError, match="schedule"):
        make_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="num_steps"):
        linear_schedule(0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        schedule_coefficients(torch.tensor([0.1, 1.5]))


def test_forward_marginal_matches_simulated_chain():
    """Sample the guide's chain x_1..x_T step by step (n=20000 copies of x_0 = 1.5, T=10) and
    compare
    the mean and variance of every x_t with q(x_t | x_0): 4 standard errors (the variance's standard
    error is var * sqrt(2/n))."""
    n, T = 20000, 10
    d = GaussianDiffusion(TimeMLP(1, (4,)), 1, num_steps=T, schedule="linear").double()
    x0 = torch.full((n, 1), 1.5, dtype=torch.float64)
    trace = poutine.trace(d.guide).get_trace(x0)
    for t in range(1, T + 1):
        xt = trace.nodes[f"x_{t}"]["value"]
        mean, var = d.q_marginal(x0[:1], t)
        assert abs(xt.mean() - mean.item()) < 4 * math.sqrt(var.item() / n)
        assert abs(xt.var() - var.item()) < 4 * var.item() * math.sqrt(2 / n)
    # q_sample with given noise is the closed form
    noise = torch.randn(3, 1).double()
    c = schedule_coefficients(linear_schedule(T))
    assert torch.allclose(d.q_sample(x0[:3], 4, noise), c["sqrt_alpha_bar"][4] * x0[:3]
                          + c["sqrt_one_minus_alpha_bar"][4] * noise)


@pytest.mark.parametrize("schedule,t", [("cosine", 3), ("sohl", 10), ("linear", 1)])
def test_posterior_matches_bayes_rule_on_a_grid(schedule, t):
    """q(x_{t-1} | x_t, x_0) vs q(x_{t-1} | x_0) q(x_t | x_{t-1}) normalized numerically on a grid
    of 40001 points in 1-D (float64): densities to 1e-6, mean and variance to 1e-6."""
    T = 10
    d = GaussianDiffusion(TimeMLP(1, (4,)), 1, num_steps=T, schedule=schedule).double()
    c = d.coefficients()
    x0 = torch.tensor([[0.8]], dtype=torch.float64)
    xt = torch.tensor([[-0.3]], dtype=torch.float64)
    grid = torch.linspace(-8, 8, 40001, dtype=torch.float64)
    if t > 1:
        prior_mean, prior_var = (v.item() for v in d.q_marginal(x0, t - 1))
        log_prior = torch.tensor(norm.logpdf(grid.numpy(), prior_mean, math.sqrt(prior_var)))
    else:
        log_prior = None
    beta = c["betas"][t].item()
    log_lik = torch.tensor(
        norm.logpdf(xt.item(), math.sqrt(1 - beta) * grid.numpy(), math.sqrt(beta))
    )
    mean, var = d.q_posterior(x0, xt, t)
    if log_prior is None:  # t = 1: the posterior of x_0 given x_0 is a point mass
        assert mean.item() == pytest.approx(x0.item()) and var.item() == 0
        return
    log_w = log_prior + log_lik
    w = torch.exp(log_w - log_w.max())
    density = w / torch.trapezoid(w, grid)
    closed = torch.tensor(norm.pdf(grid.numpy(), mean.item(), math.sqrt(var.item())))
    assert (density - closed).abs().max() < 1e-6
    num_mean = torch.trapezoid(density * grid, grid)
    num_var = torch.trapezoid(density * (grid - num_mean) ** 2, grid)
    assert num_mean.item() == pytest.approx(mean.item(), abs=1e-6)
    assert num_var.item() == pytest.approx(var.item(), abs=1e-6)


def test_discretized_normal():
    """Probabilities over the 256-point grid sum to 1; interior bins equal Phi differences (scipy);
    far tails stay finite."""
    loc = torch.tensor([0.3, -0.99, 2.5, -40.0], dtype=torch.float64)[:, None]
    scale = torch.tensor([0.1, 0.05, 0.01, 1.0], dtype=torch.float64)[:, None]
    d = DiscretizedNormal(loc, scale, num_levels=256)
    grid = torch.linspace(-1, 1, 256, dtype=torch.float64)
    logp = d.log_prob(grid)
    assert torch.isfinite(logp).all()
    assert torch.allclose(logp.exp().sum(-1), torch.ones(4, dtype=torch.float64), atol=1e-10)
    h = 1 / 255
    v = grid[100].item()
    expected = norm.cdf((v + h - 0.3) / 0.1) - norm.cdf((v - h - 0.3) / 0.1)
    assert logp[0, 100].exp().item() == pytest.approx(expected, rel=1e-10)
    s = DiscretizedNormal(loc, scale, num_levels=17).sample((5,))
    assert s.shape == (5, 4, 1) and torch.allclose(s, ((s + 1) * 8).round() / 8 - 1)
    with pytest.raises(ValueError, match="num_levels"):
        DiscretizedNormal(loc, scale, num_levels=1)


def test_discrete_bound_is_in_bits_per_dim():
    """With 8-bit data the bound is a bound on the pmf: nats < 0 and bits/dim = -nats / (D log 2);
    off-grid values are rejected."""
    d = GaussianDiffusion(TimeMLP(4, (8,)), 4, num_steps=5, data="discrete", num_levels=256)
    x = torch.randint(0, 256, (6, 4)) / 255.0
    b = d.bound(x)
    assert (b.nats < 0).all()
    assert torch.allclose(b.bits_per_dim, -b.nats / (4 * math.log(2)))
    t = d.bound(x, estimator="trajectory")
    assert (t.nats < 0).all() and torch.allclose(t.terms.sum(-1), -t.nats)
    with pytest.raises(ValueError, match="estimator"):
        d.bound(x, estimator="iwae")
    with pytest.raises(ValueError, match="k/255"):
        d.bound(x + 0.001)
    with pytest.raises(ValueError, match="shape"):
        d.bound(x[:, :3])
