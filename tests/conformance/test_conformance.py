"""Every cell of the conformance table (:mod:`tests.conformance.cases`): one model shape, one
ELBO class, one expected outcome."""
import math
import re
import warnings

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceGraph_ELBO

from pyro_deepgen.infer import TraceIWAE_ELBO

from .cases import CELLS, COLUMN, Expect
from .models import SHAPE, diffusion

SEED = 3
PYRO_CHECKS = ("Found vars in model but not guide", "Found non-auxiliary vars in guide but not model",
               "If you want to enumerate sites, you need to use TraceEnum_ELBO instead")


def _run(elbo, model, guide, args, seed=SEED):
    """``loss_and_grads`` from a fresh param store at ``seed``: (value, {param: grad})."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    with poutine.trace(param_only=True) as tr:
        value = elbo.loss_and_grads(model, guide, *args)
    grads = {}
    for name, site in tr.trace.nodes.items():
        p = site["value"].unconstrained()
        grads[name] = None if p.grad is None else p.grad.detach().clone()
    return value, grads


def _close(a, b):
    return torch.allclose(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-9, atol=1e-12)


def _check_equal(make, reference, shape, model_only=False):
    calls = [shape.data()]
    if shape.name == "dynamic_sites":  # the site count changes between calls of one instance
        calls.append((torch.cat([calls[0][0], calls[0][0][:1]]),))
    elbo, ref = make(), reference()
    for args in calls:
        value, grads = _run(elbo, shape.model, shape.guide, args)
        ref_value, ref_grads = _run(ref, shape.model, shape.guide, args)
        assert value == pytest.approx(ref_value, rel=1e-9, abs=1e-12)
        assert set(grads) == set(ref_grads)
        for name, g in grads.items():
            assert g is None or torch.isfinite(g).all(), name
            if model_only and not name.startswith("theta"):
                continue
            r = ref_grads[name]
            if g is None or r is None:
                assert g is None and r is None or (g if r is None else r).abs().max() == 0, name
            else:
                assert _close(g, r), (name, g, r)


def _check_unbiased(make, shape, expect, k):
    """Mean gradient over ``samples`` replicated data points (10 groups give the standard
    error) within 4 standard errors (+1e-9) of the shape's exact gradient."""
    exact = shape.exact_grad(k)
    groups = 10
    per_group = []
    elbo = make()
    for g in range(groups):
        args = shape.replicate(expect.samples // groups)
        _, grads = _run(elbo, shape.model, shape.guide, args, seed=SEED + g)
        per_group.append({n: v / (expect.samples // groups) for n, v in grads.items()})
    for name, ref in exact.items():
        est = torch.stack([p[name] for p in per_group])
        mean, se = est.mean(0), est.std(0) / math.sqrt(groups)
        assert ((mean - ref).abs() <= 4 * se + 1e-9).all(), (name, mean, ref, se)


def _check_bound(expect):
    pyro.set_rng_seed(SEED)
    d = diffusion()
    x0 = torch.full((expect.samples, 1), 0.4, dtype=torch.float64)
    per_point, _ = d.training_loss(x0)
    neg_bound = -d.bound(x0[:1000], chunk_size=3).nats
    loss = make_col("diffusion")().loss(d.model, d.guide, x0) / expect.samples
    tol = 4 * math.hypot(per_point.std().item() / math.sqrt(expect.samples),
                         neg_bound.std().item() / math.sqrt(len(neg_bound)))
    assert loss == pytest.approx(neg_bound.mean().item(), abs=tol)


def make_col(name):
    return COLUMN[name].make


def check_cell(shape_name: str, column: str, expect: Expect) -> None:
    shape, make = SHAPE[shape_name], make_col(column)
    if expect.kind == "n/a":
        pytest.skip(expect.why)
    if expect.kind in ("equal", "value"):
        reference = {"Trace_ELBO": Trace_ELBO, "TraceGraph_ELBO": TraceGraph_ELBO,
                     "TraceIWAE_ELBO(2)": lambda: TraceIWAE_ELBO(num_particles=2)}[expect.reference]
        _check_equal(make, reference, shape, model_only=expect.kind == "value")
    elif expect.kind == "unbiased":
        _check_unbiased(make, shape, expect, getattr(make(), "num_particles", 1))
    elif expect.kind == "bound":
        _check_bound(expect)
    elif expect.kind == "runs":
        value, grads = _run(make(), shape.model, shape.guide, shape.data())
        assert math.isfinite(value)
        for name, g in grads.items():
            assert g is not None and torch.isfinite(g).all(), name
    elif expect.kind == "refuse":
        # a refusal may follow Pyro's model/guide warning (e.g. HVI on a site missing from the
        # guide): only that warning is allowed on the way
        with warnings.catch_warnings(record=True) as seen, \
                pytest.raises(expect.error, match=re.escape(expect.match)) as info:
            warnings.simplefilter("always")
            _run(make(), shape.model, shape.guide, shape.data())
        assert all(any(c in str(w.message) for c in PYRO_CHECKS) for w in seen), [str(w.message) for w in seen]
        assert not expect.forbid or expect.forbid not in str(info.value), str(info.value)
        if expect.pyro:
            with pytest.raises(expect.error, match=re.escape(expect.match)):
                _run(Trace_ELBO(), shape.model, shape.guide, shape.data())
    elif expect.kind == "warn":
        with pytest.warns(expect.error, match=re.escape(expect.match)):
            _run(make(), shape.model, shape.guide, shape.data())
        if expect.pyro:
            with pytest.warns(expect.error, match=re.escape(expect.match)):
                _run(Trace_ELBO(), shape.model, shape.guide, shape.data())
    else:  # pragma: no cover
        raise AssertionError(f"unknown kind {expect.kind!r}")


def _params():
    for (shape, column), expect in CELLS.items():
        marks = [pytest.mark.xfail(strict=True, reason=expect.pending)] if expect.pending else []
        yield pytest.param(shape, column, expect, id=f"{shape}-{column}", marks=marks)


@pytest.mark.parametrize("shape,column,expect", list(_params()))
def test_cell(shape, column, expect):
    check_cell(shape, column, expect)


def test_the_checks_have_power():
    """The checks fail on a wrong estimator: the score-function gradient is not Trace_ELBO's
    per seed ("equal"), and the k=1 bound's gradient is not the k=2 one ("unbiased")."""
    from pyro_deepgen.infer import TraceScoreFunction_ELBO

    with pytest.raises(AssertionError):
        _check_equal(lambda: TraceScoreFunction_ELBO(1, control_variate=None), Trace_ELBO,
                     SHAPE["one_plate"])
    with pytest.raises(AssertionError):  # Pyro's Trace_ELBO drops the auxiliary site's cost
        _check_equal(Trace_ELBO, TraceGraph_ELBO, SHAPE["auxiliary_site"])
    with pytest.raises(AssertionError):
        _check_unbiased(lambda: TraceIWAE_ELBO(num_particles=1), SHAPE["discrete"],
                        Expect("unbiased", samples=20000), k=2)
