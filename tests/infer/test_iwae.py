"""Tests of TraceIWAE_ELBO: limiting cases, bounds against closed-form log p(x), agreement with
Pyro's RenyiELBO, the nested bound for global latents, and the IWAE/STL/DReG gradients."""
import functools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.testing.fakes import NonreparameterizedNormal
from pyro.infer import SVI, RenyiELBO, Trace_ELBO
from torch.distributions import constraints

from pyro_deepgen.infer import TraceIWAE_ELBO
from pyro_deepgen.infer.particles import draw_particles
from pyro_deepgen.models import VAE
from tests.linear_gaussian import LinearGaussian

f64 = torch.float64


# -- small models ---------------------------------------------------------------------------
def gauss_model(x):
    """z_n ~ N(mu, 1), x_n ~ N(z_n, 0.7^2) with a learnable prior mean (a *model* parameter)."""
    mu = pyro.param("mu", torch.tensor(0.3, dtype=f64))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(mu, 1.0))
        pyro.sample("x", dist.Normal(z, 0.7), obs=x)


def make_gauss_guide(normal=dist.Normal):
    """Amortized q(z_n | x_n) = N(a x_n + b, s^2): *guide* parameters a, b, s."""

    def guide(x):
        a = pyro.param("a", torch.tensor(0.2, dtype=f64))
        b = pyro.param("b", torch.tensor(-0.4, dtype=f64))
        s = pyro.param("s", torch.tensor(1.3, dtype=f64), constraint=constraints.positive)
        with pyro.plate("data", len(x)):
            pyro.sample("z", normal(a * x + b, s))

    return guide


GUIDE_PARAMS = ("a", "b", "s")


def global_model(x, sigma=0.5):
    """theta ~ N(0, 1), z_n ~ N(theta, 1), x_n ~ N(z_n, sigma^2):
    x ~ N(0, 11^T + (1 + sigma^2) I) in closed form."""
    theta = pyro.sample("theta", dist.Normal(torch.tensor(0.0, dtype=f64), 1.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(theta, 1.0))
        pyro.sample("x", dist.Normal(z, sigma), obs=x)


def global_guide(x, sigma=0.5):
    m = pyro.param("m", torch.tensor(0.1, dtype=f64))
    t = pyro.param("t", torch.tensor(0.5, dtype=f64), constraint=constraints.positive)
    theta = pyro.sample("theta", dist.Normal(m, t))
    c = pyro.param("c", torch.tensor(0.6, dtype=f64))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(c * x + (1 - c) * theta, 0.6))


def global_log_px(x, sigma=0.5):
    n = len(x)
    cov = torch.ones(n, n, dtype=f64) + (1 + sigma**2) * torch.eye(n, dtype=f64)
    return dist.MultivariateNormal(torch.zeros(n, dtype=f64), cov).log_prob(x)


def param_grads(loss, names):
    leaves = [pyro.param(n).unconstrained() for n in names]
    return dict(zip(names, torch.autograd.grad(loss, leaves)))


def seeded_grads(elbo, model, guide, names, seed, *args, **kwargs):
    pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(model, guide, *args, **kwargs)
    return loss.detach(), param_grads(loss, names)


# -- limiting cases and exact identities ---------------------------------------------------
def test_k1_equals_trace_elbo_value_and_grad():
    vae = VAE(6, 2, hidden_dims=(5,)).double()
    x = torch.rand(4, 6, dtype=f64)
    vae.guide(x)  # create the params
    names = [n for n, _ in pyro.get_param_store().named_parameters()]
    ours = seeded_grads(TraceIWAE_ELBO(1, max_plate_nesting=1), vae.model, vae.guide, names, 3, x)
    ref = seeded_grads(Trace_ELBO(), vae.model, vae.guide, names, 3, x)
    assert ours[0].item() == pytest.approx(ref[0].item(), rel=1e-10)
    for n in names:
        assert torch.allclose(ours[1][n], ref[1][n], atol=1e-10), n


