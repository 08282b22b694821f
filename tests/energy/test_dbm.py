"""Deep Boltzmann machines on models small enough to enumerate."""
import math

import pyro
import pytest
import torch

from pyro_deepgen.energy import DBM, RBM, ContrastiveDivergence, DoubledRBM, MeanFieldPCD, pretrain_dbm
from pyro_deepgen.models import HelmholtzMachine
from pyro_deepgen.energy.rbm import binary_states
from pyro_deepgen.train import fit

ALL_V = binary_states(6)


def _random_dbm(scale=1.0, seed=0, sizes=(6, 3, 2)):
    torch.manual_seed(seed)
    dbm = DBM(*sizes)
    with torch.no_grad():
        for p in dbm.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return dbm


def _brute_force_log_joint(dbm, v):
    """log sum_{h1,h2} exp(-E(v, h1, h2)) over every state, shape v.shape[:-1]."""
    h1 = binary_states(dbm.num_hidden1)[:, None]
    h2 = binary_states(dbm.num_hidden2)[None, :]
    with torch.no_grad():
        energies = dbm.energy(v[..., None, None, :], h1, h2)
    return torch.logsumexp(-energies.flatten(-2), -1)


def _teacher_data(n=500):
    pyro.set_rng_seed(123)
    teacher = HelmholtzMachine(6, (3,))
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn_like(p) * 2)
    return teacher.sample(n, mean=False)


def test_exact_log_z_and_log_prob_match_brute_force():
    dbm = _random_dbm()
    brute = _brute_force_log_joint(dbm, ALL_V)
    expected = torch.logsumexp(brute, 0).item()
    assert dbm.log_partition_exact().item() == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(dbm.unnormalized_log_prob(ALL_V), brute, atol=1e-5)
    assert torch.logsumexp(dbm.log_prob_exact(ALL_V), 0).item() == pytest.approx(0.0, abs=1e-5)


def test_importance_log_prob_sums_out_the_middle_layer_and_approaches_exact():
    """float64, a 6-3-2 DBM with weights of scale 2 (exact log Z). (i) Summing
    log_visible_top_marginal over every h2 gives the unnormalized log p(v) (1e-10). (ii) For
    every v: mean-field bound <= the ELBO of q(h2) with h1 integrated (by enumeration) <=
    exact log p(v). (iii) K = 20000 importance samples: within 0.01 of exact (measured 8e-4).
    (iv) K = 1, averaged over 2000 seeded calls: within 0.01 of that ELBO (measured 0.003;
    standard error <= 0.002)."""
    dbm = _random_dbm(scale=2.0).double()
    v = ALL_V.double()
    log_z = dbm.log_partition_exact()
    h2 = binary_states(dbm.num_hidden2, dtype=torch.float64)[:, None]  # (S, 1, H2)
    with torch.no_grad():
        marginal = dbm.log_visible_top_marginal(v, h2)  # (S, N)
    assert torch.allclose(torch.logsumexp(marginal, 0), dbm.unnormalized_log_prob(v), atol=1e-10)
    exact = dbm.log_prob_exact(v).detach()
    bound = dbm.lower_bound(v, log_z).detach()
    _, mu2 = dbm.mean_field(v)
    log_q = (torch.xlogy(h2, mu2) + torch.xlogy(1 - h2, 1 - mu2)).sum(-1)
    elbo = (log_q.exp() * (marginal - log_q - log_z)).sum(0)
    assert (bound <= elbo + 1e-10).all() and (elbo <= exact + 1e-10).all()
    pyro.set_rng_seed(0)
    assert torch.allclose(dbm.importance_log_prob(v, log_z, num_samples=20000), exact, atol=0.01)
    single = torch.stack([dbm.importance_log_prob(v, log_z, num_samples=1) for _ in range(2000)])
    assert torch.allclose(single.mean(0), elbo, atol=0.01)
    with pytest.raises(ValueError, match="num_samples"):
        dbm.importance_log_prob(v, log_z, num_samples=0)


def test_limit_without_second_layer_is_an_rbm():
    """weight2 = 0, c2 = 0: log Z = log Z_RBM + H2 log 2 and log p(v) = the RBM's."""
    dbm = _random_dbm()
    rbm = RBM(6, 3)
    with torch.no_grad():
        dbm.weight2.zero_()
        dbm.hidden2_bias.zero_()
        rbm.weight.copy_(dbm.weight1)
        rbm.visible_bias.copy_(dbm.visible_bias)
        rbm.hidden_bias.copy_(dbm.hidden1_bias)
    log_z = rbm.log_partition_exact()
    expected = log_z.item() + 2 * math.log(2)
    assert dbm.log_partition_exact().item() == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(dbm.log_prob_exact(ALL_V), rbm.log_prob(ALL_V, log_z), atol=1e-5)


