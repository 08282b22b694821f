"""The particle-ELBO base: one loss/loss_and_grads, a protected plate-nesting guess, one
num_particles check, and Pyro's hooks drawing the particles."""
import inspect

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.elbo import ELBO

import pyro_deepgen.infer as infer
from pyro_deepgen.infer import (
    DiffusionELBO,
    ParticleELBO,
    ReweightedWakeSleep,
    TraceHVI_ELBO,
    TraceIWAE_ELBO,
    TraceScoreFunction_ELBO,
    TraceVIMCO_ELBO,
    WakeSleep,
)
from pyro_deepgen.infer.elbo import check_num_particles
from pyro_deepgen.infer.particles import PARTICLE_PLATE, draw_particles
from pyro_deepgen.models import GaussianDiffusion
from pyro_deepgen.nn import TimeMLP

f64 = torch.float64
ESTIMATORS = (
    TraceIWAE_ELBO,
    TraceVIMCO_ELBO,
    TraceScoreFunction_ELBO,
    TraceHVI_ELBO,
    ReweightedWakeSleep,
    WakeSleep,
    DiffusionELBO,
)


def model(x):
    w = pyro.param("w", torch.tensor(0.7, dtype=f64))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=f64), 1.0))
        pyro.sample("x", dist.Normal(w * z, 0.5), obs=x)


def guide(x):
    a = pyro.param("a", torch.tensor(0.3, dtype=f64))
    s = pyro.param("s", torch.tensor(0.8, dtype=f64), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(a * x, s))


def _data():
    return torch.linspace(-1.5, 2.0, 6, dtype=f64)


def _loss_and_grads(elbo, x, seed):
    """Seeded loss_and_grads from zero gradients: the loss and the gradient of every param."""
    pyro.set_rng_seed(seed)
    with pyro.poutine.trace(param_only=True) as tr:
        value = elbo.loss_and_grads(model, guide, x)
    params = {name: site["value"].unconstrained() for name, site in tr.trace.nodes.items()}
    grads = {name: p.grad.clone() for name, p in params.items()}
    for p in params.values():
        p.grad = None
    return value, grads


@pytest.mark.parametrize("seed", [0, 3])
def test_iwae_k1_first_call_equals_trace_elbo(seed):
    """At K=1 the FIRST call of a fresh TraceIWAE_ELBO (max_plate_nesting guessed, under a
    forked random state) draws exactly Trace_ELBO's particle: equal values and gradients (up
    to the order of the float64 sums, rel 1e-12; other draws would differ by O(1))."""
    x = _data()
    pyro.set_rng_seed(seed)
    expected = Trace_ELBO().loss(model, guide, x)
    pyro.set_rng_seed(seed)
    first = TraceIWAE_ELBO(num_particles=1).loss(model, guide, x)
    assert first == pytest.approx(expected, rel=1e-12)

    value, grads = _loss_and_grads(TraceIWAE_ELBO(num_particles=1), x, seed)
    expected_value, expected_grads = _loss_and_grads(Trace_ELBO(), x, seed)
    assert value == pytest.approx(expected_value, rel=1e-12)
    assert set(grads) == {"w", "a", "s"}
    for name, g in grads.items():
        assert torch.allclose(g, expected_grads[name], rtol=1e-12, atol=0), name


@pytest.mark.parametrize(
    "make",
    [
        lambda: TraceIWAE_ELBO(1, estimator="dreg"),
        lambda: TraceScoreFunction_ELBO(1, control_variate=None),
        lambda: TraceHVI_ELBO(num_steps=0),
        lambda: ReweightedWakeSleep(num_particles=1),
        lambda: WakeSleep(),
    ],
    ids=["dreg", "score_function", "hvi0", "rws", "ws"],
)
def test_first_call_draws_what_trace_elbo_draws(make):
    """Every K=1 limit equals Trace_ELBO's value from its first call on: guessing
    max_plate_nesting never shifts the random state."""
    x = _data()
    pyro.set_rng_seed(1)
    expected = Trace_ELBO().loss(model, guide, x)
    pyro.set_rng_seed(1)
    assert make().loss(model, guide, x) == pytest.approx(expected, rel=1e-12)


def test_hvi_zero_steps_first_loss_and_grads_equal_trace_elbo():
    x = _data()
    value, grads = _loss_and_grads(TraceHVI_ELBO(num_steps=0), x, 2)
    expected_value, expected_grads = _loss_and_grads(Trace_ELBO(), x, 2)
    assert value == pytest.approx(expected_value, rel=1e-12)
    for name, g in grads.items():
        assert torch.allclose(g, expected_grads[name], rtol=1e-12, atol=0), name


def test_every_estimator_derives_from_particle_elbo():
    """Every ELBO exported by pyro_deepgen.infer is a ParticleELBO, and none re-writes loss,
    loss_and_grads or Pyro's trace hooks: subclasses write differentiable_loss (+ __init__)."""
    exported = {
        obj for obj in vars(infer).values() if inspect.isclass(obj) and issubclass(obj, ELBO)
    }
    assert exported == set(ESTIMATORS) | {ParticleELBO}
    for cls in ESTIMATORS:
        assert issubclass(cls, ParticleELBO), cls
        for name in ("loss", "loss_and_grads", "_get_trace", "_get_traces",
                     "_guess_max_plate_nesting"):
            assert getattr(cls, name) is getattr(ParticleELBO, name), (cls, name)
        assert cls.differentiable_loss is not ParticleELBO.differentiable_loss, cls