@pytest.mark.parametrize("estimator", ["iwae", "stl", "dreg"])
def test_value_does_not_depend_on_estimator_and_matches_renyi(estimator):
    """All latents local: the value equals Pyro's RenyiELBO(alpha=0) at the same seed, and so
    does the IWAE gradient of the model parameter (which STL/DReG leave unchanged)."""
    x = torch.linspace(-1, 2, 5, dtype=f64)
    guide = make_gauss_guide()
    renyi = RenyiELBO(alpha=0, num_particles=6, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(5)
    ref = renyi.loss_and_grads(gauss_model, guide, x)
    ref_mu = pyro.param("mu").unconstrained().grad.clone()
    loss, g = seeded_grads(
        TraceIWAE_ELBO(6, estimator, max_plate_nesting=1), gauss_model, guide, ["mu"], 5, x
    )
    assert loss.item() == pytest.approx(ref, rel=1e-10)
    assert g["mu"].item() == pytest.approx(ref_mu.item(), rel=1e-8)


def test_iwae_guide_grad_matches_renyi():
    x = torch.linspace(-1, 2, 5, dtype=f64)
    guide = make_gauss_guide()
    renyi = RenyiELBO(alpha=0, num_particles=6, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(5)
    renyi.loss_and_grads(gauss_model, guide, x)
    ref = {n: pyro.param(n).unconstrained().grad.clone() for n in GUIDE_PARAMS}
    _, g = seeded_grads(
        TraceIWAE_ELBO(6, max_plate_nesting=1), gauss_model, guide, GUIDE_PARAMS, 5, x
    )
    for n in GUIDE_PARAMS:
        assert g[n].item() == pytest.approx(ref[n].item(), rel=1e-8), n


def test_dreg_equals_stl_at_k1():
    x = torch.linspace(-1, 2, 5, dtype=f64)
    guide = make_gauss_guide()
    names = ("mu",) + GUIDE_PARAMS
    stl = seeded_grads(TraceIWAE_ELBO(1, "stl"), gauss_model, guide, names, 7, x)
    dreg = seeded_grads(TraceIWAE_ELBO(1, "dreg"), gauss_model, guide, names, 7, x)
    iwae = seeded_grads(TraceIWAE_ELBO(1, "iwae"), gauss_model, guide, names, 7, x)
    assert stl[0] == dreg[0] == iwae[0]
    for n in names:
        assert torch.allclose(stl[1][n], dreg[1][n], rtol=1e-12), n
    # the score term was really dropped: STL differs from IWAE on the guide scale ...
    assert not torch.allclose(stl[1]["s"], iwae[1]["s"], rtol=1e-3)
    # ... by exactly -d/ds log q(z) at fixed z, and the model gradient is untouched
    assert torch.allclose(stl[1]["mu"], iwae[1]["mu"], rtol=1e-12)


@pytest.mark.parametrize("estimator", ["stl", "dreg"])
def test_stl_dreg_model_grad_equals_iwae_exactly(estimator):
    """For the model parameters all three estimators are sum_k w~_k grad w_k (same seed)."""
    x = torch.linspace(-1, 2, 5, dtype=f64)
    guide = make_gauss_guide()
    ours = seeded_grads(TraceIWAE_ELBO(8, estimator), gauss_model, guide, ["mu"], 11, x)
    iwae = seeded_grads(TraceIWAE_ELBO(8), gauss_model, guide, ["mu"], 11, x)
    assert torch.allclose(ours[1]["mu"], iwae[1]["mu"], rtol=1e-10)


def test_batch_value_equals_sum_of_single_points():
    """Exact: with the same particles (fixed noise, density through Delta(log_density=...)) the
    batch value equals the sum of the single-data-point values."""
    lg = LinearGaussian(x_dim=4, z_dim=2)
    x = lg.data(6)
    k = 7
    eps = torch.randn(k, len(x), 2, dtype=f64)

    def model(x, eps):
        lg.model(x)

    def guide(x, eps):
        loc, scale = lg.posterior(x)
        z = loc + 0.3 + 1.4 * scale * eps
        log_q = dist.Normal(loc + 0.3, 1.4 * scale).to_event(1).log_prob(z)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Delta(z, log_density=log_q, event_dim=1))

    # the particle dim is made by hand (eps): max_plate_nesting given, else the guess refuses
    # the undeclared dim of size k
    elbo = TraceIWAE_ELBO(k, max_plate_nesting=1)
    batch = elbo.loss(model, guide, x, eps)
    singles = [elbo.loss(model, guide, x[n : n + 1], eps[:, n : n + 1]) for n in range(len(x))]
    assert batch == pytest.approx(sum(singles), rel=1e-12)
    # the lumped bound over the whole batch (one log-mean-exp) is a different number
    lumped = -TraceIWAE_ELBO(k, nested=True, num_local_particles=1, max_plate_nesting=1).loss(
        lambda x, e: model(x, e), lambda x, e: guide(x, e.unsqueeze(1)), x, eps
    )
    assert lumped < -batch - 0.1


def test_subsampling_scale():
    """A minibatch of B points of a data set of N: value = N/B times the batch value (same
    seed). Pyro's RenyiELBO multiplies the log-weights inside the log-mean-exp instead."""
    vae = VAE(6, 2, hidden_dims=(5,)).double()
    x = torch.rand(4, 6, dtype=f64)
    elbo = TraceIWAE_ELBO(5, max_plate_nesting=1)
    pyro.set_rng_seed(2)
    full = elbo.loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(2)
    sub = elbo.loss(vae.model, vae.guide, x, num_data=100)
    assert sub == pytest.approx(25.0 * full, rel=1e-12)
    renyi = RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(2)
    assert renyi.loss(vae.model, vae.guide, x) == pytest.approx(full, rel=1e-10)
    pyro.set_rng_seed(2)
    assert renyi.loss(vae.model, vae.guide, x, num_data=100) != pytest.approx(sub, rel=1e-3)


# -- bounds against the closed-form marginal likelihood ---------------------------------------
def test_bounds_increase_to_log_px_on_linear_gaussian():
    """PPCA with a perturbed posterior as guide. Mean of R=20 seeded draws (N=30 points):
    L_1 < L_5 < L_50 < log p(x) (4 standard errors), and L_5000 (3 draws) is within 0.3 nats
    (total over 30 points) of log p(x), its gap 10x smaller than L_5's."""
    lg = LinearGaussian(x_dim=5, z_dim=2)
    x = lg.data(30)
    guide = functools.partial(lg.guide, loc_shift=0.4, scale_mult=1.5)
    log_px = lg.log_marginal(x).sum().item()
    means, sems = {}, {}
    for k in (1, 5, 50, 5000):
        elbo = TraceIWAE_ELBO(k)
        vals = [-elbo.loss(lg.model, guide, x) for _ in range(20 if k < 5000 else 3)]
        vals = torch.tensor(vals, dtype=f64)
        means[k], sems[k] = vals.mean().item(), vals.std().item() / math.sqrt(len(vals))
    assert means[1] + 4 * sems[1] < means[5]
    assert means[5] + 4 * (sems[5] + sems[50]) < means[50]
    assert means[50] < log_px
    assert abs(means[5000] - log_px) < 0.3
    assert log_px - means[5000] < 0.1 * (log_px - means[5])
    assert log_px - means[1] > 5.0  # the guide is poor enough for the test to mean something


# -- global latents: lumped (Pyro) vs nested ---------------------------------------------------
def test_global_latent_default_is_pyros_lumped_bound():
    """With a global latent, RenyiELBO(alpha=0) puts all data points into one log-mean-exp
    (pyro issue #3104); our default computes the same, and nested=True with J=1 too."""
    x = torch.linspace(-1.0, 2.0, 10, dtype=f64)
    renyi = RenyiELBO(alpha=0, num_particles=6, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(4)
    ref = renyi.loss(global_model, global_guide, x)
    pyro.set_rng_seed(4)
    assert TraceIWAE_ELBO(6, max_plate_nesting=1).loss(
        global_model, global_guide, x
    ) == pytest.approx(ref, rel=1e-10)
    pyro.set_rng_seed(4)
    nested1 = TraceIWAE_ELBO(6, nested=True, num_local_particles=1, max_plate_nesting=1)
    assert nested1.loss(global_model, global_guide, x) == pytest.approx(ref, rel=1e-10)


def test_nested_bound_below_log_px_and_above_lumped():
    """Conjugate global-latent model, N=50, mean over R=30 seeded draws: the nested bound
    (K=4, J=8) is not above log p(x) (3 standard errors), is above the lumped bound with the
    same K=4 global particles by more than 3 standard errors, and its mean is above the lumped
    bound with K=32 (the same number of local draws). With N=10, nested K=J=64 is within 0.1
    nats of log p(x) (5 draws)."""

    def mean_sem(elbo, x, r=30):
        v = [-elbo.loss(global_model, global_guide, x) for _ in range(r)]
        v = torch.tensor(v, dtype=f64)
        return v.mean().item(), v.std().item() / math.sqrt(r)

    x = torch.linspace(-1.0, 2.0, 50, dtype=f64)
    log_px = global_log_px(x).item()
    nested, nested_se = mean_sem(TraceIWAE_ELBO(4, nested=True, num_local_particles=8), x)
    lumped, lumped_se = mean_sem(TraceIWAE_ELBO(4), x)
    lumped32, _ = mean_sem(TraceIWAE_ELBO(32), x)
    assert nested - 3 * nested_se < log_px
    assert lumped + 3 * (lumped_se + nested_se) < nested
    assert lumped32 < nested
    x = torch.linspace(-1.0, 2.0, 10, dtype=f64)
    tight, _ = mean_sem(TraceIWAE_ELBO(64, nested=True, num_local_particles=64), x, r=5)
    assert abs(tight - global_log_px(x).item()) < 0.1


def test_nested_stl_runs_and_gives_gradients():
    x = torch.linspace(-1.0, 2.0, 5, dtype=f64)
    elbo = TraceIWAE_ELBO(3, "stl", nested=True, num_local_particles=2)
    loss = elbo.differentiable_loss(global_model, global_guide, x)
    g = param_grads(loss, ["m", "t", "c"])
    assert all(torch.isfinite(v).all() for v in g.values())


# -- gradients in expectation -----------------------------------------------------------------
def _replicated_grads(estimator, k, normal=dist.Normal, calls=20, reps=2000, seed=0):
    """Per call: the gradient summed over `reps` copies of one data point (independent
    particles), divided by `reps`; returns mean and standard error over `calls` calls."""
    x = torch.full((reps,), 1.5, dtype=f64)
    guide = make_gauss_guide(normal)
    elbo = TraceIWAE_ELBO(k, estimator)
    names = ("mu",) + GUIDE_PARAMS
    pyro.set_rng_seed(seed)
    draws = []
    for _ in range(calls):
        g = param_grads(elbo.differentiable_loss(gauss_model, guide, x), names)
        draws.append(torch.stack([g[n] for n in names]) / reps)
    draws = torch.stack(draws)
    return draws.mean(0), draws.std(0) / math.sqrt(calls)


def test_dreg_mean_gradient_equals_iwae():
    """K=5; 20 calls x 2000 replicated data points per estimator; |difference| < 4 combined
    standard errors for every parameter (model and guide)."""
    iwae, iwae_se = _replicated_grads("iwae", 5, seed=0)
    dreg, dreg_se = _replicated_grads("dreg", 5, seed=1)
    tol = 4 * (iwae_se**2 + dreg_se**2).sqrt()
    assert ((iwae - dreg).abs() < tol).all(), (iwae, dreg, tol)
    assert (dreg_se[1:] < iwae_se[1:]).all()  # lower variance for the guide parameters


def test_stl_mean_gradient_equals_iwae_at_k1_and_is_biased_for_k_gt_1():
    """K=1: STL is unbiased (20 x 2000 draws, 4 SE). K=5: STL's guide gradient is biased
    (Tucker et al. 2018): at least one guide parameter differs from IWAE by > 6 SE."""
    iwae, iwae_se = _replicated_grads("iwae", 1, seed=0)
    stl, stl_se = _replicated_grads("stl", 1, seed=1)
    assert ((iwae - stl).abs() < 4 * (iwae_se**2 + stl_se**2).sqrt()).all()
    iwae, iwae_se = _replicated_grads("iwae", 5, seed=0)
    stl, stl_se = _replicated_grads("stl", 5, seed=1)
    z = (iwae - stl).abs() / (iwae_se**2 + stl_se**2).sqrt()
    assert z[0] < 4  # the model gradient is still unbiased
    assert z[1:].max() > 6


def test_score_function_iwae_mean_gradient_equals_reparameterized():
    """A NonreparameterizedNormal guide gets the score-function term with the leave-one-out
    baseline: K=5, 20 calls x 2000 replicated points, mean gradient within 4 combined SE of the
    reparameterized IWAE gradient. Pyro's RenyiELBO(alpha=0) silently gives the guide no
    gradient at all for such a site (its score term is multiplied by alpha)."""
    rep, rep_se = _replicated_grads("iwae", 5, seed=0)
    sf, sf_se = _replicated_grads("iwae", 5, NonreparameterizedNormal, seed=1)
    assert ((rep - sf).abs() < 4 * (rep_se**2 + sf_se**2).sqrt()).all(), (rep, sf)
    assert (rep[1:3].abs() > 10 * rep_se[1:3]).all()  # the true a, b gradients are far from 0

    pyro.clear_param_store()
    x = torch.full((50,), 1.5, dtype=f64)
    renyi = RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True, max_plate_nesting=1)
    renyi.loss_and_grads(gauss_model, make_gauss_guide(NonreparameterizedNormal), x)
    for n in GUIDE_PARAMS:
        grad = pyro.param(n).unconstrained().grad
        assert grad is None or (grad == 0).all()


# -- interfaces --------------------------------------------------------------------------------
def test_elbo_module_and_svi():
    vae = VAE(6, 2, hidden_dims=(5,)).double()
    x = torch.rand(8, 6, dtype=f64)
    elbo = TraceIWAE_ELBO(4, "dreg", max_plate_nesting=1)
    module = elbo(vae.model, vae.guide)  # pyro.infer.ELBOModule
    pyro.set_rng_seed(1)
    loss = module(x)
    loss.backward()
    by_module = {n: p.grad.clone() for n, p in vae.named_parameters()}
    vae.zero_grad()
    pyro.set_rng_seed(1)
    assert elbo.loss_and_grads(vae.model, vae.guide, x) == pytest.approx(loss.item())
    for n, p in vae.named_parameters():
        assert torch.allclose(p.grad, by_module[n]), n

    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.05}), TraceIWAE_ELBO(4))
    first = sum(svi.evaluate_loss(x) for _ in range(10)) / 10
    for _ in range(50):
        svi.step(x)
    last = sum(svi.evaluate_loss(x) for _ in range(10)) / 10
    assert last < first - 1.0