def test_mean_field_fixed_point():
    """After convergence mu1 = sigmoid(W1 v + W2^T mu2 + c1) and mu2 = sigmoid(W2 mu1 + c2)."""
    dbm = _random_dbm(scale=1.5)
    mu1, mu2 = dbm.mean_field(ALL_V, num_steps=500, tol=0.0)
    with torch.no_grad():
        assert torch.allclose(mu1, torch.sigmoid(ALL_V @ dbm.weight1.T + mu2 @ dbm.weight2
                                                 + dbm.hidden1_bias), atol=1e-5)
        assert torch.allclose(mu2, torch.sigmoid(mu1 @ dbm.weight2.T + dbm.hidden2_bias), atol=1e-5)


def test_bound_below_exact_and_improved_by_mean_field():
    """Every v: the mean-field bound <= exact log p(v), and the fixed-point sweeps (coordinate
    ascent) never lower it below the bound at the initial bottom-up guess."""
    dbm = _random_dbm(scale=1.5)
    log_z = dbm.log_partition_exact()
    exact = dbm.log_prob_exact(ALL_V)
    bound = dbm.lower_bound(ALL_V, log_z)
    initial = dbm.lower_bound(ALL_V, log_z, num_steps=0)
    assert (bound <= exact + 1e-5).all()
    assert (bound >= initial - 1e-5).all()
    assert (exact - bound).max() > 1e-3  # mean field is not exact here (measured gap 0.008)


def test_ais_log_z_within_error_bar():
    """100 AIS runs over 2000 temperatures (seeded): |log Z_AIS - log Z| < 3 standard errors
    (about a 0.3% failure rate if the error were Gaussian); the error bar is also small."""
    dbm = _random_dbm(scale=1.0, sizes=(8, 4, 3))
    exact = dbm.log_partition_exact()
    pyro.set_rng_seed(0)
    data = torch.bernoulli(torch.full((50, 8), 0.3))
    log_z, stderr = dbm.ais_log_partition(betas=torch.linspace(0, 1, 2001), num_runs=100,
                                          base_rate=data)
    assert 0 < stderr < 0.05
    assert abs(log_z - exact) < 3 * stderr


def test_doubled_rbm_conditionals():
    rbm = DoubledRBM(6, 3, up=2.0)
    with torch.no_grad():
        rbm.weight.normal_()
    assert torch.allclose(rbm.hidden_probs(ALL_V),
                          torch.sigmoid(2 * ALL_V @ rbm.weight.T + rbm.hidden_bias))
    top = DoubledRBM(3, 2, down=2.0)
    h = binary_states(2)
    assert torch.allclose(top.visible_mean(h), torch.sigmoid(2 * h @ top.weight + top.visible_bias))


@pytest.mark.parametrize("up,down", [(2.0, 1.0), (1.0, 2.0)])
@pytest.mark.parametrize("persistent", [False, True])
def test_contrastive_divergence_on_doubled_rbms_uses_their_conditionals(
        up, down, persistent, assert_cd_matches_autograd):
    """CD/PCD on DBM pretraining's DoubledRBMs: the gradient is autograd's gradient of
    sum_n F(v_n) - s sum_m F(v~_m) with the doubled model's own free energy (the fused path,
    written for the plain RBM, would drop the factor ``up`` and use sigma(W v + c)), and PCD's
    stored chain probabilities are the doubled p(h | v~). float64, 1e-10."""
    torch.manual_seed(0)
    rbm = DoubledRBM(6, 3, up=up, down=down).double()
    with torch.no_grad():
        rbm.weight.normal_()
        rbm.hidden_bias.normal_()
    v = ALL_V[:10].double()
    cd = ContrastiveDivergence(k=2, persistent=persistent, num_chains=4)
    for _ in range(2):
        assert_cd_matches_autograd(rbm, cd, v)
        if persistent:
            expected = torch.sigmoid(up * cd.chains @ rbm.weight.T + rbm.hidden_bias)
            assert torch.allclose(cd._chain_probs, expected.detach(), atol=1e-12)


def test_mean_field_pcd_gradient():
    """The surrogate's gradient is -sum_n mu1_n v_n^T + (B/M) sum_m h1_m v_m^T for W1 (and
    likewise for the other parameters), with the chains the loss stores after its Gibbs step."""
    dbm = _random_dbm()
    v = ALL_V[:10]
    loss = MeanFieldPCD(num_chains=4, gibbs_steps=2, mean_field_steps=50)
    loss(dbm, None, v).backward()
    mu1, mu2 = dbm.mean_field(v, 50)
    cv, ch1, ch2 = loss.chains
    ratio = 10 / 4
    assert torch.allclose(dbm.weight1.grad, -mu1.T @ v + ratio * ch1.T @ cv, atol=1e-4)
    assert torch.allclose(dbm.weight2.grad, -mu2.T @ mu1 + ratio * ch2.T @ ch1, atol=1e-4)
    assert torch.allclose(dbm.hidden2_bias.grad, -mu2.sum(0) + ratio * ch2.sum(0), atol=1e-4)
    assert torch.allclose(dbm.visible_bias.grad, -v.sum(0) + ratio * cv.sum(0), atol=1e-4)


