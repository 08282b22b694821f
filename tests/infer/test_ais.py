"""The generic AIS core's reverse direction (:func:`reverse_annealed_importance_sampling`), the
forward sampler's final states and the per-dimension log-mean-exp, on problems with a known
ratio. (The forward core and the Boltzmann machines' estimators: tests/energy/test_ais.py.)"""
import math

import pytest
import torch

from pyro_deepgen.infer import (
    annealed_importance_sampling,
    log_mean_exp_with_stderr,
    reverse_annealed_importance_sampling,
)

S = 3.0  # anneal N(0, 1) -> N(0, S^2): Z_1 / Z_0 = S for the unnormalized exp(-x^2 / 2 sigma^2)


def log_f(x, beta):
    return -0.5 * ((1 - beta) + beta / S ** 2) * x ** 2


def exact_draw(x, beta):  # an independent draw from f_beta: reversible w.r.t. f_beta
    return torch.randn_like(x) / math.sqrt((1 - beta) + beta / S ** 2)


def test_reverse_ais_from_exact_samples_is_an_upper_bound_on_log_ratio():
    """Reverse AIS from exact draws of N(0, S^2): log Z_0 - log mean exp(-log w) estimates
    log Z_1 (here log S relative to Z_0), checked within 3 standard errors with 2000 runs and
    50 temperatures; with 2 temperatures and 2 runs (a large Jensen gap) the expected sides
    show: the mean of 2000 repetitions of the reverse estimate lies above log S by more than 3
    of its standard errors, and forward AIS's below."""
    torch.manual_seed(0)
    betas = torch.linspace(0, 1, 51, dtype=torch.float64)
    x = torch.randn(2000, dtype=torch.float64) * S
    log_w = reverse_annealed_importance_sampling(x, log_f, exact_draw, betas)
    assert log_w.shape == (2000,) and log_w.dtype == torch.float64
    value, se = log_mean_exp_with_stderr(-log_w)
    assert abs(-value - math.log(S)) < 3 * se

    betas = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    x = torch.randn(2000, 2, dtype=torch.float64) * S  # 2000 repetitions of 2 runs
    rev = -log_mean_exp_with_stderr(-reverse_annealed_importance_sampling(x.flatten(), log_f, exact_draw, betas)
                                    .view(2000, 2), dim=1)[0]
    fwd = log_mean_exp_with_stderr(annealed_importance_sampling(
        torch.randn(2000 * 2, dtype=torch.float64), log_f, exact_draw, betas).view(2000, 2), dim=1)[0]
    assert rev.mean() - math.log(S) > 3 * rev.std() / math.sqrt(2000)
    assert math.log(S) - fwd.mean() > 3 * fwd.std() / math.sqrt(2000)


def test_reverse_ais_single_step_and_constant_path():
    """betas = [0, 1]: no transition, log w = log f_1(x) - log f_0(x) exactly; a path that does
    not depend on beta gives weight 1 whatever the kernel."""
    x = torch.randn(7, dtype=torch.float64)

    def fail(x, beta):
        raise AssertionError("no transition with a single step")

    log_w = reverse_annealed_importance_sampling(x, log_f, fail, [0.0, 1.0])
    assert torch.allclose(log_w, log_f(x, 1.0) - log_f(x, 0.0), rtol=0, atol=1e-15)
    flat = reverse_annealed_importance_sampling(x, lambda x, b: -x ** 2, exact_draw,
                                                torch.linspace(0, 1, 5, dtype=torch.float64))
    assert torch.equal(flat, torch.zeros(7, dtype=torch.float64))


def test_reverse_ais_visits_the_ladder_downwards():
    """The transitions run at beta_{K-1}, ..., beta_1, in that order, and each increment is
    evaluated at the state the previous transition returned."""
    betas = [0.0, 0.1, 0.5, 0.9, 1.0]
    seen = []

    def record(x, beta):
        seen.append(beta)
        return x + 1

    log_w = reverse_annealed_importance_sampling(torch.zeros(2, dtype=torch.float64),
                                                 lambda x, b: b * x, record, betas)
    assert seen == [0.9, 0.5, 0.1]
    # states x_4 = 0, x_3 = 1, x_2 = 2, x_1 = 3; increments (b_k - b_{k-1}) x_k
    assert torch.allclose(log_w, torch.full((2,), 0.1 * 0 + 0.4 * 1 + 0.4 * 2 + 0.1 * 3, dtype=torch.float64))


def test_forward_ais_returns_its_final_state():
    """return_state gives the same weights from the same seed and the state after the last
    transition (at beta_{K-1})."""
    betas = torch.linspace(0, 1, 6, dtype=torch.float64)
    torch.manual_seed(1)
    plain = annealed_importance_sampling(torch.randn(9, dtype=torch.float64), log_f, exact_draw, betas)
    torch.manual_seed(1)
    log_w, state = annealed_importance_sampling(torch.randn(9, dtype=torch.float64), log_f, exact_draw,
                                                betas, return_state=True)
    assert torch.equal(plain, log_w) and state.shape == (9,)
    seen = []
    annealed_importance_sampling(torch.zeros(1), lambda x, b: x, lambda x, b: seen.append(b) or x, betas)
    assert seen == betas.tolist()[1:-1]


def test_log_mean_exp_with_stderr_along_a_dimension():
    """dim=0 of a (runs, points) array equals the 1-D function on every column."""
    torch.manual_seed(2)
    log_w = torch.randn(30, 4, dtype=torch.float64) * 3 + 500
    value, se = log_mean_exp_with_stderr(log_w, dim=0)
    assert value.shape == se.shape == (4,)
    for j in range(4):
        v1, s1 = log_mean_exp_with_stderr(log_w[:, j])
        assert torch.allclose(value[j], v1) and torch.allclose(se[j], s1)
    with pytest.raises(ValueError, match="at least two log weights along dim=1"):
        log_mean_exp_with_stderr(log_w[:, :1], dim=1)
    with pytest.raises(ValueError, match="1-D tensor of at least two"):
        log_mean_exp_with_stderr(log_w)