def test_errors():
    x = torch.zeros(3, dtype=f64)
    with pytest.raises(ValueError, match="estimator='vimco' is not known"):
        TraceIWAE_ELBO(2, estimator="vimco")
    with pytest.raises(ValueError, match="num_particles must be a positive integer"):
        TraceIWAE_ELBO(0)
    with pytest.raises(ValueError, match="not available with nested=True"):
        TraceIWAE_ELBO(2, "dreg", nested=True)
    with pytest.raises(ValueError, match="only used with nested=True"):
        TraceIWAE_ELBO(2, num_local_particles=3)
    for est in ("stl", "dreg"):
        with pytest.raises(ValueError, match="guide site 'z' .*has no rsample"):
            TraceIWAE_ELBO(2, est).differentiable_loss(
                gauss_model, make_gauss_guide(NonreparameterizedNormal), x
            )
    with pytest.raises(ValueError, match="guide site 'z' has no rsample"):
        TraceIWAE_ELBO(2, nested=True).loss(
            gauss_model, make_gauss_guide(NonreparameterizedNormal), x
        )
    with pytest.raises(ValueError, match="no vectorized plate named 'obs'"):
        TraceIWAE_ELBO(2, plate_name="obs").loss(gauss_model, make_gauss_guide(), x)


def test_pyro_renyi_has_no_differentiable_loss():
    """The shortcoming (pyro issue #2598) that TraceIWAE_ELBO fixes, checked on Pyro itself."""
    x = torch.zeros(3, dtype=f64)
    with pytest.raises(AttributeError, match="differentiable_loss"):
        RenyiELBO(alpha=0)(gauss_model, make_gauss_guide())(x)
    assert TraceIWAE_ELBO(3)(gauss_model, make_gauss_guide())(x).requires_grad


