"""DictionaryLearning against scikit-learn's DictionaryLearning on a seeded data set."""
import warnings

import pytest
import torch

from pyro_deepgen.infer import fista
from pyro_deepgen.models import DictionaryLearning

LAM, ATOMS, ITERATIONS = 0.2, 32, 30


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().data, dtype=torch.float64) / 16.0
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[:300]]


def _objective(x, dictionary):
    return fista(x, dictionary, LAM, max_iter=5000, tol=1e-9).objective


@pytest.fixture(scope="module")
def sklearn_objective(data):
    from sklearn.decomposition import DictionaryLearning as Sk
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = Sk(n_components=ATOMS, alpha=LAM, max_iter=ITERATIONS, fit_algorithm="cd", random_state=0)
        sk.fit(data.numpy())
    objective = _objective(data, torch.as_tensor(sk.components_))
    # scikit-learn's error_ sums the same terms over the points (its codes lag one dictionary update)
    assert sk.error_[-1] / len(data) == pytest.approx(objective, rel=0.02)
    return objective


def test_bcd_within_a_few_percent_of_sklearn(data, sklearn_objective):
    model = DictionaryLearning(64, ATOMS, LAM, code_max_iter=300, code_tol=1e-6).to(torch.float64)
    model.fit(data, max_iter=ITERATIONS, tol=1e-7)
    ours = _objective(data, model.dictionary)
    assert ours <= 1.02 * sklearn_objective
    assert ours >= 0.95 * sklearn_objective       # not a different problem (e.g. another scaling of lam)
    assert model.dictionary.norm(dim=1).le(1 + 1e-9).all()
    history = torch.tensor(model.history)
    assert (history[1:] <= history[:-1] + 1e-6).all()
    assert model.objective(data) == pytest.approx(ours, rel=1e-3)


def test_projected_gradient(data, sklearn_objective):
    model = DictionaryLearning(64, ATOMS, LAM, update="projected_gradient").to(torch.float64)
    model.fit(data, max_iter=ITERATIONS)
    assert model.dictionary.norm(dim=1).le(1 + 1e-9).all()
    assert _objective(data, model.dictionary) <= 1.10 * sklearn_objective


def test_encode_decode(data):
    model = DictionaryLearning(64, 80, LAM).to(torch.float64).fit(data[:50], max_iter=3)
    codes = model.encode(data[:50])
    assert codes.shape == (50, 80) and (codes == 0).any()
    assert model.decode(codes).shape == (50, 64)
    assert model.reconstruction_error(data[:50], codes) == pytest.approx(
        float((data[:50] - codes @ model.dictionary).pow(2).sum(-1).mean()))


def test_bad_input(data):
    with pytest.raises(ValueError, match="update"):
        DictionaryLearning(64, 8, LAM, update="sgd")
    with pytest.raises(ValueError, match="lam"):
        DictionaryLearning(64, 8, -LAM)
    with pytest.raises(ValueError, match="x must"):
        DictionaryLearning(10, 8, LAM).fit(data)
