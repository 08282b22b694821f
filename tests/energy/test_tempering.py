"""ParallelTempering: every replica samples its tempered distribution exactly (chi-square against
enumeration), the swap move satisfies detailed balance (exact, on enumerated pairs of states),
ladder adaptation evens out the swap rates, one temperature is block Gibbs draw for draw, and
PT crosses a barrier that block Gibbs cannot."""
import pytest
import torch
from pyro.infer import MCMC
from scipy import stats

from pyro_deepgen.energy import (
    DBM,
    DBN,
    RBM,
    BlockGibbs,
    ParallelTempering,
    geometric_ladder,
    replica_swap,
)
from pyro_deepgen.energy.rbm import binary_states
from pyro_deepgen.energy.tempering import base_rate_ladder


def randomize(model, scale=1.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return model.double()


def bimodal_rbm(num_visible=10, w=3.0):
    """One hidden unit that switches all visible units on (h = 1) or off (h = 0); the hidden bias
    -V w makes the two modes equally likely: p(h = 1) = 1/2 exactly. Block Gibbs started in the
    'off' mode leaves it only when at least half the visible units turn on together, about
    C(10, 5) sigmoid(-3)^5 = 6e-5 per sweep."""
    rbm = RBM(num_visible, 1).double()
    with torch.no_grad():
        rbm.weight.fill_(2 * w)
        rbm.visible_bias.fill_(-w)
        rbm.hidden_bias.fill_(-num_visible * w)
    return rbm


def all_states(model):
    sizes = model.layer_sizes
    layers = tuple(binary_states(sum(sizes), dtype=torch.float64).split(sizes, dim=-1))
    return layers


def state_index(layers):
    bits = torch.cat(layers, -1).long()
    return (bits * 2 ** torch.arange(bits.shape[-1] - 1, -1, -1)).sum(-1)


def tempered_joint(model, beta):
    """p_beta over every full state (indexed as state_index): exp(-beta E_t - (E - E_t))."""
    layers = all_states(model)
    with torch.no_grad():
        e, et = model.energy(*layers), model.tempering_energy(*layers)
        return torch.softmax(-beta * et - (e - et), 0)


def chi_square_pvalue(counts, probs, min_expected=5.0):
    expected = probs * counts.sum()
    big = expected >= min_expected
    obs, exp = counts[big], expected[big]
    if not big.all():
        obs = torch.cat([obs, counts[~big].sum(0, keepdim=True)])
        exp = torch.cat([exp, expected[~big].sum(0, keepdim=True)])
    return stats.chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue


MODELS = {
    "rbm": lambda: randomize(RBM(5, 3), scale=1.5),
    "dbm": lambda: randomize(DBM(4, 3, 2), scale=1.2, seed=3),
    "dbn": lambda: randomize(DBN((4, 3, 2)), scale=1.2, seed=1),
}


@pytest.mark.parametrize("name, swap_rounds", [(name, 1) for name in sorted(MODELS)] + [("rbm", 7)])
def test_every_replica_samples_its_tempered_joint_exactly(name, swap_rounds):
    """10000 vectorized chains, 4 replicas on the ladder (1, 0.6, 0.35, 0.2) (no adaptation),
    40 sweep-and-swap steps from one fixed start: the full state (all layers) of the beta = 1
    replica and of the hottest one, against the enumerated p_beta (p > 1e-3 each: a correct
    kernel fails with probability about 2e-3, seeded). The beta = 1 replica is the model's exact
    joint; the hot one checks the tempered conditionals (for the DBN only the top RBM is
    tempered). With 7 swap rounds per sweep (the energies move with the states) it stays exact."""
    torch.manual_seed(0)
    model = MODELS[name]()
    betas = [1.0, 0.6, 0.35, 0.2]
    kernel = ParallelTempering(model, betas=betas, swap_rounds=swap_rounds)
    start = torch.ones(10000, model.layer_sizes[0], dtype=torch.float64)
    params = {"v": start}
    for _ in range(40):
        params = kernel.sample(params)
    num_states = 2 ** sum(model.layer_sizes)
    for k in (0, 3):
        layers = tuple(x[k] for x in kernel.replicas)
        counts = torch.bincount(state_index(layers), minlength=num_states).double()
        assert chi_square_pvalue(counts, tempered_joint(model, betas[k])) > 1e-3, k
    # the returned sites are the beta = 1 replica
    assert torch.equal(params["v"], kernel.replicas[0][0])


def test_chi_square_has_power_against_a_wrong_temperature():
    """The same check rejects the hottest replica's draws of the RBM against p_1 (p < 1e-6)."""
    torch.manual_seed(0)
    model = MODELS["rbm"]()
    kernel = ParallelTempering(model, betas=[1.0, 0.6, 0.35, 0.2])
    params = {"v": torch.ones(10000, 5, dtype=torch.float64)}
    for _ in range(40):
        params = kernel.sample(params)
    counts = torch.bincount(state_index(tuple(x[3] for x in kernel.replicas)), minlength=2 ** 8).double()
    assert chi_square_pvalue(counts, tempered_joint(model, 1.0)) < 1e-6


def test_swap_move_satisfies_detailed_balance_on_enumerated_states():
    """Every ordered pair (a, b) of full states of a 2x2 RBM in replicas at betas (1, 0.4):
    pi(a, b) P(swap | a, b) = pi(b, a) P(swap | b, a) with pi = p_1 x p_0.4 from enumeration and
    P the acceptance probability replica_swap uses, to 1e-14 (float64). The empirical swap
    frequency over 4000 uniform draws per pair matches P within 5 binomial standard deviations,
    and swapped pairs exchange their states."""
    model = randomize(RBM(2, 2), scale=1.5, seed=4)
    betas = torch.tensor([1.0, 0.4], dtype=torch.float64)
    layers = all_states(model)
    n = layers[0].shape[0]
    ia, ib = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    ia, ib = ia.reshape(-1), ib.reshape(-1)
    replicas = tuple(torch.stack([x[ia], x[ib]]) for x in layers)  # (2, n*n, size)
    with torch.no_grad():
        energies = model.energy(*replicas)
    _, accept_prob, _ = replica_swap(replicas, energies, betas, 0, uniform=torch.zeros(1, n * n))
    prob = accept_prob[0].reshape(n, n)
    pi = torch.outer(tempered_joint(model, 1.0), tempered_joint(model, 0.4))
    assert torch.allclose(pi * prob, (pi * prob).t(), atol=1e-14, rtol=0)
    assert (prob < 1).any() and (prob == 1).any()  # both branches of the min occur
    # the draws follow P, and a swap exchanges the states
    torch.manual_seed(1)
    reps = 4000
    big = tuple(x.repeat(1, reps, 1) for x in replicas)
    new, _, swapped = replica_swap(big, energies.repeat(1, reps), betas, 0)
    freq = swapped[0].reshape(reps, n * n).double().mean(0)
    p = accept_prob[0]
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / reps).sqrt() + 1e-12).all()
    s = swapped[0]
    for x, y in zip(big, new):
        assert torch.equal(y[0][s], x[1][s]) and torch.equal(y[1][s], x[0][s])
        assert torch.equal(y[0][~s], x[0][~s]) and torch.equal(y[1][~s], x[1][~s])


