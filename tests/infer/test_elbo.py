"""The particle-ELBO base: one loss/loss_and_grads, a protected plate-nesting guess, one
num_particles check, and Pyro's hooks drawing the particles."""
import inspect
import warnings

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


# -- Pyro's model/guide checks, degenerate programs, the plate rule, one particle ----------------
def _point_model(x):
    z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=f64), 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _point_guide(x):
    loc = pyro.param("loc", torch.tensor(0.1, dtype=f64))
    pyro.sample("z", dist.Normal(loc, 1.0))


def _vector_model(x):
    z = pyro.sample("z", dist.Normal(torch.zeros(3, dtype=f64), 1.0).to_event(1))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(z.sum(), 1.0), obs=x)


def _wide_guide(x):  # z of shape (2,) where the model has (3,)
    pyro.sample("z", dist.Normal(torch.zeros(2, dtype=f64), 1.0).to_event(1))


def _empty_guide(x):
    pass


def _extra_guide(x):
    _point_guide(x)
    pyro.sample("u", dist.Normal(torch.zeros((), dtype=f64), 1.0))


CHECKED = [  # every estimator drawing through ParticleELBO._draw, at one and several particles
    lambda: TraceIWAE_ELBO(1),
    lambda: TraceIWAE_ELBO(3),
    lambda: TraceIWAE_ELBO(3, "dreg"),
    lambda: TraceVIMCO_ELBO(3),
    lambda: TraceScoreFunction_ELBO(3),
    lambda: TraceHVI_ELBO(num_steps=0),
]
CHECKED_IDS = ["iwae1", "iwae3", "dreg3", "vimco3", "sf3", "hvi0"]


def _outcome(elbo, model_, guide_, *args):
    """(exception type and first message line, or None; the warnings' first phrases) of one
    ``loss`` call."""
    pyro.clear_param_store()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            elbo.loss(model_, guide_, *args)
            error = None
        except Exception as e:  # noqa: BLE001 (compared against Pyro's)
            error = (type(e), str(e).split("\n")[0])
    return error, [str(w.message).split(":")[0] for w in record]


@pytest.mark.parametrize("make", CHECKED, ids=CHECKED_IDS)
def test_model_guide_shape_mismatch_raises_pyros_error(make):
    x = _data()
    expected, _ = _outcome(Trace_ELBO(), _vector_model, _wide_guide, x)
    assert expected[0] is ValueError and "Model and guide shapes disagree at site 'z'" in expected[1]
    got, _ = _outcome(make(), _vector_model, _wide_guide, x)
    assert got[0] is ValueError and got[1].startswith("Model and guide shapes disagree at site 'z'")


@pytest.mark.parametrize("make", CHECKED, ids=CHECKED_IDS)
@pytest.mark.parametrize(
    "guide_, message",
    [
        (_empty_guide, "Found vars in model but not guide"),
        (_extra_guide, "Found non-auxiliary vars in guide but not model, consider marking these "
                       "infer={'is_auxiliary'"),
    ],
    ids=["missing-in-guide", "guide-only"],
)
def test_sites_missing_on_one_side_warn_as_pyro(make, guide_, message):
    x = _data()
    expected_error, expected = _outcome(Trace_ELBO(), _point_model, guide_, x)
    assert expected_error is None and message in expected
    error, got = _outcome(make(), _point_model, guide_, x)
    if error is not None:  # a latent the estimator cannot handle is refused by name
        assert "guide" in error[1] or "latent" in error[1], error
    assert message in got


def test_checks_follow_pyros_validation_switch():
    x = _data()
    with pyro.validation_enabled(False):
        error, warned = _outcome(TraceIWAE_ELBO(3), _point_model, _empty_guide, x)
    assert error is None and warned == []


def test_auxiliary_guide_site_does_not_warn():
    def guide_(x):
        _point_guide(x)
        pyro.sample("u", dist.Normal(torch.zeros((), dtype=f64), 1.0), infer={"is_auxiliary": True})

    error, warned = _outcome(TraceIWAE_ELBO(3), _point_model, guide_, _data())
    assert error is None and warned == []


@pytest.mark.parametrize("make", CHECKED, ids=CHECKED_IDS)
def test_program_without_sample_sites_is_named(make):
    with pytest.raises(ValueError, match=r"_ELBO: the model and guide have no sample sites \(the"):
        make().loss(lambda x: None, lambda x: None, _data())


