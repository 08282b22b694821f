"""AIS: the generic core on a problem with a known ratio, the error bar, the paper's schedule, and
the RBM estimator against exact enumeration."""
import math

import pytest
import torch

from pyro_deepgen.energy import RBM, ais_log_partition, base_rate_logits, mean_log_likelihood
from pyro_deepgen.infer import (
    annealed_importance_sampling,
    default_ais_schedule,
    geometric_path,
    log_mean_exp_with_stderr,
)


def random_rbm(num_visible, num_hidden, visible="bernoulli", scale=1.0, device="cpu"):
    rbm = RBM(num_visible, num_hidden, visible=visible, init_scale=scale).to(device, torch.float64)
    with torch.no_grad():
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
    return rbm


def test_paper_schedule():
    betas = default_ais_schedule()
    assert len(betas) == 14501  # 14,500 intermediate distributions
    assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()
    steps = betas.diff()
    assert torch.allclose(steps[:500], torch.full((500,), 1e-3, dtype=torch.float64))
    assert torch.allclose(steps[500:4500], torch.full((4000,), 1e-4, dtype=torch.float64))
    assert torch.allclose(steps[4500:], torch.full((10000,), 1e-5, dtype=torch.float64))
    short = default_ais_schedule(1000)
    assert len(short) == 1001 and short[0] == 0 and short[-1] == 1 and (short.diff() > 0).all()
    assert abs((short < 0.5).sum().item() - 1000 * 500 / 14500) <= 1


def test_log_mean_exp_with_stderr_matches_direct_formula():
    log_w = torch.randn(50, dtype=torch.float64) * 2
    value, se = log_mean_exp_with_stderr(log_w)
    w = log_w.exp()
    assert torch.allclose(value, w.mean().log())
    assert torch.allclose(se, w.std() / (math.sqrt(50) * w.mean()))
    # shift invariance (no overflow for huge log weights) and zero error for equal weights
    value2, se2 = log_mean_exp_with_stderr(log_w + 1000.0)
    assert torch.allclose(value2, value + 1000.0) and torch.allclose(se2, se)
    assert log_mean_exp_with_stderr(torch.full((5,), 3.0))[1] == 0


def test_generic_ais_gaussian_ratio():
    """Anneal N(0, 1) -> N(0, s^2) along the geometric path (precision (1-b) + b/s^2) with exact
    transitions: Z_1/Z_0 = s. 2000 runs, 50 temperatures; checked within 3 standard errors."""
    s = 3.0

    def log_f(x, beta):
        return -0.5 * ((1 - beta) + beta / s ** 2) * x ** 2

    def transition(x, beta):
        return torch.randn_like(x) / math.sqrt((1 - beta) + beta / s ** 2)

    betas = torch.linspace(0, 1, 51, dtype=torch.float64)
    log_w = annealed_importance_sampling(torch.randn(2000, dtype=torch.float64), log_f,
                                         transition, betas)
    assert log_w.shape == (2000,)
    value, se = log_mean_exp_with_stderr(log_w)
    assert abs(value - math.log(s)) < 3 * se