def test_odd_round_swaps_only_the_odd_pairs():
    """With 4 replicas and first=1 only the pair (1, 2) may swap (uniform 0 forces it where the
    probability is positive); replicas 0 and 3 keep their states."""
    x = torch.arange(4.0).reshape(4, 1, 1).expand(4, 3, 2).clone()
    energies = torch.zeros(4, 3)
    (new,), prob, swapped = replica_swap((x,), energies, torch.tensor([1.0, 0.5, 0.3, 0.1]), 1,
                                         uniform=torch.zeros(1, 3))
    assert prob.shape == (3, 3) and swapped.shape == (1, 3) and swapped.all()
    assert torch.equal(new[:, 0, 0], torch.tensor([0.0, 2.0, 1.0, 3.0]))


def test_ladder_adaptation_evens_out_swap_rates():
    """On the bimodal RBM a geometric ladder of 6 temperatures from 1 to 0.05 has swap rates
    0.42 ... 0.89 (spread > 0.3); after 500 adapted warmup steps (200 chains) the frozen
    ladder's rates over the next 500 steps differ by less than 0.08, the endpoints stay at 1 and
    0.05, and the ladder is frozen after warmup."""
    rbm = bimodal_rbm()
    spreads = {}
    for adapt in (False, True):
        torch.manual_seed(1)
        kernel = ParallelTempering(rbm, num_temperatures=6, min_beta=0.05, num_particles=200,
                                   adapt=adapt)
        kernel.setup(500)
        params = kernel.initial_params
        for t in range(1000):
            params = kernel.sample(params)
            if t == 500:
                frozen = kernel.betas.clone()
        rates = kernel.swap_acceptance
        spreads[adapt] = (rates.max() - rates.min()).item()
        assert kernel.betas[0] == 1 and abs(kernel.betas[-1].item() - 0.05) < 1e-12
        assert (kernel.betas[1:] < kernel.betas[:-1]).all()
        assert torch.equal(frozen, kernel.betas)
        assert torch.allclose(rates, kernel.expected_swap_acceptance, atol=0.03)
    assert spreads[False] > 0.3 and spreads[True] < 0.08, spreads


