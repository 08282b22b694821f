import importlib
import math
import sys
import warnings

import arviz
import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.distributions as D
from pyro.infer import MCMC, NUTS

import pyro_deepgen._arviz as _arviz
import pyro_deepgen.diagnostics as diagnostics
from pyro_deepgen.diagnostics import (
    ess,
    guide_to_inference_data,
    importance_ess,
    predictive_to_inference_data,
    psis_khat,
    rhat,
    summary,
    to_inference_data,
)
from pyro_deepgen.models import VAE


def _normal_log_weights(target, num_samples=10000, num_data=20, seed=0):
    """log p(z) - log q(z) for z ~ q = N(0, 1): one column per 'data point'."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(num_samples, num_data, generator=generator, dtype=torch.float64)
    return target.log_prob(z) - D.Normal(0.0, 1.0).log_prob(z)


def test_import_emits_no_warning(tmp_path, monkeypatch):
    """arviz 0.23 warns (FutureWarning) on its first import of the day, tracked in the user
    cache folder: with a fresh XDG_CACHE_HOME a fresh import of arviz warns (checked by hand:
    ``python -W error -c "import arviz"`` fails there), and importing pyro_deepgen.diagnostics
    must not. The original arviz modules are put back afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    saved = {k: v for k, v in sys.modules.items() if k == "arviz" or k.startswith("arviz.")}
    try:
        for name in saved:
            del sys.modules[name]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            importlib.reload(_arviz)
            importlib.reload(diagnostics)
        assert (tmp_path / "arviz" / "daily_warning").exists()  # arviz did try to warn
    finally:
        for name in [k for k in sys.modules if k == "arviz" or k.startswith("arviz.")]:
            del sys.modules[name]
        sys.modules.update(saved)
        importlib.reload(_arviz)
        importlib.reload(diagnostics)
    assert diagnostics.arviz is arviz


def test_khat_light_tailed_proposal_is_large():
    """Proposal N(0, 1), target N(0, 4^2): w ~ exp(15 z^2 / 32) has Pareto tail index
    1 - 1/16 = 0.94. S = 10000 per column, 20 columns: every k-hat > 0.7."""
    khat = psis_khat(_normal_log_weights(D.Normal(0.0, 4.0)))
    assert khat.shape == (20,) and khat.dtype == torch.float64
    assert (khat > 0.7).all()


def test_khat_matched_proposal_is_small():
    """Proposal N(0, 1), target N(0.5, 1): log-normal weights have all moments, k = 0.
    S = 10000, 20 columns: every k-hat < 0.5. A proposal wider than the target (bounded
    weights) gives k-hat < 0; the exact posterior (constant weights) gives -inf."""
    assert (psis_khat(_normal_log_weights(D.Normal(0.5, 1.0))) < 0.5).all()
    assert (psis_khat(_normal_log_weights(D.Normal(0.0, 0.8))) < 0).all()
    khat = psis_khat(torch.full((100, 3), -2.5))
    assert torch.equal(khat, torch.full((3,), -math.inf))


@pytest.mark.parametrize("xi", [0.3, 0.6, 0.9])
def test_khat_recovers_pareto_tail_index(xi):
    """w = U^(-xi), U ~ Uniform(0, 1), is Pareto with P(w > t) = t^(-1/xi), so k = xi.
    S = 10000 per column (the GPD is fitted to the M = 300 largest), 20 columns (seed 0). The
    sd of one k-hat is about (1 + xi) / sqrt(M): every column is within 4 sd of xi, and the mean
    within 3 sd of the mean plus 0.02 (arviz shrinks k-hat towards 0.5 with weight 10 / 310)."""
    u = torch.rand(10000, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    khat = psis_khat(-xi * u.log())
    sd = (1 + xi) / math.sqrt(300)
    assert abs(khat.mean().item() - xi) < 3 * sd / math.sqrt(20) + 0.02
    assert ((khat - xi).abs() < 4 * sd).all()


def test_khat_equals_arviz_across_chunks(monkeypatch):
    """Data points are passed to arviz in chunks (to bound memory): same values as one call."""
    monkeypatch.setattr(diagnostics, "_PSIS_CHUNK", 7)
    lw = _normal_log_weights(D.Normal(0.3, 1.5), num_samples=500, num_data=20)
    _, expected = _arviz.psislw(lw.numpy().T)
    torch.testing.assert_close(psis_khat(lw), torch.as_tensor(expected), rtol=0, atol=0)


def test_khat_keeps_dtype_device_and_allows_zero_weights():
    lw = _normal_log_weights(D.Normal(0.5, 1.0), num_samples=200, num_data=3).float()
    lw[:10, 0] = -math.inf
    khat = psis_khat(lw)
    assert khat.dtype == torch.float32 and torch.isfinite(khat).all()


def test_khat_bad_input():
    with pytest.raises(ValueError, match=r"shape \(num_samples, num_data\)"):
        psis_khat(torch.zeros(100))
    with pytest.raises(ValueError, match="at least 21 samples"):
        psis_khat(torch.randn(20, 2))
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        psis_khat(torch.zeros(30, 1).index_fill(0, torch.tensor([4]), math.nan))
    with pytest.raises(ValueError, match="all -inf"):
        psis_khat(torch.full((30, 2), -math.inf))
    with pytest.raises(TypeError, match="must be a Tensor"):
        psis_khat([[0.0]] * 30)


def test_importance_ess_exact():
    torch.testing.assert_close(importance_ess(torch.full((50, 2), 700.0)), torch.full((2,), 50.0))
    lw = torch.full((50, 1), -60.0)
    lw[3] = 0.0
    torch.testing.assert_close(importance_ess(lw), torch.ones(1), rtol=1e-12, atol=1e-12)
    # w = (1, 2, 3): (1 + 2 + 3)^2 / (1 + 4 + 9) = 36 / 14
    lw = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).log()[:, None] + 1000.0
    torch.testing.assert_close(importance_ess(lw), torch.tensor([36.0 / 14], dtype=torch.float64))


