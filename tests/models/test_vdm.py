"""The variational diffusion model (VDM) on a 1-D discrete toy problem, in float64.

Truth: the T-step model's log P(x) by grid quadrature of its 1-D Markov chain; expectations
over the noise by Gauss-Hermite quadrature and over t by Gauss-Legendre quadrature; the
exact per-dimension categorical denoiser; autograd gradients of the named objectives.
"""
import math

import numpy as np
import pytest
import torch
from pyro import poutine
from torch.nn import functional as F

from pyro_deepgen.infer import DiffusionELBO
from pyro_deepgen.models import VariationalDiffusion
from pyro_deepgen.models.vdm import MonotoneSchedule, fourier_features
from pyro_deepgen.nn import TimeMLP

LEVELS = 5


def toy_model(seed=0, num_steps=None, gamma_0=-5.0, gamma_1=4.0, levels=LEVELS, base_logits=None,
              random_net=True, **kwargs):
    """A 1-D VDM in float64 with a random (not zero) network and a random schedule interior."""
    torch.manual_seed(seed)
    net = TimeMLP(VariationalDiffusion.network_input_size(1), (16, 16), out_dims=1, activation="tanh")
    model = VariationalDiffusion(net, 1, num_levels=levels, num_steps=num_steps, gamma_0=gamma_0,
                                 gamma_1=gamma_1, schedule_hidden=8, base_logits=base_logits, **kwargs)
    if random_net:
        with torch.no_grad():
            model.net.out.weight.normal_(0, 0.3)
            model.net.out.bias.normal_(0, 0.3)
            model.schedule.w3.normal_(0, 1.0)
            model.schedule.w2.normal_(0, 1.0)
    return model.double()


def all_values(levels=LEVELS):
    return (torch.arange(levels, dtype=torch.float64) / (levels - 1)).reshape(-1, 1)


