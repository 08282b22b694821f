"""Sandwich bounds on the log-likelihood of RBMs and DBMs (forward AIS, RAISE, BDMC), all against
exact enumeration on models small enough to enumerate."""
import pytest
import torch

from pyro_deepgen.energy import (
    DBM,
    DBN,
    RBM,
    DoubledRBM,
    bdmc_log_partition,
    dbm_posterior_ais_log_prob,
    dbn_raise_log_prob,
    forward_ais_log_prob,
    log_likelihood_sandwich,
    raise_log_prob,
)
from pyro_deepgen.energy.rbm import binary_states
from pyro_deepgen.energy.sandwich import _path


def random_rbm(num_visible, num_hidden, scale, seed=0):
    torch.manual_seed(seed)
    rbm = RBM(num_visible, num_hidden, init_scale=scale).double()
    with torch.no_grad():
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
    return rbm


def random_dbm(sizes, scale, seed=0):
    torch.manual_seed(seed)
    dbm = DBM(*sizes, init_scale=scale).double()
    with torch.no_grad():
        for p in (dbm.visible_bias, dbm.hidden1_bias, dbm.hidden2_bias):
            p.normal_()
    return dbm


def exact_log_prob(model, v):
    if isinstance(model, DBM):
        return model.log_prob_exact(v)
    return -model.free_energy(v) - model.log_partition_exact()


def empirical(x):
    """(mean, standard error of the mean) of repeated estimates."""
    return x.mean().item(), x.std().item() / len(x) ** 0.5


HARD = {"rbm": lambda: random_rbm(8, 6, 6.0), "dbm": lambda: random_dbm((5, 3, 3), 4.0)}


@pytest.mark.parametrize("name", ["rbm", "dbm"])
def test_each_side_brackets_the_exact_log_likelihood_in_expectation(name):
    """A hard 8x6 RBM (weights N(0, 6^2)) and 5x3x3 DBM (N(0, 4^2)), 10 temperatures of the
    paper's schedule and 10 runs per estimate, so that both biases are large. Averaged over p(v)
    exactly (all 2^V visible states weighted by their exact probability), the expectations are
    estimated by 100 independent repetitions and their empirical standard error (not the
    delta method's): E[RAISE] < E_p log p - 3 se (conservative) and E[forward AIS] > E_p log p
    + 3 se (optimistic). Seeded."""
    model = HARD[name]()
    torch.manual_seed(0)
    v = binary_states(model.num_visible, dtype=torch.float64)
    exact = exact_log_prob(model, v).detach()
    p = exact.exp()
    truth = (p * exact).sum().item()
    reps = 100
    low, _ = raise_log_prob(model, v.repeat(reps, 1), 10, num_runs=10)  # all repetitions at once
    low_mean, low_se = empirical((low.view(reps, -1) * p).sum(1))
    assert low_mean < truth - 3 * low_se
    high = torch.stack([(p * forward_ais_log_prob(model, v, 10, num_runs=10)[0]).sum() for _ in range(reps)])
    high_mean, high_se = empirical(high)
    assert high_mean > truth + 3 * high_se


@pytest.mark.parametrize("name", ["rbm", "dbm"])
def test_raise_and_forward_ais_converge_to_the_exact_value(name):
    """With 1000 temperatures (linear) the same models' RAISE (50 runs per state) and forward
    AIS (1000 runs) are within 3 delta-method standard errors + 0.05 nats of E_p log p."""
    model = HARD[name]()
    torch.manual_seed(1)
    v = binary_states(model.num_visible, dtype=torch.float64)
    exact = exact_log_prob(model, v).detach()
    p = exact.exp()
    truth = (p * exact).sum().item()
    betas = torch.linspace(0, 1, 1001, dtype=torch.float64)
    low, low_se = raise_log_prob(model, v, betas, num_runs=50)
    assert abs((p * low).sum().item() - truth) < 3 * (p.pow(2) * low_se.pow(2)).sum().sqrt().item() + 0.05
    high, high_se = forward_ais_log_prob(model, v, betas, num_runs=1000)
    assert abs((p * high).sum().item() - truth) < 3 * high_se.item() + 0.05


