"""The diffusion variational bound: Trace_ELBO on model/guide, the closed-form terms, the
training loss, against exact log-likelihoods of a linear-Gaussian reverse process."""
import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from pyro.infer import Trace_ELBO
from torch import nn

from pyro_deepgen.infer import DiffusionELBO
from pyro_deepgen.models import GaussianDiffusion
from pyro_deepgen.models.diffusion_schedules import (
    linear_schedule,
    schedule_coefficients,
    sohl_schedule,
)
from pyro_deepgen.nn import TimeMLP

DATA_MEAN, DATA_STD = 0.7, 0.5


class LinearReverse(nn.Module):
    """p(x_{t-1} | x_t) = N(a_t x_t + b_t, exp(c_t)), for mean_type="mean", var_type="learned"."""

    def __init__(self, a, b, c):
        super().__init__()
        self.a, self.b, self.c = nn.Parameter(a), nn.Parameter(b), nn.Parameter(c)

    def forward(self, x, t):
        return self.a[t][:, None] * x + self.b[t][:, None], self.c[t][:, None].expand_as(x)


def optimal_reverse(betas, m=DATA_MEAN, s=DATA_STD):
    """The exact reverse kernels q(x_{t-1} | x_t) of the forward chain for data N(m, s^2)."""
    coef = schedule_coefficients(betas)
    T = len(betas)
    M = coef["sqrt_alpha_bar"] * m
    V = coef["alpha_bar"] * s**2 + coef["one_minus_alpha_bar"]
    a, b, c = torch.zeros(T + 1), torch.zeros(T + 1), torch.zeros(T + 1)
    for t in range(1, T + 1):
        cov = coef["alphas"][t].sqrt() * V[t - 1]
        a[t] = cov / V[t]
        b[t] = M[t - 1] - a[t] * M[t]
        c[t] = torch.log(V[t - 1] - a[t] * cov)
    return a.double(), b.double(), c.double()


def model_marginal(a, b, c):
    """Mean and variance of p_theta(x_0) for the linear reverse chain started at N(0, 1)."""
    mean, var = torch.tensor(0.0).double(), torch.tensor(1.0).double()
    for t in range(len(a) - 1, 0, -1):
        mean, var = a[t] * mean + b[t], a[t] ** 2 * var + c[t].exp()
    return mean, var


def normal_logpdf(x, mean, var):
    return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)


def trace_elbo_per_point(diffusion, x0):
    """One Trace_ELBO particle, log p(x_{0:T}) - log q(x_{1:T} | x_0), per data point."""
    guide_trace = poutine.trace(diffusion.guide).get_trace(x0)
    model_trace = poutine.trace(poutine.replay(diffusion.model, trace=guide_trace)).get_trace(x0)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    elbo = sum(site["log_prob"] for site in _sample_sites(model_trace).values())
    return elbo - sum(site["log_prob"] for site in _sample_sites(guide_trace).values())


def _sample_sites(trace):
    return {
        n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)
    }


def linear_diffusion(betas, a, b, c):
    net = LinearReverse(a, b, c)
    return GaussianDiffusion(net, 1, schedule=betas, mean_type="mean", var_type="learned").double()


def test_optimal_reverse_process_makes_the_bound_exact():
    """sohl with beta_T = 1 makes q(x_T) = N(0, 1); with the exact reverse kernels every Trace_ELBO
    particle equals log p(x_0) (to float64 round-off), and the closed-form bound equals it in
    expectation (N=4000 points, 4 standard errors)."""
    betas = sohl_schedule(5, max_beta=1.0)
    d = linear_diffusion(betas, *optimal_reverse(betas))
    x0 = (DATA_MEAN + DATA_STD * torch.randn(4000, 1)).double()
    log_p = normal_logpdf(x0[:, 0], torch.tensor(DATA_MEAN).double(),
                          torch.tensor(DATA_STD**2).double())
    assert torch.allclose(trace_elbo_per_point(d, x0[:50]), log_p[:50], atol=1e-8)
    trajectory = d.bound(x0[:50], chunk_size=2, estimator="trajectory")
    assert torch.allclose(trajectory.nats, log_p[:50], atol=1e-8)
    assert torch.allclose(trajectory.terms.sum(-1), -trajectory.nats)
    loss = Trace_ELBO().loss(d.model, d.guide, x0[:50])
    assert loss == pytest.approx(-log_p[:50].sum().item(), abs=1e-6)
    gap = d.bound(x0).nats - log_p
    assert d.bound(x0).terms[:, -1].abs().max() < 1e-12  # L_T = 0 exactly
    assert gap.mean().abs() < 4 * gap.std() / math.sqrt(len(gap))


