"""PSD: code inference minimizes its energy, training lowers it, atoms keep unit norm."""
import pytest
import torch

from pyro_deepgen.infer import fista
from pyro_deepgen.infer.sparse_coding import sparse_coding_objective
from pyro_deepgen.models import PSD

LAM = 0.1


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    dictionary = torch.nn.functional.normalize(torch.randn(16, 8, generator=g, dtype=torch.float64), dim=1)
    codes = torch.randn(200, 16, generator=g, dtype=torch.float64) * (torch.rand(200, 16, generator=g) < 0.2)
    return codes @ dictionary + 0.02 * torch.randn(200, 8, generator=g, dtype=torch.float64)


def _model(alpha=1.0):
    torch.manual_seed(0)
    return PSD(8, 16, LAM, alpha, dictionary=torch.randn(16, 8, dtype=torch.float64), code_max_iter=5000,
               code_tol=1e-12)


def test_inferred_codes_satisfy_kkt(data):
    model = _model(alpha=0.5)
    z = model.infer_codes(data)
    d, prediction = model.dictionary.detach(), model.encode(data).detach()
    # minus the gradient of the smooth part of E(x, z)
    correlation = (data - z @ d) @ d.T - 0.5 * (z - prediction)
    active = z != 0
    assert active.any() and (~active).any()
    assert torch.allclose(correlation[active], LAM * z[active].sign(), atol=1e-7)
    assert (correlation[~active].abs() <= LAM + 1e-7).all()


def test_without_encoder_term_codes_are_the_lasso(data):
    model = _model(alpha=0.0)
    d = model.dictionary.detach()
    lasso = fista(data, d, LAM, max_iter=5000, tol=1e-12)
    # the codes converge far more slowly than the objective (a nearly flat lasso): compare objectives
    for codes in (model.infer_codes(data), model.optimal_codes(data, tol=1e-12, max_iter=5000)):
        assert float(sparse_coding_objective(data, codes, d, LAM)) == pytest.approx(lasso.objective, rel=1e-9)
        assert torch.allclose(codes, lasso.codes, atol=1e-4)


def test_training_lowers_energy_and_code_error(data):
    model = _model()
    with torch.no_grad():
        before = float(model.energy(data, model.infer_codes(data)))
        error_before = float((model.encode(data) - model.optimal_codes(data)).norm())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        model.loss(data).backward()
        optimizer.step()
    with torch.no_grad():
        assert float(model.energy(data, model.infer_codes(data))) < 0.85 * before
        assert float((model.encode(data) - model.optimal_codes(data)).norm()) < 0.85 * error_before
        assert torch.allclose(model.dictionary.norm(dim=1), torch.ones(16, dtype=torch.float64))
        assert model.reconstruction_error(data) == pytest.approx(
            float((data - model.encode(data) @ model.dictionary).pow(2).sum(-1).mean()))


def test_bad_input(data):
    with pytest.raises(ValueError, match="dictionary"):
        PSD(8, 16, LAM, dictionary=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="alpha"):
        PSD(8, 16, LAM, alpha=-1.0)
    with pytest.raises(ValueError, match="x must"):
        _model().encode(data[:, :3])