def test_one_temperature_is_block_gibbs_draw_for_draw():
    """num_temperatures=1 (K = 0): same seed, same states as BlockGibbs for 20 steps."""
    rbm = randomize(RBM(6, 4))
    start = torch.bernoulli(torch.full((50, 6), 0.5, dtype=torch.float64))
    runs = []
    for kernel in (BlockGibbs(rbm), ParallelTempering(rbm, num_temperatures=1)):
        torch.manual_seed(3)
        params, states = {"v": start}, []
        for _ in range(20):
            params = kernel.sample(params)
            states.append((params["v"], params["h"]))
        runs.append(states)
    for (v0, h0), (v1, h1) in zip(*runs):
        assert torch.equal(v0, v1) and torch.equal(h0, h1)


def test_crosses_the_barrier_that_block_gibbs_cannot():
    """200 chains of the bimodal RBM all start in the 'off' mode (v = 0). After 300 steps block
    Gibbs has left it in fewer than 5% of the chains (expected: about 2%), while the beta = 1
    replica of PT (6 temperatures to 0.05) has p(h = 1) within 0.15 of the exact 1/2 (binomial
    sd 0.035)."""
    rbm = bimodal_rbm()
    start = torch.zeros(200, 10, dtype=torch.float64)
    torch.manual_seed(0)
    kernels = {"gibbs": BlockGibbs(rbm),
               "pt": ParallelTempering(rbm, num_temperatures=6, min_beta=0.05)}
    on = {}
    for name, kernel in kernels.items():
        params = {"v": start}
        for _ in range(300):
            params = kernel.sample(params)
        on[name] = params["h"].mean().item()
    assert on["gibbs"] < 0.05 and abs(on["pt"] - 0.5) < 0.15, on


def test_runs_under_pyro_mcmc_with_diagnostics():
    """pyro.infer.MCMC drives the kernel: warmup adapts the ladder, the samples are the beta = 1
    sites, and mcmc.diagnostics() carries the swap rates and the ladder. The chain's time
    average of h (one chain, 1000 draws after 300 warmup) is within 0.2 of the exact 1/2, which
    block Gibbs misses completely (it never switches modes)."""
    torch.manual_seed(0)
    rbm = bimodal_rbm()
    kernel = ParallelTempering(rbm, num_temperatures=6, min_beta=0.05)
    mcmc = MCMC(kernel, num_samples=1000, warmup_steps=300, num_chains=1, disable_progbar=True)
    mcmc.run()
    samples = mcmc.get_samples()
    assert samples["v"].shape == (1000, 10) and samples["energy"].shape == (1000,)
    assert abs(samples["h"].mean().item() - 0.5) < 0.2
    diag = mcmc.diagnostics()
    rates = torch.tensor(diag["swap_acceptance"]["chain 0"])
    assert rates.shape == (5,) and (rates > 0.3).all()
    assert len(diag["betas"]["chain 0"]) == 6


def base_rate_joint(model, base, beta):
    """p_beta(v, h) over every full state of an RBM on the base-rate path:
    exp(-beta E(v, h) + (1 - beta) b_A^T v), normalized."""
    v, h = all_states(model)
    with torch.no_grad():
        return torch.softmax(-beta * model.energy(v, h) + (1 - beta) * v @ base, 0)


