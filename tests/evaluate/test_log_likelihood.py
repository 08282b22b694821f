"""evaluate.log_likelihood / elbo / active_units against closed forms."""
import functools

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_deepgen.evaluate import active_units, elbo, log_importance_weights, log_likelihood
from pyro_deepgen.models import VAE
from tests.linear_gaussian import LinearGaussian


def test_log_likelihood_matches_ppca_closed_form(device):
    # Perturbed mean-field guide (the exact posterior is correlated), K=80000 samples.
    # The IWAE estimator's bias is O(1/K) and its sd here is about 0.005 nats (0.009 at
    # K=20000, where the largest of 20 errors exceeds 0.02 for about one seed in three):
    # tolerance 0.02 nats.
    lg = LinearGaussian(device=device)
    x = lg.data(20)
    guide = functools.partial(lg.guide, loc_shift=0.2, scale_mult=1.3)
    ll = log_likelihood(lg.model, guide, x, num_samples=80000, chunk_size=8000)
    assert ll.shape == (20,) and ll.device == x.device and ll.dtype == x.dtype
    assert torch.allclose(ll, lg.log_marginal(x), atol=0.02)


def test_elbo_matches_closed_form_and_is_below_log_likelihood(device):
    # With the exact posterior marginals as guide, ELBO = log p(x) - KL(q || p(z|x)) exactly
    # computable; here we check E[ELBO] by Monte Carlo (K=4000, tolerance 0.05 nats) and the
    # ordering ELBO <= IWAE_K <= log p(x) + MC slack.
    lg = LinearGaussian(device=device)
    x = lg.data(10)
    e = elbo(lg.model, lg.guide, x, num_samples=4000)
    ll = log_likelihood(lg.model, lg.guide, x, num_samples=4000)
    exact = lg.log_marginal(x)
    assert (e <= ll + 1e-6).all()
    assert (ll <= exact + 0.02).all()
    # KL(q || p(z|x)) between the diagonal of the posterior and the full posterior
    M = lg.W.T @ lg.W + lg.s**2 * torch.eye(lg.z_dim, dtype=x.dtype, device=device)
    post_cov = lg.s**2 * torch.linalg.inv(M)
    loc, scale = lg.posterior(x)
    q = dist.MultivariateNormal(loc, torch.diag_embed(scale**2))
    p = dist.MultivariateNormal(loc, post_cov)
    assert torch.allclose(e, exact - torch.distributions.kl_divergence(q, p), atol=0.05)


def test_log_importance_weights_shape_and_value():
    # 3000 samples in chunks of 7 (the last chunk is partial); the log-mean-exp of the weights
    # is the IWAE estimate, within 0.03 nats of log p(x) for this guide.
    lg = LinearGaussian()
    x = lg.data(7)
    a = log_importance_weights(lg.model, lg.guide, x, num_samples=3000, chunk_size=7)
    assert a.shape == (3000, 7)
    estimate = torch.logsumexp(a, 0) - torch.log(torch.tensor(3000.0, dtype=a.dtype))
    assert torch.allclose(estimate, lg.log_marginal(x), atol=0.03)


def test_global_latent_is_rejected():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="mu.*outside the data plate"):
        log_likelihood(model, guide, torch.zeros(3), num_samples=10)


def test_bad_arguments():
    lg = LinearGaussian()
    x = lg.data(3)
    with pytest.raises(ValueError, match="num_samples"):
        log_likelihood(lg.model, lg.guide, x, num_samples=0)
    with pytest.raises(ValueError, match="no vectorized plate named 'batch'"):
        log_likelihood(lg.model, lg.guide, x, num_samples=2, plate_name="batch")


def test_active_units_counts_informative_dimensions():
    # Guide whose mean depends on x in 2 of 4 dimensions (variance 1 over x) and is constant
    # in the others: exactly 2 active units.
    x = torch.randn(200, 3)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            loc = torch.cat([x[:, :2], torch.zeros(x.shape[0], 2)], dim=-1)
            pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    assert active_units(None, guide, x) == 2


def test_vae_log_likelihood_runs_on_device(device):
    vae = VAE(8, 2, (16,)).to(device)
    x = torch.rand(5, 8, device=device).round()
    ll = log_likelihood(vae.model, vae.guide, x, num_samples=64, chunk_size=16)
    assert ll.shape == (5,) and ll.device.type == device.type and torch.isfinite(ll).all()


def test_log_likelihood_ignores_the_subsampling_scale():
    # A minibatch marked as part of a 2x larger data set (plate scale 2) must still give
    # per-data-point log p(x): exact-posterior guide, K=2000, tolerance 0.01 nats.
    lg = LinearGaussian()
    x = lg.data(6)

    def model(x, num_data=None):
        with pyro.plate("data", num_data or len(x), subsample=torch.arange(len(x))):
            z = pyro.sample("z", dist.Normal(x.new_zeros(len(x), 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.b, lg.s).to_event(1), obs=x)

    def guide(x, num_data=None):
        loc, scale = lg.posterior(x)
        with pyro.plate("data", num_data or len(x), subsample=torch.arange(len(x))):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    ll = log_likelihood(model, guide, x, num_samples=2000, num_data=12)
    assert torch.allclose(ll, lg.log_marginal(x), atol=0.01)
