"""DDIM, the probability-flow ODE and its likelihood, against Gaussian data whose optimal noise
predictor and flow are known in closed form."""
import math

import pytest
import torch
from torch import nn

from pyro_deepgen.models import GaussianDiffusion
from pyro_deepgen.models.diffusion_samplers import (
    ddim_sample,
    ddim_timesteps,
    dequantized_log_likelihood,
    hutchinson_trace,
    inpaint,
    ode_log_likelihood,
    ode_sample,
    ode_variational_bound,
)
from pyro_deepgen.models.diffusion_schedules import cosine_schedule, linear_schedule
from pyro_deepgen.nn import UNet

MU, S2 = 0.7, 0.25  # the 1-D data N(MU, S2)


class GaussianVP(nn.Module):
    r"""Continuous-time VP model of Gaussian data N(mu, Sigma): gamma(t) linear from g0 to g1 and
    the exact noise predictor eps(z, t) = sigma_t (alpha_t^2 Sigma + sigma_t^2 I)^{-1}
    (z - alpha_t mu); decode is the identity. Sigma = U diag(s2) U^T."""

    def __init__(self, mu, s2, rotation=None, g0=-12.0, g1=8.0):
        super().__init__()
        mu = torch.as_tensor(mu, dtype=torch.float64).reshape(-1)
        s2 = torch.as_tensor(s2, dtype=torch.float64).reshape(-1).expand_as(mu).clone()
        U = torch.eye(len(mu), dtype=torch.float64) if rotation is None else rotation.double()
        self.register_buffer("mu", mu)
        self.register_buffer("s2", s2)
        self.register_buffer("U", U)
        self.g0, self.g1 = g0, g1
        self.data_shape = (len(mu),)

    def gamma(self, t):
        return self.g0 + (self.g1 - self.g0) * t

    def alpha_sigma2(self, t):
        g = self.gamma(torch.as_tensor(t, dtype=torch.float64))
        return torch.sigmoid(-g).sqrt(), torch.sigmoid(g)

    def predict_eps(self, z, t):
        g = self.gamma(t)[:, None]
        a, s2 = torch.sigmoid(-g).sqrt(), torch.sigmoid(g)
        w = (z - a * self.mu) @ self.U  # eigen-coordinates
        return (s2.sqrt() * w / (a**2 * self.s2 + s2)) @ self.U.T

    def decode(self, z0):
        return z0

    # closed forms
    def marginal_var(self, t):
        a, s2 = self.alpha_sigma2(t)
        return a**2 * self.s2 + s2  # eigenvalues of Cov(z_t)

    def flow_log_density(self, x):
        """log-density at z_0 = x of the exact flow from N(0, I) at t = 1."""
        a0, _ = self.alpha_sigma2(0.0)
        a1, _ = self.alpha_sigma2(1.0)
        scale = (self.marginal_var(1.0) / self.marginal_var(0.0)).sqrt()
        z1 = a1 * self.mu + ((x - a0 * self.mu) @ self.U * scale) @ self.U.T
        prior = -0.5 * (z1.pow(2) + math.log(2 * math.pi)).sum(-1)
        return prior + scale.log().sum()

    def data_log_density(self, x):
        w = (x - self.mu) @ self.U
        return -0.5 * (w.pow(2) / self.s2 + self.s2.log() + math.log(2 * math.pi)).sum(-1)


def ddim_closed_form(alphas, sigma2s, eta, m=MU, s2=S2):
    """Mean and variance of the output of DDIM on 1-D data N(m, s2) with the exact predictor, on
    the grid (alpha_i, sigma_i^2) from the start (noise N(0, 1)) to the end: with e = z - alpha m,
    x0_hat = m + alpha_t s2 e / v_t and eps_hat = sigma_t e / v_t, one step is the linear map
    e_s = (alpha_s alpha_t s2 + b sigma_t) / v_t e_t + c xi, b = sqrt(sigma_s^2 - c^2)."""
    mean, var = -alphas[0] * m, 1.0
    for (a_t, v_t2), (a_s, v_s2) in zip(zip(alphas, sigma2s), zip(alphas[1:], sigma2s[1:])):
        c2 = eta**2 * v_s2 / v_t2 * (1 - a_t**2 / a_s**2)
        b = math.sqrt(max(v_s2 - c2, 0.0))
        v_t = a_t**2 * s2 + v_t2
        k = (a_s * a_t * s2 + b * math.sqrt(v_t2)) / v_t
        mean, var = k * mean, k**2 * var + c2
    return alphas[-1] * m + mean, var


