"""``AdversarialLoss``: the optimal discriminator D*(x) = p_data / (p_data + p_g) on 1-D and 2-D
Gaussians, WGAN-GP's penalty against autograd, each objective against hand formulas, and resume
through ``fit`` restoring both players."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_deepgen.infer import AdversarialLoss
from pyro_deepgen.infer.adversarial import discriminator_objective, generator_objective, gradient_penalty
from pyro_deepgen.train import fit


class Quadratic(nn.Module):
    """Logit quadratic in x: the log-ratio of two Gaussians lies in this family, so the optimum is
    reachable exactly."""

    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, 1)
        self.quad = nn.Parameter(torch.zeros(d, d))

    def forward(self, x):
        return self.lin(x).squeeze(-1) + torch.einsum("ni,ij,nj->n", x, self.quad, x)


def gaussian_model(loc, scale_tril):
    """A fixed generator x = loc + L z (no parameters)."""
    d = loc.shape[0]

    def model(n):
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(d), 1.0).to_event(1))
            pyro.deterministic("x", loc + z @ scale_tril.T, event_dim=1)
    return model


@pytest.mark.parametrize("objective", ["minimax", "nonsaturating"])
@pytest.mark.parametrize("d", [1, 2])
def test_discriminator_reaches_the_optimal_discriminator(objective, d):
    # p_data = N(0, I), p_g = N(mu, L L^T) fixed; 600 discriminator steps (Adam, step 0.02, then
    # 0.002 for the last 200 to damp the SGD noise) on 2000 fresh real and 2000 fresh generated
    # points each; D must match D*(x) within 0.02 at 400 test points drawn from both densities
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -0.5])[:d]
    L = torch.tensor([[1.5, 0.0], [0.3, 0.8]])[:d, :d]
    p_data = dist.MultivariateNormal(torch.zeros(d), torch.eye(d))
    p_g = dist.MultivariateNormal(mu, scale_tril=L)
    disc = Quadratic(d)
    loss = AdversarialLoss(disc, objective, lr=0.02, betas=(0.9, 0.999))
    model = gaussian_model(mu, L)
    for step in range(600):
        if step == 400:
            loss.optimizer.param_groups[0]["lr"] = 0.002
        loss(model, None, p_data.sample((2000,)))
    x = torch.cat([p_data.sample((200,)), p_g.sample((200,))])
    d_star = torch.sigmoid(p_data.log_prob(x) - p_g.log_prob(x))
    with torch.no_grad():
        d_hat = torch.sigmoid(disc(x))
    assert (d_hat - d_star).abs().max() < 0.02
    assert loss.steps == 600 and len(loss.history["discriminator"]) == 600


def test_gradient_penalty_matches_autograd():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    real, fake, eps = torch.randn(5, 3), torch.randn(5, 3), torch.rand(5)
    value = gradient_penalty(critic, real, fake, eps=eps)
    expected = 0.0
    for i in range(5):
        x_hat = eps[i] * real[i] + (1 - eps[i]) * fake[i]
        grad = torch.autograd.functional.jacobian(lambda v: critic(v).sum(), x_hat)
        expected += (grad.norm() - 1) ** 2 / 5
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    # a linear critic f(x) = w.x has gradient w everywhere: penalty (|w| - 1)^2
    lin = nn.Linear(3, 1)
    assert gradient_penalty(lin, real, fake).item() == pytest.approx(((lin.weight.norm() - 1) ** 2).item(), rel=1e-5)
    value.backward()  # differentiable in the critic's parameters (create_graph)
    assert critic[0].weight.grad.abs().sum() > 0 and critic[2].weight.grad.abs().sum() > 0


def test_objectives_match_hand_formulas():
    real = torch.tensor([0.3, -1.2, 2.0])
    fake = torch.tensor([-0.7, 0.4, 1.5])
    sig = torch.sigmoid
    gan_d = (-torch.log(sig(real))).mean() + (-torch.log(1 - sig(fake))).mean()
    for objective in ("minimax", "nonsaturating"):
        assert discriminator_objective(objective, real, fake).item() == pytest.approx(gan_d.item(), rel=1e-6)
    assert torch.allclose(generator_objective("minimax", fake), torch.log(1 - sig(fake)), atol=1e-6)
    assert torch.allclose(generator_objective("nonsaturating", fake), -torch.log(sig(fake)), atol=1e-6)
    assert discriminator_objective("wgan-gp", real, fake).item() == pytest.approx((fake.mean() - real.mean()).item())
    hinge = sum(max(0.0, 1 - r) for r in real.tolist()) / 3 + sum(max(0.0, 1 + f) for f in fake.tolist()) / 3
    assert discriminator_objective("hinge", real, fake).item() == pytest.approx(hinge, rel=1e-6)
    for objective in ("wgan-gp", "hinge"):
        assert torch.equal(generator_objective(objective, fake), -fake)
    # at the optimum D* of p_data = p_g (D = 1/2) the game's value is -log 4
    half = torch.zeros(4)
    assert discriminator_objective("minimax", half, half).item() == pytest.approx(math.log(4))


def test_generator_loss_leaves_no_discriminator_gradient():
    torch.manual_seed(0)
    loc = nn.Parameter(torch.zeros(2))

    def model(n):
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.deterministic("x", z + loc, event_dim=1)
    disc = Quadratic(2)
    loss = AdversarialLoss(disc, "wgan-gp", n_critic=3)
    value = loss(model, None, torch.randn(12, 2))
    value.backward()
    assert loc.grad is not None and loc.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())


def test_plate_batch_mode_and_bad_models():
    def one_draw():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.deterministic("x", z, event_dim=1)
    loss = AdversarialLoss(Quadratic(2), batch_mode="plate")
    assert loss.generate(one_draw, 7).shape == (7, 2)
    with pytest.raises(ValueError, match="expected \\(7, ...\\)"):
        AdversarialLoss(Quadratic(2)).generate(lambda n: one_draw(), 7)
    with pytest.raises(ValueError, match="no site 'y'"):
        AdversarialLoss(Quadratic(2), site="y", batch_mode="plate").generate(one_draw, 3)
    with pytest.raises(ValueError, match="objective must be one of"):
        AdversarialLoss(Quadratic(2), objective="lsgan")
    with pytest.raises(ValueError, match="n_critic"):
        AdversarialLoss(Quadratic(2), n_critic=0)
    with pytest.raises(ValueError, match="takes no guide"):
        AdversarialLoss(Quadratic(2))(lambda n: None, lambda n: None, torch.zeros(3, 2))


def _train(tmp_path, epochs, resume):
    from pyro_deepgen.models import Discriminator, Generator

    pyro.set_rng_seed(0)
    gen, disc = Generator(4, z_dim=2, hidden=(8,)), Discriminator(4, hidden=(8,))
    loss = AdversarialLoss(disc, "hinge", n_critic=2)
    x = torch.rand(40, 4)
    fit(gen.model, None, x, loss=loss, epochs=epochs, batch_size=10, checkpoint=tmp_path / "ck.pt", resume=resume,
        progress=False)
    return gen, disc, loss


def test_resume_through_fit_restores_both_players(tmp_path):
    gen_a, disc_a, loss_a = _train(tmp_path / "a", 3, False)
    _train(tmp_path / "b", 1, False)
    gen_b, disc_b, loss_b = _train(tmp_path / "b", 3, True)
    for a, b in zip(list(gen_a.state_dict().values()) + list(disc_a.state_dict().values()),
                    list(gen_b.state_dict().values()) + list(disc_b.state_dict().values())):
        assert torch.equal(a, b)
    assert loss_a.history == loss_b.history and loss_b.steps == 12
    state_a, state_b = loss_a.optimizer.state_dict()["state"], loss_b.optimizer.state_dict()["state"]
    assert all(torch.equal(state_a[k]["exp_avg"], state_b[k]["exp_avg"]) for k in state_a)


def test_generator_average_is_the_hand_computed_moving_average():
    # beta = 0.9; the average is updated at the start of each call: after call 1 it is theta_0,
    # after call 3 (two generator steps) it is beta^2 theta_0 + beta (1 - beta) theta_1 + (1 - beta) theta_2
    from pyro_deepgen.models import Discriminator, Generator

    pyro.set_rng_seed(0)
    gen = Generator(4, z_dim=2, hidden=(8,))
    loss = AdversarialLoss(Discriminator(4, hidden=(8,)), average=gen, average_decay=0.9)
    optim = torch.optim.SGD(gen.parameters(), lr=0.5)
    x = torch.rand(10, 4)
    thetas = []
    for _ in range(3):
        thetas.append([p.detach().clone() for p in gen.parameters()])
        optim.zero_grad()
        loss(gen.model, None, x).backward()
        optim.step()
    expected = [0.81 * a + 0.09 * b + 0.1 * c for a, b, c in zip(*thetas)]
    assert all(not torch.allclose(a, c) for a, c in zip(thetas[0], thetas[2]))
    for mean, e in zip(loss.average.parameters(), expected):
        assert torch.allclose(mean, e, atol=1e-6)
        assert not mean.requires_grad
    assert loss.state_dict()["average"].keys() == gen.state_dict().keys()
    # the decay is a public (resume-checked) setting only with an average: old checkpoints resume
    assert loss.average_decay == 0.9 and not hasattr(AdversarialLoss(Quadratic(2)), "average_decay")
    with pytest.raises(ValueError, match="average_decay must be a number in"):
        AdversarialLoss(Quadratic(2), average=gen, average_decay=1.0)
    with pytest.raises(ValueError, match="same average= setting"):
        AdversarialLoss(Quadratic(2)).load_state_dict(loss.state_dict())
