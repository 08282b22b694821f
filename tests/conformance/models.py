"""The model shapes of the conformance suite: tiny model/guide pairs written from Pyro's public
contract (a model and a guide are Pyro programs with the same latent sites; ``pyro.plate``
marks conditional independence; ``poutine.scale``/``poutine.mask`` rescale or drop
log-densities; a guide site that cannot be reparameterized needs the score-function term).

Every program is in float64. Model parameters are named ``theta*`` and guide parameters
``phi*``, so that a check can tell them apart. Each program takes its data as the first
argument; :class:`Shape` says how to make it.
"""
import math
from typing import Callable, NamedTuple, Optional

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.testing.fakes import NonreparameterizedNormal
from torch.distributions import constraints

D = torch.float64
X3 = (0.3, -1.2, 0.8)


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


def _tile(p: torch.Tensor, n: int) -> torch.Tensor:
    """A per-data-point parameter of the base data set, repeated for replicated data."""
    return p.repeat(n // p.shape[0]) if p.shape[0] != n else p


class Shape(NamedTuple):
    """One row of the table: a model/guide pair and its data."""

    name: str
    group: str  # plates, scaling, sites, shapes, mismatches, degenerate, own model
    summary: str
    model: Callable
    guide: Callable
    data: Callable[[], tuple]  # () -> args of model and guide
    # the unbiasedness reference: (args, estimator_k) -> {param name: exact expected gradient}
    # of the estimator's expected loss at the parameters' initial values (None: no reference)
    exact_grad: Optional[Callable] = None
    replicate: Optional[Callable[[int], tuple]] = None  # R -> args with the data repeated R times


# -- plates -----------------------------------------------------------------------------------
def no_plate_model(x):
    theta = pyro.param("theta", _t(0.2))
    z = pyro.sample("z", dist.Normal(theta, 1.0))
    pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def no_plate_guide(x):
    loc = pyro.param("phi_loc", _t(0.1))
    scale = pyro.param("phi_scale", _t(0.8), constraint=constraints.positive)
    pyro.sample("z", dist.Normal(loc, scale))


def one_plate_model(x):
    theta = pyro.param("theta", _t(0.2))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(theta, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def one_plate_guide(x):
    loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]))
    scale = pyro.param("phi_scale", _t(0.8), constraint=constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(_tile(loc, len(x)), scale))


def other_plate_model(x):  # one vectorized plate, not named "data"
    with pyro.plate("obs", len(x)):
        z = pyro.sample("z", dist.Normal(pyro.param("theta", _t(0.2)), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def other_plate_guide(x):
    loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]))
    with pyro.plate("obs", len(x)):
        pyro.sample("z", dist.Normal(loc, 0.8))


def nested_model(x):  # x: (3 data points, 2 features)
    theta = pyro.param("theta", _t(0.2))
    with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("feature", x.shape[1], dim=-1):
        z = pyro.sample("z", dist.Normal(theta, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def nested_guide(x):
    loc = pyro.param("phi_loc", torch.zeros(x.shape, dtype=D) + 0.1)
    scale = pyro.param("phi_scale", _t(0.8), constraint=constraints.positive)
    with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("feature", x.shape[1], dim=-1):
        pyro.sample("z", dist.Normal(loc, scale))


def sequential_model(x):
    theta = pyro.param("theta", _t(0.2))
    for i in pyro.plate("data", len(x)):
        z = pyro.sample(f"z_{i}", dist.Normal(theta, 1.0))
        pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=x[i])


def sequential_guide(x):
    loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]))
    scale = pyro.param("phi_scale", _t(0.8), constraint=constraints.positive)
    for i in pyro.plate("data", len(x)):
        pyro.sample(f"z_{i}", dist.Normal(loc[i], scale))


SUBSAMPLE = torch.tensor([0, 2, 3])


def subsampled_model(x):  # 6 data points, a fixed minibatch of 3 (scale 2)
    theta = pyro.param("theta", _t(0.2))
    with pyro.plate("data", len(x), subsample=SUBSAMPLE) as idx:
        z = pyro.sample("z", dist.Normal(theta, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx])