def test_rescored_guide_replays_random_subsample_and_values():
    """STL/DReG re-run the guide with frozen parameters: with a randomly subsampled data plate
    the re-scored log q must use the same indices and values (equal log-densities), carry no
    gradient to the guide parameters and still differentiate through z."""
    from pyro_deepgen.infer.particles import draw_particles

    data = torch.linspace(-2, 2, 40, dtype=f64)

    def model(data):
        with pyro.plate("data", len(data), subsample_size=7) as idx:
            z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=f64), 1.0))
            pyro.sample("x", dist.Normal(z, 0.7), obs=data[idx])

    def guide(data):
        a = pyro.param("a", torch.tensor(0.5, dtype=f64))
        with pyro.plate("data", len(data), subsample_size=7) as idx:
            pyro.sample("z", dist.Normal(a * data[idx], 0.8))

    tr = draw_particles(model, guide, (data,), {}, 4, 1, rescore_guide=True)
    q, q_stop = tr.guide.nodes["z"]["log_prob"], tr.guide_rescored.nodes["z"]["log_prob"]
    assert torch.allclose(q, q_stop)
    a = pyro.param("a").unconstrained()
    (g_stop,) = torch.autograd.grad(q_stop.sum(), a, retain_graph=True)
    assert a.requires_grad  # restored after the frozen re-run
    # z = a x + s eps, so log q(z) = log N(eps; 0, 1) - log s does not depend on a (path and
    # score cancel), while the path term alone is -(z - a x) / s^2 * x (times the site's
    # subsampling scale 40/7, which Pyro's log_prob includes)
    (g_full,) = torch.autograd.grad(q.sum(), a)
    z = tr.guide.nodes["z"]["value"].detach()
    loc = tr.guide.nodes["z"]["fn"].loc.detach()
    xs = loc / a.detach()  # the subsampled data points
    assert abs(g_full.item()) < 1e-10
    expected = (40 / 7) * (-(z - loc) / 0.64 * xs).sum().item()
    assert g_stop.item() == pytest.approx(expected, rel=1e-10)
    # value of the whole bound with random subsampling: STL == IWAE at the same seed
    for est in ("stl", "dreg"):
        pyro.set_rng_seed(3)
        v1 = TraceIWAE_ELBO(4, est, max_plate_nesting=1).differentiable_loss(model, guide, data)
        pyro.set_rng_seed(3)
        v2 = TraceIWAE_ELBO(4, max_plate_nesting=1).loss(model, guide, data)
        assert v1.item() == pytest.approx(v2, rel=1e-12)