def test_require_latents_names_the_estimator():
    def observed_only(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(torch.zeros((), dtype=f64), 1.0), obs=x)

    elbo = TraceIWAE_ELBO(2)
    traces = elbo._draw(observed_only, lambda x: None, (_data(),), {})
    with pytest.raises(ValueError, match="TraceIWAE_ELBO needs at least one latent .*because"):
        elbo._require_latents(traces, "because")
    # the bound itself needs none: it is then log p(x), exactly
    expected = dist.Normal(torch.zeros((), dtype=f64), 1.0).log_prob(_data()).sum()
    assert elbo.loss(observed_only, lambda x: None, _data()) == pytest.approx(-expected.item())


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("dim", [None, -1])
def test_plate_nesting_mistake_names_the_users_plate(k, dim):
    """max_plate_nesting=0 with one user plate: the error names pyro.plate('data') and the
    nesting needed, never the internal particle plate (Pyro's names num_particles_vectorized or
    reads the obs with the wrong batch shape)."""
    def model_(x):
        with pyro.plate("data", len(x), dim=dim):
            z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=f64), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide_(x):
        with pyro.plate("data", len(x), dim=dim):
            pyro.sample("z", dist.Normal(torch.zeros((), dtype=f64), 1.0))

    for elbo in (TraceIWAE_ELBO(k, max_plate_nesting=0), TraceVIMCO_ELBO(3, max_plate_nesting=0)):
        with pytest.raises(ValueError) as info:
            elbo.loss(model_, guide_, _data())
        message = str(info.value)
        assert "pyro.plate('data')" in message and "max_plate_nesting=1" in message, message
        assert PARTICLE_PLATE not in message


def test_batch_dims_outside_any_plate_are_named():
    def model_(x):
        pyro.sample("z", dist.Normal(torch.zeros(2, dtype=f64), 1.0))

    for k in (1, 3):
        with pytest.raises(ValueError, match="site 'z' has batch dims outside any plate"):
            TraceIWAE_ELBO(k).loss(model_, model_, _data())


@pytest.mark.parametrize(
    "make",
    [
        lambda: TraceIWAE_ELBO(1),
        lambda: TraceIWAE_ELBO(1, "stl"),
        lambda: TraceScoreFunction_ELBO(1, control_variate=None),
        lambda: TraceHVI_ELBO(num_steps=0),
        lambda: ReweightedWakeSleep(num_particles=1),
    ],
    ids=["iwae", "stl", "sf", "hvi0", "rws"],
)
def test_one_particle_adds_no_particle_dim(make):
    """As Pyro's vectorized ELBO at one particle: user shape assertions hold."""
    def model_(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=f64), 1.0))
            assert z.shape == x.shape
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide_(x):
        loc = pyro.param("loc", torch.zeros((), dtype=f64))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(loc, 1.0))
            assert z.shape == x.shape

    x = _data()
    make().loss(model_, guide_, x)
    traces = draw_particles(model_, guide_, (x,), {}, 1, 1)
    assert traces.guide.nodes["z"]["value"].shape == x.shape
    assert PARTICLE_PLATE not in {f.name for f in traces.guide.nodes["z"]["cond_indep_stack"]}
    assert draw_particles(model, guide, (x,), {}, 2, 1).guide.nodes["z"]["value"].shape == (
        2, len(x)
    )


@pytest.mark.parametrize("make", [
    lambda: TraceHVI_ELBO(num_steps=0),
    lambda: TraceScoreFunction_ELBO(num_particles=2), lambda: TraceVIMCO_ELBO(num_particles=2),
])
def test_enumerated_guide_site_warns_as_pyro(make):
    """A guide site configured for enumeration gives Pyro's check_if_enumerated warning (the
    estimators sample it; Trace_ELBO warns the same); TraceIWAE_ELBO refuses it by name."""
    def model():
        pyro.sample("c", dist.Bernoulli(0.3))

    def guide():
        pyro.sample("c", dist.Bernoulli(0.4), infer={"enumerate": "parallel"})

    for elbo in (make(), Trace_ELBO()):
        with pytest.warns(UserWarning, match="you need to use TraceEnum_ELBO"):
            elbo.loss(model, guide)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="guide site 'c' is enumerated"):
            TraceIWAE_ELBO(num_particles=1).loss(model, guide)


def test_vimco_guide_with_only_a_factor():
    """A guide holding only pyro.factor (Pyro's test_factor_in_guide_ok) is a zero loss, not
    an IndexError."""
    def guide():
        pyro.factor("f", torch.tensor(0.0), has_rsample=True)

    assert TraceVIMCO_ELBO(num_particles=4).loss(lambda: None, guide) == 0.0


@pytest.mark.parametrize("make", [lambda: TraceIWAE_ELBO(1), lambda: TraceHVI_ELBO(num_steps=0)],
                         ids=["iwae1", "hvi0"])
def test_size_one_dim_outside_plates_is_accepted_as_by_trace_elbo(make):
    # a latent of batch shape (1,) and no plate (Pyro's test_inference conjugate models): Pyro's
    # shape check lets size-1 dims broadcast; value and gradient equal Trace_ELBO's per seed
    data = torch.tensor([1.0])

    def model():
        lam = pyro.sample("lam", dist.Gamma(torch.ones(1), torch.ones(1)))
        pyro.sample("obs", dist.Poisson(lam), obs=data)

    def guide():
        a = pyro.param("a", torch.full((1,), 2.0), constraint=dist.constraints.positive)
        pyro.sample("lam", dist.Gamma(a, torch.ones(1)))

    results = []
    for elbo in (Trace_ELBO(), make()):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        loss = elbo.differentiable_loss(model, guide)
        results.append((loss.item(), torch.autograd.grad(loss, [pyro.param("a").unconstrained()])[0]))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-6)
    assert torch.allclose(results[1][1], results[0][1], rtol=1e-5)