def subsampled_guide(x):
    loc = pyro.param("phi_loc", torch.linspace(-0.5, 0.5, len(x), dtype=D))
    scale = pyro.param("phi_scale", _t(0.8), constraint=constraints.positive)
    with pyro.plate("data", len(x), subsample=SUBSAMPLE) as idx:
        pyro.sample("z", dist.Normal(loc[idx], scale))


def global_model(x):
    theta = pyro.param("theta", _t(0.2))
    g = pyro.sample("g", dist.Normal(theta, 1.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(g, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def global_guide(x):
    g_loc = pyro.param("phi_g", _t(0.3))
    loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]))
    scale = pyro.param("phi_scale", _t(0.8), constraint=constraints.positive)
    pyro.sample("g", dist.Normal(g_loc, 0.5))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(loc, scale))


def beside_model(x):  # a user plate "aux" next to (not inside) "data"
    theta = pyro.param("theta", _t(0.2))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(theta, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    with pyro.plate("aux", 2):
        u = pyro.sample("u", dist.Normal(theta, 1.0))
        pyro.sample("y", dist.Normal(u, 1.0), obs=_t([0.5, -0.5]))


def beside_guide(x):
    loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]))
    u_loc = pyro.param("phi_u", _t([0.2, -0.2]))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(loc, 0.8))
    with pyro.plate("aux", 2):
        pyro.sample("u", dist.Normal(u_loc, 0.7))


# -- scaling ----------------------------------------------------------------------------------
def scale_model(x):
    with poutine.scale(scale=0.25):
        one_plate_model(x)


def scale_guide(x):
    with poutine.scale(scale=0.25):
        one_plate_guide(x)


MASK = torch.tensor([True, False, True])


def mask_model(x):
    with poutine.mask(mask=MASK):
        one_plate_model(x)


def mask_guide(x):
    with poutine.mask(mask=MASK):
        one_plate_guide(x)