def test_pretrain_and_fine_tune():
    """Doubled-weight pretraining then 20 epochs of mean-field PCD on 500 points of a 6-3
    teacher: the exact log-likelihood gains over 1 nat per point on the untrained DBM, the
    bound stays below it and AIS agrees with the exact log Z within 3 standard errors."""
    x = _teacher_data()
    dbm = DBM(6, 4, 3)
    before = dbm.log_prob_exact(x).mean()
    pretrain_dbm(dbm, x, epochs=10, lr=0.05, batch_size=50, progress=False)
    history = fit(dbm, None, x, loss=MeanFieldPCD(), epochs=10, lr=0.01, batch_size=50,
                  progress=False)
    assert history.epochs == 10
    exact = dbm.log_prob_exact(x)
    assert exact.mean() > before + 1.0
    log_z = dbm.log_partition_exact()
    assert (dbm.lower_bound(x, log_z) <= exact + 1e-5).all()
    ais, stderr = dbm.ais_log_partition(betas=torch.linspace(0, 1, 1001), base_rate=x)
    assert abs(ais - log_z) < 3 * stderr + 1e-3
    samples = dbm.sample(5, num_steps=20)
    assert samples.shape == (5, 6)


def test_bad_input():
    with pytest.raises(ValueError, match="positive"):
        DBM(6, 0, 2)
    dbm = DBM(6, 3, 2)
    with pytest.raises(ValueError, match="shape"):
        dbm.mean_field(ALL_V[:, :3])
    with pytest.raises(ValueError, match="num_runs"):
        dbm.ais_log_partition(num_runs=1)
    with pytest.raises(ValueError, match="base_rate"):
        dbm.ais_log_partition(betas=[0.0, 1.0], base_rate=torch.zeros(5))
    with pytest.raises(ValueError, match="enumerate"):
        DBM(6, 21, 2).log_partition_exact()
    with pytest.raises(ValueError, match="gibbs_steps"):
        MeanFieldPCD(gibbs_steps=0)
    with pytest.raises(TypeError, match="DBM"):
        MeanFieldPCD()(RBM(6, 3), None, ALL_V)
    with pytest.raises(ValueError, match="no guide"):
        MeanFieldPCD()(dbm, dbm, ALL_V)
    with pytest.raises(ValueError, match="up and down"):
        DoubledRBM(6, 3, up=0.0)


def test_runs_on_device(device):
    """DBM, DBN and (reweighted) wake-sleep keep everything on the inputs' device."""
    from pyro_deepgen.infer import ReweightedWakeSleep, WakeSleep
    from pyro_deepgen.energy import DBN

    v = ALL_V.to(device)
    dbm = _random_dbm().to(device)
    assert dbm.lower_bound(v, dbm.log_partition_exact()).device == v.device
    log_z, _ = dbm.ais_log_partition(betas=torch.linspace(0, 1, 11, device=device), num_runs=4,
                                     base_rate=v)
    assert log_z.device == v.device
    MeanFieldPCD(num_chains=3)(dbm, None, v).backward()
    assert dbm.weight1.grad.device == v.device
    dbn = DBN((6, 3, 2)).to(device)
    assert dbn.lower_bound(v, dbn.top.log_partition_exact(), num_samples=2).device == v.device
    assert dbn.sample(3, num_steps=2).device == v.device
    hm = HelmholtzMachine(6, (3, 2)).to(device)
    for loss in (WakeSleep(), ReweightedWakeSleep(3, insomnia=0.5)):
        value = loss.differentiable_loss(hm.model, hm.guide, v, num_data=100)
        value.backward()
        assert value.device == v.device
    assert hm.log_prob_exact(v).device == v.device


@pytest.mark.parametrize("init", [True, False])
def test_pretrain_starts_at_the_base_rate_visible_biases(init):
    """With a zero learning rate pretraining leaves every parameter where it started, so the
    DBM's visible biases are the data's log-odds (init_visible_bias=True, the default) or 0."""
    from pyro_deepgen.energy import base_rate_logits

    x = _teacher_data()
    dbm = DBM(6, 4, 3)
    bottom, top = pretrain_dbm(dbm, x, init_visible_bias=init, epochs=1, lr=0.0, batch_size=50,
                               optimizer=torch.optim.SGD, progress=False)
    expected = base_rate_logits(x) if init else torch.zeros(6)
    assert torch.allclose(dbm.visible_bias, expected)
    assert torch.allclose(bottom.visible_bias, expected)
