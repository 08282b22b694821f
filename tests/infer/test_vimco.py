import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.testing.fakes import NonreparameterizedNormal
from pyro.infer import SVI, RenyiELBO
from pyro.optim import Adam

from pyro_deepgen.infer import TraceIWAE_ELBO, TraceVIMCO_ELBO
from pyro_deepgen.infer.particles import draw_particles
from pyro_deepgen.models import VAE

from . import bernoulli_model as bm

# Monte Carlo tests: N = 20000 independent gradient draws (one per replicated data point),
# seeded; the mean must lie within 4 standard errors (+1e-3) of the exact gradient of
# E[log mean_i w_i], computed by enumerating all 8**k k-tuples of the 3 binary latents.
N = 20000
K = 3


@pytest.mark.parametrize("leave_one_out", [True, False])
def test_mean_gradient_matches_enumeration(leave_one_out):
    draws = bm.gradient_draws(TraceVIMCO_ELBO(K, leave_one_out=leave_one_out), N)
    bm.assert_unbiased(draws, bm.exact(K)[1])


def test_value_is_the_multi_sample_bound():
    # per-point values averaged over 20000 draws match the exact E[L_k] (4 standard errors)
    x = bm.data(N)
    values = []
    for _ in range(2):
        values.append(-TraceVIMCO_ELBO(K).loss(bm.model, bm.guide, x) / N)
    exact = bm.exact(K)[0]
    assert abs(sum(values) / 2 - exact) < 0.02  # sd of one point's bound ~1.1 -> se ~0.006


def test_variance_below_plain_score_function():
    # same bound, same k, 20000 draws each: VIMCO's guide-gradient variance is below a quarter
    # of the plain score-function estimator's in every coordinate (measured ratio ~0.01-0.02)
    plain = bm.gradient_draws(TraceVIMCO_ELBO(K, leave_one_out=False), N)[1]
    vimco = bm.gradient_draws(TraceVIMCO_ELBO(K), N, seed=1)[1]
    assert (vimco.var(0) < 0.25 * plain.var(0)).all()


def test_leave_one_out_signals_by_hand():
    from pyro_deepgen.infer.vimco import leave_one_out_signals

    w = torch.tensor([[0.3], [-1.2], [2.0]], dtype=torch.float64)
    bound, signal = leave_one_out_signals(w)
    lme = lambda v: math.log(sum(math.exp(a) for a in v) / 3)  # noqa: E731
    ws = w.squeeze(-1).tolist()
    assert bound.item() == pytest.approx(lme(ws), abs=1e-12)
    for i in range(3):
        others = [ws[j] for j in range(3) if j != i]
        loo = lme(others + [sum(others) / 2])
        assert signal[i, 0].item() == pytest.approx(lme(ws) - loo, abs=1e-12)


@pytest.mark.parametrize("num_data", [None, 40])
def test_reparameterized_model_matches_renyi_iwae(num_data):
    # all sites reparameterizable: VIMCO is the IWAE bound with its pathwise gradient, which is
    # Pyro's RenyiELBO(alpha=0) (same draws, same seed) without subsampling; with subsampling
    # the value is the data plate's scale times the per-data-point bound
    vae = VAE(6, 2, (5,))
    x = torch.rand(4, 6)
    pyro.set_rng_seed(3)
    loss = TraceVIMCO_ELBO(5).differentiable_loss(vae.model, vae.guide, x, num_data)
    grads = torch.autograd.grad(loss, list(vae.parameters()))
    pyro.set_rng_seed(3)
    renyi = RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True, max_plate_nesting=1)
    expected = renyi.loss(vae.model, vae.guide, x)
    scale = 1.0 if num_data is None else num_data / len(x)
    assert loss.item() == pytest.approx(scale * expected, rel=1e-5)
    if num_data is None:
        pyro.set_rng_seed(3)
        vae.zero_grad()
        renyi.loss_and_grads(vae.model, vae.guide, x)
        for g, p in zip(grads, vae.parameters()):
            assert torch.allclose(g, p.grad, atol=1e-5)


def test_continuous_score_function_matches_pathwise():
    # a Normal latent drawn without rsample (NonreparameterizedNormal) takes the score-function
    # path; its mean gradient over 20000 draws matches the mean pathwise gradient of the same
    # bound (20000 draws) within 4 combined standard errors (+1e-3)
    def model(x, normal=None):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 0.7), obs=x)

    def guide(x, normal=dist.Normal):
        loc = pyro.param("loc", torch.full((len(x),), 0.2))
        with pyro.plate("data", len(x)):
            pyro.sample("z", normal(loc, 0.9))

    x = torch.full((N,), 1.0)
    draws = []
    for normal in (NonreparameterizedNormal, dist.Normal):
        pyro.clear_param_store()
        loss = TraceVIMCO_ELBO(K).differentiable_loss(model, guide, x, normal)
        draws.append(torch.autograd.grad(loss, [pyro.param("loc").unconstrained()])[0])
    se = math.sqrt(sum(d.var() / N for d in draws))
    assert abs(draws[0].mean() - draws[1].mean()) < 4 * se + 1e-3


