import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_deepgen.infer import TraceScoreFunction_ELBO
from pyro_deepgen.models import VAE

from . import bernoulli_model as bm

# Monte Carlo tests: N = 20000 independent gradient draws (one per replicated data point),
# seeded; the mean must lie within 4 standard errors (+1e-3) of the gradient by enumeration.
N = 20000


@pytest.mark.parametrize("control_variate", [None, "leave_one_out", "baseline"])
def test_mean_gradient_matches_enumeration(control_variate):
    particles = 1 if control_variate is None else 3
    elbo = TraceScoreFunction_ELBO(particles, control_variate=control_variate)
    warmup = 5 if control_variate == "baseline" else 0
    draws = bm.gradient_draws(elbo, N, warmup=warmup)
    bm.assert_unbiased(draws, bm.exact()[1])


def test_value_is_the_elbo():
    # the mean over 20000 draws of the value matches the exact ELBO within 4 standard errors
    elbo = TraceScoreFunction_ELBO(1, control_variate=None)
    x = bm.data(N)
    values = []
    for t in [elbo._particle_terms(bm.model, bm.guide, (x,), {}, pathwise=False)]:
        for s in t.model:
            values.append(s.log_prob)
        for s in t.guide:
            values.append(-s.log_prob)
    per_point = sum(values).squeeze(0)
    exact = bm.exact()[0]
    assert abs(per_point.mean().item() - exact) < 4 * per_point.std().item() / N**0.5
    assert elbo.loss(bm.model, bm.guide, x) == pytest.approx(-per_point.sum().item(), rel=0.05)


@pytest.mark.parametrize("control_variate", ["leave_one_out", "baseline"])
def test_control_variate_reduces_variance(control_variate):
    # same number of particles (4), 20000 draws each: the control variate at least halves
    # the variance of every coordinate of the guide gradient (measured ratio ~0.05-0.2)
    plain = bm.gradient_draws(TraceScoreFunction_ELBO(4, control_variate=None), N)[1]
    elbo = TraceScoreFunction_ELBO(4, control_variate=control_variate)
    warmup = 5 if control_variate == "baseline" else 0
    reduced = bm.gradient_draws(elbo, N, seed=1, warmup=warmup)[1]
    assert (reduced.var(0) < 0.5 * plain.var(0)).all()


@pytest.mark.parametrize("num_data", [None, 40])
def test_k1_value_equals_trace_elbo(num_data):
    vae = VAE(6, 2, (5,))
    x = torch.rand(4, 6)
    pyro.set_rng_seed(3)
    expected = Trace_ELBO().loss(vae.model, vae.guide, x, num_data)
    pyro.set_rng_seed(3)
    elbo = TraceScoreFunction_ELBO(1, control_variate=None)
    actual = elbo.loss(vae.model, vae.guide, x, num_data)
    assert actual == pytest.approx(expected, rel=1e-6)


def test_reparameterizable_sites_get_score_function_gradient():
    # with one particle and no control variate, the guide gradient is f(z) * grad log q(z)
    # exactly (z detached), not the pathwise gradient of Trace_ELBO
    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.5))
        pyro.sample("z", dist.Normal(loc, 1.0))

    pyro.set_rng_seed(0)
    loss = TraceScoreFunction_ELBO(1, control_variate=None).differentiable_loss(model, guide)
    (grad,) = torch.autograd.grad(loss, [pyro.param("loc").unconstrained()])
    pyro.set_rng_seed(0)
    z = dist.Normal(0.5, 1.0).rsample()
    f = dist.Normal(0.0, 1.0).log_prob(z) - dist.Normal(0.5, 1.0).log_prob(z)
    assert loss.item() == pytest.approx(-f.item(), abs=1e-6)
    assert grad.item() == pytest.approx(-(f * (z - 0.5)).item(), abs=1e-5)


def test_learned_baseline_value_and_svi():
    # a baseline_value parameter is trained towards the cost by its squared-error loss
    def guide(x):
        logits = pyro.param("logits", bm.GUIDE_LOGITS.expand(len(x), bm.D).clone())
        b = pyro.param("b", torch.zeros(len(x)))
        with pyro.plate("data", len(x)):
            pyro.sample(
                "z",
                dist.Bernoulli(logits=logits).to_event(1),
                infer={"baseline": {"baseline_value": b}},
            )

    svi = SVI(bm.model, guide, Adam({"lr": 0.1}), TraceScoreFunction_ELBO(2, "baseline"))
    x = bm.data(8)
    for _ in range(30):
        svi.step(x)
    # the exact ELBO of one point is about -2.85; the baseline moved from 0 towards it
    assert (pyro.param("b") < -1.0).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="control_variate"):
        TraceScoreFunction_ELBO(2, control_variate="nvil")
    with pytest.raises(ValueError, match="num_particles >= 2"):
        TraceScoreFunction_ELBO(1, control_variate="leave_one_out")

    def guide(x):
        logits = pyro.param("logits", bm.GUIDE_LOGITS.expand(len(x), bm.D).clone())
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Bernoulli(logits=logits).to_event(1),
                        infer={"baseline": {"use_decaying_avg": True}})

    with pytest.raises(ValueError, match="unrecognized baseline options.*'z'"):
        TraceScoreFunction_ELBO(2, "baseline").loss(bm.model, guide, bm.data(3))


def test_nn_baseline_is_unbiased_and_trained():
    # an nn_baseline (Linear on the data) keeps the mean gradient exact (20000 draws, 4 se) and
    # receives the gradient of its squared-error loss
    net = torch.nn.Linear(2, 1)

    def guide(x):
        logits = pyro.param("logits", bm.GUIDE_LOGITS.expand(len(x), bm.D).clone())
        pyro.module("baseline_net", net)
        with pyro.plate("data", len(x)):
            options = {"nn_baseline": lambda inp: net(inp).squeeze(-1), "nn_baseline_input": x}
            pyro.sample("z", dist.Bernoulli(logits=logits).to_event(1),
                        infer={"baseline": options})

    x = bm.data(N)
    loss = TraceScoreFunction_ELBO(2, "baseline").differentiable_loss(bm.model, guide, x)
    params = [pyro.param(name).unconstrained() for name in bm.PARAMS]
    grads = torch.autograd.grad(loss, params + [net.bias])
    bm.assert_unbiased([-g for g in grads[:2]], bm.exact()[1])
    assert grads[2].abs().item() > 0
