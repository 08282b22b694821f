"""run_sparse_kind on tiny settings: the report's keys, shapes, and the comparisons it makes."""
from types import SimpleNamespace

import pytest
import torch

from pyro_deepgen.data import load_digits
from pyro_deepgen.experiments.autoencoder_sparse import run_sparse_kind


@pytest.fixture(scope="module")
def split():
    x, _ = load_digits()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    return x[perm[:300]], x[perm[300:400]]


def _config(**overrides):
    values = dict(code_dim=32, lam=0.2, layers=3, epochs=8, lr=3e-3, batch_size=50, seed=0, device="cpu")
    values.update(overrides)
    return SimpleNamespace(**values)


def _check_shapes(out, atoms=32):
    assert out["filters"].shape == (atoms, 64)
    assert out["reconstructions"].shape == (100, 64)
    assert out["codes"].shape == (100, atoms)
    assert all(torch.isfinite(torch.as_tensor(out[k])).all() for k in ("filters", "reconstructions", "codes"))


def test_dictionary(split):
    out = run_sparse_kind("dictionary", _config(), *split)
    report = out["report"]
    _check_shapes(out)
    assert {"objective", "sklearn_objective", "reconstruction_error", "sparsity"} <= set(report)
    assert report["objective"] <= 1.05 * report["sklearn_objective"]
    assert 0 < report["sparsity"] < 1 and report["reconstruction_error"] > 0


def test_psd(split):
    out = run_sparse_kind("psd", _config(), *split)
    report = out["report"]
    _check_shapes(out)
    assert {"reconstruction_error", "sparsity", "code_error"} <= set(report)
    assert 0 < report["code_error"] < 1.5 and 0 < report["sparsity"] < 1


def test_lista(split):
    out = run_sparse_kind("lista", _config(), *split)
    report = out["report"]
    _check_shapes(out)
    assert report["layers"] == 3
    # trained LISTA beats the 3 ISTA iterations it started as
    assert report["code_error"] < report["ista_code_error"]
    assert report["ista_iterations_matched"] > 3
    assert report["objective"] >= report["optimal_objective"] - 1e-4


def test_bad_kind(split):
    with pytest.raises(ValueError, match="kind"):
        run_sparse_kind("pca", _config(), *split)
