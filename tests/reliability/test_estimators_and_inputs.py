"""Bad constructor arguments and bad data give one-line ValueErrors that name their cause
(issue 14, item 6): each case is listed in docs/reliability.rst ("Estimators and diagnostics").
The estimator cases (STL/DReG with any parameter, k-hat of the exact posterior) are tested
against closed forms in tests/infer/test_iwae.py and tests/test_diagnostics.py."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_deepgen import evaluate
from pyro_deepgen.distributions import FlowDensity
from pyro_deepgen.distributions.transforms import Planar, Radial, build_flow, conditional_planar, planar
from pyro_deepgen.energy import DBM, DBN, RBM
from pyro_deepgen.guides import AmortizedFlowGuide, AutoFlow
from pyro_deepgen.models import VAE, GaussianDiffusion, HelmholtzMachine
from pyro_deepgen.nn import TimeMLP


def _auto_model():
    pyro.sample("a", dist.Normal(torch.zeros(3), 1.0).to_event(1))


def _diffusion(**kw):
    return GaussianDiffusion(TimeMLP(2, (8,)), **{"event_shape": 2, "num_steps": 4, **kw})


# (constructor call, the start of the message): each names the argument
CONSTRUCTOR_CASES = [
    (lambda: VAE(64, 2.5), r"^z_dim must be a positive integer, got 2\.5$"),
    (lambda: VAE(0, 2), r"^x_dim must be a positive integer, got 0$"),
    (lambda: VAE(64, True), r"^z_dim must be a positive integer, got True$"),
    (lambda: VAE(64, 2, (200, -1)), r"^hidden_dims must be a sequence of positive integers, got \(200, -1\)$"),
    (lambda: VAE(64, 2, (0,)), r"^hidden_dims must be a sequence of positive integers"),
    (lambda: VAE(64, 2, 200), r"^hidden_dims must be a sequence of positive integers, got 200$"),
    (lambda: VAE(64, 2, likelihood="poisson"), r"^likelihood='poisson' is not known; use one of"),
    (lambda: VAE(64, 2, min_scale=-1.0), r"^min_scale must be a finite number >= 0, got -1\.0$"),
    (lambda: HelmholtzMachine(0), r"^x_dim must be a positive integer"),
    (lambda: HelmholtzMachine(6, ()), r"^hidden_dims must be a non-empty sequence of positive integers"),
    (lambda: RBM(6.5, 3), r"^num_visible must be a positive integer, got 6\.5$"),
    (lambda: RBM(6, 0), r"^num_hidden must be a positive integer, got 0$"),
    (lambda: RBM(6, 3, visible="gauss"), r"^visible='gauss' is not known"),
    (lambda: RBM(6, 3, init_scale=math.nan), r"^init_scale must be a finite number >= 0"),
    (lambda: DBN([6]), r"^layer_sizes must hold at least two positive sizes"),
    (lambda: DBN([6, -3]), r"^layer_sizes must be a sequence of positive integers, got \[6, -3\]$"),
    (lambda: DBM(6, True, 2), r"^num_hidden1 must be a positive integer, got True$"),
    (lambda: DBM(6, 3, 0), r"^num_hidden2 must be a positive integer, got 0$"),
    (lambda: build_flow("planar", 0, 2), r"^dim must be a positive integer, got 0$"),
    (lambda: build_flow("planar", 4, -1), r"^depth must be a non-negative integer, got -1$"),
    (lambda: build_flow("planar", 4, 1.5), r"^depth must be a non-negative integer, got 1\.5$"),
    (lambda: build_flow("iaf", 4, 2, hidden_dims=[0]), r"^hidden_dims must be a sequence of positive integers"),
    (lambda: build_flow("planar", 4, 2, context_dim=True), r"^context_dim must be a positive integer"),
    (lambda: build_flow("glow", 4, 2), r"^kind='glow' is not a flow"),
    (lambda: Planar(0), r"^input_dim must be a positive integer, got 0$"),
    (lambda: Planar(2.0), r"^input_dim must be a positive integer, got 2\.0$"),
    (lambda: Radial(-1), r"^input_dim must be a positive integer, got -1$"),
    (lambda: planar(-1), r"^input_dim must be a positive integer"),
    (lambda: conditional_planar(4, 0), r"^context_dim must be a positive integer, got 0$"),
    (lambda: FlowDensity(0), r"^dim must be a positive integer, got 0$"),
    (lambda: FlowDensity(2, depth=-1), r"^depth must be a non-negative integer"),
    (lambda: FlowDensity(2, alpha=math.nan), r"^alpha must be a finite number"),
    (lambda: AutoFlow(_auto_model, depth=-1), r"^depth must be a non-negative integer"),
    (lambda: AutoFlow(_auto_model, hidden_dims=[-4]), r"^hidden_dims must be a sequence of positive"),
    (lambda: AutoFlow(_auto_model, init_scale=math.inf), r"^init_scale must be a finite number > 0"),
    (lambda: AmortizedFlowGuide(6, 2, depth=-1), r"^depth must be a non-negative integer"),
    (lambda: AmortizedFlowGuide(6, 2, hidden_dims=(8, 0)), r"^hidden_dims must be a sequence of positive"),
    (lambda: AmortizedFlowGuide(6, 2, context_dim=0), r"^context_dim must be a positive integer"),
    (lambda: _diffusion(num_steps=0), r"^num_steps must be a positive integer, got 0$"),
    (lambda: _diffusion(num_steps=2.5), r"^num_steps must be a positive integer, got 2\.5$"),
    (lambda: _diffusion(schedule="quadratic"), r"^schedule='quadratic' is not known"),
    (lambda: _diffusion(schedule=torch.full((2, 2), 0.1)), r"^schedule must be a name or a 1-D tensor"),
    (lambda: _diffusion(schedule=torch.tensor([0.1, 1.5])), r"^every beta_t must lie in \(0, 1\]"),
    (lambda: _diffusion(schedule=0.1), r"^schedule must be a name"),
    (lambda: _diffusion(event_shape=(2, 0)), r"^event_shape must be a non-empty sequence of positive"),
    (lambda: _diffusion(event_shape=2.5), r"^event_shape must be a non-empty sequence of positive integers, got 2\.5"),
    (lambda: _diffusion(data="discrete", num_levels=1), r"^num_levels must be an integer >= 2, got 1$"),
    (lambda: _diffusion(mean_type="score"), r"^mean_type='score' is not known"),
    (lambda: _diffusion(learn_schedule="yes"), r"^learn_schedule must be True or False"),
]


@pytest.mark.parametrize("make, message", CONSTRUCTOR_CASES, ids=lambda c: c if isinstance(c, str) else "")
def test_constructor_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def _nan_at(x, index):
    x = x.clone()
    x[index] = math.nan
    return x


def test_vae_names_nan_out_of_range_and_dtype_in_model_and_guide():
    vae = VAE(6, 2, (4,))
    x = torch.rand(5, 6).round()
    for program in (vae.model, vae.guide):
        with pytest.raises(ValueError, match=r"^x has 1 NaN or infinite entry \(the first at index \(3, 4\)\)"):
            program(_nan_at(x, (3, 4)))
        with pytest.raises(ValueError, match=r"^x has 30 entries outside \[0, 1\] .* value 255"):
            program(x * 0 + 255)
        with pytest.raises(ValueError, match=r"^x has dtype torch\.float64 but the VAE's parameters are "
                                             r"torch\.float32; pass x\.float\(\) or convert the model "
                                             r"with model\.double\(\)$"):
            program(x.double())
    gaussian = VAE(6, 2, (4,), likelihood="gaussian")
    gaussian.model(x * 5 - 2)  # any finite value is fine for a Gaussian likelihood
    with pytest.raises(ValueError, match=r"^x has 2 NaN or infinite entries \(the first at index \(0, 1\)\)"):
        gaussian.model(_nan_at(_nan_at(x, (0, 1)), (2, 2)))
    vae.double().model(x.double())  # the fix the message suggests works


def test_svi_step_with_nan_data_names_the_data():
    """The issue's case: NaN data in SVI.step raised Pyro's "Expected parameter loc ... Normal"."""
    pyro.clear_param_store()
    vae = VAE(6, 2, (4,))
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    with pytest.raises(ValueError, match=r"^x has 1 NaN or infinite entry"):
        svi.step(_nan_at(torch.rand(5, 6), (0, 0)))


def test_a_batch_is_checked_once_but_an_in_place_change_is_seen():
    """The model and guide of one step share the check of a batch (by identity and version
    counter): writing a NaN into the same tensor is still caught."""
    vae = VAE(6, 2, (4,))
    x = torch.rand(5, 6)
    vae.guide(x)
    vae.model(x)
    x[1, 1] = math.nan
    with pytest.raises(ValueError, match=r"^x has 1 NaN or infinite entry \(the first at index \(1, 1\)\)"):
        vae.model(x)


def test_helmholtz_and_diffusion_name_bad_data():
    hm = HelmholtzMachine(6, (3,))
    with pytest.raises(ValueError, match=r"^x has 1 entry outside \[0, 1\] \(the first at index \(0, 2\), value 2\)"):
        hm.model(torch.zeros(2, 6).index_put_((torch.tensor(0), torch.tensor(2)), torch.tensor(2.0)))
    with pytest.raises(ValueError, match=r"HelmholtzMachine's parameters are torch\.float32"):
        hm.guide(torch.zeros(2, 6, dtype=torch.float64))
    d = _diffusion()
    with pytest.raises(ValueError, match=r"^x0 has 1 NaN or infinite entry \(the first at index \(1, 0\)\)"):
        d.training_loss(_nan_at(torch.randn(3, 2), (1, 0)))
    with pytest.raises(ValueError, match=r"^x0 has 1 NaN or infinite entry"):
        d.guide(_nan_at(torch.randn(3, 2), (0, 1)))
    with pytest.raises(ValueError, match=r"^x0 has dtype torch\.float64 but the GaussianDiffusion's"):
        d.model(torch.randn(3, 2, dtype=torch.float64))


@pytest.mark.parametrize("fn", [evaluate.log_likelihood, evaluate.log_importance_weights,
                                evaluate.elbo, evaluate.active_units])
def test_evaluate_names_nan_data(fn):
    vae = VAE(6, 2, (4,))
    x = _nan_at(torch.rand(4, 6).round(), (2, 5))
    with pytest.raises(ValueError, match=r"^the data has 1 NaN or infinite entry \(the first at index \(2, 5\)\)"):
        fn(vae.model, vae.guide, x, num_samples=3) if fn is not evaluate.active_units else fn(
            vae.model, vae.guide, x)