def test_bound_below_log_likelihood_and_equal_to_trace_elbo():
    """A perturbed linear reverse process with the DDPM schedule (T=6): log p_theta(x_0) is Gaussian
    in closed form. With N=20000 points: the mean of the closed-form KL sum agrees with the mean of
    the Monte Carlo Trace_ELBO (and of its vectorized version, bound(estimator="trajectory"))
    within 4 standard errors, and all lie below log p_theta(x_0) by more than 4 standard
    errors."""
    betas = linear_schedule(6)
    a, b, c = optimal_reverse(betas)
    a, b, c = a * 0.9, b + 0.2, c + 0.3
    d = linear_diffusion(betas, a, b, c)
    x0 = (DATA_MEAN + DATA_STD * torch.randn(20000, 1)).double()
    mean0, var0 = model_marginal(a, b, c)
    log_p = normal_logpdf(x0[:, 0], mean0, var0)
    closed = d.bound(x0, chunk_size=6).nats
    mc = trace_elbo_per_point(d, x0)
    trajectory = d.bound(x0, chunk_size=4, estimator="trajectory").nats
    for other in (mc, trajectory):
        diff = closed - other
        assert diff.mean().abs() < 4 * diff.std() / math.sqrt(len(x0))
    for estimate in (closed, mc, trajectory):
        gap = log_p - estimate
        assert gap.mean() > 4 * gap.std() / math.sqrt(len(x0))


def test_training_loss_is_unbiased_for_the_bound():
    """E_t[L_T + T l_t] = sum_t l_t + L_T: DiffusionELBO's value vs the full closed-form bound,
    N=20000 points, 4 standard errors; the surrogate of weighting='elbo' is the value."""
    betas = linear_schedule(6)
    a, b, c = optimal_reverse(betas)
    d = linear_diffusion(betas, a * 0.9, b + 0.2, c + 0.3)
    x0 = (DATA_MEAN + DATA_STD * torch.randn(20000, 1)).double()
    value, surrogate = d.training_loss(x0)
    assert torch.equal(value, surrogate)
    neg_bound = -d.bound(x0, chunk_size=6).nats
    diff = value - neg_bound
    assert diff.mean().abs() < 4 * diff.std() / math.sqrt(len(x0))
    loss = DiffusionELBO().loss(d.model, d.guide, x0)
    tol = 4 * diff.std().item() / math.sqrt(len(x0))
    assert loss / len(x0) == pytest.approx(neg_bound.mean().item(), abs=tol)


def test_one_step_diffusion_is_a_gaussian_vae_with_fixed_encoder():
    """T=1: q(x_1|x_0) = N(sqrt(1-beta) x_0, beta), p(x_1) = N(0, I),
    p(x_0|x_1) = N(mu(x_1), sigma^2).
    The model/guide traces and the training loss equal a hand-written one-step VAE ELBO."""
    beta = 0.3
    net = TimeMLP(2, (16,))
    nn.init.normal_(net.out.weight, std=0.3)
    d = GaussianDiffusion(net, 2, schedule=torch.tensor([beta]), mean_type="x0",
                          var_type="learned").double()
    x0 = torch.randn(7, 2).double()
    noise = torch.randn(7, 2).double()
    x1 = math.sqrt(1 - beta) * x0 + math.sqrt(beta) * noise
    mu, log_var = net(x1, torch.ones(7, dtype=torch.long))
    log_lik = (-0.5 * (math.log(2 * math.pi) + log_var + (x0 - mu) ** 2 / log_var.exp())).sum(-1)
    # KL(N(sqrt(1-beta) x0, beta) || N(0, 1)) per dimension, by hand
    kl = (0.5 * (-math.log(beta) + beta + (1 - beta) * x0**2 - 1)).sum(-1)
    value, _ = d.training_loss(x0, t=torch.ones(7, dtype=torch.long), noise=noise)
    assert torch.allclose(value, kl - log_lik, atol=1e-10)
    # the Pyro programs: one latent site x_1 and the observed x_0
    guide_trace = poutine.trace(d.guide).get_trace(x0)
    assert list(_sample_sites(guide_trace)) == ["x_1"]
    z = guide_trace.nodes["x_1"]["value"]
    mu, log_var = net(z, torch.ones(7, dtype=torch.long))
    hand = (
        -0.5 * (2 * math.log(2 * math.pi) + (z**2).sum(-1))  # log p(x_1)
        + (-0.5 * (math.log(2 * math.pi) + log_var + (x0 - mu) ** 2 / log_var.exp())).sum(-1)
        + 0.5 * (2 * math.log(2 * math.pi * beta)
                 + ((z - math.sqrt(1 - beta) * x0) ** 2).sum(-1) / beta)  # -log q(x_1 | x_0)
    )
    model_trace = poutine.trace(poutine.replay(d.model, trace=guide_trace)).get_trace(x0)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    elbo = model_trace.nodes["x_1"]["log_prob"] + model_trace.nodes["x_0"]["log_prob"]
    assert model_trace.nodes["x_0"]["is_observed"]
    assert torch.allclose(elbo - guide_trace.nodes["x_1"]["log_prob"], hand, atol=1e-10)


