"""CD-k / PCD: hand-derived surrogate gradients, convergence of CD-k's expected gradient to the
exact gradient (by enumeration), sparsity, training through train.fit, and the monitors."""
import pytest
import torch

from pyro_deepgen.energy import ContrastiveDivergence, pseudo_log_likelihood, reconstruction_error
from pyro_deepgen.energy import RBM
from pyro_deepgen.energy.rbm import bernoulli_sample, binary_states
from pyro_deepgen.energy._kernels import native
from pyro_deepgen.train import fit


def random_rbm(num_visible=6, num_hidden=4, scale=1.5):
    """Weights drawn here (not by RBM's initializer), so the test model does not depend on it."""
    rbm = RBM(num_visible, num_hidden).double()
    with torch.no_grad():
        rbm.weight.copy_(torch.randn(num_hidden, num_visible) * scale)
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
    return rbm


def flat_grad(rbm):
    return torch.cat([p.grad.reshape(-1) for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias)])


def exact_nll_grad(rbm, data):
    """Gradient of the exact mean negative log-likelihood, log Z by enumerating v."""
    rbm.zero_grad()
    log_z = torch.logsumexp(-rbm.free_energy(binary_states(rbm.num_visible, dtype=data.dtype)), 0)
    (rbm.free_energy(data).mean() + log_z).backward()
    return flat_grad(rbm).clone()


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("persistent", [False, True])
def test_fused_gradient_is_the_autograd_gradient_of_the_surrogate(
        visible, persistent, assert_cd_matches_autograd):
    """The fused closed-form gradient equals autograd's gradient of
    sum_n F(v_n) - (B/M) sum_m F(v~_m) for the negative samples actually used, and the textbook
    update -(p(h|v)^T v - (B/M) p(h|v~)^T v~), to 1e-10; the value is that free-energy gap."""
    rbm = RBM(6, 4, visible=visible, init_scale=1.0).double()
    v = bernoulli_sample(torch.full((5, 6), 0.4, dtype=torch.float64))
    cd = ContrastiveDivergence(k=3, persistent=persistent, num_chains=7)
    for _ in range(2):  # the second call continues the persistent chains
        fused, v_neg, s = assert_cd_matches_autograd(rbm, cd, v)
        assert v_neg.shape == ((7, 6) if persistent else (5, 6))
        p_pos, p_neg = rbm.hidden_probs(v).detach(), rbm.hidden_probs(v_neg).detach()
        assert torch.allclose(fused[0], -(p_pos.t() @ v - s * p_neg.t() @ v_neg), atol=1e-10)
        assert torch.allclose(fused[2], -(p_pos.sum(0) - s * p_neg.sum(0)), atol=1e-10)
    # a scaled loss scales the fused gradient (the backward's general path); same re-seeded draw
    grads = []
    for scale in (1.0, 0.5):
        torch.manual_seed(7)
        rbm.zero_grad()
        (scale * ContrastiveDivergence(k=1)(rbm, None, v)).backward()
        grads.append(rbm.weight.grad.clone())
    assert torch.allclose(grads[1], 0.5 * grads[0], atol=1e-12)


@pytest.mark.parametrize("persistent", [False, True])
def test_fused_gradient_on_grey_and_sparse_data(persistent, assert_cd_matches_autograd):
    """Grey-valued data (0.7 times a 10%-dense binary pattern) and a larger, sparse visible layer
    (60 units, about 12% of the samples on): the fused gradient and value still equal autograd's
    for sum_n F(v_n) - s sum_m F(v~_m) (float64, 1e-10), with M = 5 chains for B = 9 points."""
    torch.manual_seed(1)
    rbm = RBM(60, 7, init_scale=0.5).double()
    with torch.no_grad():
        rbm.visible_bias.fill_(-2.0)
    for data in ((torch.rand(9, 60) < 0.1).double(), 0.7 * (torch.rand(9, 60) < 0.1).double()):
        cd = ContrastiveDivergence(k=2, persistent=persistent, num_chains=5)
        assert_cd_matches_autograd(rbm, cd, data)