# -- sites ------------------------------------------------------------------------------------
def enumerated_model(x):  # a discrete site enumerated in the model, absent from the guide
    theta = pyro.param("theta", _t(0.2))
    with pyro.plate("data", len(x)):
        c = pyro.sample("c", dist.Bernoulli(torch.sigmoid(theta)), infer={"enumerate": "parallel"})
        z = pyro.sample("z", dist.Normal(2 * c - 1, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def enumerated_guide(x):
    loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(loc, 0.8))


def nonreparam_model(x):
    theta = pyro.param("theta", _t([0.2, -0.1, 0.4]))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(_tile(theta, len(x)), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def nonreparam_guide(x, normal=NonreparameterizedNormal):
    loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]))
    scale = pyro.param("phi_scale", _t([0.8, 0.6, 1.1]), constraint=constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("z", normal(_tile(loc, len(x)), _tile(scale, len(x))))


def reparam_twin_guide(x):
    nonreparam_guide(x, dist.Normal)


def _nonreparam_exact(k: int):
    """k=1: the closed-form ELBO gradient of the Normal-Normal model (no Monte Carlo);
    k>=2: the mean pathwise IWAE gradient on the reparameterized twin, R=40000 replicates."""
    x = _t(X3)
    theta = _t([0.2, -0.1, 0.4]).requires_grad_()
    loc = _t([0.1, -0.4, 0.3]).requires_grad_()
    # phi_scale is stored unconstrained (log): differentiate with respect to the log
    log_s = _t([0.8, 0.6, 1.1]).log().requires_grad_()
    s2 = (2 * log_s).exp()
    if k == 1:
        elbo = (-math.log(2 * math.pi) - 0.5 * ((x - loc) ** 2 + s2) - 0.5 * ((loc - theta) ** 2 + s2)
                + 0.5 * torch.log(2 * math.pi * math.e * s2)).sum()
        g = torch.autograd.grad(-elbo, (theta, loc, log_s))
        return {"theta": g[0], "phi_loc": g[1], "phi_scale": g[2]}
    from pyro_deepgen.infer import TraceIWAE_ELBO

    reps = 40000  # pathwise IWAE on the reparameterized twin: unbiased, low variance
    pyro.clear_param_store()
    args = _rep(reps)
    elbo = TraceIWAE_ELBO(num_particles=k, max_plate_nesting=1)
    with poutine.trace(param_only=True) as tr:
        elbo.loss_and_grads(nonreparam_model, reparam_twin_guide, *args)
    grads = {}
    for name, site in tr.trace.nodes.items():
        g = site["value"].unconstrained().grad
        grads[name] = g.detach().clone() / reps
    pyro.clear_param_store()
    return grads


def discrete_model(x):
    theta = pyro.param("theta", _t([0.3, -0.2, 0.1]))
    with pyro.plate("data", len(x)):
        c = pyro.sample("c", dist.Bernoulli(logits=_tile(theta, len(x))))
        pyro.sample("x", dist.Normal(2 * c - 1, 1.0), obs=x)


def discrete_guide(x):
    phi = pyro.param("phi", _t([0.5, -0.3, 0.2]))
    with pyro.plate("data", len(x)):
        pyro.sample("c", dist.Bernoulli(logits=_tile(phi, len(x))))


def _discrete_exact(k: int):
    """The gradient of E[-L_k] (L_k the k-particle importance-weighted bound per data point),
    enumerated over all 2**k joint values of the k particles: exact, no Monte Carlo."""
    x = _t(X3)
    theta = _t([0.3, -0.2, 0.1]).requires_grad_()
    phi = _t([0.5, -0.3, 0.2]).requires_grad_()
    total = 0.0
    for bits in range(2 ** k):
        cs = [torch.full_like(x, float((bits >> j) & 1)) for j in range(k)]
        log_q = sum(dist.Bernoulli(logits=phi).log_prob(c) for c in cs)
        log_w = torch.stack([
            dist.Bernoulli(logits=theta).log_prob(c) + dist.Normal(2 * c - 1, 1.0).log_prob(x)
            - dist.Bernoulli(logits=phi).log_prob(c) for c in cs])
        bound = torch.logsumexp(log_w, 0) - math.log(k)
        total = total + (log_q.exp() * bound).sum()
    g = torch.autograd.grad(-total, (theta, phi))
    return {"theta": g[0], "phi": g[1]}


def auxiliary_guide(x):  # a guide-only site whose entropy depends on the discrete site
    phi = pyro.param("phi", _t([0.5, -0.3, 0.2]))
    with pyro.plate("data", len(x)):
        c = pyro.sample("c", dist.Bernoulli(logits=_tile(phi, len(x))))
        pyro.sample("a", dist.Normal(0.0, torch.exp(1.5 * c)), infer={"is_auxiliary": True})


def guide_enumerated_guide(x):  # the guide marks its Bernoulli site for enumeration
    phi = pyro.param("phi", _t([0.5, -0.3, 0.2]))
    with pyro.plate("data", len(x)):
        pyro.sample("c", dist.Bernoulli(logits=_tile(phi, len(x))), infer={"enumerate": "parallel"})


# -- shapes -----------------------------------------------------------------------------------
def param_batch_dim_guide(x):  # a param with event_dim=0 whose dim -2 no plate declares
    with pyro.plate("data", len(x)):
        extra = pyro.param("phi_extra", torch.ones(4, 1, dtype=D), event_dim=0)  # broadcasts
        loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]), event_dim=0)
        pyro.sample("z", dist.Normal(loc * extra.mean(), 0.8))


def fresh_leaf_guide(x):  # a tensor with requires_grad created by the guide at every call
    loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]))
    scale = torch.tensor(0.8, dtype=D, requires_grad=True)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(_tile(loc, len(x)), scale))


def event_dim_model(x):  # x: (3, 2), the last dim an event
    theta = pyro.param("theta", _t(0.2))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(theta, 1.0).expand([2]).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)


def event_dim_guide(x):
    with pyro.plate("data", x.shape[0]):
        # a per-data-point parameter with an event dim: sliced by the plate like a batch
        loc = pyro.param("phi_loc", torch.zeros(x.shape, dtype=D) + 0.1, event_dim=1)
        pyro.sample("z", dist.Normal(loc, 0.8).to_event(1))


def dynamic_model(x):  # as many latent sites as observations: the count changes between calls
    theta = pyro.param("theta", _t(0.2))
    for i in range(len(x)):
        z = pyro.sample(f"z_{i}", dist.Normal(theta, 1.0))
        pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=x[i])


