"""Generator and Discriminator: the generator is a Pyro model with the GAN shape, conditional
labels reach both networks, and bad inputs are one-line errors."""
import pyro
import pytest
import torch
from pyro import poutine

from pyro_deepgen.models import Discriminator, Generator


def test_generator_is_a_pyro_model_with_z_and_deterministic_x():
    gen = Generator(6, z_dim=3, hidden=(5,))
    trace = poutine.trace(gen.model).get_trace(4)
    z, x = trace.nodes["z"], trace.nodes["x"]
    assert z["type"] == "sample" and z["value"].shape == (4, 3)
    assert z["fn"].base_dist.loc.abs().sum() == 0 and torch.all(z["fn"].base_dist.scale == 1)
    assert x["value"].shape == (4, 6) and torch.allclose(x["value"], gen.decode(z["value"]))
    assert 0 <= x["value"].min() and x["value"].max() <= 1
    trace.compute_log_prob()  # log p(z) only: x is deterministic
    assert trace.nodes["x"]["log_prob"].abs().sum() == 0


def test_conditional_labels_change_the_output_and_are_required():
    pyro.set_rng_seed(0)
    gen, disc = Generator(6, z_dim=3, hidden=(5,), num_classes=4), Discriminator(6, hidden=(5,), num_classes=4)
    z = torch.randn(2, 3)
    a, b = gen.decode(z, torch.tensor([0, 0])), gen.decode(z, torch.tensor([1, 3]))
    assert not torch.allclose(a, b)
    x = torch.rand(2, 6)
    assert disc(x, torch.tensor([0, 1])).shape == (2,)
    assert not torch.allclose(disc(x, torch.tensor([0, 0])), disc(x, torch.tensor([2, 2])))
    with pytest.raises(ValueError, match="pass the labels y"):
        gen.decode(z)
    with pytest.raises(ValueError, match="unconditional"):
        Generator(6).decode(torch.randn(2, 32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="z_dim must be a positive integer"):
        Generator(6, z_dim=0)
    with pytest.raises(ValueError, match="output="):
        Generator(6, output="tanh")