def test_geometric_path_between_two_log_densities():
    """The generic sampler over a pair of log-densities (N(0, 1) to N(0, s^2), unnormalized):
    the geometric path gives the same weights as the path written out by hand, from the same
    seed, and its endpoints are the two densities."""
    s = 2.5
    log_f = geometric_path(lambda x: -0.5 * x ** 2, lambda x: -0.5 * x ** 2 / s ** 2)
    x = torch.randn(50, dtype=torch.float64)
    assert torch.equal(log_f(x, 0.0), -0.5 * x ** 2) and torch.equal(log_f(x, 1.0), -0.5 * x ** 2 / s ** 2)

    def by_hand(x, beta):
        return -0.5 * ((1 - beta) + beta / s ** 2) * x ** 2

    def transition(x, beta):
        return torch.randn_like(x) / math.sqrt((1 - beta) + beta / s ** 2)

    betas = torch.linspace(0, 1, 21, dtype=torch.float64)
    torch.manual_seed(0)
    expected = annealed_importance_sampling(x, by_hand, transition, betas)
    torch.manual_seed(0)
    got = annealed_importance_sampling(x, log_f, transition, betas)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_generic_ais_constant_path_has_unit_weights():
    log_w = annealed_importance_sampling(torch.randn(7, 3), lambda x, b: -x.pow(2).sum(-1),
                                         lambda x, b: x + 1.0, [0.0, 0.3, 1.0])
    assert torch.equal(log_w, torch.zeros(7, dtype=torch.float64))


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_rbm_ais_matches_exact_log_z(visible, device):
    """12 visible / 10 hidden units with weights of scale 1 (Bernoulli, base rate from data
    marginals) or 0.5 (Gaussian, base rate = the visible biases); 200 runs and a 2000-temperature
    paper-shaped schedule; log Z-hat within 3 delta-method standard errors + 0.01 of the exact
    value (the AIS bias is O(variance) and negative). Seeded; on 3 other seeds the errors were
    at most 1.1 standard errors."""
    gaussian = visible == "gaussian"
    rbm = random_rbm(12, 10, visible=visible, scale=0.5 if gaussian else 1.0, device=device)
    data = (torch.rand(300, 12, dtype=torch.float64, device=device) < 0.3).double()
    exact = rbm.log_partition_exact()
    log_z, se = ais_log_partition(rbm, betas=default_ais_schedule(2000), num_runs=200,
                                  base_rate=None if gaussian else data)
    assert log_z.device == exact.device and log_z.dtype == torch.float64
    assert 0 < se < 0.1
    assert abs(log_z - exact) < 3 * se + 0.01


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rbm_ais_matches_exact_log_z_on_a_sparse_wide_visible_layer(device, dtype):
    """60 visible units about 10% on (visible biases -2.5) and 8 hidden units: AIS's products
    with the binary visible states take the sparse path (sums of rows of W^T; in float32 on a
    CPU the compiled kernel where available). 200 runs, 1000 temperatures; log Z-hat within 3
    standard errors + 0.01 (float32: + 0.02) of the exact log Z (enumerating the 2^8 hidden
    states, in float64). Seeded."""
    rbm = random_rbm(60, 8, scale=0.5, device=device)
    with torch.no_grad():
        rbm.visible_bias.fill_(-2.5)
    data = (torch.rand(300, 60, dtype=torch.float64, device=device) < 0.1).double()
    exact = rbm.log_partition_exact()
    rbm, data = rbm.to(dtype), data.to(dtype)
    log_z, se = ais_log_partition(rbm, betas=default_ais_schedule(1000), num_runs=200,
                                  base_rate=data)
    assert 0 < se < 0.1
    assert abs(log_z.double() - exact) < 3 * se + (0.01 if dtype == torch.float64 else 0.02)


def test_rbm_ais_is_exact_at_zero_weights():
    """With W = 0 and the base rate equal to the visible biases, every weight is exactly 1."""
    rbm = random_rbm(8, 5, scale=0.0)
    log_z, se = ais_log_partition(rbm, betas=default_ais_schedule(20), num_runs=10)
    assert torch.allclose(log_z, rbm.log_partition_exact(), atol=1e-10) and se < 1e-10


def test_base_rate_and_mean_log_likelihood():
    data = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    logits = base_rate_logits(data, eps=0.0)
    assert torch.allclose(torch.sigmoid(logits), torch.tensor([0.75, 0.25]))
    assert torch.isfinite(base_rate_logits(torch.zeros(3, 2))).all()
    rbm = random_rbm(2, 3)
    log_z = rbm.log_partition_exact()
    ll = mean_log_likelihood(rbm, data.double(), log_z)
    assert torch.allclose(ll, rbm.log_prob(data.double(), log_z).mean())


def test_bad_arguments():
    rbm = random_rbm(4, 3)
    with pytest.raises(ValueError, match="increase strictly from 0 to 1"):
        ais_log_partition(rbm, betas=[0.0, 0.7, 0.5, 1.0])
    with pytest.raises(ValueError, match="num_runs"):
        ais_log_partition(rbm, num_runs=1)
    with pytest.raises(ValueError, match="base_rate must have shape"):
        ais_log_partition(rbm, betas=[0.0, 1.0], base_rate=torch.zeros(5))
    with pytest.raises(TypeError, match="RBM"):
        ais_log_partition(object())
    with pytest.raises(ValueError, match="num_betas"):
        default_ais_schedule(2)
    with pytest.raises(ValueError, match="1-D tensor"):
        log_mean_exp_with_stderr(torch.zeros(1))