@pytest.mark.parametrize("kernels", ["on", "off"])
@pytest.mark.parametrize("persistent", [False, True])
def test_fused_gradient_in_float32(kernels, persistent, assert_cd_matches_autograd, monkeypatch):
    """The float32 training path (the compiled CPU kernels for the sparse products, the Bernoulli
    draws and the sigmoid/softplus pass where available; torch's with PYRO_DEEPGEN_NATIVE=0):
    value and gradient equal autograd's for the gap of the negatives drawn, to float32 rounding
    (atol 1e-4, rtol 1e-5), on a 60 x 37 RBM with 12%-dense binary and grey data."""
    if kernels == "off":
        monkeypatch.setenv("PYRO_DEEPGEN_NATIVE", "0")
    native.library.cache_clear()
    try:
        torch.manual_seed(2)
        rbm = RBM(60, 37, init_scale=0.5)
        with torch.no_grad():
            rbm.visible_bias.fill_(-2.0)
        for data in ((torch.rand(9, 60) < 0.12).float(), 0.7 * (torch.rand(9, 60) < 0.12).float()):
            cd = ContrastiveDivergence(k=2, persistent=persistent, num_chains=5)
            for _ in range(2):
                assert_cd_matches_autograd(rbm, cd, data, atol=1e-4)
    finally:
        native.library.cache_clear()


@pytest.mark.parametrize("persistent", [False, True])
def test_loss_and_grads_equals_backward_of_the_loss(persistent):
    """Pyro's ELBO interface: ``loss_and_grads`` (what fit uses) returns the value of
    ``differentiable_loss`` / ``__call__`` and adds the same gradient to ``.grad`` (accumulating
    onto what is there), from the same seed; for a DoubledRBM (autograd path) too."""
    from pyro_deepgen.energy import DoubledRBM

    for rbm in (random_rbm(), DoubledRBM(6, 4, up=2.0).double()):
        v = bernoulli_sample(torch.full((5, 6), 0.4, dtype=torch.float64))
        torch.manual_seed(3)
        rbm.zero_grad()
        loss = ContrastiveDivergence(k=2, persistent=persistent).differentiable_loss(rbm, None, v)
        assert loss.requires_grad
        loss.backward()
        want = flat_grad(rbm).clone()
        torch.manual_seed(3)
        rbm.zero_grad()
        value = ContrastiveDivergence(k=2, persistent=persistent).loss_and_grads(rbm, None, v)
        assert isinstance(value, float) and value == pytest.approx(loss.item(), abs=1e-10)
        assert torch.allclose(flat_grad(rbm), want, atol=1e-10)
        torch.manual_seed(3)
        ContrastiveDivergence(k=2, persistent=persistent).loss_and_grads(rbm, None, v)
        assert torch.allclose(flat_grad(rbm), 2 * want, atol=1e-10)


def test_cd1_negatives_follow_the_exact_one_step_transition():
    """CD-1's negatives from a fixed data point v are draws of the two-step block-Gibbs kernel
    T(v'|v) = sum_h p(h|v) p(v'|h) (enumerated). float32, so the training path's Bernoulli draws
    (16-bit, the compiled kernel where available) are the ones tested. 40,000 chains; Pearson's
    chi-square over the 64 states (bins with expected count below 5 pooled) stays below its
    0.9999 quantile: a false failure once in 10,000 runs."""
    from scipy.stats import chi2

    torch.manual_seed(4)
    rbm = random_rbm(scale=1.0).float()
    v = torch.tensor([[1.0, 0, 1, 1, 0, 0]])
    cd = ContrastiveDivergence(k=1)
    cd(rbm, None, v.expand(40_000, 6).contiguous())
    states = binary_states(6, dtype=torch.float64)
    codes = (cd.last_negative.double() @ (2 ** torch.arange(5, -1, -1)).double()).long()
    counts = torch.bincount(codes, minlength=64).double()
    with torch.no_grad():
        rbm64 = rbm.double()
        hs = binary_states(4, dtype=torch.float64)
        p_h = torch.exp(torch.distributions.Bernoulli(logits=rbm64.hidden_input(v.double()))
                        .log_prob(hs).sum(-1))  # (16,)
        p_v = torch.exp(torch.distributions.Bernoulli(logits=rbm64.visible_input(hs).unsqueeze(1))
                        .log_prob(states).sum(-1))  # (16, 64)
        expected = 40_000 * (p_h @ p_v)
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum().reshape(1)])
    expect = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    statistic = ((observed - expect) ** 2 / expect).sum().item()
    assert statistic < chi2.ppf(0.9999, len(expect) - 1)


def test_cd_k_expected_gradient_approaches_exact_gradient():
    """8 data points replicated 4000 times (32000 independent CD chains, so the Monte Carlo
    error of the mean gradient is about 0.01 in norm). On this RBM (weights of scale 1.5) the
    distance to the exact gradient, |g|=0.87, falls from about 0.22 (k=1) through 0.13 (k=2) and
    0.03 (k=5) to the noise floor (k=100)."""
    rbm = random_rbm()
    data = binary_states(6, dtype=torch.float64)[torch.randperm(64)[:8]]
    exact = exact_nll_grad(rbm, data)
    replicated = data.repeat(4000, 1)
    errors = {}
    for k in (1, 2, 5, 100):
        rbm.zero_grad()
        ContrastiveDivergence(k=k)(rbm, None, replicated).backward()
        errors[k] = (flat_grad(rbm) / len(replicated) - exact).norm().item()
    assert errors[1] > errors[2] > errors[5] > errors[100]
    assert errors[1] > 0.15 and errors[100] < 0.03


