"""LISTA: its initialization is ISTA, and training lowers the code error."""
import pytest
import torch

from pyro_deepgen.infer import fista, ista
from pyro_deepgen.infer.sparse_coding import relative_code_error
from pyro_deepgen.models import LISTA

LAM = 0.1


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    dictionary = torch.nn.functional.normalize(torch.randn(24, 12, generator=g, dtype=torch.float64), dim=1)
    codes = torch.randn(400, 24, generator=g, dtype=torch.float64) * (torch.rand(400, 24, generator=g) < 0.15)
    x = codes @ dictionary + 0.05 * torch.randn(400, 12, generator=g, dtype=torch.float64)
    return x, dictionary


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("layers", [1, 2, 7])
def test_initialization_is_ista(problem, layers, tied):
    x, d = problem
    model = LISTA(d, LAM, layers, tied=tied)
    with torch.no_grad():
        assert torch.allclose(model(x), ista(x, d, LAM, max_iter=layers, tol=0.0).codes, atol=1e-12)
    assert model.objective(x).item() == pytest.approx(ista(x, d, LAM, max_iter=layers, tol=0.0).objective)


def test_training_beats_ista(problem):
    x, d = problem
    z_star = fista(x, d, LAM, max_iter=5000, tol=1e-10).codes
    train, test = slice(0, 300), slice(300, 400)
    model = LISTA(d, LAM, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(300):
        optimizer.zero_grad()
        model.code_loss(x[train], z_star[train]).backward()
        optimizer.step()
    with torch.no_grad():
        error = relative_code_error(model(x[test]), z_star[test])
    ista_error = relative_code_error(ista(x[test], d, LAM, max_iter=3, tol=0.0).codes, z_star[test])
    assert error < 0.7 * ista_error
    assert all(p.grad is not None for p in model.parameters())
    assert not model.dictionary.requires_grad


def test_bad_input(problem):
    x, d = problem
    with pytest.raises(ValueError, match="layers"):
        LISTA(d, LAM, 0)
    with pytest.raises(ValueError, match="dictionary"):
        LISTA(d[0], LAM, 2)
    with pytest.raises(ValueError, match="x must"):
        LISTA(d, LAM, 2)(x[:, :5])