def test_dreg_mean_gradient_equals_iwae_with_global_latent():
    """Lumped bound (global latent theta, N=3 points, K=4): over 200 seeded draws each, the
    DReG and IWAE mean gradients of every parameter agree within 4 combined standard errors,
    and DReG's variance is lower for the guide parameters."""
    x = torch.tensor([0.5, -1.0, 1.5], dtype=f64)
    names = ("m", "t", "c")
    stats = {}
    for seed, estimator in enumerate(("iwae", "dreg")):
        pyro.set_rng_seed(seed)
        elbo = TraceIWAE_ELBO(4, estimator, max_plate_nesting=1)
        draws = torch.stack([
            torch.stack(list(param_grads(
                elbo.differentiable_loss(global_model, global_guide, x), names
            ).values()))
            for _ in range(200)
        ])
        stats[estimator] = draws.mean(0), draws.var(0)
    (mi, vi), (md, vd) = stats["iwae"], stats["dreg"]
    assert ((mi - md).abs() < 4 * ((vi + vd) / 200).sqrt()).all(), (mi, md)
    assert (vd < vi).all()


@pytest.mark.parametrize("estimator", ["iwae", "stl", "dreg"])
def test_runs_on_device(device, estimator):
    """Every tensor the estimator makes lives on the data's device (CUDA with --device cuda)."""
    vae = VAE(6, 2, hidden_dims=(5,)).to(device)
    x = torch.rand(4, 6, device=device)
    loss = TraceIWAE_ELBO(3, estimator).differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    assert loss.device.type == device.type and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.device.type == device.type for p in vae.parameters())
    guide = make_gauss_guide(NonreparameterizedNormal)
    xs = torch.linspace(-1, 1, 5, dtype=f64, device=device)
    pyro.clear_param_store()
    with torch.device(device):
        loss = TraceIWAE_ELBO(3).differentiable_loss(gauss_model, guide, xs)
    assert torch.isfinite(loss)