def test_sparsity_term_pulls_hidden_inputs_toward_the_target():
    """With the same (re-seeded) samples, the sparsity term adds B * cost * (q - rho) to the
    hidden-bias gradient and B * cost * (q - rho) mean(v)^T to the weight gradient, where q is
    the first minibatch's mean activation; later calls average q with decay 0.9."""
    rbm = random_rbm()
    v = bernoulli_sample(torch.full((5, 6), 0.4, dtype=torch.float64))
    grads = []
    for target in (None, 0.05):
        cd = ContrastiveDivergence(k=1, sparsity_target=target, sparsity_cost=0.2,
                                   sparsity_decay=0.9)
        torch.manual_seed(3)
        rbm.zero_grad()
        cd(rbm, None, v).backward()
        grads.append((rbm.weight.grad.clone(), rbm.hidden_bias.grad.clone()))
    q = rbm.hidden_probs(v).detach().mean(0)
    pull = 0.2 * (q - 0.05)
    assert torch.allclose(grads[1][1] - grads[0][1], 5 * pull, atol=1e-10)
    assert torch.allclose(grads[1][0] - grads[0][0], pull[:, None] * v.sum(0), atol=1e-10)
    v2 = torch.ones(5, 6, dtype=torch.float64)
    cd(rbm, None, v2)
    expected = 0.9 * q + 0.1 * rbm.hidden_probs(v2).detach().mean(0)
    assert torch.allclose(cd.mean_activation, expected)


def test_persistent_chains_carry_over_and_reset():
    rbm = random_rbm()
    v = bernoulli_sample(torch.full((4, 6), 0.5, dtype=torch.float64))
    cd = ContrastiveDivergence(k=1, persistent=True)
    cd(rbm, None, v)
    first = cd.chains.clone()
    assert first.shape == (4, 6)
    torch.manual_seed(5)
    cd(rbm, None, v[:2])  # a smaller last batch still uses (and advances) all 4 chains
    assert cd.chains.shape == (4, 6)
    cd.reset()
    assert cd.chains is None and cd.mean_activation is None


@pytest.mark.parametrize("persistent", [False, True])
def test_fit_improves_exact_log_likelihood(persistent):
    """CD-1 and PCD through train.fit (SGD with momentum) on 64 draws from a teacher RBM raise
    the exact mean log-likelihood of the data by more than 0.5 nats in 30 epochs."""
    teacher = random_rbm(scale=2.0)
    data = teacher.sample(64, num_steps=200, mean=False)
    rbm = RBM(6, 4, init_scale=0.01).double()

    def mean_ll():
        return rbm.log_prob(data, rbm.log_partition_exact()).mean().item()

    before = mean_ll()
    loss = ContrastiveDivergence(k=1, persistent=persistent)
    history = fit(rbm, None, data, loss=loss, module=rbm, epochs=30, batch_size=16,
                  optimizer=lambda p: torch.optim.SGD(p, lr=0.05 / 16, momentum=0.9),
                  progress=False)
    assert len(history.loss) == 30
    assert mean_ll() > before + 0.5


def test_pseudo_log_likelihood_matches_enumeration():
    rbm = random_rbm(num_visible=5, num_hidden=3)
    vs = binary_states(5, dtype=torch.float64)
    log_p = -rbm.free_energy(vs)  # unnormalized log p(v) of all 32 states
    expected = torch.zeros(32, dtype=torch.float64)
    for i in range(5):
        flipped = vs.clone()
        flipped[:, i] = 1 - flipped[:, i]
        log_q = -rbm.free_energy(flipped)
        expected += log_p - torch.logaddexp(log_p, log_q)
    assert torch.allclose(pseudo_log_likelihood(rbm, vs), expected, atol=1e-10)
    assert pseudo_log_likelihood(rbm, vs.reshape(4, 8, 5)).shape == (4, 8)