@pytest.mark.parametrize(
    "make",
    [
        lambda: TraceIWAE_ELBO(3),
        lambda: TraceIWAE_ELBO(2, nested=True, num_local_particles=3),
        lambda: TraceVIMCO_ELBO(3),
        lambda: TraceScoreFunction_ELBO(3),
        lambda: TraceHVI_ELBO(num_particles=3),
        lambda: ReweightedWakeSleep(num_particles=3),
    ],
)
def test_pyro_hooks_draw_the_particles(make):
    """_get_trace / _get_traces (Pyro's hooks) return the vectorized particles, never raise."""
    x = _data()
    elbo = make()
    traces = list(elbo._get_traces(model, guide, (x,), {}))
    assert len(traces) == 1
    model_trace, guide_trace = traces[0]
    assert elbo.max_plate_nesting == 1
    z = guide_trace.nodes["z"]
    assert any(f.name == PARTICLE_PLATE for f in z["cond_indep_stack"])
    assert z["value"].shape[0] == elbo.num_particles and z["value"].shape[-1] == len(x)
    assert model_trace.nodes["z"]["value"] is z["value"]
    assert "log_prob" in model_trace.nodes["x"]
    assert z["value"].requires_grad == elbo.pathwise


def test_diffusion_elbo_uses_the_base():
    """DiffusionELBO writes only differentiable_loss; loss / loss_and_grads come from the base
    (same value for the same seed) and its Pyro hook traces the chain instead of raising."""
    d = GaussianDiffusion(TimeMLP(2, (8,)), 2, num_steps=3)
    x0 = torch.randn(4, 2)
    elbo = DiffusionELBO()
    pyro.set_rng_seed(4)
    value = elbo.loss(d.model, d.guide, x0)
    pyro.set_rng_seed(4)
    assert elbo.loss_and_grads(d.model, d.guide, x0) == pytest.approx(value, rel=1e-6)
    assert all(p.grad is not None for p in d.parameters() if p.requires_grad)
    model_trace, guide_trace = elbo._get_trace(d.model, d.guide, (x0,), {})
    assert model_trace.nodes and guide_trace.nodes


def test_num_particles_is_checked_once_with_one_message():
    for bad in (0, -1, 1.5, True, None):
        for cls in (TraceIWAE_ELBO, ReweightedWakeSleep):
            with pytest.raises(ValueError, match="num_particles must be a positive integer"):
                cls(num_particles=bad)
    with pytest.raises(ValueError, match=r"TraceHVI_ELBO needs num_particles >= 1"):
        TraceHVI_ELBO(num_particles=0)
    with pytest.raises(ValueError, match=r"DiffusionELBO needs num_particles >= 1"):
        DiffusionELBO(num_particles=0)
    with pytest.raises(ValueError, match=r"TraceVIMCO_ELBO needs num_particles >= 2: .*got "
                                         r"num_particles=1"):
        TraceVIMCO_ELBO(num_particles=1)
    TraceScoreFunction_ELBO(1, control_variate="baseline")  # the minimum depends on the option
    with pytest.raises(ValueError, match="num_particles >= 2"):
        TraceScoreFunction_ELBO(1)
    assert check_num_particles(3, 2, "X", "why") == 3


def test_given_max_plate_nesting_counts_user_plates_only():
    """Pyro adds one to a given max_plate_nesting for vectorized particles; the base does not,
    so the particle plate sits at dim -max_plate_nesting - 1 whether given or guessed."""
    for cls in (TraceVIMCO_ELBO, TraceIWAE_ELBO, TraceHVI_ELBO):
        assert cls(num_particles=3, max_plate_nesting=1).max_plate_nesting == 1


def test_draw_particles_without_path_uses_the_same_random_numbers():
    x = _data()
    pyro.set_rng_seed(6)
    with_path = draw_particles(model, guide, (x,), {}, 4, 1).guide.nodes["z"]["value"]
    pyro.set_rng_seed(6)
    detached = draw_particles(model, guide, (x,), {}, 4, 1, pathwise=False)
    z = detached.guide.nodes["z"]["value"]
    assert with_path.requires_grad and not z.requires_grad
    assert torch.equal(with_path.detach(), z)
    assert detached.model.nodes["z"]["value"] is z  # the model is replayed at the detached z


def test_old_paths_warn():
    import pyro_deepgen.infer.particles as particles
    import pyro_deepgen.infer.score_terms as score_terms

    x = _data()
    with pytest.warns(DeprecationWarning, match="draw_particles"):
        model_trace, guide_trace = particles.vectorized_traces(model, guide, (x,), {}, 2, 1)
    assert guide_trace.nodes["z"]["value"].shape == (2, len(x))
    with pytest.warns(DeprecationWarning, match="draw_particles"):
        assert particles.particle_traces is draw_particles
    with pytest.warns(DeprecationWarning, match="pyro_deepgen.infer.elbo.ParticleELBO"):
        assert score_terms.ParticleELBO is ParticleELBO
    with pytest.warns(DeprecationWarning, match="pyro_deepgen.infer.elbo.check_num_particles"):
        assert score_terms.check_num_particles is check_num_particles


def test_particle_elbo_is_abstract_in_differentiable_loss_only():
    with pytest.raises(TypeError, match="differentiable_loss"):
        ParticleELBO()

    class Plain(ParticleELBO):
        def differentiable_loss(self, model, guide, *args, **kwargs):
            model_trace, guide_trace = self._draw(model, guide, args, kwargs)[:2]
            lp = model_trace.log_prob_sum() - guide_trace.log_prob_sum()
            return -lp / self.num_particles

    x = _data()
    pyro.set_rng_seed(8)
    expected = Trace_ELBO().loss(model, guide, x)
    pyro.set_rng_seed(8)
    assert Plain().loss(model, guide, x) == pytest.approx(expected, rel=1e-12)