def test_ess_of_iid_draws():
    """4 chains x 1000 iid N(0, 1) draws (seed 0): bulk and tail ESS within 15% of 4000."""
    x = torch.randn(4, 1000, 3, generator=torch.Generator().manual_seed(0))
    for method in ("bulk", "tail"):
        value = ess({"a": x}, method=method)["a"]
        assert value.shape == (3,)
        assert ((value - 4000).abs() < 600).all()


def test_ess_of_ar1_chains():
    """AR(1) chains with rho = 0.5 have ESS = n (1 - rho) / (1 + rho) = n / 3: 4 chains x 3000
    draws (seed 0) give 4000, within 20%."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 3000, generator=generator, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0] / math.sqrt(1 - 0.25)
    for t in range(1, 3000):
        x[:, t] = 0.5 * x[:, t - 1] + noise[:, t]
    assert abs(ess({"a": x})["a"].item() - 4000) < 800


def test_rhat():
    """4 chains x 1000 iid draws: R-hat within 0.01 of 1. One chain shifted by 3 sd:
    R-hat > 1.1 (it is about 1.47)."""
    x = torch.randn(4, 1000, 2, generator=torch.Generator().manual_seed(0))
    assert ((rhat({"a": x})["a"] - 1).abs() < 0.01).all()
    shifted = x.clone()
    shifted[3] += 3.0
    assert (rhat({"a": shifted})["a"] > 1.1).all()


def test_summary_columns():
    x = torch.randn(4, 500, generator=torch.Generator().manual_seed(1))
    table = summary({"a": x, "b": x + 1}, kind="diagnostics")
    assert list(table.index) == ["a", "b"]
    assert {"ess_bulk", "ess_tail", "r_hat"} <= set(table.columns)
    assert table.loc["a", "ess_bulk"] == pytest.approx(ess({"a": x})["a"].item(), abs=1)


def test_to_inference_data_from_dict():
    samples = {"mu": torch.randn(2, 30), "z": torch.randn(2, 30, 5, 3)}
    idata = to_inference_data(samples, observed_data={"x": torch.ones(5)})
    assert idata.posterior["z"].shape == (2, 30, 5, 3)
    assert idata.observed_data["x"].shape == (5,)
    torch.testing.assert_close(torch.as_tensor(idata.posterior["mu"].values), samples["mu"])
    idata = to_inference_data({"mu": torch.randn(30)}, group_by_chain=False)
    assert idata.posterior["mu"].shape == (1, 30)
    with pytest.raises(ValueError, match="group_by_chain=False"):
        to_inference_data({"mu": torch.randn(30)})
    with pytest.raises(ValueError, match=r"other sites \(2, 30\)"):
        to_inference_data({"a": torch.randn(2, 30), "b": torch.randn(3, 30)})
    with pytest.raises(TypeError, match="pyro.infer.MCMC or a non-empty dict"):
        to_inference_data([1, 2])


def test_to_inference_data_from_mcmc():
    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(y)):
            pyro.sample("obs", dist.Normal(mu, 1.0), obs=y)

    mcmc = MCMC(NUTS(model), num_samples=40, warmup_steps=20, disable_progbar=True)
    mcmc.run(torch.randn(10))
    idata = to_inference_data(mcmc)
    assert _arviz.is_inference_data(idata)
    assert idata.posterior["mu"].shape == (1, 40)
    assert idata.observed_data["obs"].shape == (10,)


def test_guide_to_inference_data_moments():
    """Guide z ~ N(3, 0.1^2) per data point; 400 draws: mean within 0.025 of 3 (5 standard
    errors of 0.005) and sd within 20% of 0.1."""

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.full_like(x, 3.0), 0.1))

    x = torch.zeros(4)
    idata = guide_to_inference_data(guide, x, num_samples=400, parallel=True)
    z = torch.as_tensor(idata.posterior["z"].values)
    assert z.shape == (1, 400, 4)
    assert ((z.mean((0, 1)) - 3).abs() < 0.025).all()
    assert ((z.std((0, 1)) - 0.1).abs() < 0.02).all()


def test_vae_guide_and_predictive_to_inference_data():
    vae = VAE(6, 2, hidden_dims=(5,))
    x = torch.rand(3, 6).bernoulli()
    idata = guide_to_inference_data(vae.guide, x, num_samples=7)
    assert idata.posterior["z"].shape == (1, 7, 3, 2)
    idata = predictive_to_inference_data(vae.model, vae.guide, x, num_samples=7, parallel=True)
    assert set(idata.posterior.data_vars) == {"z"}
    assert idata.posterior["z"].shape == (1, 7, 3, 2)
    assert idata.posterior_predictive["x"].shape == (1, 7, 3, 6)
    assert torch.equal(torch.as_tensor(idata.observed_data["x"].values), x)
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        guide_to_inference_data(vae.guide, x, num_samples=0)


def _linear_gaussian_log_weights(loc_shift, dtype, num_samples=1000):
    """Log weights of the linear-Gaussian model (tests/linear_gaussian.py) under its exact
    posterior q*(z|x) = N(M^-1 W^T (x - b), s^2 M^-1), optionally with a shifted mean."""
    from pyro_deepgen.evaluate import log_importance_weights
    from tests.linear_gaussian import LinearGaussian

    lg = LinearGaussian(x_dim=5, z_dim=2, noise=0.5, seed=0, dtype=dtype)
    x = lg.data(20, seed=1)
    m_inv = torch.linalg.inv(lg.W.T @ lg.W + lg.s**2 * torch.eye(2, dtype=dtype))

    def guide(x):
        loc = (x - lg.b) @ lg.W @ m_inv.T
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc + loc_shift, lg.s**2 * m_inv))

    pyro.set_rng_seed(0)
    return lg, x, log_importance_weights(lg.model, guide, x, num_samples=num_samples)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_khat_of_the_exact_posterior_is_minus_inf(dtype):
    """The exact posterior as the guide: every log weight equals log p(x) up to rounding (a
    spread of 5-25 ulps here, which the former exact-equality rule scored +inf or arbitrarily),
    so k-hat is -inf for every data point; a slightly wrong guide (mean shifted by 0.05) gives
    finite values below 0.7, so the rule is not vacuous."""
    lg, x, lw = _linear_gaussian_log_weights(0.0, dtype)
    assert (lw - lg.log_marginal(x)).abs().max() < 1e3 * torch.finfo(dtype).eps * 10
    assert (lw.amax(0) > lw.amin(0)).any()  # not exactly constant: rounding is there
    assert torch.equal(psis_khat(lw), torch.full((20,), -math.inf, dtype=dtype))
    _, _, lw_wrong = _linear_gaussian_log_weights(0.05, dtype)
    khat = psis_khat(lw_wrong)
    assert torch.isfinite(khat).all() and (khat < 0.7).all()


def test_khat_constant_tolerance_is_relative_and_adjustable():
    """Spread 1e-12 around 5.0 in float64 (about 900 ulps): not constant by default, constant
    with rtol=1e-11; a column with a zero weight (-inf) is never constant (both go to the Pareto
    fit, whose answer on such two-valued columns is +inf); a bad rtol is named."""
    lw = torch.full((100, 2), 5.0, dtype=torch.float64)
    lw[:50, 0] += 1e-12
    lw[0, 1] = -math.inf
    assert (psis_khat(lw) > -math.inf).all()
    khat = psis_khat(lw, rtol=1e-11)
    assert khat[0] == -math.inf and khat[1] > -math.inf
    with pytest.raises(ValueError, match="rtol must be a finite number"):
        psis_khat(lw, rtol=-1.0)
