"""Tests of gradient_variance: exact mean gradient, reparameterization vs score function, and
the Rainforth et al. (2018) SNR result for IWAE vs DReG."""
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.testing.fakes import NonreparameterizedNormal
from pyro.infer import Trace_ELBO
from torch.distributions import constraints

from pyro_deepgen.infer import GradientStats, TraceIWAE_ELBO, gradient_variance
from tests.infer.test_iwae import GUIDE_PARAMS, gauss_model, make_gauss_guide

f64 = torch.float64
X = torch.tensor(1.0, dtype=f64)
M, S = 0.3, 0.8


def model():
    z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=f64), 1.0))
    pyro.sample("x", dist.Normal(z, 1.0), obs=X)


def make_guide(normal=dist.Normal):
    def guide():
        m = pyro.param("m", torch.tensor(M, dtype=f64))
        s = pyro.param("s", torch.tensor(S, dtype=f64), constraint=constraints.positive)
        pyro.sample("z", normal(m, s))

    return guide


def test_mean_and_variance_match_hand_computed_gradient():
    """z ~ N(0,1), x ~ N(z,1), q = N(m, s^2). Loss gradient: d/dm = 2m - x, d/dlog s = 2s^2 - 1;
    the reparameterized d/dm draw is 2m - x + 2 s eps, variance 4 s^2, and d/dlog s has
    variance 8 s^4 (its draw is 2 s^2 eps^2 - 1).
    400 draws: means within 4 standard errors, variances within 30% (chi^2 relative sd 7%)."""
    n = 400
    stats = gradient_variance(Trace_ELBO(), model, make_guide(), num_draws=n)
    assert set(stats) == {"m", "s"}
    m, s = stats["m"], stats["s"]
    assert isinstance(m, GradientStats) and m.num_draws == n
    assert abs(m.mean.item() - (2 * M - X.item())) < 4 * math.sqrt(4 * S**2 / n)
    assert abs(s.mean.item() - (2 * S**2 - 1)) < 4 * math.sqrt(8 * S**4 / n)
    assert m.variance.item() == pytest.approx(4 * S**2, rel=0.3)
    assert s.variance.item() == pytest.approx(8 * S**4, rel=0.3)
    assert m.snr.item() == pytest.approx(abs(m.mean.item()) / m.variance.sqrt().item())
    assert m.snr_mean == pytest.approx(m.snr.item())


def test_score_function_variance_exceeds_reparameterized():
    """Same model; the score-function path (NonreparameterizedNormal) is unbiased (4 SE, 400
    draws) but its variance is more than 2x the reparameterized one for both parameters."""
    n = 400
    rep = gradient_variance(Trace_ELBO(), model, make_guide(), num_draws=n)
    sf = gradient_variance(Trace_ELBO(), model, make_guide(NonreparameterizedNormal), num_draws=n)
    for name in ("m", "s"):
        se = (sf[name].variance / n).sqrt() + (rep[name].variance / n).sqrt()
        assert (sf[name].mean - rep[name].mean).abs().item() < 4 * se.item()
        assert sf[name].variance.item() > 2 * rep[name].variance.item()


def test_iwae_inference_snr_falls_with_k_dreg_does_not():
    """Rainforth et al. (2018): the IWAE inference-network gradient's SNR decays like
    1/sqrt(K); DReG's does not (Tucker et al. 2018). Amortized Gaussian model, N=20 points,
    50 draws per K; SNR averaged over the guide parameters a, b, s."""
    x = torch.linspace(-1, 2, 20, dtype=f64)
    guide = make_gauss_guide()
    snr = {}
    for estimator in ("iwae", "dreg"):
        for k in (1, 10, 100):
            stats = gradient_variance(
                TraceIWAE_ELBO(k, estimator), gauss_model, guide, x, num_draws=50,
                params=GUIDE_PARAMS,
            )
            assert set(stats) == set(GUIDE_PARAMS)
            snr[estimator, k] = sum(stats[n].snr_mean for n in GUIDE_PARAMS) / 3
    assert snr["iwae", 1] > 2 * snr["iwae", 10] > 4 * snr["iwae", 100]
    assert snr["dreg", 100] > 0.5 * snr["dreg", 1]
    assert snr["dreg", 100] > 10 * snr["iwae", 100]


def test_explicit_params_mapping_and_errors():
    guide = make_guide()
    stats = gradient_variance(Trace_ELBO(), model, guide, num_draws=3)
    leaf = pyro.param("m").unconstrained()
    unused = torch.zeros(2, requires_grad=True)
    stats = gradient_variance(
        Trace_ELBO(), model, guide, num_draws=3, params={"m": leaf, "u": unused}
    )
    assert torch.equal(stats["u"].variance, torch.zeros(2))
    assert math.isnan(stats["u"].snr_mean)
    with pytest.raises(ValueError, match="num_draws must be an integer >= 2"):
        gradient_variance(Trace_ELBO(), model, guide, num_draws=1)
    with pytest.raises(ValueError, match=r"params \['nope'\] are not touched"):
        gradient_variance(Trace_ELBO(), model, guide, num_draws=2, params=["nope"])
    with pytest.raises(TypeError, match="differentiable_loss"):
        gradient_variance(object(), model, guide)
