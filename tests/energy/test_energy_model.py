"""The EnergyModel contract on every model of the family (RBM, DBN, DBM), checked against exact
enumeration: log Z is the log-sum of exp(-E) over all full states, the Gibbs chains' visible
marginal is the enumerated one, and BlockGibbs runs every model under pyro.infer.MCMC with
several chains and arviz diagnostics."""
import arviz as az
import pytest
import torch
import torch.multiprocessing as mp
from pyro.infer import MCMC
from scipy import stats

from pyro_deepgen.energy import (
    DBM,
    DBN,
    RBM,
    BlockGibbs,
    DoubledRBM,
    EnergyModel,
    ais_log_partition,
    fantasy_particles,
)
from pyro_deepgen.energy.rbm import binary_states
from pyro_deepgen.infer import default_ais_schedule


def randomize(model, scale=1.0, seed=0):
    """Weights and biases drawn N(0, scale^2) (seeded): far from the factorial start."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return model


MODELS = {
    "rbm": lambda: randomize(RBM(4, 3)),
    "dbn": lambda: randomize(DBN((4, 3, 2)), seed=1),
    "dbn3": lambda: randomize(DBN((3, 2, 2, 2)), seed=2),
    "dbm": lambda: randomize(DBM(4, 3, 2), seed=3),
}


def all_states(model):
    """Every binary full state, as layer tensors ``(C, size)``, and the visible index of each."""
    sizes = model.layer_sizes
    states = binary_states(sum(sizes), dtype=torch.float64)
    layers = tuple(states.split(sizes, dim=-1))
    weights = 2 ** torch.arange(sizes[0] - 1, -1, -1)
    return layers, (layers[0].long() * weights).sum(-1)


def exact_visible_marginal(model):
    """p(v) over the 2**V visible states, by enumerating the full joint exp(-E) / Z."""
    layers, index = all_states(model)
    with torch.no_grad():
        p = torch.softmax(-model.energy(*layers), 0)
    return torch.zeros(2 ** model.layer_sizes[0], dtype=torch.float64).index_add_(0, index, p)


def chi_square_pvalue(counts, probs, min_expected=5.0):
    """Pearson's test; cells with expected count < min_expected are pooled into one."""
    expected = probs * counts.sum()
    big = expected >= min_expected
    obs, exp = counts[big], expected[big]
    if not big.all():
        obs = torch.cat([obs, counts[~big].sum(0, keepdim=True)])
        exp = torch.cat([exp, expected[~big].sum(0, keepdim=True)])
    return stats.chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue


