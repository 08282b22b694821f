import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.testing import fakes
from pyro.poutine.messenger import Messenger
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_deepgen.infer import TraceHVI_ELBO
from pyro_deepgen.models import VAE

from ..linear_gaussian import LinearGaussian


def bad_guide(lg):
    """The exact posterior marginals shifted by 0.5 and shrunk to 0.7 of their scale."""
    return lambda x: lg.guide(x, loc_shift=0.5, scale_mult=0.7)


@pytest.mark.parametrize("num_data", [None, 40])
def test_zero_steps_equals_trace_elbo(num_data):
    vae = VAE(6, 2, (5,))
    x = torch.rand(4, 6)
    params = list(vae.parameters())
    pyro.set_rng_seed(3)
    expected = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, num_data)
    expected_grads = torch.autograd.grad(expected, params)
    pyro.set_rng_seed(3)
    actual = TraceHVI_ELBO(num_steps=0).differentiable_loss(vae.model, vae.guide, x, num_data)
    grads = torch.autograd.grad(actual, params)
    assert actual.item() == pytest.approx(expected.item(), rel=1e-6)
    for g, e in zip(grads, expected_grads):
        assert torch.allclose(g, e, rtol=1e-5, atol=1e-6)


def test_vanishing_steps_give_the_elbo():
    # at initialization the linear reverse model equals q(v) (weight 0, bias 0, same scale); with
    # step size 1e-9 the trajectory does not move, so every term but log p - log q cancels:
    # the bound equals Trace_ELBO's value for the same seed. A missing or wrong Jacobian of the
    # constrained LogNormal site would not cancel.
    def model(x):
        s = pyro.sample("s", dist.HalfNormal(1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, s), obs=x)

    def guide(x):
        pyro.sample("s", dist.LogNormal(torch.tensor(0.3), torch.tensor(0.4)))

    x = torch.tensor([0.5, -1.2, 2.0])
    pyro.set_rng_seed(5)
    expected = Trace_ELBO().loss(model, guide, x)
    pyro.set_rng_seed(5)
    actual = TraceHVI_ELBO(num_steps=2, step_size=1e-9).loss(model, guide, x)
    assert actual == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("num_steps,step_size", [(1, 0.3), (3, 0.05), (3, 0.2)])
def test_bound_below_log_marginal_untrained(num_steps, step_size):
    # PPCA with closed-form log p(x); 2000 vectorized particles per data point. The Monte Carlo
    # error of the averaged bound is < 0.05 nats here, so L_aux <= log p(x) + 0.05.
    lg = LinearGaussian()
    x = lg.data(5)
    hvi = TraceHVI_ELBO(num_steps=num_steps, step_size=step_size, num_particles=2000)
    bound = -hvi.loss(lg.model, bad_guide(lg), x)
    log_px = lg.log_marginal(x).sum().item()
    assert bound <= log_px + 0.05


def train_hvi(model, guide, x, hvi, steps, lr):
    svi = SVI(model, guide, Adam({"lr": lr}), hvi)
    for _ in range(steps):
        svi.step(x)


def test_training_improves_on_the_guide_elbo_and_stays_below_log_marginal():
    # guide fixed (no parameters), only the HVI parameters train (80 steps, 20 particles).
    # Measured: ELBO ~ -142, trained bound ~ -80, log p(x) ~ -71. Asserted: the trained bound
    # beats the ELBO by 20 nats, and stays below log p(x) (+0.05, 2000 particles).
    lg = LinearGaussian()
    x = lg.data(10)
    guide = bad_guide(lg)
    elbo = -Trace_ELBO(num_particles=2000, vectorize_particles=True).loss(lg.model, guide, x)
    hvi = TraceHVI_ELBO(num_steps=3, step_size=0.05, num_particles=20)
    train_hvi(lg.model, guide, x, hvi, steps=80, lr=0.05)
    hvi.num_particles = 2000
    bound = -hvi.loss(lg.model, guide, x)
    log_px = lg.log_marginal(x).sum().item()
    assert bound > elbo + 20.0
    assert bound <= log_px + 0.05
    store = pyro.get_param_store()
    for name in ("step_size", "momentum_scale", "reverse_weight", "reverse_bias", "reverse_scale"):
        assert f"hvi.z.{name}" in store
    assert not torch.allclose(store["hvi.z.step_size"], torch.tensor(0.05, dtype=torch.float64))


