"""BlockGibbs: exactness by a chi-square goodness-of-fit test against the enumerated joint, and the
pyro.infer.MCMC integration (num_chains > 1 in both of MCMC's chain runners, summary, arviz)."""
import arviz as az
import pytest
import torch
import torch.multiprocessing as mp
from pyro.infer import MCMC
from scipy import stats

from pyro_deepgen.energy import BlockGibbs, fantasy_particles
from pyro_deepgen.energy import RBM
from pyro_deepgen.energy.rbm import binary_states


def random_rbm(num_visible=6, num_hidden=4, scale=0.7, device="cpu"):
    rbm = RBM(num_visible, num_hidden, init_scale=scale).to(device)
    with torch.no_grad():
        rbm.visible_bias.normal_(0, 0.5)
        rbm.hidden_bias.normal_(0, 0.5)
    return rbm


def exact_joint(rbm):
    """p(v, h) over the 2**(V+H) states, indexed by the bits of (v, h) read as one integer."""
    vs = binary_states(rbm.num_visible, dtype=torch.float64)
    hs = binary_states(rbm.num_hidden, dtype=torch.float64)
    with torch.no_grad():
        log_joint = -rbm.double().energy(vs.unsqueeze(1), hs).reshape(-1)
    rbm.float()
    return torch.softmax(log_joint, 0)


def state_index(v, h):
    bits = torch.cat([v, h], -1).long()
    weights = 2 ** torch.arange(bits.shape[-1] - 1, -1, -1)
    return (bits * weights).sum(-1)


def chi_square_pvalue(counts, probs, min_expected=5.0):
    """Pearson's test; cells with expected count < min_expected are pooled into one."""
    expected = probs * counts.sum()
    big = expected >= min_expected
    obs = torch.cat([counts[big], counts[~big].sum(0, keepdim=True)])
    exp = torch.cat([expected[big], expected[~big].sum(0, keepdim=True)])
    return stats.chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue


def test_chi_square_against_exact_joint():
    """20000 independent chains (one vectorized kernel call per sweep) from random starts, 30
    sweeps each; the final (v, h) of every chain is compared with the exact joint over all 1024
    states. Threshold p > 1e-3: a correct kernel fails with probability 1e-3 (seeded, so the
    outcome is fixed). The same samples must be rejected against a perturbed RBM (power check)."""
    rbm = random_rbm()
    kernel = BlockGibbs(rbm)
    v = torch.bernoulli(torch.full((20000, 6), 0.5))
    state = {"v": v}
    for _ in range(30):
        state = kernel.sample(state)
    counts = torch.bincount(state_index(state["v"], state["h"]), minlength=1024).double()
    assert chi_square_pvalue(counts, exact_joint(rbm)) > 1e-3
    # statistics reported for the chains are the energies of these very states
    assert torch.allclose(state["energy"], rbm.energy(state["v"], state["h"]))
    assert torch.allclose(state["free_energy"], rbm.free_energy(state["v"]))
    assert torch.allclose(state["mean_hidden"], state["h"].mean(-1))
    with torch.no_grad():
        rbm.hidden_bias.add_(0.3)
    assert chi_square_pvalue(counts, exact_joint(rbm)) < 1e-6


def run_mcmc(rbm, num_chains, cpu_count, monkeypatch, **kwargs):
    # MCMC picks its chain runner from the CPU count: processes when num_chains <= cpus - 1,
    # else sequential chains in this process (with a UserWarning). Pin it to test both.
    monkeypatch.setattr(mp, "cpu_count", lambda: cpu_count)
    mcmc = MCMC(BlockGibbs(rbm), num_samples=300, warmup_steps=50, num_chains=num_chains,
                disable_progbar=True, **kwargs)
    mcmc.run()
    return mcmc


@pytest.mark.filterwarnings("ignore:num_chains=3 is more than available_cpu:UserWarning")
@pytest.mark.parametrize("runner", ["sequential", "processes"])
def test_mcmc_with_several_chains_and_arviz(runner, monkeypatch, capsys):
    """3 chains x 300 draws; the chain mean of v is compared with the exact E[v] to 0.15
    (about 5 standard errors at the reported ESS)."""
    rbm = random_rbm()
    mcmc = run_mcmc(rbm, 3, 1 if runner == "sequential" else 8, monkeypatch)
    samples = mcmc.get_samples(group_by_chain=True)
    assert samples["v"].shape == (3, 300, 6) and samples["h"].shape == (3, 300, 4)
    assert samples["free_energy"].shape == (3, 300)
    # the chains differ (own initial states and seeds)
    assert not torch.equal(samples["v"][0], samples["v"][1])
    probs = exact_joint(rbm).reshape(64, 16).sum(1).float()
    exact_mean_v = probs @ binary_states(6)
    assert (samples["v"].mean((0, 1)) - exact_mean_v).abs().max() < 0.15
    mcmc.summary()
    assert "r_hat" in capsys.readouterr().out
    idata = az.from_pyro(mcmc)
    assert idata.posterior.sizes["chain"] == 3 and idata.posterior.sizes["draw"] == 300
    summary = az.summary(idata, var_names=list(BlockGibbs.STATISTICS))
    assert list(summary.index) == list(BlockGibbs.STATISTICS)
    assert (summary["r_hat"] < 1.1).all() and (summary["ess_bulk"] > 50).all()