# -- STL/DReG with any kind of guide parameter (issue 14) ------------------------------------
X_ANY = torch.tensor([0.4, -1.1, 2.0], dtype=f64)


def conj_model(x):
    """z_n ~ N(0, 1), x_n ~ N(z_n, 1): a conjugate Gaussian model without parameters."""
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


class _Q(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor([0.1, -0.3, 0.8], dtype=f64))
        self.scale = torch.nn.Parameter(torch.tensor([0.9, 1.2, 0.6], dtype=f64))


class _PyroQ(pyro.nn.PyroModule):
    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.tensor([0.1, -0.3, 0.8], dtype=f64))
        self.scale = torch.nn.Parameter(torch.tensor([0.9, 1.2, 0.6], dtype=f64))


def _any_param_guide(kind, drawn):
    """q(z_n) = N(loc_n, scale_n) whose (loc, scale) are plain tensors, an unregistered
    nn.Module, a pyro.module-registered one or a PyroModule; appends each draw to ``drawn``."""
    if kind == "tensor":
        loc = torch.tensor([0.1, -0.3, 0.8], dtype=f64, requires_grad=True)
        scale = torch.tensor([0.9, 1.2, 0.6], dtype=f64, requires_grad=True)
        params = lambda: (loc, scale)  # noqa: E731
        leaves = (loc, scale)
    elif kind == "PyroModule":
        q = _PyroQ()
        params = lambda: (q.loc, q.scale)  # noqa: E731
        leaves = (q.loc, q.scale)
    else:
        q = _Q()

        def params():
            if kind == "pyro.module":
                pyro.module("q", q)
            return q.loc, q.scale

        leaves = (q.loc, q.scale)

    def guide(x):
        loc, scale = params()
        with pyro.plate("data", len(x)):
            drawn.append(pyro.sample("z", dist.Normal(loc, scale)))

    return guide, leaves


def _hand_log_w(z, x, loc, scale):
    """log p(x, z) - log q(z) with the parameters of q stopped."""
    return (dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(x)
            - dist.Normal(loc.detach(), scale.detach()).log_prob(z))


ANY_PARAM_KINDS = ["tensor", "nn.Module", "pyro.module", "PyroModule"]