def test_constrained_latent():
    # global HalfNormal scale with a LogNormal guide; log p(x) by quadrature on a fine grid.
    # After 80 training steps of the HVI parameters (guide fixed, deliberately off) the bound
    # (2000 particles, MC error < 0.02) beats the ELBO and stays below log p(x) + 0.02.
    def model(x):
        s = pyro.sample("s", dist.HalfNormal(torch.tensor(1.0, dtype=torch.float64)))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, s), obs=x)

    def guide(x):
        pyro.sample("s", dist.LogNormal(torch.tensor(-0.6, dtype=torch.float64), 0.2))

    x = torch.tensor([0.5, -1.2, 2.0, 0.1], dtype=torch.float64)
    grid = torch.linspace(1e-4, 20.0, 400001, dtype=torch.float64)
    log_joint = dist.HalfNormal(1.0).log_prob(grid) + dist.Normal(0.0, grid[:, None]).log_prob(
        x
    ).sum(-1)
    log_px = torch.logsumexp(log_joint, 0).item() + math.log(grid[1] - grid[0])
    elbo = -Trace_ELBO(num_particles=2000, vectorize_particles=True).loss(model, guide, x)
    hvi = TraceHVI_ELBO(num_steps=3, step_size=0.1, num_particles=20)
    train_hvi(model, guide, x, hvi, steps=80, lr=0.05)
    hvi.num_particles = 2000
    bound = -hvi.loss(model, guide, x)
    assert elbo + 0.1 < bound <= log_px + 0.02


def test_momenta_are_auxiliary_sites_and_module_reverse_model_is_registered():
    lg = LinearGaussian()
    x = lg.data(3)
    net = torch.nn.Linear(2, 4).double()

    def reverse(name, u, x):
        loc, raw = net(u).chunk(2, -1)
        return loc, torch.nn.functional.softplus(raw) + 1e-3

    class Reverse(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, name, u, x):
            return reverse(name, u, x)

    class Recorder(Messenger):  # an outer handler sees the momentum sites
        sites = {}

        def _postprocess_message(self, msg):
            if msg["type"] == "sample":
                self.sites[msg["name"]] = msg

    hvi = TraceHVI_ELBO(num_steps=2, reverse_model=Reverse())
    with Recorder() as recorder:
        loss = hvi.differentiable_loss(lg.model, bad_guide(lg), x)
    site = recorder.sites["hvi.z.momentum"]
    assert site["infer"]["is_auxiliary"] and site["value"].shape == (3, 2)  # no particle dim at num_particles=1
    assert "hvi.reverse_model$$$net.weight" in pyro.get_param_store()
    loss.backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


def test_bad_input():
    def model():
        pyro.sample("c", dist.Bernoulli(0.3))

    def guide():
        pyro.sample("c", dist.Bernoulli(pyro.param("p", torch.tensor(0.5))))

    with pytest.raises(ValueError, match="latent site 'c' is discrete"):
        TraceHVI_ELBO(num_steps=1).loss(model, guide)
    with pytest.raises(ValueError, match="num_steps"):
        TraceHVI_ELBO(num_steps=-1)
    with pytest.raises(ValueError, match="step_size"):
        TraceHVI_ELBO(step_size=0.0)
    with pytest.raises(ValueError, match="reverse_model"):
        TraceHVI_ELBO(reverse_model="mlp")
    lg = LinearGaussian()
    TraceHVI_ELBO(num_steps=2).loss(lg.model, bad_guide(lg), lg.data(3))
    with pytest.raises(ValueError, match="has 2 steps but num_steps=3"):
        TraceHVI_ELBO(num_steps=3).loss(lg.model, bad_guide(lg), lg.data(3))


def test_fixed_step_size_and_momentum_are_not_params():
    lg = LinearGaussian()
    hvi = TraceHVI_ELBO(num_steps=2, learn_step_size=False, learn_momentum_scale=False,
                        reverse_model="constant")
    hvi.loss(lg.model, bad_guide(lg), lg.data(3))
    assert set(pyro.get_param_store().keys()) == {"hvi.z.reverse_scale", "hvi.z.reverse_bias"}


def test_subsampling_scales_the_bound_and_replays_the_minibatch():
    # (a) with num_data = 10 x batch, the force is divided by the scale, so the trajectory is the
    # same and the bound is exactly 10 x the full-batch bound (same seed, same parameters);
    # (b) a randomly subsampled plate: the leapfrog's model evaluations replay the guide's
    # minibatch indices, so with vanishing steps the bound is Trace_ELBO's (same seed)
    vae = VAE(6, 2, (5,))
    x = torch.rand(4, 6)
    hvi = TraceHVI_ELBO(num_steps=2, step_size=0.2)
    pyro.set_rng_seed(3)
    full = hvi.loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    scaled = hvi.loss(vae.model, vae.guide, x, 40)
    assert scaled == pytest.approx(10 * full, rel=1e-5)

    data = torch.randn(20)

    def model():
        with pyro.plate("data", 20, subsample_size=5) as idx:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=data[idx])

    def guide():
        with pyro.plate("data", 20, subsample_size=5) as idx:
            pyro.sample("z", dist.Normal(0.8 * data[idx], 0.45))

    pyro.set_rng_seed(4)
    expected = Trace_ELBO().loss(model, guide)
    pyro.set_rng_seed(4)
    actual = TraceHVI_ELBO(num_steps=2, step_size=1e-9, name="sub").loss(model, guide)
    assert actual == pytest.approx(expected, rel=1e-6)


