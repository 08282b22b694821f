"""Deep belief networks on models small enough to enumerate."""
import pyro
import pytest
import torch

from pyro_deepgen.energy import DBN, RBM, pretrain_dbn
from pyro_deepgen.models import HelmholtzMachine
from pyro_deepgen.energy.rbm import binary_states

ALL_V = binary_states(6)  # every binary vector of 6 visible units


def _random_dbn(sizes, scale=1.0, seed=0):
    torch.manual_seed(seed)
    dbn = DBN(sizes)
    with torch.no_grad():
        for p in dbn.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return dbn


def _bernoulli_log_prob(x, probs):
    return (torch.xlogy(x, probs) + torch.xlogy(1 - x, 1 - probs)).sum(-1)


@pytest.mark.parametrize("sizes", [(6, 3), (6, 3, 2), (6, 3, 2, 2)])
def test_log_prob_exact_normalizes(sizes):
    dbn = _random_dbn(sizes)
    assert torch.logsumexp(dbn.log_prob_exact(ALL_V), 0).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("sizes", [(6, 3, 2), (6, 3, 2, 2), (6, 2, 3, 4)])
def test_bound_below_exact_log_prob(sizes):
    """For every binary v: bound (exact expectation, exact log Z) <= exact log p(v)."""
    dbn = _random_dbn(sizes, scale=1.5)
    bound = dbn.lower_bound(ALL_V, dbn.top.log_partition_exact())
    exact = dbn.log_prob_exact(ALL_V)
    assert (bound <= exact + 1e-5).all()
    assert (exact - bound).max() > 1e-2  # not trivially tight for random weights


def test_two_layer_bound_matches_hand_formula():
    """E_q(h1|v)[log p(v|h1) + log p_top(h1)] + H(q(h1|v)), enumerating h1 in the test."""
    dbn = _random_dbn((6, 3, 2))
    bottom, top = dbn.rbms
    log_z = top.log_partition_exact()
    h1 = binary_states(3)  # (8, 3)
    with torch.no_grad():
        q = bottom.hidden_probs(ALL_V)  # (64, 3)
        log_q = _bernoulli_log_prob(h1[:, None], q)  # (8, 64)
        px = torch.sigmoid(h1 @ bottom.weight + bottom.visible_bias)  # (8, 6)
        log_px = _bernoulli_log_prob(ALL_V, px[:, None])  # (8, 64)
        log_ptop = -top.free_energy(h1) - log_z  # (8,)
        entropy = -(torch.xlogy(q, q) + torch.xlogy(1 - q, 1 - q)).sum(-1)
        expected = (log_q.exp() * (log_px + log_ptop[:, None])).sum(0) + entropy
        assert torch.allclose(dbn.lower_bound(ALL_V, log_z), expected, atol=1e-5)


def test_bound_is_tight_for_complementary_prior():
    """Limiting case (Hinton et al. 2006): a top RBM that is the bottom RBM transposed makes the
    DBN equal to the bottom RBM and the upward pass its exact posterior, so the bound is exact."""
    dbn = _random_dbn((6, 3, 6))
    bottom, top = dbn.rbms
    with torch.no_grad():
        top.weight.copy_(bottom.weight.T)
        top.visible_bias.copy_(bottom.hidden_bias)
        top.hidden_bias.copy_(bottom.visible_bias)
    rbm_log_prob = bottom.log_prob(ALL_V, bottom.log_partition_exact())
    bound = dbn.lower_bound(ALL_V, top.log_partition_exact())
    assert torch.allclose(bound, rbm_log_prob, atol=1e-4)
    assert torch.allclose(dbn.log_prob_exact(ALL_V), rbm_log_prob, atol=1e-4)


def test_single_rbm_bound_is_exact():
    dbn = _random_dbn((6, 3))
    log_z = dbn.top.log_partition_exact()
    assert torch.allclose(dbn.lower_bound(ALL_V, log_z), dbn.log_prob_exact(ALL_V), atol=1e-6)