@pytest.mark.parametrize("name", ["rbm", "dbm"])
def test_bdmc_sandwiches_log_z_from_exact_samples(name):
    """Forward AIS from the base model and reverse AIS from exact draws of the model (10
    temperatures, 10 runs, 100 repetitions): E log Z_fwd < log Z - 3 se and E log Z_rev >
    log Z + 3 se (empirical standard errors). With 1000 linear temperatures and 300 runs both
    lie within 3 se + 0.02 of log Z. Seeded."""
    model = HARD[name]()
    torch.manual_seed(2)
    log_z = model.log_partition_exact().item()
    short = [bdmc_log_partition(model, 10, num_runs=10) for _ in range(100)]
    assert all(s["exact_samples"] for s in short)
    fwd_mean, fwd_se = empirical(torch.tensor([s["log_z_forward"] for s in short]))
    rev_mean, rev_se = empirical(torch.tensor([s["log_z_reverse"] for s in short]))
    assert fwd_mean < log_z - 3 * fwd_se and rev_mean > log_z + 3 * rev_se
    long = bdmc_log_partition(model, torch.linspace(0, 1, 1001, dtype=torch.float64), num_runs=300)
    for side in ("forward", "reverse"):
        assert abs(long[f"log_z_{side}"] - log_z) < 3 * long[f"log_z_{side}_stderr"] + 0.02
    assert long["gap"] == long["log_z_reverse"] - long["log_z_forward"]


def test_gap_shrinks_with_the_number_of_temperatures():
    """log_likelihood_sandwich on 400 exact draws of a 10x8 RBM (weights N(0, 2^2)), with 10,
    100 and 1000 temperatures of the paper's schedule, 4000 forward runs and 20 reverse chains
    per point: the gap (forward minus RAISE) falls at each step by more than 3 standard errors
    of the difference, and at 1000 it is below 0.05 nats (measured: 1.01, 0.16, 0.01). Seeded."""
    rbm = random_rbm(10, 8, 2.0)
    torch.manual_seed(0)
    data = _path(rbm, None).exact_samples(400)[0]
    gaps, errs = [], []
    for num_betas in (10, 100, 1000):
        s = log_likelihood_sandwich(rbm, data, num_betas, num_runs=4000, raise_runs=20)
        assert s["settings"]["num_betas"] == num_betas and s["settings"]["num_points"] == 400
        gaps.append(s["gap"])
        errs.append((s["forward_ais"]["stderr"] ** 2 + s["raise"]["stderr"] ** 2) ** 0.5)
    for k in range(2):
        assert gaps[k] - gaps[k + 1] > 3 * (errs[k] ** 2 + errs[k + 1] ** 2) ** 0.5
    assert abs(gaps[2]) < 0.05


def test_single_step_and_base_model_limits():
    """betas = [0, 1]: RAISE returns the base model's exact log p_0(v) with zero error bar.
    When the model is its own base (zero weights, base rate = visible biases), every ladder gives
    the exact log p(v), for the RBM (any hidden biases) and the DBM (zero hidden biases), and
    forward AIS does too."""
    rbm = random_rbm(6, 4, 1.0)
    v = binary_states(6, dtype=torch.float64)
    b_a = torch.linspace(-1, 1, 6, dtype=torch.float64)
    log_p0 = v @ b_a - torch.nn.functional.softplus(b_a).sum()
    value, se = raise_log_prob(rbm, v, [0.0, 1.0], num_runs=3, base_rate=b_a)
    assert torch.allclose(value, log_p0, atol=1e-12) and torch.all(se == 0)

    with torch.no_grad():
        rbm.weight.zero_()
    dbm = random_dbm((5, 3, 3), 0.0)
    with torch.no_grad():
        dbm.hidden1_bias.zero_()
        dbm.hidden2_bias.zero_()
    for model in (rbm, dbm):
        v = binary_states(model.num_visible, dtype=torch.float64)
        exact = exact_log_prob(model, v)
        for betas in ([0.0, 1.0], torch.linspace(0, 1, 7, dtype=torch.float64)):
            value, se = raise_log_prob(model, v, betas, num_runs=4)
            assert torch.allclose(value, exact, atol=1e-10) and se.abs().max() < 1e-10
            high, _ = forward_ais_log_prob(model, v, betas, num_runs=4)
            assert torch.allclose(high, exact, atol=1e-10)


def test_batches_and_device_dtype():
    """batch_size splits the points without changing the estimator (same seed, same draws when
    the batch is the whole set; otherwise statistically: within 4 se of each other), and the
    results are float64 on the data's device."""
    rbm = random_rbm(6, 4, 1.0)
    v = binary_states(6, dtype=torch.float64)[:10]
    torch.manual_seed(3)
    a, a_se = raise_log_prob(rbm, v, 20, num_runs=50)
    torch.manual_seed(3)
    b, _ = raise_log_prob(rbm, v, 20, num_runs=50, batch_size=10)
    assert torch.equal(a, b) and a.dtype == torch.float64 and a.device == v.device
    c, c_se = raise_log_prob(rbm, v, 20, num_runs=50, batch_size=3)
    assert c.shape == (10,) and torch.all((a - c).abs() < 4 * (a_se ** 2 + c_se ** 2).sqrt() + 1e-9)