@pytest.mark.parametrize("kind", ANY_PARAM_KINDS)
def test_stl_at_k1_is_the_path_derivative_for_any_parameter(kind):
    """Against truth: at K=1 the STL gradient is d/dphi log w(z(phi)) with q's parameters
    stopped, written by hand (z = loc + scale eps, eps recovered from the draw); it differs
    from the IWAE gradient (which keeps the score term), so the test is not vacuous."""
    grads = {}
    for estimator in ("stl", "iwae"):
        pyro.clear_param_store()
        drawn = []
        guide, (loc, scale) = _any_param_guide(kind, drawn)
        pyro.set_rng_seed(3)
        loss = TraceIWAE_ELBO(1, estimator).differentiable_loss(conj_model, guide, X_ANY)
        grads[estimator] = torch.autograd.grad(-loss, [loc, scale])
    eps = ((drawn[-1] - loc) / scale).detach()
    hand = torch.autograd.grad(_hand_log_w(loc + scale * eps, X_ANY, loc, scale).sum(), [loc, scale])
    for got, want in zip(grads["stl"], hand):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), (kind, got, want)
    assert not torch.allclose(grads["iwae"][1], hand[1], rtol=1e-3)


@pytest.mark.parametrize("kind", ANY_PARAM_KINDS)
def test_dreg_is_the_hand_written_formula_for_any_parameter(kind):
    """Against truth: DReG at K=4 gives the guide sum_k w~_k^2 (d log w_k / dz) dz_k/dphi
    (Tucker et al. 2018, eq. 7), with dz/dloc = 1 and dz/dscale = eps."""
    pyro.clear_param_store()
    drawn = []
    guide, (loc, scale) = _any_param_guide(kind, drawn)
    pyro.set_rng_seed(5)
    loss = TraceIWAE_ELBO(4, "dreg").differentiable_loss(conj_model, guide, X_ANY)
    got = torch.autograd.grad(-loss, [loc, scale])
    z = drawn[-1].detach().requires_grad_()  # (K, N); drawn[0] is the plate-guessing run
    assert z.shape == (4, 3)
    eps = (z.detach() - loc.detach()) / scale.detach()
    log_w = _hand_log_w(z, X_ANY, loc, scale)
    (dlogw_dz,) = torch.autograd.grad(log_w.sum(), [z])
    w2 = torch.softmax(log_w.detach(), 0).square()
    want = ((w2 * dlogw_dz).sum(0), (w2 * dlogw_dz * eps).sum(0))
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-12, atol=1e-12), (kind, g, w)


def test_stl_rejects_a_parameter_whose_graph_was_built_outside_the_guide():
    """A loc computed once outside the guide cannot be stopped by re-running the guide: a
    clear error naming the site, instead of the IWAE gradient returned silently."""
    base = torch.tensor([0.1, -0.3, 0.8], dtype=f64, requires_grad=True)
    loc = base * 2.0

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, 1.0))

    with pytest.raises(ValueError, match="guide site 'z'.*cannot stop"):
        TraceIWAE_ELBO(2, "stl").differentiable_loss(conj_model, guide, X_ANY)


# -- the plate rule, one particle, exact K=1 score terms ------------------------------------------
SIGMA = 0.5


def plateless_model(x):
    """z ~ N(0, 1), x ~ N(z, 0.5^2) with x a scalar: log p(x) = log N(x; 0, 1 + 0.5^2)."""
    z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=f64), 1.0))
    pyro.sample("x", dist.Normal(z, SIGMA), obs=x)


def sequential_model(x):
    """The same z with a sequential plate over the observations (one data point overall)."""
    z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=f64), 1.0))
    for i in pyro.plate("data", len(x)):
        pyro.sample(f"x_{i}", dist.Normal(z, SIGMA), obs=x[i])


def make_point_guide(normal=dist.Normal):
    def guide(x):
        loc = pyro.param("loc", torch.tensor(0.2, dtype=f64))
        scale = pyro.param("scale", torch.tensor(0.7, dtype=f64), constraint=constraints.positive)
        pyro.sample("z", normal(loc, scale))

    return guide


X_SCALAR = torch.tensor(0.8, dtype=f64)
X_SEQ = torch.tensor([0.8, 1.1, 0.3], dtype=f64)


@pytest.mark.parametrize(
    "model, x", [(plateless_model, X_SCALAR), (sequential_model, X_SEQ)], ids=["none", "seq"]
)
@pytest.mark.parametrize("estimator", ["iwae", "stl", "dreg"])
def test_plateless_k1_equals_trace_elbo(model, x, estimator):
    """A program without a vectorized plate is one data point; at K=1 (no particle plate) the
    value and gradient are Trace_ELBO's at the same seed (STL/DReG: same value)."""
    guide = make_point_guide()
    pyro.clear_param_store()
    guide(x)
    ours = seeded_grads(TraceIWAE_ELBO(1, estimator), model, guide, ["loc", "scale"], 4, x)
    ref = seeded_grads(Trace_ELBO(), model, guide, ["loc", "scale"], 4, x)
    assert ours[0].item() == pytest.approx(ref[0].item(), rel=1e-12)
    if estimator == "iwae":
        for n in ("loc", "scale"):
            assert torch.allclose(ours[1][n], ref[1][n], rtol=1e-12, atol=1e-14), n


