"""Ancestral sampling, inpainting, the plug-in networks and bad input."""
import pytest
import torch
from torch import nn

from pyro_deepgen.models import GaussianDiffusion
from pyro_deepgen.models.diffusion_schedules import sohl_schedule
from pyro_deepgen.nn import TimeMLP, UNet, sinusoidal_embedding
from tests.models.test_diffusion_bound import linear_diffusion, optimal_reverse


def image_diffusion(device, levels=17, T=6):
    net = UNet(1, base_channels=8, channel_mults=(1, 2))
    nn.init.normal_(net.conv_out.weight, std=0.1)
    d = GaussianDiffusion(net, (1, 8, 8), num_steps=T, schedule="cosine", data="discrete",
                          num_levels=levels)
    return d.to(device)


def test_sample_shapes_and_device(device):
    d = GaussianDiffusion(TimeMLP(2, (16,)), 2, num_steps=5, schedule="sohl").to(device)
    assert d.betas.device.type == device.type  # schedule constants are buffers
    x = d.sample(7, batch_size=3, progress=False)
    assert x.shape == (7, 2) and x.device.type == device.type
    x, path = d.sample(4, progress=False, trajectory=True)
    assert path.shape == (6, 4, 2) and torch.equal(path[0], x)
    img = image_diffusion(device).sample(5, batch_size=2, progress=False)
    assert img.shape == (5, 1, 8, 8) and img.device.type == device.type
    assert torch.equal(img, (img * 16).round() / 16) and img.min() >= 0 and img.max() <= 1


def test_inpainting_keeps_known_pixels_exactly(device):
    d = image_diffusion(device)
    x = (torch.randint(0, 17, (4, 1, 8, 8)) / 16.0).to(device)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool, device=device)
    mask[..., :4, :] = True  # top half known
    out = d.inpaint(x, mask, batch_size=3, progress=False)
    assert out.shape == x.shape and out.device.type == device.type
    assert torch.equal(out[..., :4, :], x[..., :4, :])
    assert not torch.equal(out[..., 4:, :], x[..., 4:, :])
    assert torch.equal(out, (out * 16).round() / 16)
    # unknown entries may hold anything (they are never read)
    x_bad = x.clone()
    x_bad[..., 4:, :] = 7.3
    assert torch.equal(d.inpaint(x_bad, mask, progress=False)[..., :4, :], x[..., :4, :])
    with pytest.raises(TypeError, match="bool"):
        d.inpaint(x, mask.float(), progress=False)
    with pytest.raises(ValueError, match="broadcast"):
        d.inpaint(x, torch.ones(3, 8, 8, 2, dtype=torch.bool, device=device), progress=False)


def test_inpainting_continuous_vectors(device):
    d = GaussianDiffusion(TimeMLP(3, (8,)), 3, num_steps=4).to(device)
    x = torch.randn(5, 3, device=device)
    mask = torch.tensor([True, False, True], device=device)
    out = d.inpaint(x, mask, progress=False)
    assert torch.equal(out[:, mask], x[:, mask]) and not torch.equal(out[:, 1], x[:, 1])


def test_networks():
    t = torch.tensor([1, 5, 1000])
    e = sinusoidal_embedding(t, 7)
    assert e.shape == (3, 7)
    assert torch.allclose(e[:, :3].pow(2) + e[:, 3:6].pow(2), torch.ones(3, 3))
    mean, var = TimeMLP(5)(torch.randn(3, 5), t)
    assert mean.shape == var.shape == (3, 5) and (mean == 0).all()  # zero-initialized output layer
    net = UNet(1, base_channels=8, channel_mults=(1, 2, 2))
    for size in (8, 28):
        m, v = net(torch.randn(2, 1, size, size), t[:2])
        assert m.shape == v.shape == (2, 1, size, size)
    with pytest.raises(ValueError, match="N, C, H, W"):
        net(torch.randn(2, 64), t[:2])


class OneOutput(nn.Module):
    def forward(self, x, t):
        return x


def test_bad_input():
    with pytest.raises(TypeError, match="nn.Module"):
        GaussianDiffusion(lambda x, t: (x, x), 2)
    with pytest.raises(ValueError, match="mean_type"):
        GaussianDiffusion(TimeMLP(2), 2, mean_type="score")
    with pytest.raises(ValueError, match="var_type"):
        GaussianDiffusion(TimeMLP(2), 2, var_type="small")
    with pytest.raises(ValueError, match="data"):
        GaussianDiffusion(TimeMLP(2), 2, data="binary")
    with pytest.raises(TypeError, match="pair"):
        GaussianDiffusion(OneOutput(), 2, num_steps=3).bound(torch.randn(4, 2))
    with pytest.raises(ValueError, match="shapes"):
        GaussianDiffusion(TimeMLP(2, out_dims=(3, 3)), 2, num_steps=3).bound(torch.randn(4, 2))
    d = GaussianDiffusion(TimeMLP(2), 2, num_steps=3)
    with pytest.raises(ValueError, match="outside"):
        d.q_sample(torch.randn(4, 2), 4)
    with pytest.raises(ValueError, match="positive"):
        d.sample(0, progress=False)


def test_ancestral_sampling_follows_the_reverse_kernels():
    """With the exact reverse kernels of Gaussian data N(0.7, 0.5^2) (beta_T = 1, so
    q(x_T) = N(0,1)),
    every x_t of the sampled trajectory has the forward marginal q(x_t): n=20000 chains, mean and
    variance within 4 standard errors."""
    n, T = 20000, 5
    betas = sohl_schedule(T, max_beta=1.0)
    d = linear_diffusion(betas, *optimal_reverse(betas))
    _, path = d.sample(n, progress=False, trajectory=True)
    for t in range(1, T + 1):
        mean, var = d.q_marginal(torch.full((1, 1), 0.7, dtype=torch.float64), t)
        var = var + d.coefficients()["alpha_bar"][t] * 0.25
        assert abs(path[t].mean() - mean.item()) < 4 * (var.item() / n) ** 0.5
        assert abs(path[t].var() - var.item()) < 4 * var.item() * (2 / n) ** 0.5
    # the last step returns the mean of p(x_0 | x_1): its variance is that of E[x_0 | x_1]
    assert abs(path[0].mean() - 0.7) < 4 * (0.25 / n) ** 0.5