def dynamic_guide(x):
    loc = pyro.param("phi_loc", _t(0.1))
    for i in range(len(x)):
        pyro.sample(f"z_{i}", dist.Normal(loc + 0.1 * i, 0.8))


def asserting_model(x):  # user shape assertions: no particle dim may be added at k=1
    theta = pyro.param("theta", _t(0.2))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(theta, 1.0))
        assert z.shape == x.shape, f"z.shape={tuple(z.shape)}"
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def asserting_guide(x):
    loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(loc, 0.8))
        assert z.shape == x.shape, f"z.shape={tuple(z.shape)}"


def constrained_model(x):
    theta = pyro.param("theta", _t(1.5), constraint=constraints.positive)
    with pyro.plate("data", len(x)):
        rate = pyro.sample("rate", dist.Gamma(theta, 1.0))
        pyro.sample("x", dist.Exponential(rate), obs=x)


def constrained_guide(x):
    loc = pyro.param("phi_loc", _t([0.1, -0.2, 0.0]))
    with pyro.plate("data", len(x)):
        pyro.sample("rate", dist.LogNormal(loc, 0.5))


# -- mismatches -------------------------------------------------------------------------------
def missing_in_guide_model(x):
    theta = pyro.param("theta", _t(0.2))
    w = pyro.sample("w", dist.Normal(theta, 1.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(w, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def missing_in_guide_guide(x):  # samples z only: w is drawn from the prior
    loc = pyro.param("phi_loc", _t([0.1, -0.4, 0.3]))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(loc, 0.8))


def missing_in_model_guide(x):  # an extra non-auxiliary site the model never samples
    one_plate_guide(x)
    pyro.sample("extra", dist.Normal(_t(0.0), 1.0))


def shape_mismatch_guide(x):  # one z for all data points: it broadcasts, but shapes disagree
    loc = pyro.param("phi_loc", _t(0.1))
    pyro.sample("z", dist.Normal(loc, 0.8))


def plate_mistake_model(x):  # a batch dim of 2 where plate 'data' (size 3) sits
    theta = pyro.param("theta", _t(0.2))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(theta.expand(3, 2), 1.0))


def extra_dim_model(x):  # a batch dim of size 2 left of plate 'data', with no plate for it
    theta = pyro.param("theta", _t(0.2))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(theta.expand(2, len(x)), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def extra_dim_guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(torch.zeros(2, len(x), dtype=D), 1.0))


# -- degenerate -------------------------------------------------------------------------------
def no_latent_model(x):
    theta = pyro.param("theta", _t(0.2))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(theta, 1.0), obs=x)


def empty_guide(x):
    pass


def no_sites_model(x):
    pyro.param("theta", _t(0.2))


# -- DiffusionELBO's own model ---------------------------------------------------------------
def diffusion():
    """A 3-step GaussianDiffusion in float64 (built in the test, seeded)."""
    from pyro_deepgen.models import GaussianDiffusion
    from pyro_deepgen.models.diffusion_schedules import linear_schedule
    from pyro_deepgen.nn import TimeMLP

    return GaussianDiffusion(TimeMLP(1, (8,)), 1, schedule=linear_schedule(3)).double()


def _x3():
    return (_t(X3),)


def _rep(r: int):
    return (_t(X3).repeat(r),)