def test_monte_carlo_bound_matches_exact_expectation():
    """20000 upward samples per point, seeded: the MC bound is within 0.05 nats of the exact
    expectation (measured error < 0.02)."""
    dbn = _random_dbn((6, 3, 2, 2))
    log_z = dbn.top.log_partition_exact()
    exact = dbn.lower_bound(ALL_V[:16], log_z)
    pyro.set_rng_seed(1)
    mc = dbn.lower_bound(ALL_V[:16], log_z, num_samples=20000)
    assert torch.allclose(mc, exact, atol=0.05)


def test_importance_log_prob_approaches_exact_log_prob():
    """float64, a 6-3-2-2 DBN (exact log Z of the top RBM), every binary v: K = 20000 upward
    samples give log p(v) within 0.15 nats (measured 0.06; the bound is up to 1.6 nats below);
    K = 1, averaged over 2000 seeded calls, is the bound within 0.2 (measured 0.08, standard
    error <= 0.04)."""
    dbn = _random_dbn((6, 3, 2, 2)).double()
    v = ALL_V.double()
    log_z = dbn.top.log_partition_exact()
    exact, bound = dbn.log_prob_exact(v), dbn.lower_bound(v, log_z)
    pyro.set_rng_seed(0)
    assert torch.allclose(dbn.importance_log_prob(v, log_z, num_samples=20000), exact, atol=0.15)
    single = torch.stack([dbn.importance_log_prob(v, log_z, num_samples=1) for _ in range(2000)])
    assert torch.allclose(single.mean(0), bound, atol=0.2)


def test_pretrain_fits_data_and_samples():
    """Greedy CD-1 pretraining (10 epochs) on 500 points of a 6-3 teacher: the exact
    log-likelihood gains over 1 nat per point on the untrained net and the bound stays below it."""
    pyro.set_rng_seed(123)
    teacher = HelmholtzMachine(6, (3,))
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn_like(p) * 2)
    x = teacher.sample(500, mean=False)
    dbn = DBN((6, 4, 3))
    before = dbn.log_prob_exact(x).mean()
    histories = pretrain_dbn(dbn, x, epochs=10, lr=0.05, batch_size=50, progress=False)
    assert len(histories) == 2 and all(h.epochs == 10 for h in histories)
    after = dbn.log_prob_exact(x)
    assert after.mean() > before + 1.0
    assert (dbn.lower_bound(x, dbn.top.log_partition_exact()) <= after + 1e-5).all()
    samples = dbn.sample(7, num_steps=50)
    assert samples.shape == (7, 6) and ((samples >= 0) & (samples <= 1)).all()
    binary = dbn.sample(7, num_steps=5, mean=False)
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    assert isinstance(dbn.rbms[0], RBM)


def test_bad_input():
    with pytest.raises(ValueError, match="at least two"):
        DBN((6,))
    dbn = DBN((6, 3, 2))
    with pytest.raises(ValueError, match="propagate"):
        pretrain_dbn(dbn, ALL_V, propagate="max")
    with pytest.raises(ValueError, match="num_samples"):
        dbn.lower_bound(ALL_V, 0.0, num_samples=0)
    with pytest.raises(ValueError, match="shape"):
        dbn.lower_bound(ALL_V[:, :4], 0.0)
    with pytest.raises(ValueError, match="num_samples=<int>"):
        DBN((6, 12, 12, 2)).lower_bound(ALL_V, 0.0)


@pytest.mark.parametrize("init", [True, False])
def test_pretrain_starts_at_the_base_rate_visible_biases(init):
    """With a zero learning rate greedy pretraining leaves every parameter where it started: the
    first RBM's visible biases are the data's log-odds (init_visible_bias=True, the default) or
    0, and the top RBM's weights are untouched."""
    from pyro_deepgen.energy import base_rate_logits

    pyro.set_rng_seed(0)
    x = torch.bernoulli(torch.full((100, 6), 0.3))
    dbn = DBN((6, 4, 3))
    top_weight = dbn.top.weight.detach().clone()
    pretrain_dbn(dbn, x, init_visible_bias=init, epochs=1, lr=0.0, batch_size=50,
                 optimizer=torch.optim.SGD, progress=False)
    expected = base_rate_logits(x) if init else torch.zeros(6)
    assert torch.allclose(dbn.rbms[0].visible_bias, expected)
    assert torch.equal(dbn.top.weight, top_weight)