@pytest.mark.parametrize(
    "model, x", [(plateless_model, X_SCALAR), (sequential_model, X_SEQ)], ids=["none", "seq"]
)
def test_plateless_value_is_log_mean_exp_of_whole_program_weights(model, x):
    """Value at K=5 = log (1/K) sum_k exp(log p(x, z_k) - log q(z_k)) of the whole program
    (recomputed by hand from the drawn z_k); at large K it reaches the closed-form log p(x)."""
    guide = make_point_guide()
    pyro.clear_param_store()
    pyro.set_rng_seed(5)
    loss = TraceIWAE_ELBO(5, max_plate_nesting=0).loss(model, guide, x)
    pyro.set_rng_seed(5)
    z = draw_particles(model, guide, (x,), {}, 5, 0).guide.nodes["z"]["value"]
    assert z.shape == (5,)
    log_w = (
        dist.Normal(0.0, 1.0).log_prob(z)
        + dist.Normal(z.unsqueeze(-1), SIGMA).log_prob(x.reshape(-1)).sum(-1)
        - dist.Normal(pyro.param("loc"), pyro.param("scale")).log_prob(z)
    )
    expected = torch.logsumexp(log_w, 0) - math.log(5)
    assert -loss == pytest.approx(expected.item(), rel=1e-12)
    if model is plateless_model:  # q = the exact posterior: every weight is log p(x)
        log_px = dist.Normal(torch.zeros((), dtype=f64), math.sqrt(1 + SIGMA**2)).log_prob(x).item()
        var = SIGMA**2 / (1 + SIGMA**2)
        pyro.get_param_store()["loc"] = x / (1 + SIGMA**2)
        pyro.get_param_store()["scale"] = torch.tensor(var, dtype=f64).sqrt()
        for k in (1, 7):
            assert -TraceIWAE_ELBO(k).loss(model, guide, x) == pytest.approx(log_px, rel=1e-12)


def test_nested_bound_needs_a_vectorized_data_plate():
    with pytest.raises(ValueError, match="nested=True needs a vectorized data plate"):
        TraceIWAE_ELBO(2, nested=True).loss(plateless_model, make_point_guide(), X_SCALAR)


def nonreparam_model(x):
    theta = pyro.sample("theta", dist.Normal(torch.tensor(0.0, dtype=f64), 1.0))
    with pyro.plate("data", len(x), subsample_size=3):
        idx = pyro.subsample(torch.arange(len(x)), event_dim=0)
        z = pyro.sample("z", dist.Normal(theta, 1.0))
        pyro.sample("x", dist.Normal(z, SIGMA), obs=x[idx])


def nonreparam_guide(x):
    m = pyro.param("m", torch.tensor(0.1, dtype=f64))
    a = pyro.param("a", torch.tensor(0.4, dtype=f64))
    pyro.sample("theta", NonreparameterizedNormal(m, 0.8))
    with pyro.plate("data", len(x), subsample_size=3) as idx:
        pyro.sample("z", NonreparameterizedNormal(a * x[idx], 0.6))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k1_non_reparameterized_gradient_equals_trace_elbo_exactly(seed):
    """At K=1 the score-function term is Trace_ELBO's, Rao-Blackwellized over the plates, with
    no extra zero-mean -grad log q term: the same gradient at the same seed (global and local
    non-reparameterized sites, a subsampled data plate)."""
    x = torch.linspace(-1.0, 2.0, 5, dtype=f64)
    pyro.clear_param_store()
    nonreparam_guide(x)
    names = ["m", "a"]
    ours = seeded_grads(TraceIWAE_ELBO(1), nonreparam_model, nonreparam_guide, names, seed, x)
    ref = seeded_grads(Trace_ELBO(), nonreparam_model, nonreparam_guide, names, seed, x)
    assert ours[0].item() == pytest.approx(ref[0].item(), rel=1e-12)
    for n in names:
        assert torch.allclose(ours[1][n], ref[1][n], rtol=1e-10, atol=1e-12), (n, ours[1], ref[1])


def test_k1_non_reparameterized_plateless_gradient_equals_trace_elbo():
    guide = make_point_guide(NonreparameterizedNormal)
    pyro.clear_param_store()
    guide(X_SEQ)
    ours = seeded_grads(TraceIWAE_ELBO(1), sequential_model, guide, ["loc", "scale"], 6, X_SEQ)
    ref = seeded_grads(Trace_ELBO(), sequential_model, guide, ["loc", "scale"], 6, X_SEQ)
    for n in ("loc", "scale"):
        assert torch.allclose(ours[1][n], ref[1][n], rtol=1e-10, atol=1e-12), n
