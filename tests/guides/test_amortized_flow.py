"""AmortizedFlowGuide: exact log_prob (step by step and against autograd Jacobians, float64),
replayed values, Pyro-param plumbing, and training with Trace_ELBO."""
import copy
import io

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO
from torch.distributions import ComposeTransform

from pyro_deepgen.distributions.transforms import FLOW_KINDS, condition
from pyro_deepgen.guides import AmortizedFlowGuide, flow_vae

X_DIM, Z_DIM = 6, 3


def make_guide(kind, depth=2, **kw):
    guide = AmortizedFlowGuide(X_DIM, Z_DIM, flow=kind, depth=depth, hidden_dims=(8,), **kw)
    with torch.no_grad():  # move away from near-identity initialisations
        for p in guide.flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return guide.double()


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_log_prob_step_by_step(kind):
    guide = make_guide(kind)
    x = torch.rand(5, X_DIM, dtype=torch.float64)
    pyro.set_rng_seed(1)
    tr = poutine.trace(guide).get_trace(x)
    site = tr.nodes["z"]
    z, lp = site["value"], site["fn"].log_prob(site["value"])
    assert z.shape == (5, Z_DIM) and lp.shape == (5,)
    assert site["fn"].event_shape == (Z_DIM,) and site["fn"].batch_shape == (5,)

    # by hand: the same base draw, pushed through freshly conditioned layers
    pyro.set_rng_seed(1)
    loc, scale, h = guide.encode(x)
    base = dist.Normal(loc, scale)
    z0 = base.rsample()
    expected = base.log_prob(z0).sum(-1)
    zk = z0
    for t in condition(guide.flow, h):
        z_next = t(zk)
        expected = expected - t.log_abs_det_jacobian(zk, z_next)
        zk = z_next
    assert torch.allclose(z, zk, atol=1e-10)
    assert torch.allclose(lp, expected, atol=1e-8)

    # and against autograd's Jacobian of the whole flow, one data point at a time
    for i in range(5):
        f = ComposeTransform(condition(guide.flow, h[i]))
        jac = torch.autograd.functional.jacobian(f, z0[i].detach())
        lp_i = base.log_prob(z0)[i].sum() - torch.linalg.slogdet(jac)[1]
        assert torch.allclose(lp[i], lp_i, atol=1e-8)

    # a replayed value is scored by inverting the flow (no cache): same log_prob
    replayed = poutine.trace(poutine.replay(guide, trace=tr)).get_trace(x).nodes["z"]
    assert replayed["value"] is z
    assert torch.allclose(replayed["fn"].log_prob(z.detach().clone()), lp, atol=1e-8)


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_every_parameter_is_a_pyro_param(kind):
    """Every parameter (flow included) is a param site of the guide trace, so an estimator can
    freeze them all (STL/DReG): then a replayed value's log_prob has a gradient in z only."""
    guide = make_guide(kind)
    x = torch.rand(4, X_DIM, dtype=torch.float64)
    tr = poutine.trace(guide).get_trace(x)
    params = {name: s["value"] for name, s in tr.nodes.items() if s["type"] == "param"}
    assert set(params) == {f"guide.{name}" for name, _ in guide.named_parameters()}
    via_method = poutine.trace(guide.guide).get_trace(x).nodes
    assert {name for name, s in via_method.items() if s["type"] == "param"} == set(params)
    leaves = [getattr(v, "unconstrained", lambda: v)() for v in params.values()]
    assert {id(p) for p in leaves} == {id(p) for p in guide.parameters()}
    z = tr.nodes["z"]["value"].detach().clone().requires_grad_()
    for p in leaves:
        p.requires_grad_(False)
    try:
        replayed = poutine.trace(poutine.replay(guide, trace=_with_value(tr, z)))
        site = replayed.get_trace(x).nodes["z"]
        assert site["value"] is z
        site["fn"].log_prob(z).sum().backward()
    finally:
        for p in leaves:
            p.requires_grad_(True)
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in guide.parameters())


