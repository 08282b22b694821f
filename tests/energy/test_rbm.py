"""RBM energies, conditionals, exact log Z and the Pyro model view against brute force."""
import math

import pytest
import torch
from pyro import poutine

from pyro_deepgen.energy import RBM
from pyro_deepgen.energy.rbm import binary_states


def random_rbm(num_visible=6, num_hidden=4, visible="bernoulli", scale=1.0, device="cpu"):
    rbm = RBM(num_visible, num_hidden, visible=visible, init_scale=scale).to(device, torch.float64)
    with torch.no_grad():
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
    return rbm


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_is_brute_force_marginal(visible, device):
    rbm = random_rbm(visible=visible, device=device)
    v = torch.randn(5, 6, dtype=torch.float64, device=device)
    if visible == "bernoulli":
        v = (v > 0).double()
    hs = binary_states(4, device=device, dtype=torch.float64)  # (16, 4)
    brute = -torch.logsumexp(-rbm.energy(v.unsqueeze(1), hs), dim=1)
    assert torch.allclose(rbm.free_energy(v), brute, atol=1e-10)


def test_hidden_free_energy_is_brute_force_marginal(device):
    rbm = random_rbm(device=device)
    h = binary_states(4, device=device, dtype=torch.float64)
    vs = binary_states(6, device=device, dtype=torch.float64)  # (64, 6)
    brute = -torch.logsumexp(-rbm.energy(vs, h.unsqueeze(1)), dim=1)
    assert torch.allclose(rbm.hidden_free_energy(h), brute, atol=1e-10)


def test_gaussian_hidden_free_energy_is_the_gaussian_integral():
    # int exp(-E(v, h)) dv over R^V, by a 1-D quadrature per coordinate (E separates over v_i)
    rbm = random_rbm(num_visible=2, num_hidden=3, visible="gaussian")
    h = binary_states(3, dtype=torch.float64)
    grid = torch.linspace(-15, 15, 20001, dtype=torch.float64)
    eta = rbm.visible_input(h)  # (8, 2)
    b = rbm.visible_bias
    # log int exp(-(v - b)^2 / 2 + v (eta - b)) dv per coordinate
    integrand = -0.5 * (grid - b[:, None]) ** 2 + grid * (eta - b)[..., None]
    log_int = torch.logsumexp(integrand, -1) + math.log(grid[1] - grid[0])
    expected = -(h * rbm.hidden_bias).sum(-1) - log_int.sum(-1)
    assert torch.allclose(rbm.hidden_free_energy(h), expected, atol=1e-8)


def test_exact_log_partition_both_layers_agree(device):
    rbm = random_rbm(num_visible=7, num_hidden=5, device=device)
    brute = torch.logsumexp(
        -rbm.energy(binary_states(7, device=device, dtype=torch.float64).unsqueeze(1),
                    binary_states(5, device=device, dtype=torch.float64)).reshape(-1), 0)
    for layer in (None, "hidden", "visible"):
        assert torch.allclose(rbm.log_partition_exact(layer), brute, atol=1e-10), layer
    # log p(v) normalizes over all 2**7 visible states
    logp = rbm.log_prob(binary_states(7, device=device, dtype=torch.float64), brute)
    assert torch.allclose(torch.logsumexp(logp, 0), torch.zeros((), dtype=torch.float64,
                                                                device=device), atol=1e-10)


def test_log_partition_chunked_enumeration():
    # 15 hidden units = 32768 states, two enumeration chunks; compare with the visible layer
    rbm = random_rbm(num_visible=9, num_hidden=15, scale=0.3)
    assert torch.allclose(rbm.log_partition_exact("hidden"), rbm.log_partition_exact("visible"),
                          atol=1e-9)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_zero_weights_limit(visible):
    rbm = random_rbm(visible=visible, scale=0.0)
    c, b = rbm.hidden_bias, rbm.visible_bias
    if visible == "bernoulli":
        expected = torch.nn.functional.softplus(b).sum() + torch.nn.functional.softplus(c).sum()
    else:
        expected = 3 * math.log(2 * math.pi) + torch.nn.functional.softplus(c).sum()
    assert torch.allclose(rbm.log_partition_exact(), expected, atol=1e-10)


def test_conditionals_match_the_joint(device):
    rbm = random_rbm(device=device)
    vs = binary_states(6, device=device, dtype=torch.float64)
    hs = binary_states(4, device=device, dtype=torch.float64)
    log_joint = -rbm.energy(vs.unsqueeze(1), hs)  # (64, 16)
    p_h_given_v = torch.softmax(log_joint, 1)
    assert torch.allclose(p_h_given_v @ hs, rbm.hidden_probs(vs), atol=1e-10)
    p_v_given_h = torch.softmax(log_joint, 0)  # columns sum to one
    assert torch.allclose(p_v_given_h.t() @ vs, rbm.visible_mean(hs), atol=1e-10)
    logp = rbm.visible_dist(hs).log_prob(vs.unsqueeze(1))  # (64, 16)
    assert torch.allclose(logp.exp(), p_v_given_h, atol=1e-10)