def test_reconstruction_error():
    rbm = random_rbm(scale=0.0)
    v = binary_states(6, dtype=torch.float64)
    # zero weights: the reconstruction is sigma(b) whatever the data
    expected = (v - torch.sigmoid(rbm.visible_bias)).pow(2).sum(-1)
    assert torch.allclose(reconstruction_error(rbm, v), expected.detach())


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ContrastiveDivergence(k=0)
    with pytest.raises(ValueError, match="sparsity_target"):
        ContrastiveDivergence(sparsity_target=1.5)
    with pytest.raises(ValueError, match="num_chains"):
        ContrastiveDivergence(persistent=True, num_chains=0)
    rbm = RBM(6, 4)
    with pytest.raises(ValueError, match="no guide"):
        ContrastiveDivergence()(rbm, lambda v: None, torch.zeros(2, 6))
    with pytest.raises(TypeError, match="model=<RBM>"):
        ContrastiveDivergence()(lambda v: None, None, torch.zeros(2, 6))
    with pytest.raises(ValueError, match=r"shape \(batch, 6\)"):
        ContrastiveDivergence()(rbm, None, torch.zeros(6))
    with pytest.raises(ValueError, match="bernoulli"):
        pseudo_log_likelihood(RBM(6, 4, visible="gaussian"), torch.zeros(2, 6))


def bimodal_rbm(num_visible=10, w=3.0):
    """One hidden unit switching all visible units on or off, both modes equally likely
    (hidden bias -V w): block Gibbs started in the 'off' mode practically never leaves it."""
    rbm = RBM(num_visible, 1).double()
    with torch.no_grad():
        rbm.weight.fill_(2 * w)
        rbm.visible_bias.fill_(-w)
        rbm.hidden_bias.fill_(-num_visible * w)
    return rbm


def test_pt_pcd_gradient_is_the_exact_gradient_where_pcd_is_stuck():
    """At fixed parameters of the bimodal RBM, with 50 data points in the 'off' mode, the PCD
    gradient averaged over updates 100-299 (500 persistent chains, which start at the data) should
    be the exact log-likelihood gradient (enumeration of the 1024 visible states). PCD's chains
    never leave the 'off' mode and miss it by 0.49 (max abs entry); PT-PCD (6 temperatures to
    0.05) is within 0.03 (measured 0.004)."""
    rbm = bimodal_rbm()
    data = torch.zeros(50, 10, dtype=torch.float64)
    data[:, :2] = 1
    exact = exact_nll_grad(rbm, data)
    errors = {}
    for sampler in ("gibbs", "pt"):
        torch.manual_seed(0)
        cd = ContrastiveDivergence(k=1, persistent=True, num_chains=500, sampler=sampler,
                                   num_temperatures=6, min_beta=0.05)
        total = torch.zeros_like(exact)
        for t in range(300):
            rbm.zero_grad()
            cd.loss_and_grads(rbm, None, data)
            if t >= 100:
                total += flat_grad(rbm) / len(data) / 200
        errors[sampler] = (total - exact).abs().max().item()
    assert errors["gibbs"] > 0.3 and errors["pt"] < 0.03, errors
    rates = cd.tempering.swap_acceptance
    assert rates.shape == (5,) and (rates > 0.4).all()


def test_pt_pcd_state_dict_resumes_the_same_chains():
    """state_dict() after 3 updates, loaded into a fresh loss, continues exactly as the original
    (same torch RNG state): same negatives, replicas and ladder after 3 more updates."""
    rbm = random_rbm()
    v = torch.bernoulli(torch.full((8, 6), 0.5, dtype=torch.float64))
    torch.manual_seed(0)
    a = ContrastiveDivergence(k=2, persistent=True, sampler="pt", num_temperatures=4)
    for _ in range(3):
        a(rbm, None, v)
    saved, rng = a.state_dict(), torch.get_rng_state()
    for _ in range(3):
        a(rbm, None, v)
    b = ContrastiveDivergence(k=2, persistent=True, sampler="pt", num_temperatures=4)
    b.load_state_dict(saved)
    torch.set_rng_state(rng)
    for _ in range(3):
        b(rbm, None, v)
    assert torch.equal(a.last_negative, b.last_negative)
    assert torch.equal(a.tempering.betas, b.tempering.betas)
    for x, y in zip(a.tempering.replicas, b.tempering.replicas):
        assert torch.equal(x, y)


def test_pt_pcd_bad_arguments():
    with pytest.raises(ValueError, match="persistent=True"):
        ContrastiveDivergence(sampler="pt")
    with pytest.raises(ValueError, match="sampler must be one of"):
        ContrastiveDivergence(persistent=True, sampler="tempered")
    with pytest.raises(ValueError, match="num_temperatures must be a positive integer"):
        ContrastiveDivergence(persistent=True, sampler="pt", num_temperatures=0)
    with pytest.raises(ValueError, match="min_beta must be in"):
        ContrastiveDivergence(persistent=True, sampler="pt", min_beta=0.0)
