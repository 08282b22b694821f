"""ISTA and FISTA against the lasso's optimality conditions and scikit-learn."""
import warnings

import numpy as np
import pytest
import torch

from pyro_deepgen.infer import fista, ista
from pyro_deepgen.infer.sparse_coding import (ista_iterations_to_reach, relative_code_error, soft_threshold,
                                              sparse_coding_objective)

LAM = 0.1


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    dictionary = torch.nn.functional.normalize(torch.randn(15, 10, generator=g, dtype=torch.float64), dim=1)
    codes = torch.randn(20, 15, generator=g, dtype=torch.float64) * (torch.rand(20, 15, generator=g) < 0.2)
    x = codes @ dictionary + 0.05 * torch.randn(20, 10, generator=g, dtype=torch.float64)
    return x, dictionary


def test_soft_threshold():
    v = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    assert torch.equal(soft_threshold(v, 0.5), torch.tensor([-1.5, 0.0, 0.0, 0.0, 1.0]))
    per_atom = soft_threshold(torch.ones(2, 3), torch.tensor([0.0, 0.5, 2.0]))
    assert torch.equal(per_atom, torch.tensor([[1.0, 0.5, 0.0]] * 2))


@pytest.mark.parametrize("solver", [ista, fista])
def test_kkt_conditions(problem, solver):
    x, d = problem
    result = solver(x, d, LAM, max_iter=20000, tol=1e-13)
    assert result.converged
    z = result.codes
    correlation = (x - z @ d) @ d.T          # minus the gradient of the smooth part
    active = z != 0
    assert active.any() and (~active).any()
    assert torch.allclose(correlation[active], LAM * z[active].sign(), atol=1e-7)
    assert (correlation[~active].abs() <= LAM + 1e-7).all()
    assert result.objective == pytest.approx(float(sparse_coding_objective(x, z, d, LAM)))


def test_matches_sklearn(problem):
    from sklearn.decomposition import sparse_encode
    from sklearn.linear_model import Lasso

    x, d = problem
    z = fista(x, d, LAM, max_iter=20000, tol=1e-13).codes
    theirs = sparse_encode(x.numpy(), d.numpy(), alpha=LAM, algorithm="lasso_cd", max_iter=100000)
    assert np.allclose(z.numpy(), theirs, atol=1e-5)
    # Lasso divides the squared error by its number of samples, here the d = 10 features
    lasso = Lasso(alpha=LAM / x.shape[1], fit_intercept=False, tol=1e-14, max_iter=100000)
    lasso.fit(d.T.numpy(), x[3].numpy())
    assert np.allclose(z[3].numpy(), lasso.coef_, atol=1e-5)


def test_fista_faster_than_ista(problem):
    x, d = problem
    optimum = fista(x, d, LAM, max_iter=20000, tol=1e-13).objective
    gap_ista = ista(x, d, LAM, max_iter=50, tol=0.0).objective - optimum
    gap_fista = fista(x, d, LAM, max_iter=50, tol=0.0).objective - optimum
    assert gap_fista < 0.1 * gap_ista
    z_star = fista(x, d, LAM, max_iter=20000, tol=1e-13).codes
    errors = {}
    for solver in (ista, fista):
        trace = []
        solver(x, d, LAM, max_iter=300, tol=0.0, callback=lambda k, z: trace.append(relative_code_error(z, z_star)))
        errors[solver] = np.array(trace)
    assert (errors[ista] < 1e-2).any() and (errors[fista] < 1e-2).any()
    assert np.argmax(errors[fista] < 1e-2) < 0.5 * np.argmax(errors[ista] < 1e-2)


@pytest.mark.parametrize("solver", [ista, fista])
def test_tolerance_stop(problem, solver):
    x, d = problem
    seen = []
    result = solver(x, d, LAM, max_iter=5000, tol=1e-4, callback=lambda k, z: seen.append(z.clone()))
    assert result.converged and result.iterations == len(seen) < 5000
    last = torch.linalg.vector_norm(seen[-1] - seen[-2]) / torch.linalg.vector_norm(seen[-1])
    before = torch.linalg.vector_norm(seen[-2] - seen[-3]) / torch.linalg.vector_norm(seen[-2])
    assert last <= 1e-4 < before
    capped = solver(x, d, LAM, max_iter=3, tol=1e-12)
    assert capped.iterations == 3 and not capped.converged


def test_one_ista_iteration_from_zero(problem):
    x, d = problem
    lipschitz = torch.linalg.matrix_norm(d, ord=2) ** 2
    expected = soft_threshold(x @ d.T / lipschitz, LAM / lipschitz)
    assert torch.allclose(ista(x, d, LAM, max_iter=1, tol=0.0).codes, expected)


def test_iterations_to_reach(problem):
    x, d = problem
    z_star = fista(x, d, LAM, max_iter=20000, tol=1e-13).codes
    errors = []
    ista(x, d, LAM, max_iter=400, tol=0.0, callback=lambda k, z: errors.append(relative_code_error(z, z_star)))
    errors = np.array(errors)
    for target in (0.5, 0.1, 0.01):
        k = ista_iterations_to_reach(x, d, LAM, z_star, target)
        assert k is not None and errors[k - 1] <= target and (k == 1 or errors[: k - 1].min() > target)
    assert ista_iterations_to_reach(x, d, LAM, z_star, [0.01, 1.0, 0.5]) == [
        ista_iterations_to_reach(x, d, LAM, z_star, 0.01), 0, ista_iterations_to_reach(x, d, LAM, z_star, 0.5)]
    assert ista_iterations_to_reach(x, d, LAM, z_star, 0.0, max_iter=5) is None


def test_bad_input(problem):
    x, d = problem
    with pytest.raises(ValueError, match="lam"):
        ista(x, d, -1.0)
    with pytest.raises(ValueError, match="dictionary"):
        fista(x, d[:, :3], LAM)
    with pytest.raises(ValueError, match="init"):
        fista(x, d, LAM, init=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="max_iter"):
        ista(x, d, LAM, max_iter=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="all zeros"):
            ista(x, torch.zeros_like(d), LAM)