class ExactEpsNet(nn.Module):
    """The exact eps-predictor of N(m, s2) data for a GaussianDiffusion's alpha-bar grid."""

    def __init__(self, alpha_bar, m=MU, s2=S2):
        super().__init__()
        self.register_buffer("ab", alpha_bar.double())
        self.m, self.s2 = m, s2

    def forward(self, x, t):
        ab = self.ab[t][:, None]
        return (1 - ab).sqrt() * (x - ab.sqrt() * self.m) / (ab * self.s2 + 1 - ab), torch.zeros_like(x)


def exact_discrete(T=20, var_type="fixed_small"):
    betas = linear_schedule(T)
    ab = torch.cumprod(1 - betas, 0)
    net = ExactEpsNet(torch.cat([torch.ones(1, dtype=torch.float64), ab]))
    return GaussianDiffusion(net, 1, schedule=betas, mean_type="eps", var_type=var_type).double()


def test_ddim_timesteps():
    assert ddim_timesteps(10, 10).tolist() == list(range(1, 11))
    assert ddim_timesteps(100, 1).tolist() == [100]
    taus = ddim_timesteps(1000, 7)
    assert taus[0] == 1 and taus[-1] == 1000 and len(taus.unique()) == 7
    with pytest.raises(ValueError, match="at most 10"):
        ddim_timesteps(10, 11)


def test_ddim_with_eta_one_on_every_step_is_the_ancestral_chain():
    """eta=1 on the full grid is ancestral sampling with variance beta-tilde: the same seed gives
    the same chain, draw for draw (to 1e-6: the schedule's constants are float32 buffers, and the
    two samplers round different ones; the draws have standard deviation 0.5)."""
    d = exact_discrete(T=12)
    torch.manual_seed(3)
    ancestral = d.sample(500, progress=False)
    torch.manual_seed(3)
    ddim = ddim_sample(d, 500, num_steps=12, eta=1.0)
    assert torch.allclose(ancestral, ddim, atol=1e-6, rtol=0)


@pytest.mark.parametrize("num_steps,eta", [(5, 0.0), (20, 0.0), (7, 1.0), (7, 0.5)])
def test_ddim_on_a_gaussian_diffusion_matches_its_closed_form(num_steps, eta):
    """With the exact eps-predictor of N(0.7, 0.25) data, DDIM is a linear Gaussian recursion
    (ddim_closed_form): N=20000 draws, mean and variance within 4 standard errors. eta=0 on 5
    steps shrinks the variance (0.0566, not 0.25): DDIM is not exact on a coarse grid."""
    d = exact_discrete(T=20)
    torch.manual_seed(0)
    n = 20000
    x = ddim_sample(d, n, num_steps=num_steps, eta=eta, batch_size=8000)
    ab = d.coefficients()["alpha_bar"]
    grid = [int(T) for T in ddim_timesteps(20, num_steps).flip(0)] + [0]
    mean, var = ddim_closed_form([ab[t].sqrt().item() for t in grid], [1 - ab[t].item() for t in grid], eta)
    assert abs(x.mean().item() - mean) < 4 * math.sqrt(var / n)
    assert abs(x.var().item() - var) < 4 * var * math.sqrt(2 / n)
    if (num_steps, eta) == (5, 0.0):
        assert var == pytest.approx(0.0566, abs=1e-4)


def test_ddim_eta_zero_is_deterministic_and_batches_agree():
    d = exact_discrete(T=20)
    torch.manual_seed(1)
    a = ddim_sample(d, 6, num_steps=4)
    torch.manual_seed(1)
    b = ddim_sample(d, 6, num_steps=4, batch_size=4)
    assert torch.equal(a, b)


@pytest.mark.parametrize("eta,num_steps", [(0.0, 8), (1.0, 8), (0.0, 200)])
def test_ddim_on_a_continuous_time_model_matches_its_closed_form(eta, num_steps):
    """The continuous-time grid t_i = i/S with the exact predictor: N=20000 draws against
    ddim_closed_form within 4 standard errors; with S=200 and eta=0 (approaching the ODE) the
    output variance is within 3% of the data's 0.25 (0.2439: DDIM's error is first order in
    the step of log-SNR, here 0.1)."""
    model = GaussianVP(MU, S2)
    torch.manual_seed(0)
    n = 20000
    x = ddim_sample(model, n, num_steps=num_steps, eta=eta)
    assert x.shape == (n, 1) and x.dtype == torch.float64
    grid = torch.linspace(1, 0, num_steps + 1, dtype=torch.float64)
    a, s2 = model.alpha_sigma2(grid)
    mean, var = ddim_closed_form(a.tolist(), s2.tolist(), eta)
    assert abs(x.mean().item() - mean) < 4 * math.sqrt(var / n)
    assert abs(x.var().item() - var) < 4 * var * math.sqrt(2 / n)
    if num_steps == 200:
        assert var == pytest.approx(S2, rel=0.03)