def test_ddpm_weighting_keeps_the_value_and_changes_the_gradient():
    """weighting='ddpm': same unbiased value as 'elbo' for the same (t, noise); with vlb_weight=0
    the surrogate is ||eps - eps_hat||^2 summed over dimensions."""
    net = TimeMLP(3, (16,))
    nn.init.normal_(net.out.weight, std=0.3)
    d = GaussianDiffusion(net, 3, num_steps=8, schedule="cosine")
    x0, noise = torch.randn(5, 3), torch.randn(5, 3)
    t = torch.tensor([1, 2, 4, 8, 3])
    v_elbo, _ = d.training_loss(x0, "elbo", t=t, noise=noise)
    v_ddpm, s_ddpm = d.training_loss(x0, "ddpm", vlb_weight=0.0, t=t, noise=noise)
    assert torch.allclose(v_elbo, v_ddpm)
    eps_hat, _ = net(d.q_sample(x0, t, noise), t)
    assert torch.allclose(s_ddpm, ((noise - eps_hat) ** 2).sum(-1), atol=1e-6)
    loss = DiffusionELBO("ddpm").differentiable_loss(d.model, d.guide, x0)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_num_data_scales_the_loss():
    d = GaussianDiffusion(TimeMLP(2, (8,)), 2, num_steps=4)
    x0 = torch.randn(10, 2)
    pyro.set_rng_seed(1)
    full = DiffusionELBO().loss(d.model, d.guide, x0)
    pyro.set_rng_seed(1)
    scaled = DiffusionELBO().loss(d.model, d.guide, x0, num_data=100)
    assert scaled == pytest.approx(10 * full, rel=1e-5)
    with pytest.raises(TypeError, match="diffusion.model"):
        DiffusionELBO().loss(lambda x: None, None, x0)
    with pytest.raises(ValueError, match="weighting"):
        DiffusionELBO("simple")


def test_learned_schedule_gets_gradients_through_trace_elbo_and_loss():
    d = GaussianDiffusion(TimeMLP(2, (8,)), 2, num_steps=4, schedule="sohl", learn_schedule=True)
    x0 = torch.randn(6, 2)
    for elbo in (Trace_ELBO(), DiffusionELBO()):
        d.zero_grad()
        elbo.differentiable_loss(d.model, d.guide, x0).backward()
        assert d.learned_betas.logits.grad.abs().sum() > 0
    assert "learned_betas.logits" in dict(d.named_parameters())


def test_trains_with_the_package_loop():
    """fit + DiffusionELBO('ddpm') on 1-D Gaussian data (T=10, 3 epochs of 512 points): the test
    bound (N=1000) rises by more than 0.3 nat per point and ends within 0.25 nat of log p(x)."""
    from pyro_deepgen.train import fit

    torch.manual_seed(0)
    d = GaussianDiffusion(TimeMLP(1, (32, 32)), 1, num_steps=10, schedule="cosine", mean_type="v")
    x_train = DATA_MEAN + DATA_STD * torch.randn(512, 1)
    x_test = DATA_MEAN + DATA_STD * torch.randn(1000, 1)
    log_p = normal_logpdf(x_test[:, 0], torch.tensor(DATA_MEAN), torch.tensor(DATA_STD**2)).mean()
    before = d.bound(x_test).nats.mean()
    history = fit(d.model, d.guide, x_train, loss=DiffusionELBO("ddpm"), lr=1e-2, epochs=3,
                  batch_size=32, progress=False)
    after = d.bound(x_test).nats.mean()
    assert history.epochs == 3 and history.loss[-1] < history.loss[0]
    assert after > before + 0.3
    assert log_p - 0.25 < after < log_p + 0.1  # a bound, up to its Monte Carlo error