def test_bdmc_without_exact_samples_uses_the_forward_chains():
    """A 22x22 RBM has no enumerable layer: the reverse chains start at the forward chains' final
    states (exact_samples False), and with small weights both sides agree within 0.05 nats."""
    rbm = random_rbm(22, 22, 0.05)
    torch.manual_seed(4)
    out = bdmc_log_partition(rbm, 50, num_runs=50)
    assert not out["exact_samples"] and abs(out["gap"]) < 0.05


def test_bad_input():
    rbm = random_rbm(6, 4, 1.0)
    v = binary_states(6, dtype=torch.float64)
    with pytest.raises(TypeError, match="RBM or DBM"):
        raise_log_prob(DBN([6, 4, 3]), v, 10)
    with pytest.raises(ValueError, match="plain_energy"):
        raise_log_prob(DoubledRBM(6, 4, up=2.0), v, 10)
    with pytest.raises(ValueError, match=r"v must be a tensor of shape \(N, 6\)"):
        raise_log_prob(rbm, v[:, :5], 10)
    with pytest.raises(ValueError, match="data is empty"):
        log_likelihood_sandwich(rbm, v[:0], 10)
    with pytest.raises(ValueError, match="num_runs must be an integer >= 2"):
        raise_log_prob(rbm, v, 10, num_runs=1)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        raise_log_prob(rbm, v, 10, batch_size=0)
    with pytest.raises(ValueError, match="increase strictly from 0 to 1"):
        raise_log_prob(rbm, v, [0.0, 0.5, 0.4, 1.0])
    with pytest.raises(ValueError, match=r"base_rate must have shape \(6,\)"):
        bdmc_log_partition(rbm, 10, base_rate=torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"base_rate data must have shape \(N, 6\)"):
        log_likelihood_sandwich(rbm, v, 10, base_rate=torch.zeros(3, 5))


def test_dbm_posterior_ais_tightens_importance_sampling_toward_enumeration():
    """Per-image AIS over h2 (mean-field q -> posterior) against the enumerated log p~(v) of a
    6-4-10 DBM whose coupled layers make the factorial proposal poor (weights scale 3, seed 0).
    All 64 visible states, R = 400 runs each. One-step AIS (betas [0, 1]) is importance
    sampling from q with R samples: measured mean error -0.19, mean |error| 0.25 nats. With
    200 temperatures: measured mean |error| 0.015, max 0.075 nats; tolerances 0.04 and 0.2."""
    dbm = random_dbm((6, 4, 10), 3.0)
    v = binary_states(6, dtype=torch.float64)
    with torch.no_grad():
        exact = dbm.unnormalized_log_prob(v)
    torch.manual_seed(1)
    one_step, _ = dbm_posterior_ais_log_prob(dbm, v, [0.0, 1.0], num_runs=400)
    torch.manual_seed(1)
    annealed, se = dbm_posterior_ais_log_prob(dbm, v, 200, num_runs=400)
    assert one_step.shape == annealed.shape == se.shape == (64,)
    assert (one_step - exact).mean() < -0.1  # a stochastic lower bound, loose with q alone
    assert (one_step - exact).abs().mean() > 0.1
    assert (annealed - exact).abs().mean() < 0.04
    assert (annealed - exact).abs().max() < 0.2


def test_dbm_posterior_ais_limits():
    dbm = random_dbm((6, 4, 3), 2.0)
    v = binary_states(6, dtype=torch.float64)[::7]
    # W2 = 0: p(h2 | v) = sigma(c2) is what mean field finds, so every weight is exact
    with torch.no_grad():
        dbm.weight2.zero_()
    dbm.hidden2_bias.data.clamp_(-3, 3)  # inside the proposal floor's clip
    for betas in ([0.0, 1.0], 7):
        est, se = dbm_posterior_ais_log_prob(dbm, v, betas, num_runs=3, log_z=1.5)
        with torch.no_grad():
            exact = dbm.unnormalized_log_prob(v)
        assert torch.allclose(est, exact - 1.5, atol=1e-10)
        assert se.abs().max() < 1e-8
    # batches give the per-row estimates of the whole (same seed -> same draws per row count)
    torch.manual_seed(0)
    a, _ = dbm_posterior_ais_log_prob(dbm, v, 5, num_runs=2, batch_size=3)
    assert a.shape == (len(v),) and a.dtype == torch.float64


def test_dbm_posterior_ais_bad_input():
    dbm = random_dbm((6, 4, 3), 1.0)
    v = binary_states(6, dtype=torch.float64)
    with pytest.raises(ValueError, match="dbm must be a pyro_deepgen.energy.DBM"):
        dbm_posterior_ais_log_prob(random_rbm(6, 4, 1.0), v)
    with pytest.raises(ValueError, match=r"v must be a tensor of shape \(N, 6\)"):
        dbm_posterior_ais_log_prob(dbm, v[:, :5])
    with pytest.raises(ValueError, match="num_runs must be an integer >= 2"):
        dbm_posterior_ais_log_prob(dbm, v, 5, num_runs=1)
    with pytest.raises(ValueError, match=r"proposal_floor must be in \(0, 0.5\)"):
        dbm_posterior_ais_log_prob(dbm, v, 5, proposal_floor=0.5)


