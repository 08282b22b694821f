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


def test_spectral_norm_holds_every_layer_at_unit_spectral_norm():
    # the weights are scaled up 10x so that the unnormalized layers are far from 1 (about 9 for
    # the 30x20 layer); after 300 training-mode calls (one power iteration each) the effective
    # weight W / sigma(W) of every layer has largest singular value 1 within 1e-3
    # (torch.linalg.matrix_norm(ord=2), an SVD)
    torch.manual_seed(0)
    disc = Discriminator(30, hidden=(20, 10), spectral_norm=True, minibatch_std=True)
    linears = [m for m in disc.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3
    with torch.no_grad():
        for m in linears:
            m.parametrizations.weight.original.mul_(10.0)
    raw = [torch.linalg.matrix_norm(m.parametrizations.weight.original, ord=2).item() for m in linears]
    assert min(raw) > 3.0
    x = torch.rand(16, 30)
    for _ in range(300):
        disc(x)
    for m in linears:
        assert torch.linalg.matrix_norm(m.weight, ord=2).item() == pytest.approx(1.0, abs=1e-3)
    plain = Discriminator(30, hidden=(20, 10))
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


def test_minibatch_std_feature_is_the_mean_spread_of_the_last_hidden_layer():
    # with the output layer reading only the extra feature, D(x) = s for every sample, with
    # s = mean_j sqrt(var_i h_ij + 1e-8) (biased variance over the batch) computed by hand
    torch.manual_seed(0)
    disc = Discriminator(6, hidden=(5, 4), minibatch_std=True)
    with torch.no_grad():
        disc.head.weight.zero_()
        disc.head.weight[0, -1] = 1.0
        disc.head.bias.zero_()
    x = torch.rand(7, 6)
    h = torch.nn.functional.leaky_relu(disc.net(x), 0.2)
    assert h.shape == (7, 4)
    s = torch.stack([((h[:, j] - h[:, j].mean()).pow(2).mean() + 1e-8).sqrt() for j in range(4)]).mean()
    out = disc(x)
    assert out.shape == (7,) and torch.allclose(out, s.expand(7), atol=1e-6)
    # one sample's output depends on the rest of its batch; identical samples give s = 1e-4
    assert not torch.allclose(disc(x[:3])[0], out[0])
    assert disc(x[:1].expand(4, 6)).sub(1e-4).abs().max() < 1e-6
    with pytest.raises(ValueError, match="minibatch_std must be True or False"):
        Discriminator(6, minibatch_std="yes")
