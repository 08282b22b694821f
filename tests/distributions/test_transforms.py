"""Property tests run over every flow family of ``FLOWS``, unconditional and conditional, in float64.

Deterministic checks (no Monte Carlo): log|det J| against ``torch.autograd.functional.jacobian``,
the inverse round trip, shapes with batch shapes, gradients, state-dict round trip, device and
dtype, repr; plus the invertibility constraints of planar and radial after large updates. A family
added to the registry is covered without edits here; a made-up family registered with one line
checks that nothing else needs an edit.
"""
import copy
import dataclasses
import io

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.torch_transform import TransformModule
from pyro.infer import Trace_ELBO
from torch.distributions import ComposeTransform

from pyro_deepgen.distributions import FlowDensity
from pyro_deepgen.distributions.transforms import (
    FLOW_KINDS,
    FLOWS,
    AdditiveCoupling,
    ConditionalPlanar,
    ConditionalRadial,
    ConditionedPlanar,
    Permutation,
    Planar,
    Radial,
    FlowFamily,
    Scaling,
    build_flow,
    condition,
    conditional_planar,
    conditional_radial,
    permutation,
    scaling,
)
from pyro_deepgen.guides import AutoFlow, flow_vae

DIM, DEPTH, CONTEXT = 3, 3, 2
CASES = [(kind, c) for kind in FLOWS for c in (None, CONTEXT)]
IDS = [f"{k}-{'cond' if c else 'plain'}" for k, c in CASES]


def make(kind, context_dim, device=None, seed=0):
    torch.manual_seed(seed)
    flow = build_flow(kind, DIM, DEPTH, context_dim=context_dim, hidden_dims=None)
    flow = flow.to(device=device, dtype=torch.float64)
    # move parameters away from the identity-like initialisation so every term matters
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


def transform_of(flow, h):
    return ComposeTransform(condition(flow, h))


def clear_caches(flow_transform):
    for t in flow_transform.parts:
        t._cached_x_y = None, None


@pytest.mark.parametrize("kind,context_dim", CASES, ids=IDS)
def test_flow_properties(kind, context_dim, device):
    check_flow_properties(kind, context_dim, device)


def check_flow_properties(kind, context_dim, device):
    flow = make(kind, context_dim, device)
    opts = dict(device=device, dtype=torch.float64)
    n = 4
    x = torch.randn(n, DIM, **opts)
    h = torch.randn(n, CONTEXT, **opts) if context_dim else None

    # device and dtype follow the input
    t = transform_of(flow, h)
    y = t(x)
    ladj = t.log_abs_det_jacobian(x, y)
    assert y.shape == (n, DIM) and ladj.shape == (n,)
    assert y.dtype == torch.float64 and y.device.type == device.type
    assert ladj.dtype == torch.float64 and ladj.device.type == device.type
    assert torch.isfinite(ladj).all()

    # log|det J| against autograd's Jacobian, one data point (and its own context) at a time
    for i in range(n):
        ti = transform_of(flow, None if h is None else h[i])
        jac = torch.autograd.functional.jacobian(ti, x[i])
        expected = torch.linalg.slogdet(jac)[1]
        assert torch.allclose(ladj[i], expected, atol=1e-8), (i, ladj[i], expected)

    # inverse round trip, with caches cleared so that the inverse is really computed
    t = transform_of(flow, h)
    y = t(x)
    clear_caches(t)
    x_back = t.inv(y)
    assert torch.allclose(x_back, x, atol=1e-8)
    # and the log-det of the inverted pair is the forward one
    assert torch.allclose(t.log_abs_det_jacobian(x_back, y), ladj, atol=1e-8)

    # batch shapes: (3, 4, dim) inputs, context broadcast from (4, C) and given as (3, 4, C)
    xb = torch.randn(3, n, DIM, **opts)
    for hb in (h, None if h is None else h.expand(3, n, CONTEXT)):
        tb = transform_of(flow, hb)
        yb = tb(xb)
        assert yb.shape == (3, n, DIM)
        assert tb.log_abs_det_jacobian(xb, yb).shape == (3, n)
        fresh = transform_of(flow, hb)  # no cache: the values do not come from the forward pass
        assert torch.allclose(fresh.inv(yb), xb, atol=1e-8)

    # every parameter receives a (non-zero) gradient
    flow.zero_grad()
    t = transform_of(flow, h)
    y = t(x)
    (y.pow(2).sum() + t.log_abs_det_jacobian(x, y).sum()).backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name

    # state dict save / load into a differently initialised flow gives identical outputs
    buf = io.BytesIO()
    torch.save(flow.state_dict(), buf)
    buf.seek(0)
    other = make(kind, context_dim, device, seed=1)
    other.load_state_dict(torch.load(buf))
    with torch.no_grad():
        t1, t2 = transform_of(flow, h), transform_of(other, h)
        y1, y2 = t1(x), t2(x)
        assert torch.equal(y1, y2)
        assert torch.equal(t1.log_abs_det_jacobian(x, y1), t2.log_abs_det_jacobian(x, y2))

    # deepcopy after use (caches hold non-leaf tensors) gives the same outputs
    twin = copy.deepcopy(flow)
    with torch.no_grad():
        assert torch.equal(transform_of(twin, h)(x), transform_of(flow, h)(x))

    # repr names the layers
    text = repr(flow)
    assert "ModuleList" in text and type(flow[0]).__name__ in text