SHAPES = [
    Shape("no_plate", "plates", "no plate: one latent, one observation", no_plate_model,
          no_plate_guide, lambda: (_t(0.7),)),
    Shape("one_plate", "plates", "one vectorized ``data`` plate", one_plate_model,
          one_plate_guide, _x3),
    Shape("other_plate_name", "plates", "one vectorized plate named ``obs``, none named ``data``",
          other_plate_model, other_plate_guide, _x3),
    Shape("nested_plates", "plates", "``data`` (dim -2) around ``feature`` (dim -1)",
          nested_model, nested_guide, lambda: (_t([[0.3, 1.0], [-1.2, 0.1], [0.8, -0.5]]),)),
    Shape("sequential_plate", "plates", "``for i in pyro.plate('data', 3)``",
          sequential_model, sequential_guide, _x3),
    Shape("subsampled", "plates", "``data`` of 6 with a minibatch of 3 (scale 2)",
          subsampled_model, subsampled_guide, lambda: (torch.linspace(-1, 1, 6, dtype=D),)),
    Shape("global_latent", "plates", "a global latent outside ``data``", global_model,
          global_guide, _x3),
    Shape("plate_beside_data", "plates", "a user plate ``aux`` next to ``data``", beside_model,
          beside_guide, _x3),
    Shape("poutine_scale", "scaling", "``poutine.scale(scale=0.25)`` on model and guide",
          scale_model, scale_guide, _x3),
    Shape("poutine_mask", "scaling", "``poutine.mask`` dropping one data point", mask_model,
          mask_guide, _x3),
    Shape("enumerated", "sites", "a discrete model site marked ``enumerate='parallel'``",
          enumerated_model, enumerated_guide, _x3),
    Shape("nonreparameterized", "sites", "a guide site without ``rsample``",
          nonreparam_model, nonreparam_guide, _x3, _nonreparam_exact, _rep),
    Shape("discrete", "sites", "a Bernoulli latent sampled by the guide", discrete_model,
          discrete_guide, _x3, _discrete_exact, _rep),
    Shape("auxiliary_site", "sites", "an auxiliary guide-only site ``a`` whose entropy depends on "
          "the Bernoulli ``c``", discrete_model, auxiliary_guide, _x3),
    Shape("guide_enumerated", "sites", "the guide's Bernoulli ``c`` marked ``enumerate='parallel'``",
          discrete_model, guide_enumerated_guide, _x3),
    Shape("param_batch_dim", "shapes", "a guide ``pyro.param`` of shape (4, 1), ``event_dim=0``, in "
          "``data``: dim -2 undeclared", one_plate_model, param_batch_dim_guide, _x3),
    Shape("fresh_leaf", "shapes", "the guide creates ``torch.tensor(0.8, requires_grad=True)`` at each "
          "call", one_plate_model, fresh_leaf_guide, _x3),
    Shape("param_event_dim", "shapes", "``pyro.param(..., event_dim=1)`` inside ``data``",
          event_dim_model, event_dim_guide, lambda: (_t([[0.3, 1.0], [-1.2, 0.1], [0.8, -0.5]]),)),
    Shape("dynamic_sites", "shapes", "one site per observation, 2 then 3 in two calls",
          dynamic_model, dynamic_guide, lambda: (_t([0.3, -1.2]),)),
    Shape("shape_assertion", "shapes", "model and guide assert ``z.shape == x.shape``",
          asserting_model, asserting_guide, _x3),
    Shape("constrained_latent", "shapes", "a positive latent (Gamma prior, LogNormal guide)",
          constrained_model, constrained_guide, lambda: (_t([0.5, 1.5, 0.2]),)),
    Shape("missing_in_guide", "mismatches", "model latent ``w`` not sampled by the guide",
          missing_in_guide_model, missing_in_guide_guide, _x3),
    Shape("missing_in_model", "mismatches", "guide site ``extra`` the model never samples",
          one_plate_model, missing_in_model_guide, _x3),
    Shape("shape_mismatch", "mismatches", "guide ``z`` of shape () where the model's is (3,)",
          one_plate_model, shape_mismatch_guide, _x3),
    Shape("plate_mistake", "mismatches", "a batch dim of size 2 at plate ``data`` (size 3)",
          plate_mistake_model, empty_guide, _x3),
    Shape("extra_batch_dim", "mismatches", "a batch dim of size 2 left of ``data``, no plate for it",
          extra_dim_model, extra_dim_guide, _x3),
    Shape("no_latents", "degenerate", "only observed sites (an empty guide)", no_latent_model,
          empty_guide, _x3),
    Shape("no_sample_sites", "degenerate", "no sample site at all", no_sites_model, empty_guide,
          _x3),
    Shape("diffusion", "own model", "a 3-step ``GaussianDiffusion`` (``model``/``guide``)",
          None, None, lambda: (torch.linspace(-1, 1, 4, dtype=D)[:, None],)),
]
SHAPE = {s.name: s for s in SHAPES}