def test_base_rate_path_replicas_sample_their_joints_exactly():
    """Base-rate path (ladder 1, 0.5, 0.2, 0): 10000 vectorized chains, 40 sweep-and-swap steps
    from one fixed start. The full state of every replica against the enumerated
    p_beta(v, h) ∝ exp(-beta E + (1 - beta) b_A^T v) (p > 1e-3 each, seeded); the beta = 0
    replica is the base-rate model, v independent Bernoulli(sigmoid(b_A)) and h uniform. The same
    check rejects the beta = 0 replica against the plain tempered joint at beta -> 0 (uniform)
    and the beta = 1 replica of a kernel whose swaps use the model's energy without the base
    term (p < 1e-6): the base term in the swap is what keeps it exact."""
    torch.manual_seed(0)
    model = MODELS["rbm"]()
    base = torch.tensor([2.0, -1.5, 0.5, -2.5, 1.0], dtype=torch.float64)
    betas = [1.0, 0.5, 0.2, 0.0]
    kernel = ParallelTempering(model, betas=betas, base_rate=base)
    params = {"v": torch.ones(10000, 5, dtype=torch.float64)}
    for _ in range(40):
        params = kernel.sample(params)
    for k, beta in enumerate(betas):
        counts = torch.bincount(state_index(tuple(x[k] for x in kernel.replicas)), minlength=2 ** 8).double()
        assert chi_square_pvalue(counts, base_rate_joint(model, base, beta)) > 1e-3, k
        if k == 3:
            assert chi_square_pvalue(counts, torch.full((2 ** 8,), 2.0 ** -8, dtype=torch.float64)) < 1e-6
    # swaps on the plain tempering energy with base-rate sweeps: the beta = 1 replica is wrong
    torch.manual_seed(0)
    broken = ParallelTempering(model, betas=betas, base_rate=base)
    broken.path_energy = model.tempering_energy
    params = {"v": torch.ones(10000, 5, dtype=torch.float64)}
    for _ in range(40):
        params = broken.sample(params)
    counts = torch.bincount(state_index(tuple(x[0] for x in broken.replicas)), minlength=2 ** 8).double()
    assert chi_square_pvalue(counts, base_rate_joint(model, base, 1.0)) < 1e-6


def test_base_rate_ladder():
    assert torch.allclose(base_rate_ladder(4, 0.25), torch.tensor([1.0, 0.5, 0.25, 0.0], dtype=torch.float64))
    assert torch.equal(base_rate_ladder(2, 0.5), torch.tensor([1.0, 0.0], dtype=torch.float64))
    kernel = ParallelTempering(RBM(3, 2), num_temperatures=4, min_beta=0.25, base_rate=torch.zeros(3))
    assert torch.allclose(kernel.betas, base_rate_ladder(4, 0.25))


def test_geometric_ladder():
    assert torch.allclose(geometric_ladder(3, 0.25), torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))
    assert torch.equal(geometric_ladder(1, 0.5), torch.ones(1, dtype=torch.float64))