def test_global_latent_uses_one_log_mean_exp():
    # with a latent outside the data plate the whole minibatch's weight is log-mean-exp'ed,
    # as RenyiELBO(alpha=0) does (same draws)
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(pyro.param("m", torch.tensor(0.1)), 0.5))

    x = torch.tensor([0.3, 1.2, -0.4])
    pyro.set_rng_seed(1)
    actual = TraceVIMCO_ELBO(4).loss(model, guide, x)
    pyro.set_rng_seed(1)
    renyi = RenyiELBO(alpha=0, num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    assert actual == pytest.approx(renyi.loss(model, guide, x), rel=1e-5)


def test_svi_trains_discrete_guide():
    # VIMCO through SVI improves the bound of the Bernoulli model (exact L_3 rises)
    def guide(x):
        logits = pyro.param("logits", bm.GUIDE_LOGITS.clone())
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Bernoulli(logits=logits).to_event(1))

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Bernoulli(logits=bm.PRIOR_LOGITS).to_event(1))
            pyro.sample("x", dist.Normal(z @ bm.W.T, 1.0).to_event(1), obs=x)

    svi = SVI(model, guide, Adam({"lr": 0.05}), TraceVIMCO_ELBO(K))
    x = bm.data(50)
    losses = [svi.step(x) for _ in range(60)]
    assert sum(losses[-10:]) < sum(losses[:10])


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_particles >= 2"):
        TraceVIMCO_ELBO(1)

    def scaled_model(x):
        with pyro.poutine.scale(scale=0.5):
            bm.model(x)

    with pytest.raises(ValueError, match="poutine.scale"):
        TraceVIMCO_ELBO(2).loss(scaled_model, bm.guide, bm.data(3))


@pytest.mark.parametrize("elbo", ["vimco", "score_function"])
def test_runs_on_device(device, elbo):
    from pyro_deepgen.infer import TraceScoreFunction_ELBO

    vae = VAE(6, 2, (5,)).to(device)
    x = torch.rand(4, 6, device=device)
    loss_fn = TraceVIMCO_ELBO(3) if elbo == "vimco" else TraceScoreFunction_ELBO(3)
    loss = loss_fn.differentiable_loss(vae.model, vae.guide, x, 40)
    loss.backward()
    assert loss.device.type == device.type and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.device.type == device.type for p in vae.parameters())


def test_pyro_renyi_ignores_non_reparameterized_sites():
    # the Pyro shortcoming VIMCO fixes (pyro-ppl 1.9.2): RenyiELBO(alpha=0) weights the score
    # term of a non-reparameterized guide site by alpha / (1 - alpha) = 0, so the guide
    # parameter's gradient is exactly zero, while the true gradient (VIMCO's) is not
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 0.7), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.full((len(x),), 0.2))
        with pyro.plate("data", len(x)):
            pyro.sample("z", NonreparameterizedNormal(loc, 0.9))

    x = torch.full((2000,), 1.0)
    renyi = RenyiELBO(alpha=0, num_particles=K, vectorize_particles=True, max_plate_nesting=1)
    renyi.loss_and_grads(model, guide, x)
    assert (pyro.param("loc").unconstrained().grad == 0).all()
    pyro.clear_param_store()
    loss = TraceVIMCO_ELBO(K).differentiable_loss(model, guide, x)
    (grad,) = torch.autograd.grad(loss, [pyro.param("loc").unconstrained()])
    assert -grad.mean() > 0.2  # true value ~0.29 (pathwise, 20000 draws); se here ~0.02


@pytest.mark.parametrize("sequential", [False, True], ids=["no-plate", "sequential-plate"])
def test_program_without_vectorized_plate_is_one_data_point(sequential):
    """Plate rule: no vectorized plate means one data point; the value is the log-mean-exp of
    the whole program's weights, recomputed here from the drawn particles."""
    x = torch.tensor([0.3, 1.2, -0.4])

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        if sequential:
            for i in pyro.plate("data", len(x)):
                pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=x[i])
        else:
            loc = z.unsqueeze(-1).expand(z.shape + (3,))
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    def guide():
        pyro.sample("z", NonreparameterizedNormal(pyro.param("m", torch.tensor(0.1)), 0.5))

    pyro.set_rng_seed(2)
    loss = TraceVIMCO_ELBO(4, max_plate_nesting=0).loss(model, guide)
    pyro.set_rng_seed(2)
    z = draw_particles(model, guide, (), {}, 4, 0).guide.nodes["z"]["value"]
    log_w = (
        dist.Normal(0.0, 1.0).log_prob(z)
        + dist.Normal(z.unsqueeze(-1), 1.0).log_prob(x).sum(-1)
        - dist.Normal(0.1, 0.5).log_prob(z)
    )
    assert -loss == pytest.approx((torch.logsumexp(log_w, 0) - math.log(4)).item(), rel=1e-5)
    pyro.set_rng_seed(2)
    assert loss == pytest.approx(TraceIWAE_ELBO(4, max_plate_nesting=0).loss(model, guide), rel=1e-6)