def test_hutchinson_trace_is_unbiased_with_the_known_variance():
    """v^T J v for a fixed non-symmetric 4x4 J: K=40000 Rademacher probes, the mean is tr J within
    4 standard errors and the variance is (1/2) sum_{i!=j} (J_ij + J_ji)^2 within 5%; the exact
    trace option gives tr J to 1e-12."""
    torch.manual_seed(0)
    J = torch.randn(4, 4, dtype=torch.float64)
    fn = lambda z: z @ J.T  # noqa: E731
    z = torch.randn(1, 4, dtype=torch.float64)
    probes = (torch.randint(0, 2, (40000, 1, 4)) * 2 - 1).double()
    per_probe = (probes[:, 0] @ J.T * probes[:, 0]).sum(-1)
    _, mean = hutchinson_trace(fn, z, probes[:3])
    assert mean.item() == pytest.approx(per_probe[:3].mean().item(), abs=1e-12)
    off = J + J.T
    var = 0.5 * (off.pow(2).sum() - off.diagonal().pow(2).sum()).item()
    assert abs(per_probe.mean() - J.trace()) < 4 * math.sqrt(var / len(per_probe))
    assert per_probe.var().item() == pytest.approx(var, rel=0.05)
    _, exact = hutchinson_trace(fn, z, exact=True)
    assert exact.item() == pytest.approx(J.trace().item(), abs=1e-12)


def rotated_model():
    torch.manual_seed(5)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    return GaussianVP([0.7, -0.3, 0.2], [0.25, 0.04, 1.5], rotation=rotation)


def test_ode_log_likelihood_is_the_exact_gaussian_density():
    """Gaussian data N(mu, Sigma) in 3-D with a non-diagonal Sigma and the exact predictor: the ODE
    log-likelihood (RK4, 120 steps, exact trace) equals the exact flow density (the data
    density of z_0 pushed through the exact linear flow to N(0, I)) to 1e-5 nats (measured
    1.5e-6; 2.6e-5 with 60 steps, 4.7e-4 with 30: fourth order), and that differs from
    log N(x; mu, Sigma) only by the prior mismatch q(z_1) = N(alpha_1 mu, ...) != N(0, I),
    alpha_1 = 0.018, and sigma_0^2 = 6e-6 (at most 0.05 nats on these points); 1-D data
    N(0.7, 0.25) the same. Heun (200 steps, second order) to 1e-2 (measured 4e-3)."""
    for model in (rotated_model(), GaussianVP(MU, S2)):
        D = model.data_shape[0]
        x = model.mu + torch.randn(50, D, dtype=torch.float64) * model.s2.sqrt()
        exact = model.flow_log_density(x)
        ode = ode_log_likelihood(model, x, num_steps=120, exact_trace=True)
        assert ode.shape == (50,)
        assert torch.allclose(ode, exact, atol=1e-5, rtol=0)
        assert (exact - model.data_log_density(x)).abs().max() < 0.1
        heun = ode_log_likelihood(model, x, num_steps=200, exact_trace=True, method="heun")
        assert torch.allclose(heun, exact, atol=1e-2, rtol=0)


def test_ode_log_likelihood_with_hutchinson_is_unbiased():
    """One point, N=4000 independent single-probe estimates (RK4, 30 steps) of the 3-D non-diagonal
    model: their mean is the exact-trace value within 4 standard errors, and their spread is
    real (standard deviation > 0.05 nats), so the check has power; 8 probes reduce the variance
    about 8-fold (between 5x and 12x)."""
    model = rotated_model()
    x = torch.tensor([[1.0, -0.5, 0.3]], dtype=torch.float64).expand(4000, 3)
    exact = ode_log_likelihood(model, x[:1], num_steps=30, exact_trace=True)
    torch.manual_seed(0)
    one = ode_log_likelihood(model, x, num_steps=30, num_probes=1)
    assert one.std() > 0.05
    assert abs(one.mean() - exact) < 4 * one.std() / math.sqrt(len(one))
    eight = ode_log_likelihood(model, x[:1000], num_steps=30, num_probes=8)
    assert 5 < (one.var() / eight.var()).item() < 12


