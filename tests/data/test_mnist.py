import gzip
import hashlib
import io
import os
import re

import numpy as np
import pytest
import torch

import pyro_deepgen.data.download as download_module
import pyro_deepgen.data.mnist as mnist_module
from pyro_deepgen.data.mnist import check_mnist_files
from pyro_deepgen.data import CorruptDataError, DownloadError, load_mnist

from .idx_files import fake_mnist, idx_bytes, write_idx


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _expected(images):
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("subdir", ["", os.path.join("MNIST", "raw")], ids=["root", "torchvision"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_layouts(mnist_root, gz, subdir, split):
    root, arrays = mnist_root(gz=gz, subdir=subdir)
    images, labels = arrays[split]
    x, y = load_mnist(root, split)
    assert x.shape == (len(images), 784) and x.dtype == torch.float32
    assert y.shape == (len(images),) and y.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1
    torch.testing.assert_close(x, _expected(images), rtol=0, atol=0)
    assert y.tolist() == labels.tolist()


def test_missing_files_lists_paths_and_fix(tmp_path):
    root = str(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(root)
    message = str(info.value)
    for path in [
        os.path.join(root, "train-images-idx3-ubyte"),
        os.path.join(root, "train-images-idx3-ubyte.gz"),
        os.path.join(root, "MNIST", "raw", "train-labels-idx1-ubyte.gz"),
    ]:
        assert path in message
    assert "download=True" in message and "point root at" in message
    assert "\n" not in message  # the CLI prints it as one line


def test_test_split_missing(mnist_root):
    root, _ = mnist_root(test=0)
    load_mnist(root, "train")
    expected = r"split='test' needs the t10k files.*only the training"
    with pytest.raises(FileNotFoundError, match=expected):
        load_mnist(root, "test")


def test_missing_labels_only(mnist_root):
    root, _ = mnist_root(gz=False)
    os.remove(os.path.join(root, "train-labels-idx1-ubyte"))
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        load_mnist(root, "train")


def test_truncated_file_names_path_and_nothing_is_cached(mnist_root):
    root, arrays = mnist_root(gz=True)
    path = os.path.join(root, "train-images-idx3-ubyte.gz")
    good = _read(path)
    _write(path, good[:-40])
    with pytest.raises(CorruptDataError, match=re.escape(path) + ".*download=True"):
        load_mnist(root)
    # after the file is repaired, the next call reads it afresh
    _write(path, good)
    x, _ = load_mnist(root)
    torch.testing.assert_close(x, _expected(arrays["train"][0]), rtol=0, atol=0)


def test_truncated_plain_file(mnist_root):
    root, _ = mnist_root(gz=False)
    path = os.path.join(root, "t10k-images-idx3-ubyte")
    data = _read(path)
    _write(path, data[: len(data) - 100])
    with pytest.raises(CorruptDataError, match=re.escape(path) + " is truncated"):
        load_mnist(root, "test")


def test_mismatched_labels(mnist_root, tmp_path):
    root, _ = mnist_root(gz=False)
    write_idx(os.path.join(root, "train-labels-idx1-ubyte"), np.zeros(5, dtype=np.uint8))
    with pytest.raises(CorruptDataError, match="labels of shape \\(5,\\) for the 6 images"):
        load_mnist(root)


def test_labels_file_in_place_of_images(mnist_root):
    root, _ = mnist_root(gz=False)
    write_idx(os.path.join(root, "train-images-idx3-ubyte"), np.zeros(6, dtype=np.uint8))
    with pytest.raises(CorruptDataError, match="not unsigned-byte images"):
        load_mnist(root)


def test_bad_arguments(mnist_root):
    root, _ = mnist_root()
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_mnist(root, "validation")
    with pytest.raises(ValueError, match="binarize must be one of"):
        load_mnist(root, binarize="otsu")


def test_binarization_of_splits(mnist_root):
    root, arrays = mnist_root()
    grey_train, _ = load_mnist(root, "train")
    grey_test, _ = load_mnist(root, "test")
    x, _ = load_mnist(root, "train", binarize="threshold")
    assert torch.equal(x, (grey_train > 0.5).float())
    # dynamic: grey values for training, one fixed draw for the test split
    x, _ = load_mnist(root, "train", binarize="dynamic")
    assert torch.equal(x, grey_train)
    x1, _ = load_mnist(root, "test", binarize="dynamic", seed=3)
    x2, _ = load_mnist(root, "test", binarize="stochastic", seed=3)
    assert set(x1.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x1, x2)
    assert torch.equal(x1, load_mnist(root, "test", binarize="dynamic", seed=3)[0])


class _FakeResponse(io.BytesIO):
    pass


def _fake_server(files):
    """An urlopen stand-in serving ``files[basename]`` (mirrors in ``bad`` fail)."""
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise OSError(f"404 for {url}")
        return _FakeResponse(files[name])

    return urlopen, calls


def test_download_verifies_md5_and_renames(tmp_path, monkeypatch):
    """download=True is never used against the network: urlopen and the MD5 table are faked."""
    images, labels = fake_mnist(3, seed=5)
    files = {
        "train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(images)),
        "train-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labels)),
    }
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    urlopen, calls = _fake_server(files)
    monkeypatch.setattr(download_module, "urlopen", urlopen)
    monkeypatch.setattr(mnist_module, "MNIST_MD5", md5)
    root = str(tmp_path / "new")
    x, y = load_mnist(root, download=True)
    torch.testing.assert_close(x, _expected(images), rtol=0, atol=0)
    assert sorted(os.listdir(root)) == sorted(files)  # no temporary files left
    assert len(calls) == 2
    load_mnist(root, download=True)  # present files are not fetched again
    assert len(calls) == 2


def test_download_with_bad_checksum_leaves_nothing(tmp_path, monkeypatch):
    images, labels = fake_mnist(3, seed=5)
    files = {"train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(images))}
    urlopen, calls = _fake_server(files)
    monkeypatch.setattr(download_module, "urlopen", urlopen)
    root = str(tmp_path)
    # the real MD5 table: the fake file does not match it
    with pytest.raises(DownloadError, match="MD5 .* does not match"):
        load_mnist(root, download=True)
    assert os.listdir(root) == []
    assert len(calls) == len(mnist_module.MNIST_MIRRORS)  # every mirror was tried


def _real_mnist_root():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    default = os.path.join(repo, os.pardir, "shared", "data", "mnist-5k")
    return os.environ.get("PYRO_DEEPGEN_MNIST_ROOT", default)


@pytest.mark.mnist
@pytest.mark.skipif(
    not os.path.isdir(_real_mnist_root()),
    reason="real MNIST folder absent (set PYRO_DEEPGEN_MNIST_ROOT)",
)
def test_real_mnist_5k():
    x, y = load_mnist(_real_mnist_root(), "train")
    assert x.shape == (5000, 784) and y.shape == (5000,)
    assert x.min() == 0 and x.max() == 1
    assert set(y.unique().tolist()) == set(range(10))


def test_missing_file_is_named_with_its_folder_and_both_fixes(mnist_root):
    root, _ = mnist_root(gz=False)
    os.remove(os.path.join(root, "train-labels-idx1-ubyte"))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(root, "train")
    message = str(info.value)
    assert f"in the folder {root}: missing train-labels-idx1-ubyte[.gz] (searched" in message
    assert "train-images-idx3-ubyte[.gz]" not in message  # present: not named as missing
    assert "download=True" in message and "--download" in message and "--data-root" in message
    assert "\n" not in message


def test_missing_folder_is_named(tmp_path):
    root = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=re.escape(f"the folder {root} does not exist")):
        check_mnist_files(root)
    (tmp_path / "file").write_text("")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        check_mnist_files(str(tmp_path / "file"))


def test_check_mnist_files_returns_the_paths(mnist_root):
    root, _ = mnist_root(gz=True)
    expected = tuple(os.path.join(root, f"t10k-{kind}-ubyte.gz") for kind in ("images-idx3", "labels-idx1"))
    assert check_mnist_files(root, "test") == expected