def test_initial_params_and_save_params(monkeypatch):
    rbm = random_rbm()
    init = {"v": torch.tensor([[1.0, 0, 1, 0, 1, 0], [0.0, 1, 0, 1, 0, 1]])}
    monkeypatch.setattr(mp, "cpu_count", lambda: 1)
    with pytest.warns(UserWarning, match="drawn sequentially"):
        mcmc = MCMC(BlockGibbs(rbm), num_samples=5, warmup_steps=0, num_chains=2,
                    initial_params=init, save_params=list(BlockGibbs.STATISTICS),
                    disable_progbar=True)
    mcmc.run()
    samples = mcmc.get_samples(group_by_chain=True)
    assert set(samples) == set(BlockGibbs.STATISTICS)
    assert samples["mean_visible"].shape == (2, 5)
    # a given start survives setup(); cleanup() makes the next chain draw its own
    kernel = BlockGibbs(rbm)
    kernel.initial_params = {"v": init["v"][0]}
    kernel.setup(0)
    assert torch.equal(kernel.initial_params["v"], init["v"][0])
    kernel.cleanup()
    kernel.setup(0)
    assert kernel.initial_params["v"].shape == (6,)
    start = BlockGibbs(rbm, init=init["v"][1])
    start.setup(0)
    assert torch.equal(start.initial_params["v"], init["v"][1])


def test_particles_vectorized_inside_each_mcmc_chain(monkeypatch):
    """num_particles=500 Gibbs chains per Pyro chain, 2 Pyro chains x 30 draws after 20 warm-up
    sweeps: the pooled mean of v matches the exact E[v] to 0.03 (about 5 standard errors for
    30000 draws with ESS >= 3000)."""
    rbm = random_rbm()
    monkeypatch.setattr(mp, "cpu_count", lambda: 1)
    with pytest.warns(UserWarning, match="drawn sequentially"):
        mcmc = MCMC(BlockGibbs(rbm, num_particles=500), num_samples=30, warmup_steps=20,
                    num_chains=2, disable_progbar=True)
    mcmc.run()
    samples = mcmc.get_samples(group_by_chain=True)
    assert samples["v"].shape == (2, 30, 500, 6) and samples["free_energy"].shape == (2, 30, 500)
    probs = exact_joint(rbm).reshape(64, 16).sum(1).float()
    exact_mean_v = probs @ binary_states(6)
    assert (samples["v"].mean((0, 1, 2)) - exact_mean_v).abs().max() < 0.03
    assert az.from_pyro(mcmc).posterior["free_energy"].shape == (2, 30, 500)


def test_fantasy_particles_are_images():
    rbm = RBM(16, 5)
    images = fantasy_particles(rbm, 7, num_steps=3)
    assert images.shape == (7, 4, 4) and ((images >= 0) & (images <= 1)).all()
    assert fantasy_particles(rbm, 2, num_steps=1, image_shape=(2, 8)).shape == (2, 2, 8)


def test_bad_arguments():
    rbm = RBM(6, 4)
    with pytest.raises(TypeError, match="RBM"):
        BlockGibbs(object())
    with pytest.raises(ValueError, match="num_sweeps"):
        BlockGibbs(rbm, num_sweeps=0)
    with pytest.raises(ValueError, match="key 'v'"):
        BlockGibbs(rbm).initial_params = {"x": torch.zeros(6)}
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 6\)"):
        BlockGibbs(rbm, init=torch.zeros(5))
    with pytest.raises(ValueError, match="num_particles"):
        BlockGibbs(rbm, num_particles=0)
    with pytest.raises(ValueError, match=r"init must have shape \(3, 6\)"):
        BlockGibbs(rbm, num_particles=3, init=torch.zeros(2, 6))
    with pytest.raises(ValueError, match="does not hold"):
        fantasy_particles(rbm, 2, num_steps=1, image_shape=(2, 2))