@pytest.mark.parametrize("kind,context_dim", CASES, ids=IDS)
def test_flow_distribution_log_prob(kind, context_dim):
    check_flow_log_prob(kind, context_dim)


def check_flow_log_prob(kind, context_dim):
    """log_prob of a TransformedDistribution = base log_prob - sum of log-dets (step by step),
    for a sampled value (cached) and for an arbitrary value (computed inverse)."""
    flow = make(kind, context_dim)
    h = torch.randn(5, CONTEXT, dtype=torch.float64) if context_dim else None
    base = dist.Normal(torch.zeros(5, DIM, dtype=torch.float64), 1.0).to_event(1)
    q = dist.TransformedDistribution(base, condition(flow, h))
    torch.manual_seed(3)
    z = q.rsample()
    torch.manual_seed(3)
    z0 = base.rsample()
    expected = base.log_prob(z0)
    zk = z0
    for t in condition(flow, h):
        z_next = t(zk)
        expected = expected - t.log_abs_det_jacobian(zk, z_next)
        zk = z_next
    assert torch.allclose(z, zk, atol=1e-10)
    assert torch.allclose(q.log_prob(z), expected, atol=1e-8)
    q_fresh = dist.TransformedDistribution(base, condition(flow, h))
    assert torch.allclose(q_fresh.log_prob(z.detach().clone()), expected, atol=1e-8)


def test_depth_zero_is_identity():
    assert len(build_flow("iaf", 4, 0)) == 0
    assert len(build_flow("nice", 4, 0)) == 0