def test_sampling_shapes_are_vectorized(device):
    rbm = random_rbm(device=device)
    v = torch.zeros(3, 2, 6, dtype=torch.float64, device=device)
    assert rbm.sample_hidden(v).shape == (3, 2, 4)
    assert rbm.gibbs_step(v).shape == (3, 2, 6)
    assert set(rbm.gibbs_step(v).unique().tolist()) <= {0.0, 1.0}
    g = random_rbm(visible="gaussian", device=device)
    assert g.sample_visible(torch.ones(7, 4, dtype=torch.float64, device=device)).shape == (7, 6)
    x = rbm.sample(5, num_steps=3)
    assert x.shape == (5, 6) and ((x >= 0) & (x <= 1)).all()


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_model_trace_is_the_unnormalized_joint(visible):
    rbm = random_rbm(visible=visible)
    v = torch.randn(4, 6, dtype=torch.float64)
    if visible == "bernoulli":
        v = (v > 0).double()
    trace = poutine.trace(rbm.model).get_trace(v)
    assert trace.nodes["v"]["is_observed"]
    h = trace.nodes["h"]["value"]
    assert torch.allclose(trace.log_prob_sum(), -rbm.energy(v, h).sum(), atol=1e-9)
    # unconditioned: the model also draws v; the trace density is still -E(v, h)
    trace = poutine.trace(rbm.model).get_trace(None, batch_size=3)
    v, h = trace.nodes["v"]["value"], trace.nodes["h"]["value"]
    assert v.shape == (3, 6) and h.shape == (3, 4)
    assert torch.allclose(trace.log_prob_sum(), -rbm.energy(v, h).sum(), atol=1e-9)


def test_model_importance_weights_recover_log_z():
    """Drawing the model's sites from their sample statements (uniform h, then v | h) and
    weighting by the factor site is importance sampling of the joint: the mean weight is Z.
    20000 vectorized draws in one trace (plate "data"), checked to 0.02 (about 4 delta-method
    standard errors for this RBM)."""
    rbm = random_rbm(num_visible=5, num_hidden=3, scale=0.5)
    trace = poutine.trace(rbm.model).get_trace(None, batch_size=20000)
    trace.compute_log_prob()
    log_w = trace.nodes["hidden_marginal"]["log_prob"]
    assert log_w.shape == (20000,)
    estimate = torch.logsumexp(log_w, 0) - math.log(len(log_w))
    assert abs(estimate - rbm.log_partition_exact()) < 0.02


def test_bad_arguments():
    with pytest.raises(ValueError, match="visible="):
        RBM(4, 3, visible="poisson")
    with pytest.raises(ValueError, match="positive"):
        RBM(0, 3)
    rbm = RBM(4, 3)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        rbm.free_energy(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="torch.Tensor"):
        rbm.free_energy([[0.0] * 4])
    with pytest.raises(ValueError, match="ais_log_partition"):
        RBM(30, 25).log_partition_exact()
    with pytest.raises(ValueError, match="Gaussian visible units cannot be enumerated"):
        RBM(4, 3, visible="gaussian").log_partition_exact("visible")
    with pytest.raises(ValueError, match="layer="):
        rbm.log_partition_exact("top")


def test_bernoulli_sample_16bit_frequencies():
    """200,000 draws per probability (odd shapes, float32 and float64): the frequency of ones is
    within 5 standard errors (<= 0.0056) of p; p = 0 and p = 1 are exact."""
    from pyro_deepgen.energy.rbm import bernoulli_sample_16bit

    for dtype in (torch.float32, torch.float64):
        p = torch.tensor([0.0, 1e-4, 0.13, 0.5, 0.9, 1.0], dtype=dtype)
        draws = bernoulli_sample_16bit(p.expand(200_001, 6).contiguous())
        assert draws.dtype == dtype and draws.shape == (200_001, 6)
        assert set(draws.unique().tolist()) <= {0.0, 1.0}
        freq = draws.mean(0)
        se = (p * (1 - p) / 200_001).sqrt()
        assert freq[0] == 0 and freq[-1] == 1
        assert ((freq - p).abs() <= 5 * se + 1e-12).all(), (freq, p)
    # each 64-bit draw feeds four consecutive units (int16 lanes 0-3): with 4 columns, column j
    # is lane j. Every lane is fair (5 s.e. = 0.0056 over 200,000 draws; a lane without its
    # sign bit would give 0 here) and lanes 0 and 3 are independent (P(both) = 1/4 +- 5 s.e.)
    half = bernoulli_sample_16bit(torch.full((200_000, 4), 0.5))
    assert ((half.mean(0) - 0.5).abs() <= 5 * 0.5 / 200_000 ** 0.5).all(), half.mean(0)
    both = (half[:, 0] * half[:, 3]).mean()
    assert abs(both - 0.25) <= 5 * (0.25 * 0.75 / 200_000) ** 0.5, both


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_init_visible_bias_gives_the_factorial_maximum_likelihood_model(visible):
    """With zero weights, ``init_visible_bias`` makes the RBM the factorial model fitted by maximum
    likelihood: its exact average log p(v) equals the closed form (Bernoulli: the sum of the
    marginals' negative entropies, here on data whose marginals are exactly 1/4, 1/2 and 3/4;
    Gaussian: unit-variance normals centred at the data mean)."""
    torch.manual_seed(0)
    if visible == "bernoulli":
        data = torch.tensor([[1., 1., 1.], [0., 1., 1.], [0., 0., 1.], [0., 0., 0.]])
        expected = sum(q * math.log(q) + (1 - q) * math.log(1 - q) for q in (0.25, 0.5, 0.75))
    else:
        data = torch.randn(50, 3) + torch.tensor([1.0, -2.0, 0.5])
        expected = (-0.5 * (data - data.mean(0)).pow(2).sum(-1) - 1.5 * math.log(2 * math.pi)).mean()
    rbm = RBM(3, 2, visible=visible).double()
    with torch.no_grad():
        rbm.weight.zero_()
    assert rbm.init_visible_bias(data.double(), eps=0.0) is rbm
    log_p = rbm.log_prob(data.double(), rbm.log_partition_exact()).mean()
    assert torch.allclose(log_p, torch.as_tensor(expected, dtype=log_p.dtype), atol=1e-9)
    with pytest.raises(ValueError, match="data"):
        rbm.init_visible_bias(torch.zeros(4, 5))