def test_ode_sample_has_the_data_distribution():
    """N=20000 ODE samples (RK4, 40 steps) of the 1-D model: mean and variance equal those of the
    exact flow from N(0, 1) (data N(0.7, 0.25) up to the prior mismatch) within 4 standard
    errors."""
    model = GaussianVP(MU, S2)
    torch.manual_seed(0)
    n = 20000
    x = ode_sample(model, n, num_steps=40, batch_size=10000)
    a0, _ = model.alpha_sigma2(0.0)
    a1, _ = model.alpha_sigma2(1.0)
    ratio = (model.marginal_var(0.0) / model.marginal_var(1.0)).item()
    mean, var = (a0 * MU - math.sqrt(ratio) * a1 * MU).item(), ratio
    assert abs(mean - MU) < 0.02 and abs(var - S2) < 0.01  # the prior mismatch is small
    assert abs(x.mean().item() - mean) < 4 * math.sqrt(var / n)
    assert abs(x.var().item() - var) < 4 * var * math.sqrt(2 / n)


def test_inpainting_with_ddim_and_ode_keeps_the_known_entries():
    model = rotated_model()
    x = torch.randn(5, 3, dtype=torch.float64)
    mask = torch.tensor([True, False, True])
    for kwargs in (dict(sampler="ddim", num_steps=10), dict(sampler="ddim", num_steps=10, eta=1.0),
                   dict(sampler="ode", num_steps=10, method="heun")):
        out = inpaint(model, x, mask, **kwargs)
        assert torch.equal(out[:, mask], x[:, mask]) and not torch.equal(out[:, 1], x[:, 1])
    net = UNet(1, base_channels=8, channel_mults=(1, 2))
    nn.init.normal_(net.conv_out.weight, std=0.1)
    d = GaussianDiffusion(net, (1, 8, 8), num_steps=10, schedule=cosine_schedule(10), data="discrete",
                          num_levels=17, mean_type="v")
    images = torch.randint(0, 17, (3, 1, 8, 8)) / 16.0
    top = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    top[..., :4, :] = True
    out = inpaint(d, images, top, num_steps=4, batch_size=2)
    assert torch.equal(out[..., :4, :], images[..., :4, :]) and torch.equal(out, (out * 16).round() / 16)
    samples = ddim_sample(d, 3, num_steps=3)
    assert samples.shape == (3, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    with pytest.raises(ValueError, match="continuous-time"):
        inpaint(d, images, top, sampler="ode")


def test_bad_input():
    model = GaussianVP(MU, S2)
    d = exact_discrete(T=5)
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(d, 2, 3, eta=-1.0)
    with pytest.raises(ValueError, match="at most 5"):
        ddim_sample(d, 2, 6)
    with pytest.raises(ValueError, match="num_samples"):
        ddim_sample(model, 0, 3)
    with pytest.raises(TypeError, match="gamma"):
        ddim_sample(nn.Linear(2, 2), 2, 3)
    with pytest.raises(ValueError, match="continuous-time"):
        ode_sample(d, 2, 3)
    with pytest.raises(ValueError, match="method"):
        ode_sample(model, 2, 3, method="rk45")
    with pytest.raises(ValueError, match="shape"):
        ode_log_likelihood(model, torch.zeros(2, 3), 3)
    with pytest.raises(ValueError, match="num_probes"):
        ode_log_likelihood(model, torch.zeros(2, 1), 3, num_probes=0)
    with pytest.raises(ValueError, match="sampler"):
        inpaint(model, torch.zeros(2, 1), torch.ones(1, dtype=torch.bool), sampler="ancestral")
    with pytest.raises(TypeError, match="bool"):
        inpaint(model, torch.zeros(2, 1), torch.ones(1))


def test_dequantized_log_likelihood_is_the_expected_jensen_bound():
    """Cells of width w = 0.5 centred at f in {-0.5, 0, 0.5, 1} under the 1-D model, whose flow
    density at t = 0 is N(m_0, V) exactly: N=4000 draws of u per cell (RK4, 60 steps, exact trace)
    average to E_u log N(alpha_0 (f + w (u - 1/2)); m_0, V) + log(alpha_0 w) in closed form within
    4 standard errors, and that bound lies below the exact log P(cell) (Jensen)."""
    model = GaussianVP(MU, S2)
    w = 0.5
    a0, _ = model.alpha_sigma2(0.0)
    a1, _ = model.alpha_sigma2(1.0)
    V = (model.marginal_var(0.0) / model.marginal_var(1.0)).item()
    m0 = (a0 * MU - math.sqrt(V) * a1 * MU).item()
    a0 = a0.item()
    centres = torch.tensor([-0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
    torch.manual_seed(0)
    n = 4000
    est = dequantized_log_likelihood(model, centres.repeat_interleave(n)[:, None], w, num_steps=60,
                                     exact_trace=True).reshape(4, n)
    normal = torch.distributions.Normal(m0, math.sqrt(V))
    for f, values in zip(centres.tolist(), est):
        bound = (-0.5 * math.log(2 * math.pi * V) - ((a0 * f - m0) ** 2 + a0**2 * w**2 / 12) / (2 * V)
                 + math.log(a0 * w))
        assert abs(values.mean().item() - bound) < 4 * values.std().item() / math.sqrt(n)
        cell = normal.cdf(torch.tensor(a0 * (f + w / 2))) - normal.cdf(torch.tensor(a0 * (f - w / 2)))
        assert bound < math.log(cell.item())
    with pytest.raises(ValueError, match="bin_width"):
        dequantized_log_likelihood(model, centres[:, None], 0.0, 3)


def test_samplers_run_on_the_variational_diffusion_model(device):
    """The protocol as VariationalDiffusion implements it, on the test device: shapes, device, the
    grid, and inpainting that keeps the known entries (an untrained 3-D model on 8 levels); DDIM
    of a GaussianDiffusion on the device too."""
    from pyro_deepgen.models.vdm import VariationalDiffusion
    from pyro_deepgen.nn import TimeMLP

    torch.manual_seed(0)
    net = TimeMLP(VariationalDiffusion.network_input_size(3), (16,), out_dims=3)
    nn.init.normal_(net.out.weight, std=0.1)
    model = VariationalDiffusion(net, 3, num_levels=8, schedule_hidden=8).to(device)
    for x in (ddim_sample(model, 5, 4), ddim_sample(model, 5, 4, eta=1.0), ode_sample(model, 5, 3, method="euler")):
        assert x.shape == (5, 3) and x.device.type == device.type and torch.equal(x, (x * 7).round() / 7)
    data = (torch.randint(0, 8, (4, 3)) / 7.0).to(device)
    mask = torch.tensor([True, False, False], device=device)
    for sampler in ("ddim", "ode"):
        out = inpaint(model, data, mask, sampler=sampler, num_steps=3, method="euler")
        assert torch.equal(out[:, 0], data[:, 0])
    nats = dequantized_log_likelihood(model, data, 2 / 8, num_steps=3, method="euler")
    assert nats.shape == (4,) and nats.device.type == device.type and bool(torch.isfinite(nats).all())
    nats = ode_variational_bound(model, data, num_steps=3, method="euler")
    assert nats.shape == (4,) and bool(torch.isfinite(nats).all())
    d = exact_discrete(T=5).to(device)
    assert ddim_sample(d, 3, 2, eta=0.5).device.type == device.type


class GaussianVPWithDecoder(GaussianVP):
    """The 1-D model with encode = identity and a decoder that is certain, -log p(x | z_0) = 0."""

    def encode(self, x):
        return x

    def reconstruction(self, x, noise=None):
        return torch.zeros(len(x), dtype=x.dtype)


def test_ode_variational_bound_is_its_closed_form_expectation():
    """E_eps[log p_0(alpha_0 f + sigma_0 eps) - log q(z_0 | f) + log p(x | z_0)] with the exact flow
    density p_0 = N(m_0, V) and a certain decoder: -1/2 log(2 pi V) - ((alpha_0 f - m_0)^2 +
    sigma_0^2) / (2 V) + 1/2 log(2 pi e sigma_0^2). N=4000 draws per point (RK4, 60 steps, exact
    trace) average to it within 4 standard errors; a model without encode/reconstruction is
    refused."""
    model = GaussianVPWithDecoder(MU, S2)
    a0, s0sq = model.alpha_sigma2(0.0)
    a1, _ = model.alpha_sigma2(1.0)
    V = (model.marginal_var(0.0) / model.marginal_var(1.0)).item()
    m0 = (a0 * MU - math.sqrt(V) * a1 * MU).item()
    a0, s0sq = a0.item(), s0sq.item()
    centres = torch.tensor([0.2, 0.7, 1.5], dtype=torch.float64)
    n = 4000
    torch.manual_seed(0)
    est = ode_variational_bound(model, centres.repeat_interleave(n)[:, None], num_steps=60,
                                exact_trace=True).reshape(3, n)
    for f, values in zip(centres.tolist(), est):
        bound = (-0.5 * math.log(2 * math.pi * V) - ((a0 * f - m0) ** 2 + s0sq) / (2 * V)
                 + 0.5 * math.log(2 * math.pi * math.e * s0sq))
        assert abs(values.mean().item() - bound) < 4 * values.std().item() / math.sqrt(n)
    with pytest.raises(TypeError, match="reconstruction"):
        ode_variational_bound(GaussianVP(MU, S2), centres[:, None], 3)