class Oracle(nn.Module):
    """Knows x_0 and outputs the exact eps, v, x_0 or posterior mean for the given x_t."""

    def __init__(self, x0, mean_type):
        super().__init__()
        self.x0, self.mean_type, self.coef = x0, mean_type, None
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        c = {k: v[t][:, None] for k, v in self.coef.items()}
        eps = (x - c["sqrt_alpha_bar"] * self.x0) / c["sqrt_one_minus_alpha_bar"]
        out = {
            "eps": eps,
            "v": c["sqrt_alpha_bar"] * eps - c["sqrt_one_minus_alpha_bar"] * self.x0,
            "x0": self.x0,
            "mean": c["coef_x0"] * self.x0 + c["coef_xt"] * x,
        }[self.mean_type]
        return out, torch.zeros_like(x)


@pytest.mark.parametrize("mean_type", ["eps", "v", "x0", "mean"])
@pytest.mark.parametrize("schedule", ["cosine", "sohl"])
def test_every_mean_parameterization_recovers_the_posterior(mean_type, schedule):
    """With the exact prediction and var_type='fixed_small' the reverse kernel is the forward
    posterior, so every KL term L_1..L_{T-1} is 0 (float64) and the ddpm regression loss is 0."""
    x0 = torch.randn(6, 3).double()
    net = Oracle(x0, mean_type)
    d = GaussianDiffusion(net, 3, num_steps=8, schedule=schedule, mean_type=mean_type,
                          var_type="fixed_small").double()
    net.coef = d.coefficients()
    assert d.bound(x0, chunk_size=1).terms[:, 1:-1].abs().max() < 1e-9
    _, surrogate = d.training_loss(x0, "ddpm", vlb_weight=0.0)
    assert surrogate.abs().max() < 1e-9


def test_importance_distribution_is_uniform_until_every_step_has_ten_values():
    """Nichol & Dhariwal's p_t: uniform while any step has fewer than 10 recorded terms; then
    p_t = (1 - 1e-3) sqrt(mean l_t^2) / sum + 1e-3 / T exactly (a ring buffer of the last 10,
    the last 10 of a step drawn more often in one call); a no-op for uniform t."""
    betas = linear_schedule(4)
    d = linear_diffusion(betas, *optimal_reverse(betas))
    d_is = GaussianDiffusion(d.net, 1, schedule=betas, mean_type="mean", var_type="learned",
                             t_sampling="importance").double()
    uniform = torch.full((4,), 0.25, dtype=torch.float64)
    assert torch.equal(d_is.t_probabilities(), uniform)
    d_is.update_loss_history(torch.tensor([1] * 10 + [2] * 10 + [3] * 10), torch.ones(30))
    assert torch.equal(d_is.t_probabilities(), uniform)  # step 4 has no values yet
    d_is.update_loss_history(torch.tensor([4] * 9), torch.ones(9))
    assert torch.equal(d_is.t_probabilities(), uniform)  # 9 < 10
    # step 4 gets 12 more: only the last 10 (values 3..12) count, with the 9 ones overwritten
    d_is.update_loss_history(torch.full((12,), 4), torch.arange(1.0, 13.0))
    assert d_is.loss_history_count.tolist() == [10, 10, 10, 21]
    rms = torch.tensor([1.0, 1.0, 1.0, torch.arange(3.0, 13.0).pow(2).mean().sqrt().item()], dtype=torch.float64)
    expected = (1 - 1e-3) * rms / rms.sum() + 1e-3 / 4
    assert torch.allclose(d_is.t_probabilities(), expected, rtol=1e-12)
    d.update_loss_history(torch.tensor([1]), torch.ones(1))  # uniform: nothing recorded
    assert torch.equal(d.t_probabilities(), uniform)
    with pytest.raises(ValueError, match="t_sampling"):
        GaussianDiffusion(TimeMLP(1), 1, num_steps=3, t_sampling="stratified")
    with pytest.raises(ValueError, match="1..T"):
        d_is.update_loss_history(torch.tensor([5]), torch.ones(1))