def hermite(n=80):
    """Nodes and weights of E[h(eps)], eps ~ N(0, 1)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    return torch.as_tensor(nodes), torch.as_tensor(weights / math.sqrt(2 * math.pi))


@torch.no_grad()
def expected_diffusion_loss(model, x, t, num_steps, n_eps=80):
    """E_eps of model.diffusion_loss at each of the times t (one x), by Gauss-Hermite."""
    nodes, weights = hermite(n_eps)
    tt = t.repeat_interleave(len(nodes))
    eps = nodes.repeat(len(t)).reshape(-1, 1)
    losses = model.diffusion_loss(x.expand(len(tt), 1), tt, eps, num_steps=num_steps)
    return (losses.reshape(len(t), len(nodes)) * weights).sum(-1)


def discrete_diffusion_term(model, x, T):
    """L_T = sum_i E_eps[KL_i]: the mean over the T steps of diffusion_loss (which carries T)."""
    return expected_diffusion_loss(model, x, torch.arange(1, T + 1, dtype=torch.float64) / T, T).mean()


def continuous_diffusion_term(model, x, n_t=400):
    nodes, weights = np.polynomial.legendre.leggauss(n_t)
    t = torch.as_tensor((nodes + 1) / 2)
    return (expected_diffusion_loss(model, x, t, None) * torch.as_tensor(weights / 2)).sum()


@torch.no_grad()
def exact_bound(model, x, T):
    """-(prior + reconstruction + L_T) for one x, every expectation by quadrature."""
    nodes, weights = hermite()
    rec = (model.reconstruction(x.expand(len(nodes), 1), nodes.reshape(-1, 1)) * weights).sum()
    return -(model.prior_kl(x)[0] + rec + discrete_diffusion_term(model, x, T))


@torch.no_grad()
def exact_log_prob(model, T, h=0.01, half_width=15.0):
    """log P(x = k) of the T-step model for every grid value k, by propagating the density of z
    through the reverse chain on a grid (trapezoid rule, spectrally accurate for these smooth
    densities; the narrowest kernel spans > 5 cells)."""
    z = torch.arange(-half_width, half_width + h / 2, h, dtype=torch.float64)
    n = len(z)
    p = torch.exp(-0.5 * z ** 2) / math.sqrt(2 * math.pi)
    for i in range(T, 0, -1):
        mean, var = model.reverse_step(z.reshape(-1, 1), torch.full((n,), i / T, dtype=torch.float64),
                                       torch.full((n,), (i - 1) / T, dtype=torch.float64))
        mean, var = mean.reshape(1, n), var.reshape(1, n)
        kernel = torch.exp(-0.5 * (z.reshape(n, 1) - mean) ** 2 / var) / torch.sqrt(2 * math.pi * var)
        assert var.sqrt().min() > 5 * h
        p = kernel @ p * h
    g0 = model.schedule.gamma_0
    decoder = model._log_decoder(z / torch.sigmoid(-g0).sqrt(), g0).exp()  # (n, L)
    return torch.log((p.reshape(n, 1) * decoder).sum(0) * h)


# -- (d) the schedule --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_gamma_is_monotone_with_exact_endpoints_and_derivative(seed):
    torch.manual_seed(seed)
    schedule = MonotoneSchedule(-3.0, 2.0, hidden=32).double()
    with torch.no_grad():
        for p in schedule.parameters():
            p.normal_(0, 3.0)
    t = torch.linspace(0, 1, 20001, dtype=torch.float64, requires_grad=True)
    g, dg = schedule(t)
    assert bool((g[1:] - g[:-1] > 0).all())
    assert bool((dg > 0).all())
    gamma_1 = schedule.gamma_0 + F.softplus(schedule.delta)
    assert g[0].item() == pytest.approx(schedule.gamma_0.item(), abs=1e-12)
    assert g[-1].item() == pytest.approx(gamma_1.item(), abs=1e-12)
    (auto,) = torch.autograd.grad(g.sum(), t)
    torch.testing.assert_close(dg, auto, rtol=1e-10, atol=1e-10)


def test_gamma_starts_linear_and_model_gamma_matches_schedule():
    model = toy_model(random_net=False, gamma_0=-7.0, gamma_1=3.0)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    # w3 starts at softplus(-10) ~ 4.5e-5: linear to that precision
    torch.testing.assert_close(model.gamma(t), -7.0 + 10.0 * t, atol=1e-3, rtol=0)


# -- (a) T -> infinity ------------------------------------------------------------------------------
def test_discrete_bound_converges_to_continuous():
    """Same model, same x: |L_T - L_inf| (every expectation by quadrature) shrinks like 1/T
    (a Riemann sum of the integral over gamma; measured 2.05, 0.21, 0.026 at T = 16, 128, 1024 for
    L_inf = 5.80); at T = 1024 it is below 1% of L_inf."""
    model = toy_model(seed=1)
    x = all_values()[1:2]
    continuous = continuous_diffusion_term(model, x).item()
    errors = {T: abs(discrete_diffusion_term(model, x, T).item() - continuous) for T in (16, 128, 1024)}
    assert errors[1024] < 1e-2 * abs(continuous)
    assert errors[128] < errors[16] / 4 and errors[1024] < errors[128] / 4
    # the Monte Carlo estimator of the continuous term agrees (20000 draws, 4 standard errors)
    torch.manual_seed(0)
    draws = model.diffusion_loss(x.expand(20000, 1)).detach()
    assert abs(draws.mean().item() - continuous) < 4 * draws.std().item() / math.sqrt(len(draws))


# -- (b) the bound against the exact log-likelihood ---------------------------------------------------
def test_bound_is_below_exact_log_likelihood_of_t_step_model():
    """5 grid values, T = 6, a random network: the exact bound (quadrature) is below the exact
    log P(x) (grid quadrature of the chain; total mass 1 to 1e-6) for every value, with a gap of
    2.6 to 4.3 nats; model.bound and the Pyro programs' log p - log q agree with the exact bound
    within 4 standard errors (4000 points each, seeded)."""
    T = 6
    # gamma_1 = 0 keeps z_0 = z_1 alpha_0 / alpha_1 + ... inside the quadrature grid (|z| < 15)
    model = toy_model(seed=2, num_steps=T, gamma_1=0.0)
    log_p = exact_log_prob(model, T)
    assert torch.exp(log_p).sum().item() == pytest.approx(1.0, abs=1e-6)  # the quadrature is exact
    bounds = torch.stack([exact_bound(model, x.reshape(1, 1), T) for x in all_values()])
    assert bool((bounds <= log_p + 1e-6).all()), (bounds, log_p)
    assert (log_p - bounds).min().item() > 1e-3  # a random network: a real gap
    # the Monte Carlo bound (model.bound, 4000 points x 1 draw per value) agrees within 4 SE
    torch.manual_seed(3)
    for k, x in enumerate(all_values()):
        summary = model.bound(x.expand(4000, 1)).summary()
        assert abs(summary["nats"] - bounds[k].item()) < 4 * summary["nats_stderr"]
    # and it is the ELBO of the Pyro programs: log p - log q along one forward chain (4000 chains)
    x = all_values()[2:3].expand(4000, 1)
    guide = poutine.trace(model.guide).get_trace(x)
    joint = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(x)
    joint.compute_log_prob()
    guide.compute_log_prob()
    w = sum(s["log_prob"] for s in joint.nodes.values() if s["type"] == "sample") \
        - sum(s["log_prob"] for s in guide.nodes.values() if s["type"] == "sample")
    assert abs(w.mean().item() - bounds[2].item()) < 4 * w.std().item() / math.sqrt(len(w))


def test_exact_base_denoiser_makes_the_continuous_bound_tight():
    """With the network at zero, the denoiser is the exact posterior mean under the base pi, so
    the model is pi (up to gamma_1 < inf): the continuous bound equals log pi(x)
    (prior KL < 1e-4 at gamma_1 = 12, reconstruction ~ 0 at gamma_0 = -12). 20000 draws per
    value, 4 standard errors plus 1e-3."""
    pi = torch.tensor([0.1, 0.4, 0.2, 0.05, 0.25], dtype=torch.float64)
    model = toy_model(random_net=False, gamma_0=-12.0, gamma_1=12.0, base_logits=pi.log().reshape(1, -1))
    torch.manual_seed(4)
    for k, x in enumerate(all_values()):
        summary = model.bound(x.expand(20000, 1)).summary()
        assert abs(summary["nats"] - math.log(pi[k])) < 4 * summary["nats_stderr"] + 1e-3


# -- (c) the variance-minimizing schedule gradient ----------------------------------------------------
def _grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)


def test_schedule_interior_gets_gradient_of_squared_loss_endpoints_of_loss():
    model = toy_model(seed=5)
    torch.manual_seed(0)
    x = all_values()[torch.randint(0, LEVELS, (64,))]
    t, noise = torch.rand(64, dtype=torch.float64), torch.randn(64, 1, dtype=torch.float64)
    interior, ends = model.schedule.interior_parameters(), model.schedule.endpoint_parameters()
    others = [p for name, p in model.named_parameters() if not name.startswith("schedule.")]
    torch.manual_seed(1)
    value, surrogate = model.training_loss(x, t=t, noise=noise)
    got = _grads(surrogate.sum(), interior + ends + tuple(others))
    torch.manual_seed(1)  # the same reconstruction draw
    diff = model.diffusion_loss(x, t, noise)
    reference = model.reconstruction(x) + model.prior_kl(x) + diff
    torch.testing.assert_close(value, reference, rtol=0, atol=1e-12)
    want = _grads((diff ** 2).sum() / 2, interior) + _grads(reference.sum(), ends + tuple(others))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
    assert max(g.abs().max().item() for g in got[:len(interior)]) > 0


@pytest.mark.parametrize("kwargs", [dict(variance_minimizing=False), dict(num_steps=10)])
def test_schedule_interior_gets_gradient_of_loss_otherwise(kwargs):
    model = toy_model(seed=5, **kwargs)
    x = all_values()
    t, noise = torch.rand(LEVELS, dtype=torch.float64), torch.randn(LEVELS, 1, dtype=torch.float64)
    torch.manual_seed(1)
    value, surrogate = model.training_loss(x, t=t, noise=noise)
    params = tuple(model.schedule.interior_parameters())
    torch.manual_seed(1)
    for g, w in zip(_grads(surrogate.sum(), params), _grads(value.sum(), params)):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_continuous_bound_does_not_depend_on_schedule_interior():
    """Why the interior may be trained on the variance: L_inf depends only on gamma_0, gamma_1
    (substituting v = gamma(t)); two interiors, same endpoints, same L_inf by quadrature (1e-6)."""
    a, b = toy_model(seed=6), toy_model(seed=6)
    with torch.no_grad():
        b.schedule.w2.normal_(0, 2.0)
        b.schedule.b1.fill_(1.5)
        b.schedule.w3.normal_(0, 2.0)
    x = all_values()[3:4]
    t = torch.rand(5, dtype=torch.float64)
    assert (a.gamma(t) - b.gamma(t)).abs().max() > 0.05
    assert continuous_diffusion_term(a, x, 800).item() == pytest.approx(
        continuous_diffusion_term(b, x, 800).item(), abs=1e-6)


def test_trains_with_diffusion_elbo_and_low_discrepancy_times():
    model = toy_model(seed=7)
    x = all_values()
    elbo = DiffusionELBO()
    loss = elbo.differentiable_loss(model.model, model.guide, x)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    torch.manual_seed(0)
    t = model.low_discrepancy_times(8)
    assert bool(((t >= 0) & (t < 1)).all())
    torch.testing.assert_close(torch.sort(t).values.diff(), torch.full((7,), 1 / 8, dtype=torch.float64))


# -- the API of the samplers -------------------------------------------------------------------------
def test_sampler_api_shapes_and_decode():
    model = toy_model(seed=8)
    z = torch.randn(7, 1, dtype=torch.float64)
    t = torch.rand(7, dtype=torch.float64)
    assert model.data_shape == (1,)
    assert model.gamma(t).shape == (7,)
    assert model.predict_eps(z, t).shape == (7, 1)
    # decode is the grid value nearest to z0 / alpha_0
    alpha_0 = torch.sigmoid(-model.schedule.gamma_0).sqrt()
    x = model.decode(alpha_0 * model.grid.reshape(-1, 1) + 0.01)
    torch.testing.assert_close(x, all_values())
    samples = model.sample(20, num_steps=8)
    assert samples.shape == (20, 1)
    assert bool(torch.isin(samples, all_values().flatten()).all())


def test_fourier_features_have_the_grid_period():
    grid = VariationalDiffusion(TimeMLP(5, (4,), out_dims=1), 1, num_levels=256).double().grid
    h = fourier_features(grid.reshape(-1, 1), (128.0, 256.0))
    assert h.shape == (256, 5)
    torch.testing.assert_close(h[:, 1:], h[:1, 1:].expand(256, 4), atol=1e-9, rtol=0)


def test_histogram_logits_laplace_smoothed():
    x = torch.tensor([[0.0], [0.0], [1.0]])
    logits = VariationalDiffusion.histogram_logits(x, num_levels=2)
    torch.testing.assert_close(logits.exp(), torch.tensor([[3 / 5, 2 / 5]]))


# -- (e) bad input -----------------------------------------------------------------------------------
def test_bad_input():
    model = toy_model(seed=0)
    with pytest.raises(ValueError, match="grid"):
        model.bound(torch.full((2, 1), 0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.bound(torch.full((2, 1), 1.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        model.bound(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="dtype"):
        model.bound(torch.zeros(2, 1, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        model.gamma(torch.tensor([1.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="t must have shape"):
        model.predict_eps(torch.zeros(3, 1, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="weighting must be 'elbo'"):
        model.training_loss(all_values(), "ddpm")
    with pytest.raises(ValueError, match="num_samples"):
        model.bound(all_values(), num_samples=0)
    net = TimeMLP(5, (4,), out_dims=1)
    with pytest.raises(ValueError, match="gamma_1 must exceed gamma_0"):
        VariationalDiffusion(net, 1, gamma_0=1.0, gamma_1=0.0)
    with pytest.raises(ValueError, match="num_levels"):
        VariationalDiffusion(net, 1, num_levels=1)
    with pytest.raises(ValueError, match="base_logits must have shape"):
        VariationalDiffusion(net, 1, num_levels=4, base_logits=torch.zeros(4))
    with pytest.raises(ValueError, match="fourier_multiples"):
        VariationalDiffusion(net, 1, fourier_multiples=(-1,))
    with pytest.raises(TypeError, match="net must be an nn.Module"):
        VariationalDiffusion(lambda h, c: h, 1)
    with pytest.raises(ValueError, match="known and mask together"):
        model.sample(2, known=all_values()[:2])
