"""2-D toy data sets and the Rezende & Mohamed (2015) energies: hand-computed values, exact and
converged grid log Z, and the energies as unnormalized Pyro models."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_deepgen.data.toy import (
    ENERGIES,
    TOY_DATASETS,
    EnergyModel,
    box_wall,
    energy_u1,
    energy_u2,
    energy_u3,
    energy_u4,
    log_partition_grid,
    make_8gaussians,
    make_checkerboard,
    make_rings,
    make_two_moons,
)


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_dataset_shape_seed_and_window(name):
    make = TOY_DATASETS[name]
    x = make(301)
    assert x.shape == (301, 2) and x.dtype == torch.get_default_dtype()
    assert torch.equal(x, make(301, seed=0))  # seeded, reproducible
    assert not torch.equal(x, make(301, seed=1))
    assert x.abs().max() < 5.0  # inside the figure window, give or take the noise


def test_datasets_do_not_touch_the_global_rng():
    state = torch.get_rng_state()
    for make in TOY_DATASETS.values():
        make(10)
    assert torch.equal(state, torch.get_rng_state())


def test_noiseless_shapes_are_exact():
    moons = make_two_moons(400, noise=0.0) / 2 + torch.tensor([0.5, 0.25])
    upper, lower = moons[:200], moons[200:]
    assert torch.allclose(upper.norm(dim=-1), torch.ones(200), atol=1e-6)
    assert torch.allclose((lower - torch.tensor([1.0, 0.5])).norm(dim=-1), torch.ones(200),
                          atol=1e-6)
    radii = make_rings(300, noise=0.0).norm(dim=-1)
    for r in (1.0, 2.0, 3.0):
        assert ((radii - r).abs() < 1e-5).sum() == 100
    centres = make_8gaussians(500, noise=0.0)
    assert torch.allclose(centres.norm(dim=-1), torch.full((500,), 2.5), atol=1e-5)
    assert len(torch.unique(centres.round(decimals=4), dim=0)) == 8
    board = make_checkerboard(1000)
    assert (torch.floor(board / 2).sum(-1) % 2 == 0).all()  # only the dark squares


@pytest.mark.parametrize("kwargs,match", [({"n": 0}, "n must be"), ({"n": 2.5}, "n must be"),
                                          ({"n": 5, "noise": -1.0}, "noise")])
def test_dataset_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_two_moons(**kwargs)


def test_energies_match_hand_computed_values():
    z = torch.tensor([[2.0, 0.0], [0.0, 0.4], [1.0, 1.0], [1.0, -2.0], [-1.0, 0.5]],
                     dtype=torch.float64)
    # U1 at (2, 0): on the ring, log(1 + exp(-(4/0.6)^2 / 2)) from the far bump.
    assert energy_u1(z[:1]).item() == pytest.approx(-math.log1p(math.exp(-0.5 * (4 / 0.6) ** 2)))
    # U1 at (0, 0.4): ((0.4 - 2)/0.4)^2/2 = 8, the two bumps at distance 2 each.
    expected = 8 - math.log(2 * math.exp(-0.5 * (2 / 0.6) ** 2))
    assert energy_u1(z[1:2]).item() == pytest.approx(expected)
    # U2: w1(0) = 0, w1(1) = 1, w1(-1) = -1.
    assert energy_u2(z).tolist() == pytest.approx([0.0, 0.5, 0.0, 0.5 * (3 / 0.4) ** 2,
                                                   0.5 * (1.5 / 0.4) ** 2])
    # U3 at (1, -2): w1 = 1, w2 = 3, so the second bump is exactly at z2.
    expected = -math.log(math.exp(-0.5 * (3 / 0.35) ** 2) + 1)
    assert energy_u3(z[3:4]).item() == pytest.approx(expected)
    # U4 at (1, 1): w1 = 1, w3 = 3 * sigmoid(0) = 1.5.
    expected = -math.log(1 + math.exp(-0.5 * (1.5 / 0.35) ** 2))
    assert energy_u4(z[2:3]).item() == pytest.approx(expected)
    for u in ENERGIES.values():  # batch shapes broadcast
        assert u(torch.zeros(3, 4, 2)).shape == (3, 4)


def test_energies_are_stable_far_away():
    z = torch.tensor([[40.0, -30.0], [-50.0, 60.0]])
    for u in ENERGIES.values():
        assert torch.isfinite(u(z)).all()


def test_energy_bad_input():
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        energy_u1(torch.zeros(3))
    with pytest.raises(ValueError, match="unknown energy"):
        EnergyModel("U5")
    with pytest.raises(TypeError, match="name or a callable"):
        EnergyModel(3)


def test_box_wall_is_zero_inside_the_window():
    z = 8 * torch.rand(100, 2, dtype=torch.float64) - 4
    for name, u in ENERGIES.items():
        assert torch.equal(EnergyModel(name).energy(z), u(z))
    assert box_wall(torch.tensor([5.0, -4.5]), 4.0, 0.5).item() == pytest.approx(2.0 + 0.5)


def test_log_partition_of_u2_is_exact():
    # U2 + wall factorizes: int dz1 = 8 + 2 * sqrt(2 pi) * 0.5 / 2, int dz2 = sqrt(2 pi) * 0.4
    # (the z2 wall at |z2| > 4 is 7 ridge widths away: negligible).
    exact = math.log((8 + 0.5 * math.sqrt(2 * math.pi)) * 0.4 * math.sqrt(2 * math.pi))
    assert EnergyModel("U2").log_partition() == pytest.approx(exact, abs=1e-8)


def test_log_partition_of_a_gaussian_is_exact():
    assert log_partition_grid(lambda z: 0.5 * (z**2).sum(-1), lim=10.0, n=400) == pytest.approx(
        math.log(2 * math.pi), abs=1e-10)


@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_grid_log_partition_converges(name):
    """Two resolutions, h = 0.04 and h = 0.02 on [-8, 8]^2, agree within 1e-6 nats."""
    model = EnergyModel(name)
    assert model.log_partition(n=400) == pytest.approx(model.log_partition(n=800), abs=1e-6)


def test_log_partition_bad_input():
    with pytest.raises(ValueError, match="lim"):
        log_partition_grid(energy_u1, lim=0.0)
    with pytest.raises(ValueError, match="n must be"):
        log_partition_grid(energy_u1, n=1)


@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_energy_model_joint_is_minus_beta_energy(name):
    model = EnergyModel(name)
    z = 3 * torch.randn(7, 2, dtype=torch.float64)

    def guide(beta):
        pyro.sample("z", dist.Delta(z, event_dim=1))

    guide_trace = poutine.trace(guide).get_trace(0.3)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(0.3)
    model_trace.compute_log_prob()
    assert model_trace.nodes["z"]["log_prob"].dtype == torch.float64
    assert torch.equal(model_trace.nodes["z"]["log_prob"], torch.zeros(7, dtype=torch.float64))
    assert torch.allclose(model_trace.nodes["energy"]["log_prob"], -0.3 * model.energy(z))


def test_trace_elbo_plus_log_z_is_the_kl():
    """With q = N(0, I) and the target U = |z|^2/2 (no wall), q = p, so -ELBO + log Z = 0 for
    every draw: an exact check of the model's sign and of log Z (any sample size)."""
    model = EnergyModel(lambda z: 0.5 * (z**2).sum(-1), box=None)

    def guide(beta=1.0):
        pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    loss = pyro.infer.Trace_ELBO(num_particles=10, vectorize_particles=True).loss(model, guide)
    assert loss + model.log_partition() == pytest.approx(0.0, abs=1e-5)