@pytest.mark.parametrize("name", sorted(MODELS))
def test_log_partition_exact_sums_exp_minus_energy_over_all_states(name):
    """The contract's energy and exact log Z agree: log Z = logsumexp(-E) over every full state
    (for a DBN, Z is the top RBM's since the directed layers are normalized), to 1e-9."""
    model = MODELS[name]().double()
    layers, _ = all_states(model)
    with torch.no_grad():
        assert torch.allclose(torch.logsumexp(-model.energy(*layers), 0),
                              model.log_partition_exact(), atol=1e-9)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_state_convention(name):
    """init_state / gibbs_step keep one tuple of layer tensors with a common batch shape."""
    model = MODELS[name]()
    assert isinstance(model, EnergyModel)
    assert len(model.layer_names) == len(model.layer_sizes) and model.layer_names[0] == "v"
    state = model.init_state(None, (5, 2))
    assert tuple(t.shape for t in state) == tuple((5, 2, s) for s in model.layer_sizes)
    state = model.gibbs_step(state)
    assert tuple(t.shape for t in state) == tuple((5, 2, s) for s in model.layer_sizes)
    assert model.energy(*state).shape == (5, 2)
    v = torch.bernoulli(torch.full((3, model.layer_sizes[0]), 0.5))
    started = model.init_state(v)
    assert torch.equal(started[0], v) and len(started) == len(model.layer_sizes)
    assert set(torch.cat([t.flatten() for t in state]).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", ["dbn", "dbn3", "dbm"])
def test_chain_visible_marginal_matches_enumeration(name):
    """20000 independent BlockGibbs chains (one vectorized kernel call per sweep) from random
    starts, 40 sweeps each; the final visible states' histogram over the 2**V states against
    the exact marginal by enumeration. Pearson's test at p > 1e-3 (a correct kernel fails with
    probability 1e-3; seeded, so the outcome is fixed), and the same counts must be rejected
    (p < 1e-6) against the model with its visible biases shifted by 0.5 (power check)."""
    torch.manual_seed(0)
    model = MODELS[name]()
    kernel = BlockGibbs(model)
    state = kernel._sites(model.init_state(None, (20000,)))
    for _ in range(40):
        state = kernel.sample(state)
    weights = 2 ** torch.arange(model.layer_sizes[0] - 1, -1, -1)
    counts = torch.bincount((state["v"].long() * weights).sum(-1),
                            minlength=2 ** model.layer_sizes[0]).double()
    assert chi_square_pvalue(counts, exact_visible_marginal(model.double())) > 1e-3
    bias = model.rbms[0].visible_bias if name.startswith("dbn") else model.visible_bias
    with torch.no_grad():
        bias.add_(0.5)
    assert chi_square_pvalue(counts, exact_visible_marginal(model)) < 1e-6


@pytest.mark.filterwarnings("ignore:num_chains=2 is more than available_cpu:UserWarning")
@pytest.mark.parametrize("name, runner", [("dbn", "sequential"), ("dbm", "sequential"),
                                          ("dbm", "processes")])
def test_mcmc_with_several_chains_and_arviz(name, runner, monkeypatch, capsys):
    """MCMC(BlockGibbs(model), num_chains=2) for a DBN and a DBM (in both of MCMC's chain
    runners), 2 chains x 400 draws after 50 warm-up sweeps: per-layer sites and statistics,
    arviz R-hat < 1.1 and bulk ESS > 50 on every statistic, and the pooled mean of v within
    0.15 of the exact E[v] (about 4 standard errors at ESS >= 100)."""
    torch.manual_seed(0)
    model = MODELS[name]()
    monkeypatch.setattr(mp, "cpu_count", lambda: 1 if runner == "sequential" else 8)
    kernel = BlockGibbs(model)
    mcmc = MCMC(kernel, num_samples=400, warmup_steps=50, num_chains=2, disable_progbar=True)
    mcmc.run()
    samples = mcmc.get_samples(group_by_chain=True)
    for layer, size in zip(model.layer_names, model.layer_sizes):
        assert samples[layer].shape == (2, 400, size)
    assert "free_energy" not in kernel.statistics and "mean_h2" in kernel.statistics
    assert samples["energy"].shape == (2, 400)
    assert not torch.equal(samples["v"][0], samples["v"][1])
    exact_mean_v = exact_visible_marginal(model.double()) @ binary_states(4, dtype=torch.float64)
    assert (samples["v"].double().mean((0, 1)) - exact_mean_v).abs().max() < 0.15
    mcmc.summary()
    assert "r_hat" in capsys.readouterr().out
    idata = az.from_pyro(mcmc)
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 400
    summary = az.summary(idata, var_names=list(kernel.statistics))
    assert list(summary.index) == list(kernel.statistics)
    assert (summary["r_hat"] < 1.1).all() and (summary["ess_bulk"] > 50).all()


def test_kernel_initial_params_and_particles_for_a_dbm(monkeypatch):
    """A given full start survives setup(); num_particles vectorizes chains in each Pyro chain."""
    model = MODELS["dbm"]()
    kernel = BlockGibbs(model, num_particles=7)
    kernel.setup(0)
    assert kernel.initial_params["h2"].shape == (7, 2)
    start = {"v": torch.ones(4), "h1": torch.zeros(3), "h2": torch.ones(2)}
    kernel.initial_params = start
    kernel.setup(0)
    assert all(torch.equal(kernel.initial_params[k], start[k]) for k in start)
    monkeypatch.setattr(mp, "cpu_count", lambda: 1)
    with pytest.warns(UserWarning, match="drawn sequentially"):
        mcmc = MCMC(BlockGibbs(model, num_particles=7), num_samples=3, warmup_steps=1,
                    num_chains=2, disable_progbar=True)
    mcmc.run()
    assert mcmc.get_samples(group_by_chain=True)["h1"].shape == (2, 3, 7, 3)


def test_rbm_gibbs_step_takes_a_tensor_or_a_state():
    """The RBM's old call form (a tensor v) and the contract's (a state (v, h)) draw the same
    sweep from the same seed."""
    rbm = MODELS["rbm"]()
    v = torch.bernoulli(torch.full((6, 4), 0.5))
    torch.manual_seed(3)
    v_tensor = rbm.gibbs_step(v)
    torch.manual_seed(3)
    v_state, h = rbm.gibbs_step((v, None))
    assert torch.equal(v_tensor, v_state) and h.shape == (6, 3)


@pytest.mark.parametrize("name", ["dbn", "dbm"])
def test_ais_on_every_model(name):
    """ais_log_partition / log_partition_ais on the deep models: within 3 standard errors +
    0.05 of the exact log Z (500 temperatures, 100 runs, seeded)."""
    torch.manual_seed(0)
    model = MODELS[name]().double()
    log_z, se = ais_log_partition(model, betas=default_ais_schedule(500), num_runs=100)
    assert abs(log_z - model.log_partition_exact()) < 3 * se + 0.05


def test_plain_energy_is_declared():
    """The fast paths' switch is a declared class attribute, not a method-identity check."""
    assert RBM.plain_energy and RBM.has_plain_energy()
    assert not DoubledRBM.plain_energy and not DoubledRBM(3, 2).has_plain_energy()
    assert RBM.has_free_energy and not DBM.has_free_energy and not DBN.has_free_energy


def test_fantasy_particles_of_deep_models():
    assert fantasy_particles(MODELS["dbm"](), 3, num_steps=2).shape == (3, 2, 2)
    assert fantasy_particles(MODELS["dbn"](), 3, num_steps=2, image_shape=(4,)).shape == (3, 4)


def test_bad_arguments():
    with pytest.raises(TypeError, match="EnergyModel"):
        BlockGibbs(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"init must have shape \(\.\.\., 4\)"):
        BlockGibbs(MODELS["dbm"](), init=torch.zeros(3))
    with pytest.raises(ValueError, match="a DBN state holds 3 layers"):
        MODELS["dbn"]().energy(torch.zeros(4), torch.zeros(3))
    with pytest.raises(NotImplementedError, match="free energy"):
        MODELS["dbm"]().free_energy(torch.zeros(4))
