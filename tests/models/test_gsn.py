"""GSN: the chain's exact transition matrix and stationary distribution on 3 binary pixels by
enumeration, the kernel's transitions, the corruptions, and the walkback loss against a hand
computation."""
import itertools

import pyro
import pytest
import torch
from pyro.infer import MCMC

from pyro_deepgen.models import GSN
from pyro_deepgen.models.gsn import GSNKernel

STATES = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))  # the 8 states of 3 pixels


def index(x):
    return (x * torch.tensor([4.0, 2.0, 1.0])).sum(-1).long()


def exact_transition(gsn):
    """T[x, x'] = sum_x~ C(x~|x) P(x'|x~) over all 8 x 8 x 8 triples."""
    p = gsn.noise_level
    same = (STATES[:, None, :] == STATES[None, :, :]).double()  # [x, x~, pixel]
    if gsn.noise == "salt-and-pepper":
        c = ((1 - p) * same + p / 2).prod(-1)
    else:
        c = ((1 - p) * same + p * (1 - same)).prod(-1)
    with torch.no_grad():
        mean = torch.sigmoid(gsn.reconstruction_params(STATES)).double()  # [x~, pixel]
    r = (STATES[None].double() * mean[:, None] + (1 - STATES[None].double()) * (1 - mean[:, None])).prod(-1)
    return c @ r  # [x, x']


@pytest.mark.parametrize("noise,level", [("salt-and-pepper", 0.5), ("flip", 0.3)])
def test_long_run_histogram_is_the_exact_stationary_distribution(noise, level):
    torch.manual_seed(0)
    gsn = GSN(3, hidden=(8,), noise=noise, noise_level=level)
    with torch.no_grad():
        for param in gsn.parameters():
            param.mul_(3)  # a peaked denoiser: a stationary law far from uniform
    t = exact_transition(gsn)
    assert torch.allclose(t.sum(1), torch.ones(8, dtype=torch.float64))
    values, vectors = torch.linalg.eig(t.T)
    order = values.abs().argsort(descending=True)
    pi = vectors[:, order[0]].real
    pi = pi / pi.sum()
    assert values.abs()[order[1]] < 0.8  # 0.8**40 < 1e-3: 40 steps forget the start
    assert pi.max() > 0.25  # not close to uniform, so the test can fail
    # 20000 independent chains, 40 steps: each bin's standard error <= 0.0036; tolerance 0.015
    x, _ = gsn.chain(20000, 40)
    hist = torch.bincount(index(x), minlength=8).double() / 20000
    assert (hist - pi).abs().max() < 0.015


def test_kernel_transition_probabilities_and_mcmc_runner():
    torch.manual_seed(1)
    gsn = GSN(3, hidden=(8,), noise="salt-and-pepper", noise_level=0.4)
    t = exact_transition(gsn)
    start = 5
    kernel = GSNKernel(gsn, num_chains=20000, x0=STATES[start].expand(20000, 3).clone())
    nxt = kernel.sample(kernel.initial_params)
    # 20000 one-step draws from state 5: standard error <= 0.0036; tolerance 0.015
    hist = torch.bincount(index(nxt["x"]), minlength=8).double() / 20000
    assert (hist - t[start]).abs().max() < 0.015
    assert nxt["mean_intensity"].shape == (20000,)
    mcmc = MCMC(GSNKernel(gsn, num_chains=4), num_samples=30, warmup_steps=5, disable_progbar=True)
    mcmc.run()
    by_chain = GSNKernel.by_chain(mcmc.get_samples())
    assert set(by_chain) == {"mean_intensity"} and by_chain["mean_intensity"].shape == (4, 30)
    with pytest.raises(ValueError, match="no model arguments"):
        MCMC(GSNKernel(gsn, num_chains=2), num_samples=2, disable_progbar=True).run(torch.zeros(1))


@pytest.mark.parametrize("noise,level,expected", [("salt-and-pepper", 0.4, 0.2), ("flip", 0.3, 0.3)])
def test_binary_corruption_changes_the_expected_share_of_pixels(noise, level, expected):
    # 200000 pixels: standard error of the share about 0.001; tolerance 0.005
    gsn = GSN(100, noise=noise, noise_level=level)
    x = (torch.rand(2000, 100) < 0.5).float()
    assert (gsn.corrupt(x) != x).float().mean().item() == pytest.approx(expected, abs=0.005)


def test_walkback_loss_matches_hand_computation():
    torch.manual_seed(0)
    gsn = GSN(5, hidden=(7,), walkback=3)
    x = (torch.rand(4, 5) < 0.5).float()
    pyro.set_rng_seed(3)
    value = gsn.walkback_loss(x)
    pyro.set_rng_seed(3)
    total, current = 0.0, x
    for k in range(3):
        x_tilde = gsn.corrupt(current)
        p = torch.sigmoid(gsn.net(x_tilde))
        total = total - (x * p.log() + (1 - x) * (1 - p).log()).sum()
        if k < 2:
            current = (torch.rand(p.shape) < p).float()
    assert value.item() == pytest.approx(total.item() / 3, rel=1e-5)
    # K = 1 is the denoising autoencoder: one corruption, one reconstruction
    pyro.set_rng_seed(3)
    one = gsn.walkback_loss(x, walkback=1)
    pyro.set_rng_seed(3)
    assert one.item() == pytest.approx(-gsn.reconstruction_log_prob(x, gsn.corrupt(x)).sum().item(), rel=1e-6)


def test_gaussian_gsn_and_bad_arguments():
    gsn = GSN(4, hidden=(6,), noise="gaussian")
    samples = gsn.sample(10, steps=3)
    assert samples.shape == (10, 4) and samples.min() >= 0 and samples.max() <= 1
    assert gsn.walkback_loss(torch.rand(3, 4)).requires_grad
    with pytest.raises(ValueError, match="noise_level must be a probability"):
        GSN(4, noise="flip", noise_level=1.5)
    with pytest.raises(ValueError, match="noise="):
        GSN(4, noise="dropout")
    with pytest.raises(ValueError, match="walkback"):
        GSN(4, walkback=0)
    with pytest.raises(ValueError, match="x0 must have shape"):
        GSNKernel(gsn, num_chains=3, x0=torch.zeros(2, 4))