@pytest.mark.parametrize("kwargs, match", [
    (dict(betas=[0.9, 0.5]), "decrease strictly from 1"),
    (dict(betas=[1.0, 0.5, 0.6]), "decrease strictly from 1"),
    (dict(betas=[1.0, 0.0]), "decrease strictly from 1"),
    (dict(num_temperatures=0), "num_temperatures must be a positive integer"),
    (dict(min_beta=1.5), "min_beta must be in"),
    (dict(adapt_rate=-1.0), "adapt_rate must be"),
    (dict(adapt_lag=0), "adapt_lag must be"),
    (dict(num_sweeps=0), "num_sweeps must be"),
    (dict(swap_rounds=0), "swap_rounds must be a positive integer"),
    (dict(base_rate=torch.zeros(4)), "base_rate must be finite visible log-odds of shape"),
    (dict(base_rate=torch.zeros(3), num_temperatures=1), "num_temperatures must be an integer >= 2"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ParallelTempering(RBM(3, 2), **kwargs)


def test_base_rate_needs_a_bernoulli_rbm():
    with pytest.raises(ValueError, match="base_rate needs an RBM with Bernoulli visible units"):
        ParallelTempering(DBM(3, 2, 2), base_rate=torch.zeros(3))
    with pytest.raises(ValueError, match="base_rate needs an RBM with Bernoulli visible units"):
        ParallelTempering(RBM(3, 2, visible="gaussian"), base_rate=torch.zeros(3))


def test_run_chains_vectorized_mixes_where_block_gibbs_cannot():
    """run_chains on the bimodal RBM (p(h = 1) = 1/2 exactly): 8 vectorized PT chains (6
    temperatures to 0.05, one ladder adapted in 300 warm-up steps) give draws shaped (chains,
    draws), a pooled p(h = 1) within 0.1 of 1/2 and R-hat below 1.1; 8 block-Gibbs chains from
    random starts stay in their modes (R-hat above 1.5, or every chain in one mode). Seeded."""
    from pyro_deepgen.diagnostics import rhat
    from pyro_deepgen.energy import run_chains

    rbm = bimodal_rbm()
    torch.manual_seed(0)
    pt = ParallelTempering(rbm, num_temperatures=6, min_beta=0.05, num_particles=8)
    draws = run_chains(pt, 2000, warmup_steps=300)
    assert set(draws) == {"energy", "free_energy", "mean_hidden", "mean_visible"}
    assert draws["mean_hidden"].shape == (8, 2000) and draws["energy"].device.type == "cpu"
    assert abs(draws["mean_hidden"].mean().item() - 0.5) < 0.1
    assert rhat({"mean_hidden": draws["mean_hidden"]})["mean_hidden"].item() < 1.1
    assert pt.diagnostics()["betas"][0] == 1.0 and len(pt.swap_acceptance) == 5
    gibbs = run_chains(BlockGibbs(rbm, num_particles=8), 2000, warmup_steps=300)["mean_hidden"]
    per_chain = gibbs.mean(1)
    stuck = bool(((per_chain < 0.05) | (per_chain > 0.95)).all())
    assert stuck and (rhat({"h": gibbs})["h"].item() > 1.5 or per_chain.std() == 0)


def test_run_chains_is_the_kernel_loop_and_checks_its_input():
    """The same seed gives the draws of kernel.setup + kernel.sample by hand; the sites and the
    kernel are checked."""
    from pyro_deepgen.energy import run_chains

    rbm = bimodal_rbm()
    torch.manual_seed(3)
    draws = run_chains(BlockGibbs(rbm, num_particles=3), 4, warmup_steps=2, sites=["energy", "v"])
    assert draws["v"].shape == (3, 4, 10) and draws["energy"].shape == (3, 4)
    torch.manual_seed(3)
    sparse = run_chains(BlockGibbs(rbm, num_particles=3), 4, warmup_steps=2, sites=["energy"],
                        every={"v": 2})
    assert sparse["v"].shape == (3, 2, 10) and torch.equal(sparse["v"], draws["v"][:, 1::2])
    torch.manual_seed(3)
    kernel = BlockGibbs(rbm, num_particles=3)
    kernel.setup(2)
    params, kept = kernel.initial_params, []
    for t in range(6):
        params = kernel.sample(params)
        kept.append(params["energy"])
    assert torch.equal(draws["energy"], torch.stack(kept[2:], 1))
    with pytest.raises(ValueError, match="num_particles=<number of chains>"):
        run_chains(BlockGibbs(rbm), 4)
    with pytest.raises(ValueError, match=r"sites \['nope'\] are not sites of this kernel"):
        run_chains(BlockGibbs(rbm, num_particles=2), 4, sites=["energy", "nope"])
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        run_chains(BlockGibbs(rbm, num_particles=2), 0)
    with pytest.raises(ValueError, match="every must map sites of this kernel"):
        run_chains(BlockGibbs(rbm, num_particles=2), 3, every={"v": 0})
    with pytest.raises(ValueError, match=r"to num_samples \(3\)"):
        run_chains(BlockGibbs(rbm, num_particles=2), 3, every={"v": 4})
    with pytest.raises(ValueError, match="warmup_steps must be an integer >= 0"):
        run_chains(BlockGibbs(rbm, num_particles=2), 3, warmup_steps=-1)


def test_fused_sweep_energy_is_the_energy_of_the_new_state():
    """RBM.tempered_sweep_with_energy: the same draws as gibbs_step with beta (same seed), and the
    energy it returns from the sweep's visible input equals rbm.energy of the new state (float64,
    to 1e-10), for replicas x chains at once; models without the plain energy are refused."""
    from pyro_deepgen.energy import DoubledRBM

    torch.manual_seed(0)
    rbm = RBM(7, 5, init_scale=1.0).double()
    with torch.no_grad():
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
    v = torch.bernoulli(torch.full((4, 3, 7), 0.5, dtype=torch.float64))
    beta = torch.tensor([1.0, 0.8, 0.5, 0.2], dtype=torch.float64).reshape(-1, 1, 1)
    state = (v, torch.zeros(4, 3, 5, dtype=torch.float64))
    torch.manual_seed(1)
    (v1, h1), energy = rbm.tempered_sweep_with_energy(state, beta)
    torch.manual_seed(1)
    v2, h2 = rbm.gibbs_step(state, beta)
    assert torch.equal(v1, v2) and torch.equal(h1, h2) and energy.shape == (4, 3)
    assert torch.allclose(energy, rbm.energy(v1, h1), atol=1e-10)
    with pytest.raises(ValueError, match="plain RBM energy with Bernoulli visible units"):
        DoubledRBM(7, 5, up=2.0).tempered_sweep_with_energy(state, beta)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_run_chains_on_cuda():
    """A CUDA model's vectorized PT chains run on the GPU and return their draws on the CPU."""
    from pyro_deepgen.energy import run_chains

    rbm = bimodal_rbm().cuda()
    draws = run_chains(ParallelTempering(rbm, num_temperatures=4, min_beta=0.1, num_particles=3), 20,
                       warmup_steps=5, every={"h": 10})
    assert draws["energy"].shape == (3, 20) and draws["h"].shape == (3, 2, 1)
    assert draws["energy"].device.type == "cpu"