def test_layer_structure():
    flow = build_flow("nice", 4, 3)
    kinds = [type(t) for t in flow]
    assert kinds == [AdditiveCoupling, Permutation, AdditiveCoupling, Permutation,
                     AdditiveCoupling, Scaling]
    assert flow[1].permutation.tolist() == [3, 2, 1, 0]
    assert all(isinstance(t, Planar) for t in build_flow("planar", 2, 4))
    assert all(isinstance(t, ConditionalRadial) for t in build_flow("radial", 2, 2, 3))
    assert len(build_flow("iaf", 4, 3)) == 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind='maf' is not a flow"):
        build_flow("maf", 3, 2)
    with pytest.raises(ValueError, match="depth must be a non-negative int"):
        build_flow("planar", 3, -1)
    with pytest.raises(ValueError, match="depth must be a non-negative int"):
        build_flow("planar", 3, 2.0)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        build_flow("planar", 0, 2)
    with pytest.raises(ValueError, match="needs dim >= 2"):
        build_flow("nice", 1, 2)
    with pytest.raises(ValueError, match="context_dim must be a positive int"):
        build_flow("iaf", 3, 2, context_dim=0)
    with pytest.raises(ValueError, match="at least one hidden layer"):
        build_flow("realnvp", 3, 2, hidden_dims=())
    with pytest.raises(ValueError, match="use 'reverse' or 'random'"):
        build_flow("iaf", 3, 2, permutation="sorted")
    with pytest.raises(TypeError, match="takes no extra keyword"):
        build_flow("planar", 3, 2, stable=True)
    with pytest.raises(ValueError, match="pass a context tensor"):
        condition(build_flow("planar", 3, 1, context_dim=2), None)
    with pytest.raises(ValueError, match="reordering of 0..2"):
        Permutation(torch.tensor([0, 0, 1]))


def _scramble(module, scale=100.0):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("trial", range(5))
def test_planar_radial_constraints_after_updates(trial):
    """w^T u_hat >= -1 (planar) and beta >= -alpha (radial) after large random updates, for
    the unconditional layers and for conditioned ones at random contexts; the Jacobian of
    each layer then has a positive determinant (autograd, float64)."""
    torch.manual_seed(trial)
    opts = dict(dtype=torch.float64)
    layers = [Planar(DIM).double(), Radial(DIM).double()]
    cond = [conditional_planar(DIM, CONTEXT).double(), conditional_radial(DIM, CONTEXT).double()]
    for m in layers + cond:
        _scramble(m)
    h = 10 * torch.randn(20, CONTEXT, **opts)
    conditioned = layers + [c.condition(h) for c in cond]
    for t in conditioned:
        if isinstance(t, ConditionedPlanar):
            _, u, w = t._params() if callable(t._params) else t._params
            _, u_hat, _ = t.constrained_params()
            # exact in real arithmetic; float64 rounding of w^T u_hat ~ 1e-16 |w^T u|
            slack = 1e-13 * (1 + (w * u).sum(-1).abs())
            assert ((w * u_hat).sum(-1) + 1 >= -slack).all()
        else:
            _, alpha, beta = t.constrained_params()
            assert (alpha >= 0).all() and (beta >= -alpha).all()
        x = torch.randn(DIM, **opts)
        fn = t if t in layers else cond_at(t, h)
        jac = torch.autograd.functional.jacobian(fn, x)
        assert torch.linalg.det(jac) >= -1e-9 * jac.abs().max() ** DIM


def cond_at(t, h):
    """The conditioned transform at the first context only (for a single-point Jacobian)."""
    params = t._params()
    first = tuple(p[0] for p in params)
    return type(t)(first)


def test_pyro_planar_radial_are_reused():
    """Our Planar/Radial are Pyro's classes (instances of them) with an inverse added."""
    assert isinstance(Planar(2), dist.transforms.Planar)
    assert isinstance(Radial(2), dist.transforms.Radial)
    assert isinstance(conditional_planar(2, 3), dist.transforms.ConditionalPlanar)
    assert isinstance(ConditionalPlanar(torch.nn.Linear(3, 5)), dist.transforms.ConditionalPlanar)


def test_registry():
    """The registry's order is the command line's; every entry is a frozen FlowFamily."""
    assert tuple(FLOWS) == ("planar", "radial", "iaf", "nice", "realnvp")
    assert FLOW_KINDS == tuple(FLOWS)
    for family in FLOWS.values():
        assert isinstance(family, FlowFamily)
    with pytest.raises(dataclasses.FrozenInstanceError):
        FLOWS["nice"].final = None
    assert FLOWS["nice"].mixing is permutation and FLOWS["nice"].final is scaling
    assert FLOWS["planar"].mixing is None and FLOWS["planar"].final is None