def _with_value(trace, value):
    trace = trace.copy()
    site = dict(trace.nodes["z"])
    site["value"] = value
    trace.nodes["z"] = site
    return trace


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_trains_with_trace_elbo(kind):
    """Seeded: 30 full-batch Adam steps on 100 binary 64-d vectors (4 random prototypes with
    10% of the bits flipped; z_dim 2); the mean loss of the last 10 steps is below that of the
    first 10 by at least 5 nats per point (observed: about 15)."""
    prototypes = torch.rand(4, 64) < 0.5
    flips = torch.rand(100, 64) < 0.1
    x = (prototypes[torch.arange(100) % 4] ^ flips).float()
    vae, guide = flow_vae(64, 2, flow=kind, depth=2, hidden_dims=(32,))
    svi = pyro.infer.SVI(vae.model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(x) / len(x) for _ in range(30)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 5.0


def test_vectorized_particles_and_num_data():
    vae, guide = flow_vae(X_DIM, Z_DIM, flow="iaf", depth=2, hidden_dims=(8,))
    x = torch.rand(5, X_DIM)
    loss = Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    value = loss.differentiable_loss(vae.model, guide, x, num_data=50)
    assert value.shape == () and torch.isfinite(value)
    tr = poutine.trace(guide).get_trace(x, num_data=50)
    assert tr.nodes["z"]["scale"] == 10.0


def test_depth_zero_is_the_diagonal_guide():
    guide = AmortizedFlowGuide(X_DIM, Z_DIM, flow="planar", depth=0, hidden_dims=(8,))
    x = torch.rand(5, X_DIM)
    q = guide.posterior(x)
    loc, scale, _ = guide.encode(x)
    z = torch.randn(5, Z_DIM)
    assert torch.allclose(q.log_prob(z), dist.Normal(loc, scale).log_prob(z).sum(-1))


def test_bad_arguments():
    guide = AmortizedFlowGuide(X_DIM, Z_DIM, flow="radial", depth=1, hidden_dims=(8,))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 6\)"):
        guide(torch.rand(5, X_DIM + 1))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 6\)"):
        guide(torch.rand(X_DIM))
    with pytest.raises(ValueError, match="is not a flow"):
        AmortizedFlowGuide(X_DIM, Z_DIM, flow="maf")
    with pytest.raises(ValueError, match="z_dim must be a positive int"):
        AmortizedFlowGuide(X_DIM, 0)


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_works_with_package_estimators(kind):
    """Drop-in with TraceIWAE_ELBO (iwae, stl, dreg: the last two re-score a fresh copy of z,
    which needs the flow's inverse) and TraceHVI_ELBO: finite loss, and every guide parameter
    gets a finite gradient that is not all zero. Skipped until those estimators are merged."""
    infer = pytest.importorskip("pyro_deepgen.infer")
    if not hasattr(infer, "TraceIWAE_ELBO") or not hasattr(infer, "TraceHVI_ELBO"):
        pytest.skip("TraceIWAE_ELBO / TraceHVI_ELBO not on this branch yet")
    losses = [infer.TraceIWAE_ELBO(num_particles=3, estimator=e) for e in ("iwae", "stl", "dreg")]
    losses.append(infer.TraceHVI_ELBO(num_steps=1, max_plate_nesting=1))
    x = torch.rand(5, X_DIM).round()
    for loss in losses:
        pyro.clear_param_store()
        vae, guide = flow_vae(X_DIM, Z_DIM, flow=kind, depth=2, hidden_dims=(8,))
        value = loss.differentiable_loss(vae.model, guide, x)
        assert torch.isfinite(value)
        value.backward()
        for name, p in guide.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (loss, name)
            assert p.grad.abs().sum() > 0, (loss, name)


@pytest.mark.parametrize("kind", ["planar", "iaf"])
def test_flow_guide_beats_best_diagonal_guide(kind):
    """Linear-Gaussian model with a strongly correlated posterior (correlation -0.92), where
    log p(x) is exact and the best diagonal Gaussian guide has KL(q||p) = 0.5 (sum_i log
    Lambda_ii - log det Lambda) = 0.92 nats per point (Lambda: posterior precision). Seeded:
    150 Adam steps (8 particles) on 16 points; the fitted flow guide's KL, estimated as
    log p(x) - ELBO with 2000 particles, is below half of that (observed 0.08 planar, 0.05 iaf)
    and not below -0.05 (an ELBO above log p(x) would mean a wrong log_prob)."""
    torch.manual_seed(0)
    W = torch.tensor([[1.0, 0.8], [1.0, 1.2], [0.6, 0.5], [1.0, 1.0]])
    noise, n = 0.5, 16
    x = torch.randn(n, 2) @ W.T + noise * torch.randn(n, 4)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T, noise).to_event(1), obs=x)

    log_px = dist.MultivariateNormal(torch.zeros(4), W @ W.T + noise**2 * torch.eye(4))
    log_px = log_px.log_prob(x).mean()
    precision = torch.eye(2) + W.T @ W / noise**2
    kl_diagonal = 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision))
    assert 0.9 < kl_diagonal < 0.95

    guide = AmortizedFlowGuide(4, 2, flow=kind, depth=2, hidden_dims=(16,))
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    svi = pyro.infer.SVI(model, guide, pyro.optim.ClippedAdam({"lr": 0.02, "lrd": 0.995}), elbo)
    for _ in range(150):
        svi.step(x)
    with torch.no_grad():
        big = Trace_ELBO(num_particles=2000, vectorize_particles=True, max_plate_nesting=1)
        kl = log_px + big.loss(model, guide, x) / n
    assert -0.05 < kl < 0.5 * kl_diagonal, kl


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_guide_follows_device_and_dtype(kind, device):
    guide = AmortizedFlowGuide(X_DIM, Z_DIM, flow=kind, depth=2, hidden_dims=(8,))
    guide = guide.to(device=device, dtype=torch.float64)
    x = torch.rand(5, X_DIM, device=device, dtype=torch.float64)
    site = poutine.trace(guide).get_trace(x).nodes["z"]
    lp = site["fn"].log_prob(site["value"].clone())  # a fresh value: scored through the inverse
    for t in (site["value"], lp):
        assert t.device.type == device.type and t.dtype == torch.float64
    assert torch.isfinite(lp).all()


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_guide_deepcopy_and_pickle(kind):
    """A used guide (Pyro modules, conditional transforms included) deep-copies and round-trips
    through torch.save / torch.load with identical draws."""
    guide = make_guide(kind)
    x = torch.rand(4, X_DIM, dtype=torch.float64)
    guide(x)
    buf = io.BytesIO()
    torch.save(guide, buf)
    buf.seek(0)
    for other in (copy.deepcopy(guide), torch.load(buf, weights_only=False)):
        assert type(other.flow[0]) is type(guide.flow[0])
        pyro.set_rng_seed(2)
        z1 = poutine.trace(guide).get_trace(x).nodes["z"]["value"]
        pyro.set_rng_seed(2)
        z2 = poutine.trace(other).get_trace(x).nodes["z"]["value"]
        assert torch.equal(z1, z2)