def test_runs_on_device(device):
    vae = VAE(6, 2, (5,)).to(device)
    x = torch.rand(4, 6, device=device)
    loss = TraceHVI_ELBO(num_steps=2, num_particles=3).differentiable_loss(
        vae.model, vae.guide, x, 40
    )
    loss.backward()
    assert loss.device.type == device.type and torch.isfinite(loss)
    leaf = pyro.param("hvi.z.step_size").unconstrained()
    assert leaf.device.type == device.type and leaf.grad is not None


def _two_point(site_type):
    """A two-point model whose guide site "z" is reparameterized, not reparameterizable
    (NonreparameterizedNormal) or discrete (Bernoulli), next to a global reparameterized "g"."""
    data = torch.tensor([-0.5, 2.0])

    def dist_z(p):
        if site_type == "bernoulli":
            return dist.Bernoulli(logits=p)
        Normal = dist.Normal if site_type == "reparam" else fakes.NonreparameterizedNormal
        return Normal(p, 1.0)

    def model():
        g = pyro.sample("g", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 2):
            z = pyro.sample("z", dist_z(torch.zeros(2)))
            pyro.sample("x", dist.Normal(z + g, 1.0), obs=data)

    def guide():
        loc = pyro.param("loc", torch.tensor([0.3, -0.2]))
        pyro.sample("g", dist.Normal(pyro.param("g_loc", torch.tensor(0.1)), 1.0))
        with pyro.plate("data", 2):
            pyro.sample("z", dist_z(loc))

    return model, guide


@pytest.mark.parametrize("num_particles", [1, 4])
@pytest.mark.parametrize("site_type", ["reparam", "nonreparam", "bernoulli"])
def test_zero_steps_equals_trace_elbo_on_every_site_type(site_type, num_particles):
    # value and gradient (including the score-function term of a site that cannot be
    # reparameterized) equal Trace_ELBO's, vectorized particles, same seed
    model, guide = _two_point(site_type)
    results = []
    for elbo in (
        Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1),
        TraceHVI_ELBO(num_steps=0, num_particles=num_particles, max_plate_nesting=1),
    ):
        pyro.clear_param_store()
        pyro.set_rng_seed(7)
        loss = elbo.differentiable_loss(model, guide)
        params = [pyro.param(n).unconstrained() for n in ("loc", "g_loc")]
        results.append((loss.item(), torch.autograd.grad(loss, params)))
    (expected, expected_grads), (actual, grads) = results
    assert actual == pytest.approx(expected, rel=1e-6)
    for g, e in zip(grads, expected_grads):
        assert torch.allclose(g, e, rtol=1e-5, atol=1e-6), (g, e)
    if site_type == "nonreparam":  # the score-function term is there
        assert not torch.allclose(grads[0], torch.zeros(2))


def test_steps_refuse_nonreparameterized_site_by_name():
    model, guide = _two_point("nonreparam")
    with pytest.raises(ValueError, match="latent site 'z' is discrete or not reparameterizable"):
        TraceHVI_ELBO(num_steps=2).loss(model, guide)


@pytest.mark.parametrize("num_steps", [0, 2])
def test_degenerate_programs(num_steps):
    def empty():
        pass

    with pytest.raises(ValueError, match="TraceHVI_ELBO: the model and guide have no sample site"):
        TraceHVI_ELBO(num_steps=num_steps).loss(empty, empty)

    def observed_only():
        pyro.sample("x", dist.Normal(pyro.param("m", torch.tensor(0.0)), 1.0), obs=torch.tensor(1.0))

    if num_steps == 0:  # no latent: the ELBO is log p(x) exactly
        loss = TraceHVI_ELBO(num_steps=0).loss(observed_only, empty)
        assert loss == pytest.approx(-dist.Normal(0.0, 1.0).log_prob(torch.tensor(1.0)).item())
    else:
        with pytest.raises(ValueError, match=r"no latent sample site.*use num_steps=0"):
            TraceHVI_ELBO(num_steps=num_steps).loss(observed_only, empty)


def test_steps_keep_the_users_shapes_at_one_particle():
    # at k=1 there is no particle dim: a scalar global latent stays () and a latent in a user
    # plate (not the data plate) stays (2,) in every model run of the leapfrog steps, as under
    # Trace_ELBO (the per-site step sizes once broadcast a scalar site to (1,))
    shapes = []

    def model():
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        with pyro.plate("plate", 2):
            b = pyro.sample("b", dist.Normal(a, 1.0))
        shapes.append((a.shape, b.shape))

    def guide():
        pyro.sample("a", dist.Normal(pyro.param("m", torch.tensor(0.1)), 1.0))
        with pyro.plate("plate", 2):
            pyro.sample("b", dist.Normal(pyro.param("mb", torch.zeros(2)), 1.0))

    pyro.clear_param_store()
    loss = TraceHVI_ELBO(num_steps=2).differentiable_loss(model, guide)
    assert torch.isfinite(loss)
    assert len(shapes) >= 3 and set(shapes) == {(torch.Size([]), torch.Size([2]))}, shapes
    # the per-element step sizes of b are not shared across the user plate's elements
    assert pyro.param("hvi.b.step_size").shape == (2, 2)