# -- a made-up family: one transform class (and its conditional version) plus one registry line --

class ElementwiseAffine(TransformModule):
    r"""A made-up flow layer, :math:`\mathbf y = e^{\mathbf s}\odot\mathbf x + \mathbf t`, with
    :math:`\log|\det J| = \sum_i s_i`; ``s`` and ``t`` are parameters, or tensors given by a
    context (the conditioned layer)."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, input_dim, hidden_dims=None, s=None, t=None):
        super().__init__()
        if s is None:
            s = torch.nn.Parameter(0.1 * torch.randn(input_dim))
            t = torch.nn.Parameter(0.1 * torch.randn(input_dim))
        self.s, self.t = s, t

    def _call(self, x):
        return torch.exp(self.s) * x + self.t

    def _inverse(self, y):
        return (y - self.t) * torch.exp(-self.s)

    def log_abs_det_jacobian(self, x, y):
        return self.s.expand(x.shape).sum(-1)


class ConditionalElementwiseAffine(ConditionalTransformModule):
    """``condition(h)`` is an :class:`ElementwiseAffine` with ``(s, t)`` linear in ``h``."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, input_dim, context_dim, hidden_dims=None):
        super().__init__()
        self.nn = torch.nn.Linear(context_dim, 2 * input_dim)

    def condition(self, context):
        s, t = self.nn(context).chunk(2, dim=-1)
        return ElementwiseAffine(s.size(-1), s=s, t=t)


MADEUP = FlowFamily(
    layer=ElementwiseAffine, conditional=ConditionalElementwiseAffine,
    mixing=permutation, final=scaling,
)


@pytest.fixture
def madeup(monkeypatch):
    monkeypatch.setitem(FLOWS, "madeup", MADEUP)  # the one registry line


@pytest.mark.parametrize("context_dim", [None, CONTEXT], ids=["plain", "cond"])
def test_madeup_family_properties(madeup, context_dim, device):
    """The property checks pass for a family registered with one line."""
    flow = build_flow("madeup", DIM, DEPTH, context_dim=context_dim)
    layer = ElementwiseAffine if context_dim is None else ConditionalElementwiseAffine
    assert [type(t) for t in flow] == [layer, Permutation, layer, Permutation, layer, Scaling]
    check_flow_properties("madeup", context_dim, device)
    check_flow_log_prob("madeup", context_dim)


def test_madeup_family_needs_no_other_edit(madeup):
    """FlowDensity, AutoFlow, AmortizedFlowGuide and flow_vae accept the new family by name, and
    the error for an unknown name lists it (the registry is read at call time)."""
    x = torch.randn(8, DIM)
    density = FlowDensity(DIM, flow="madeup", depth=2)
    loss = Trace_ELBO().differentiable_loss(density.model, density.guide, x)
    loss.backward()
    assert all(p.grad is not None for p in density.flow.parameters())
    assert torch.allclose(-loss, density.log_likelihood(x).sum())

    def model():
        pyro.sample("a", dist.Normal(torch.zeros(DIM), 1.0).to_event(1))

    guide = AutoFlow(model, flow="madeup", depth=2)
    guide()
    kinds = (ElementwiseAffine, Permutation, ElementwiseAffine, Scaling)
    assert len(guide.flow) == 4 and all(isinstance(t, k) for t, k in zip(guide.flow, kinds))
    assert guide.get_posterior().log_prob(torch.randn(DIM)).shape == ()

    vae, amortized = flow_vae(6, DIM, flow="madeup", depth=2, hidden_dims=(8,))
    assert isinstance(amortized.flow[0], ConditionalElementwiseAffine)
    loss = Trace_ELBO().differentiable_loss(vae.model, amortized, torch.rand(5, 6))
    assert torch.isfinite(loss)

    with pytest.raises(ValueError, match=r"flow='maf' is not a flow; use one of .*'madeup'"):
        FlowDensity(DIM, flow="maf")
