"""AutoFlow on a conjugate Gaussian model whose posterior is known in closed form."""
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_deepgen.guides import AutoFlow

N = 20
PRIOR_SCALE = torch.tensor([1.0, 3.0])


def data():
    torch.manual_seed(0)
    return torch.randn(N, 2) + torch.tensor([1.0, -2.0])


def model(x, subsample_size=None):
    mu = pyro.sample("mu", dist.Normal(torch.zeros(2), PRIOR_SCALE).to_event(1))
    with pyro.plate("data", N, subsample_size=subsample_size) as idx:
        pyro.sample("x", dist.Normal(mu, 1.0).to_event(1), obs=x[idx])


def exact_posterior(x):
    precision = 1 / PRIOR_SCALE**2 + N
    return x.sum(0) / precision, 1 / precision


def fit(guide, x, steps=250, subsample_size=None):
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.99})
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, optim, elbo)
    for _ in range(steps):
        svi.step(x, subsample_size)


@pytest.mark.parametrize(
    "flow,subsample_size", [("planar", None), ("iaf", None), ("iaf", 10)],
    ids=["planar", "iaf", "iaf-subsampled"],
)
def test_conjugate_gaussian_posterior(flow, subsample_size):
    """Seeded; 250 Adam steps, 8 particles (observations subsampled 10 of 20 in one case).
    The guide's mean (20000 draws, Monte Carlo error ~0.7% of a posterior sd) is within 0.5
    posterior sd of the exact mean and its variance within a factor [0.75, 1.33] of it."""
    x = data()
    guide = AutoFlow(model, flow=flow, depth=2, hidden_dims=[8])
    fit(guide, x, subsample_size=subsample_size)
    mean, var = exact_posterior(x)
    with torch.no_grad():
        mu = torch.stack([guide(x)["mu"] for _ in range(200)])  # through the autoguide
        draws = guide.get_posterior().sample((20000,))
    assert mu.shape == (200, 2)
    assert ((draws.mean(0) - mean).abs() < 0.5 * var.sqrt()).all()
    ratio = draws.var(0) / var
    assert ((ratio > 0.75) & (ratio < 1.33)).all(), ratio


def test_structure_and_depth_zero():
    x = data()
    guide = AutoFlow(model, flow="nice", depth=3, hidden_dims=[8])
    guide(x)
    names = {name for name, _ in guide.named_parameters()}
    assert "loc" in names and "scale_unconstrained" in names
    assert any(name.startswith("flow.") for name in names)
    assert len(guide.flow) == 6  # 3 couplings, 2 permutations, 1 scaling
    # depth 0: the base diagonal Gaussian itself
    flat = AutoFlow(model, flow="planar", depth=0)
    flat(x)
    q = flat.get_posterior()
    u = torch.randn(2)
    expected = dist.Normal(flat.loc, flat.scale).log_prob(u).sum()
    assert torch.allclose(q.log_prob(u), expected)


def test_bad_arguments():
    with pytest.raises(ValueError, match="flow='maf' is not a flow"):
        AutoFlow(model, flow="maf")
    with pytest.raises(ValueError, match="depth must be a non-negative int"):
        AutoFlow(model, depth=-2)

    def one_latent():
        pyro.sample("s", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="needs at least 2 latent dimensions"):
        AutoFlow(one_latent, flow="iaf")()
