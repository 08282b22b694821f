"""The VAE as a Pyro model/guide pair."""
import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

from pyro_deepgen.models import VAE


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_trains_with_pyro_elbos(likelihood, elbo, device):
    x = (torch.rand(64, 10) > 0.5).float().to(device)
    vae = VAE(10, 2, (16,), likelihood=likelihood).to(device)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), elbo())
    first = sum(svi.step(x) for _ in range(5))
    for _ in range(100):
        svi.step(x)
    last = sum(svi.step(x) for _ in range(5))
    assert last < first


def test_subsampling_scale_is_exact():
    # With the same seed, the loss for a minibatch of a data set 5x larger is 5x the loss.
    vae = VAE(6, 2, (8,))
    x = torch.rand(4, 6)
    pyro.set_rng_seed(1)
    full = Trace_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    scaled = Trace_ELBO().loss(vae.model, vae.guide, x, num_data=20)
    assert scaled == pytest.approx(5 * full, rel=1e-6)


def test_shapes_and_device(device):
    vae = VAE(12, 3, (8, 8)).to(device)
    x = torch.rand(5, 12, device=device)
    assert vae.reconstruct(x).shape == (5, 12)
    s = vae.sample(7)
    assert s.shape == (7, 12) and s.device.type == device.type
    assert ((s >= 0) & (s <= 1)).all()
    assert set(vae.sample(3, mean=False).unique().tolist()) <= {0.0, 1.0}


def test_bad_input():
    with pytest.raises(ValueError, match="likelihood='poisson'"):
        VAE(4, 2, likelihood="poisson")
    with pytest.raises(ValueError, match="activation='swish2'"):
        VAE(4, 2, activation="swish2")
    vae = VAE(4, 2, (4,))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\)"):
        vae.model(torch.ones(3, 5))
    with pytest.raises(ValueError, match="num_data=2 is smaller"):
        vae.model(torch.ones(3, 4), num_data=2)
