"""Helpers that write tiny synthetic MNIST-style IDX files."""
import gzip
import os
import struct

import numpy as np

IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (header + big-endian data)."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, gz=False):
    data = idx_bytes(array)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)
    return path


def fake_mnist(n, seed):
    """n random 28x28 uint8 images (including 0 and 255) and labels in 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


def serve_fake_mnist(monkeypatch, train=6, test=4):
    """Fake the MNIST mirrors: ``urlopen`` serves gzipped synthetic files of ``train`` and ``test``
    images (MD5 table patched to match), so ``download=True`` never touches the network.
    Returns the list of URLs requested."""
    import gzip
    import hashlib
    import io

    import pyro_deepgen.data.download as download_module
    import pyro_deepgen.data.mnist as mnist_module

    files = {}
    for prefix, n, seed in (("train", train, 0), ("t10k", test, 1)):
        images, labels = fake_mnist(n, seed)
        files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(images))
        files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels))
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        return io.BytesIO(files[url.rsplit("/", 1)[-1]])

    monkeypatch.setattr(download_module, "urlopen", urlopen)
    monkeypatch.setattr(mnist_module, "MNIST_MD5", {k: hashlib.md5(v).hexdigest() for k, v in files.items()})
    return calls
