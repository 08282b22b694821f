"""BernoulliImage is Bernoulli(logits).to_event(1), computed in one fewer pass."""
import pyro
import pyro.distributions as dist
import torch

from pyro_deepgen.distributions import BernoulliImage


def test_matches_pyro_bernoulli_to_event(device):
    logits = torch.randn(3, 4, 10, device=device, dtype=torch.float64)
    x = torch.rand(4, 10, device=device, dtype=torch.float64).round()
    expected = dist.Bernoulli(logits=logits).to_event(1).log_prob(x)
    got = BernoulliImage(logits).log_prob(x)
    assert got.shape == (3, 4) and torch.allclose(got, expected, atol=1e-12)
    grey = torch.rand(4, 10, device=device, dtype=torch.float64)  # cross-entropy of grey values
    expected = dist.Bernoulli(logits=logits, validate_args=False).to_event(1).log_prob(grey)
    assert torch.allclose(BernoulliImage(logits).log_prob(grey), expected, atol=1e-12)


def test_shapes_sampling_mean_and_plate_broadcast():
    d = BernoulliImage(torch.zeros(5, 7))
    assert d.batch_shape == (5,) and d.event_shape == (7,)
    s = d.sample((2,))
    assert s.shape == (2, 5, 7) and set(s.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(d.mean, torch.full((5, 7), 0.5))
    with pyro.plate("particles", 3, dim=-2), pyro.plate("data", 5, dim=-1):
        x = pyro.sample("x", BernoulliImage(torch.zeros(5, 7)))
    assert x.shape == (3, 5, 7)