def random_dbn(sizes, scale, seed=0):
    torch.manual_seed(seed)
    dbn = DBN(sizes, init_scale=scale).double()
    with torch.no_grad():
        for rbm in dbn.rbms:
            rbm.weight.normal_(0, scale)
            rbm.visible_bias.normal_()
            rbm.hidden_bias.normal_()
    return dbn


def test_dbn_raise_is_conservative_in_expectation_and_converges():
    """5-4-3 DBNs, all 32 visible states weighted by their exact p(v). Short, weights N(0, 3^2)
    (10 temperatures, K = 2 upward samples, R = 1 reverse chain; 200 repetitions, the empirical
    standard error): E[estimate] < E_p log p - 3 se. Long, weights N(0, 1) so that the upward
    proposal is good (500 linear temperatures, K = 300): within 3 delta-method se + 0.05 nats
    of E_p log p (measured with K = 500, 1000 temperatures: -3.013 +- 0.088 against -2.976;
    with weights N(0, 3^2) importance sampling from the upward pass is itself 0.8 nats low even
    with the exact log Z, which is why the long check uses the mild model). Seeded."""
    dbn = random_dbn((5, 4, 3), 3.0)
    v = binary_states(5, dtype=torch.float64)
    exact = dbn.log_prob_exact(v)
    p = exact.exp()
    assert abs(p.sum().item() - 1) < 1e-10
    truth = (p * exact).sum().item()
    torch.manual_seed(0)
    reps = 200
    short, _ = dbn_raise_log_prob(dbn, v.repeat(reps, 1), 10, num_samples=2)
    mean, se = empirical((short.view(reps, -1) * p).sum(1))
    assert mean < truth - 3 * se
    dbn = random_dbn((5, 4, 3), 1.0)
    exact = dbn.log_prob_exact(v)
    p = exact.exp()
    truth = (p * exact).sum().item()
    long, long_se = dbn_raise_log_prob(dbn, v, torch.linspace(0, 1, 501, dtype=torch.float64),
                                       num_samples=300)
    assert abs((p * long).sum().item() - truth) < 3 * (p.pow(2) * long_se.pow(2)).sum().sqrt().item() + 0.05


def test_dbn_raise_limits_and_bad_input():
    """One RBM: it is raise_log_prob (same seed, same draws). A top RBM equal to its base model
    (zero weights, base = its visible biases): RAISE scores the top marginal exactly, so the
    estimate is importance sampling with the exact log Z, draw for draw, for every ladder."""
    v = binary_states(5, dtype=torch.float64)
    single = random_dbn((5, 4), 1.0)
    torch.manual_seed(0)
    a, a_se = dbn_raise_log_prob(single, v, 7, num_runs=3)
    torch.manual_seed(0)
    b, b_se = raise_log_prob(single.top, v, 7, num_runs=3)
    assert torch.equal(a, b) and torch.equal(a_se, b_se)

    dbn = random_dbn((5, 4, 3), 2.0)
    with torch.no_grad():
        dbn.top.weight.zero_()
    log_z = dbn.top.log_partition_exact()
    for betas in ([0.0, 1.0], 6):
        torch.manual_seed(1)
        est, se = dbn_raise_log_prob(dbn, v, betas, num_samples=50, batch_size=8)
        torch.manual_seed(1)
        ref = torch.cat([dbn.importance_log_prob(v[s:s + 8], log_z, num_samples=50, chunk_size=50)
                         for s in range(0, 32, 8)])
        assert est.shape == se.shape == (32,) and est.dtype == torch.float64
        # same upward draws; the reverse chains add draws after them but no weight
        assert torch.allclose(est[:8], ref[:8].double(), atol=1e-8)
        assert torch.all(se > 0)

    with pytest.raises(TypeError, match="dbn must be a pyro_deepgen.energy.DBN"):
        dbn_raise_log_prob(random_rbm(5, 4, 1.0), v)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
        dbn_raise_log_prob(dbn, v, 5, num_samples=1)
    with pytest.raises(ValueError, match="num_runs must be an integer >= 1"):
        dbn_raise_log_prob(dbn, v, 5, num_runs=0)
    with pytest.raises(ValueError, match=r"v must be a tensor of shape \(N, 5\)"):
        dbn_raise_log_prob(dbn, v[:, :4], 5)
    with pytest.raises(ValueError, match=r"base_rate must have shape \(4,\)"):
        dbn_raise_log_prob(dbn, v, 5, base_rate=torch.zeros(5, dtype=torch.float64))