def test_importance_sampled_loss_is_unbiased_for_the_bound():
    """After a warm-up that fills the history (training mode), the importance-weighted value
    L_T + l_t / p_t at fixed noise has the mean L_T + sum_t l_t (every term of the bound at the
    same noise, in closed form): N=20000 points, 4 standard errors of the t-sampling noise; p_t is
    far from uniform here (max/min > 3) and its variance is below uniform t's. Evaluation mode
    records nothing."""
    betas = linear_schedule(6)
    a, b, c = optimal_reverse(betas)
    net = LinearReverse(a * 0.9, b + 0.2, c + 0.3)
    d = GaussianDiffusion(net, 1, schedule=betas, mean_type="mean", var_type="learned",
                          t_sampling="importance").double()
    x0 = (DATA_MEAN + DATA_STD * torch.randn(20000, 1)).double()
    with torch.no_grad():
        d.training_loss(x0[:500])  # fills every step's history
        p = d.t_probabilities()
        assert bool((d.loss_history_count >= 10).all()) and p.max() / p.min() > 3
        noise = torch.randn_like(x0)
        d.eval()
        count = d.loss_history_count.clone()
        value, surrogate = d.training_loss(x0, noise=noise)
        assert torch.equal(d.loss_history_count, count) and torch.equal(value, surrogate)
        y0 = d.to_chain(x0)
        full = d.prior_kl(y0) + sum(
            (d.training_loss(x0, t=torch.full((len(x0),), s), noise=noise)[0] - d.prior_kl(y0)) / 6
            for s in range(1, 7))
        diff = value - full
        assert diff.mean().abs() < 4 * diff.std() / math.sqrt(len(x0))
        d.t_sampling = "uniform"
        uniform_value, _ = d.training_loss(x0, noise=noise)
        assert (value - full).var() < (uniform_value - full).var()


def test_importance_sampled_ddpm_surrogate_keeps_the_uniform_expectation():
    """weighting='ddpm' under importance sampling: the surrogate is the uniform surrogate at the
    drawn t times 1/(T p_t), so its mean over N=20000 points matches the mean of the uniform
    surrogate averaged over all T steps at the same noise within 4 standard errors."""
    betas = linear_schedule(5)
    d = GaussianDiffusion(TimeMLP(1, (8,)), 1, schedule=betas, t_sampling="importance",
                          var_type="learned_range").double()
    torch.nn.init.normal_(d.net.out.weight, std=0.3)
    x0 = (DATA_MEAN + DATA_STD * torch.randn(20000, 1)).double()
    with torch.no_grad():
        d.update_loss_history(torch.arange(1, 6).repeat(10), torch.linspace(0.1, 5.0, 50))
        noise = torch.randn_like(x0)
        _, surrogate = d.training_loss(x0, "ddpm", noise=noise)
        full = sum(d.training_loss(x0, "ddpm", t=torch.full((len(x0),), s), noise=noise)[1]
                   for s in range(1, 6)) / 5
    diff = surrogate - full
    assert diff.mean().abs() < 4 * diff.std() / math.sqrt(len(x0))


def test_bound_summary_has_one_sign_and_a_standard_error():
    """DiffusionBound.summary(): mean nats (a log-likelihood bound, negative here) and positive
    bits/dim with standard errors std / sqrt(N); the exact bound lies within 4 of them (N=4000)."""
    betas = sohl_schedule(5, max_beta=1.0)
    d = linear_diffusion(betas, *optimal_reverse(betas))
    x0 = (DATA_MEAN + DATA_STD * torch.randn(4000, 1)).double()
    bound = d.bound(x0)
    s = bound.summary()
    assert s["num_points"] == 4000 and s["bits_per_dim"] > 0 > s["nats"]
    assert s["nats_stderr"] == pytest.approx(bound.nats.std().item() / math.sqrt(4000), rel=1e-12)
    assert s["bits_per_dim"] == pytest.approx(-s["nats"] / math.log(2), rel=1e-12)
    assert s["bits_per_dim_stderr"] == pytest.approx(s["nats_stderr"] / math.log(2), rel=1e-12)
    # the expected log-likelihood of N(0.7, 0.25) data: the bound is exact for this model
    exact = -0.5 * (math.log(2 * math.pi * DATA_STD**2) + 1)
    assert abs(s["nats"] - exact) < 4 * s["nats_stderr"]
    assert math.isnan(d.bound(x0[:1]).summary()["nats_stderr"])
