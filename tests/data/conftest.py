"""Fixtures of the data tests: a folder with a tiny synthetic MNIST."""
import os

import pytest

from .idx_files import fake_mnist, write_idx


@pytest.fixture
def mnist_root(tmp_path):
    """Make a folder with a tiny MNIST: ``make(train=6, test=4, gz=True, subdir="")``.

    Returns ``(root, arrays)`` with ``arrays[split] = (images, labels)``.
    """

    def make(train=6, test=4, gz=True, subdir=""):
        arrays = {}
        folder = os.path.join(str(tmp_path), subdir)
        suffix = ".gz" if gz else ""
        for split, prefix, n, seed in (("train", "train", train, 0), ("test", "t10k", test, 1)):
            if not n:
                continue
            images, labels = fake_mnist(n, seed)
            write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{suffix}"), images, gz)
            write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{suffix}"), labels, gz)
            arrays[split] = images, labels
        return str(tmp_path), arrays

    return make
