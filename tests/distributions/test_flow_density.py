"""FlowDensity: normalization on a grid (also through the logit dequantization transform),
the dequantization bound, maximum-likelihood training through ``fit``, shapes and devices."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_deepgen.data.toy import EnergyModel, make_two_moons
from pyro_deepgen.distributions import FlowDensity, bits_per_dim
from pyro_deepgen.train import fit


def _perturbed(density: FlowDensity, scale: float = 0.3) -> FlowDensity:
    """Move every parameter away from its initial value, so that the density is not trivial."""
    with torch.no_grad():
        for p in density.parameters():
            p.add_(scale * torch.randn_like(p))
    return density


def _grid(lo: float, hi: float, n: int):
    h = (hi - lo) / n
    axis = lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    return torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2), h


@pytest.mark.parametrize("kind,scale", [("planar", 0.2), ("radial", 0.2), ("nice", 0.2),
                                        ("realnvp", 0.1), ("iaf", 0.2)])
def test_density_integrates_to_one(kind, scale):
    """Midpoint rule on a 200 x 200 grid over [-10, 10]^2 in float64: |integral - 1| < 2e-3,
    for a density that is far from its Gaussian base (parameters perturbed by ``scale``)."""
    density = _perturbed(FlowDensity(2, kind, depth=3, hidden_dims=(8,)).double(), scale)
    z, h = _grid(-10.0, 10.0, 200)
    with torch.no_grad():
        log_p = density.log_prob(z)
    assert (log_p.exp().sum() * h * h).item() == pytest.approx(1.0, abs=2e-3)
    gauss = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert (log_p - gauss)[z.norm(dim=-1) < 3].abs().max() > 0.5


def test_dequantized_density_integrates_to_one_on_its_support():
    """With levels, y = (sigmoid(w) - a)/(1 - 2a) lives on (-a/(1-2a), (1-a)/(1-2a))^2; the
    log-det of the logit map is included: 200 x 200 midpoint grid, |integral - 1| < 1e-2."""
    a = 0.05
    density = _perturbed(FlowDensity(2, "realnvp", depth=2, hidden_dims=(8,), levels=4,
                                     alpha=a).double(), 0.1)
    lo, hi = -a / (1 - 2 * a), (1 - a) / (1 - 2 * a)
    y, h = _grid(lo, hi, 200)
    with torch.no_grad():
        total = density.log_prob(y).exp().sum() * h * h
    assert total.item() == pytest.approx(1.0, abs=1e-2)


def test_dequantization_bound_formula_and_jensen():
    """log_likelihood = mean over noise of log p((k + u)/L) - D log L (replayed draws), and it
    lies below log P(k) = log int_cell p(y) dy (quadrature, 200 x 200 per cell)."""
    L = 4
    density = _perturbed(FlowDensity(2, "nice", depth=2, hidden_dims=(8,), levels=L).double(), 0.1)
    x = torch.tensor([[0.0, 1.0], [1 / 3, 2 / 3]], dtype=torch.float64)  # k = (0, 3), (1, 2)
    torch.manual_seed(1)
    bound = density.log_likelihood(x, num_samples=500)
    torch.manual_seed(1)
    y = (torch.round(x * (L - 1)) + torch.rand(500, 2, 2, dtype=torch.float64)) / L
    with torch.no_grad():
        manual = density.log_prob(y).mean(0) - 2 * math.log(L)
    assert torch.allclose(bound, manual, atol=1e-10)
    u, h = _grid(0.0, 1.0, 200)
    for i in range(2):
        k = torch.round(x[i] * (L - 1))
        with torch.no_grad():
            log_p = torch.logsumexp(density.log_prob((k + u) / L), 0) + math.log(h * h / L**2)
        assert bound[i] <= log_p + 1e-6


def test_model_observes_data_and_reports_the_bound():
    """Trace_ELBO's loss is -sum_n log p(x_n) (continuous) and includes -D log L per point
    (dequantized)."""
    x = make_two_moons(16)
    density = FlowDensity(2, "realnvp", depth=2)
    loss = Trace_ELBO().loss(density.model, density.guide, x)
    assert loss == pytest.approx(-density.log_prob(x).sum().item(), rel=1e-5)

    digits = torch.randint(0, 17, (8, 3)).float() / 16
    dq = FlowDensity(3, "nice", depth=2, levels=17)
    trace = pyro.poutine.trace(dq.model).get_trace(digits)
    trace.compute_log_prob()
    assert trace.nodes["dequantization"]["log_prob"].tolist() == pytest.approx(
        [-3 * math.log(17)] * 8)
    y = trace.nodes["x"]["value"]
    assert ((y * 17).floor() == torch.round(digits * 16)).all()  # k <= 17 y < k + 1


@pytest.mark.parametrize("kind", ["realnvp", "planar"])
def test_every_parameter_is_trained_by_svi(kind):
    """One SVI step changes every parameter, so each was found in the trace (in the model's
    maximum likelihood and in a guide that samples from the density)."""
    x = make_two_moons(32)
    density = FlowDensity(2, kind, depth=2, hidden_dims=(8,), learn_base=True)
    before = {n: p.detach().clone() for n, p in density.named_parameters()}
    SVI(density.model, density.guide, Adam({"lr": 1e-2}), Trace_ELBO()).step(x)
    assert all(not torch.equal(before[n], p) for n, p in density.named_parameters())

    pyro.clear_param_store()
    before = {n: p.detach().clone() for n, p in density.named_parameters()}

    def guide(beta=1.0):
        pyro.sample("z", density.distribution())

    SVI(EnergyModel("U1"), guide, Adam({"lr": 1e-2}), Trace_ELBO()).step()
    assert all(not torch.equal(before[n], p) for n, p in density.named_parameters())


def test_maximum_likelihood_on_two_moons_increases_log_likelihood():
    """60 Adam steps (30 epochs of 2 minibatches of 128) with the package's loop: the mean
    held-out log-likelihood rises by more than 1 nat (seeded; observed about 4 nats)."""
    x, x_val = make_two_moons(256, seed=0), make_two_moons(256, seed=1)
    density = FlowDensity(2, "realnvp", depth=4, hidden_dims=(32,))
    before = density.log_likelihood(x_val).mean().item()
    history = fit(density.model, density.guide, x, loss=Trace_ELBO(), lr=1e-2, epochs=30,
                  batch_size=128, progress=False)
    after = density.log_likelihood(x_val).mean().item()
    assert history.loss[-1] < history.loss[0]
    assert after > before + 1.0


def test_sample_shapes_and_reparametrization(device):
    density = FlowDensity(2, "iaf", depth=2, hidden_dims=(8,), learn_base=True).to(device)
    assert density.sample().shape == (2,)
    assert density.sample((3,)).shape == (3, 2)
    z = density.rsample((4, 5))
    assert z.shape == (4, 5, 2) and z.device.type == device.type and z.requires_grad
    assert density.log_prob(z).shape == (4, 5)
    x = make_two_moons(6).to(device)
    assert density.log_likelihood(x).device.type == device.type
    dq = FlowDensity(4, "realnvp", depth=2, levels=256).to(device)
    y = dq.sample((100,))
    a = dq.alpha
    assert y.device.type == device.type
    assert (y > -a / (1 - 2 * a)).all() and (y < (1 - a) / (1 - 2 * a)).all()
    assert dq.log_likelihood(torch.rand(5, 4, device=device), num_samples=3).shape == (5,)


def test_state_dict_round_trip():
    a = _perturbed(FlowDensity(2, "nice", depth=2, hidden_dims=(8,)))
    b = FlowDensity(2, "nice", depth=2, hidden_dims=(8,))
    b.load_state_dict(a.state_dict())
    x = make_two_moons(5)
    assert torch.allclose(a.log_prob(x), b.log_prob(x))


def test_bits_per_dim():
    assert bits_per_dim(torch.tensor(-64 * math.log(2.0)), 64).item() == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="flow="):
        FlowDensity(2, "maf")
    with pytest.raises(ValueError, match="levels"):
        FlowDensity(2, levels=1)
    with pytest.raises(ValueError, match="alpha"):
        FlowDensity(2, levels=4, alpha=0.5)
    density = FlowDensity(2)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        density.model(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="needs levels"):
        density.dequantize(torch.zeros(5, 2))
    assert isinstance(density.distribution(), dist.TransformedDistribution)


def test_maximum_likelihood_on_dequantized_digits():
    """8x8 digits (17 levels): one epoch (15 steps) of RealNVP (depth 2) with the package's loop
    lowers the held-out bits/dim (dequantization bound, 4 noise draws) by more than 0.2
    (seeded)."""
    from pyro_deepgen.data import load_digits

    x, _ = load_digits()
    x_train, x_val = x[:1500], x[1500:]
    density = FlowDensity(64, "realnvp", depth=2, hidden_dims=(32,), levels=17)
    before = bits_per_dim(density.log_likelihood(x_val, num_samples=4), 64).mean().item()
    fit(density.model, density.guide, x_train, loss=Trace_ELBO(), lr=1e-2, epochs=1,
        batch_size=100, progress=False)
    after = bits_per_dim(density.log_likelihood(x_val, num_samples=4), 64).mean().item()
    assert after < before - 0.2


def test_log_likelihood_bad_num_samples():
    with pytest.raises(ValueError, match="num_samples"):
        FlowDensity(2, levels=4).log_likelihood(torch.rand(3, 2), num_samples=0)
