import os

import pytest
import torch

from pyro_deepgen.data import holdout_indices, load_digits, load_mnist, load_train_test

from .idx_files import serve_fake_mnist


def test_holdout_indices_partition_and_fixed():
    train, test = holdout_indices(1797, 0.1, seed=0)
    assert len(test) == 180 and len(train) == 1617
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(1797))
    again = holdout_indices(1797, 0.1, seed=0)
    assert torch.equal(train, again[0]) and torch.equal(test, again[1])
    assert not torch.equal(test, holdout_indices(1797, 0.1, seed=1)[1])
    assert len(holdout_indices(3, 0.01)[1]) == 1  # at least one test point
    with pytest.raises(ValueError, match="test_fraction must be in"):
        holdout_indices(10, 1.0)
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        holdout_indices(1, 0.5)


def test_digits_holdout():
    data = load_train_test("digits")
    x, y = load_digits()
    train, test = holdout_indices(1797, 0.1, 0)
    assert torch.equal(data.x_train, x[train]) and torch.equal(data.y_test, y[test])
    assert data.test_split == "held-out 10% of digits (seed 0)"
    assert data.name == "digits" and data.binarize is None


def test_digits_stochastic_matches_load_digits():
    data = load_train_test("digits", binarize="stochastic", seed=2)
    x, _ = load_digits(binarize="stochastic", seed=2)
    train, test = holdout_indices(1797, 0.1, 2)
    assert torch.equal(data.x_train, x[train]) and torch.equal(data.x_test, x[test])


def test_digits_dynamic_train_grey_test_fixed():
    data = load_train_test("digits", binarize="dynamic")
    grey, _ = load_digits()
    train, test = holdout_indices(1797, 0.1, 0)
    assert torch.equal(data.x_train, grey[train])
    assert set(data.x_test.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(data.x_test, load_train_test("digits", binarize="dynamic").x_test)
    assert data.binarize == "dynamic"


def test_mnist_uses_t10k_when_present(mnist_root):
    root, arrays = mnist_root(train=6, test=4, subdir=os.path.join("MNIST", "raw"))
    data = load_train_test("mnist", root)
    assert data.x_train.shape == (6, 784) and data.x_test.shape == (4, 784)
    assert torch.equal(data.x_test, load_mnist(root, "test")[0])
    assert data.test_split == "t10k files in " + os.path.join(root, "MNIST", "raw")


def test_mnist_holds_out_without_t10k(mnist_root):
    root, _ = mnist_root(train=20, test=0)
    data = load_train_test("mnist", root)
    x, y = load_mnist(root)
    train, test = holdout_indices(20, 0.1, 0)
    assert data.x_test.shape == (2, 784) and data.x_train.shape == (18, 784)
    assert torch.equal(data.x_test, x[test]) and torch.equal(data.y_train, y[train])
    assert data.test_split == "held-out 10% of train (seed 0)"
    data = load_train_test("mnist", root, binarize="dynamic", test_fraction=0.25, seed=3)
    assert data.test_split == "held-out 25% of train (seed 3)"
    assert torch.equal(data.x_train, x[holdout_indices(20, 0.25, 3)[0]])
    assert set(data.x_test.unique().tolist()) <= {0.0, 1.0}


def test_mnist_dynamic_with_t10k(mnist_root):
    root, _ = mnist_root()
    data = load_train_test("mnist", root, binarize="dynamic", seed=5)
    assert torch.equal(data.x_train, load_mnist(root, "train")[0])
    assert torch.equal(data.x_test, load_mnist(root, "test", binarize="stochastic", seed=5)[0])


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="name must be one of"):
        load_train_test("cifar")
    with pytest.raises(ValueError, match="root is required for name='mnist'"):
        load_train_test("mnist")
    with pytest.raises(ValueError, match="binarize must be one of"):
        load_train_test("digits", binarize="yes")
    with pytest.raises(ValueError, match="test_fraction must be in"):
        load_train_test("digits", test_fraction=0)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_train_test("mnist", str(tmp_path))


def test_mnist_download_fetches_both_splits(tmp_path, monkeypatch):
    """download=True goes through load_mnist's checked download (the mirrors are faked)."""
    calls = serve_fake_mnist(monkeypatch, train=6, test=4)
    root = str(tmp_path / "mnist")
    data = load_train_test("mnist", root, download=True)
    assert len(calls) == 4 and data.test_split.startswith("t10k files in")
    assert data.x_train.shape == (6, 784) and data.x_test.shape == (4, 784)
    assert torch.equal(data.x_test, load_mnist(root, "test")[0])
    load_train_test("mnist", root, download=True)  # the files are there now: nothing fetched
    assert len(calls) == 4
