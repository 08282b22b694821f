import os
import re

import numpy as np
import pytest
import scipy.io
import torch

import pyro_deepgen.data.download as download_module
from pyro_deepgen.data import CorruptDataError, DownloadError, load_frey_faces


def _save(folder, ff):
    path = os.path.join(str(folder), "frey_rawface.mat")
    scipy.io.savemat(path, {"ff": ff})
    return path


def test_load_frey_faces_layout(tmp_path):
    ff = np.random.default_rng(0).integers(0, 256, size=(560, 5), dtype=np.uint8)
    ff[0, 0], ff[1, 0] = 0, 255
    _save(tmp_path, ff)
    x = load_frey_faces(str(tmp_path))
    assert x.shape == (5, 560) and x.dtype == torch.float32
    assert x.min() == 0 and x.max() == 1
    # column j of ff is image j, stored row-major as 28 rows of 20 pixels
    image = x[2].reshape(28, 20)
    np.testing.assert_array_equal((image * 255).round().numpy(), ff[:, 2].reshape(28, 20))


def test_missing_frey_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path)) + ".*download=True"):
        load_frey_faces(str(tmp_path))


def test_corrupt_frey_file(tmp_path):
    path = os.path.join(str(tmp_path), "frey_rawface.mat")
    with open(path, "wb") as f:
        f.write(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(CorruptDataError, match=re.escape(path) + " is not a readable MATLAB"):
        load_frey_faces(str(tmp_path))


def test_wrong_matrix(tmp_path):
    path = _save(tmp_path, np.zeros((28, 20), dtype=np.uint8))
    with pytest.raises(CorruptDataError, match=re.escape(path) + r".*shape \(28, 20\)"):
        load_frey_faces(str(tmp_path))


def test_download_is_verified_by_parsing(tmp_path, monkeypatch):
    """A download that is not a Frey .mat file is rejected and leaves no file behind."""
    import io

    monkeypatch.setattr(download_module, "urlopen", lambda url, timeout: io.BytesIO(b"<html>"))
    with pytest.raises(DownloadError, match="not a readable MATLAB"):
        load_frey_faces(str(tmp_path), download=True)
    assert os.listdir(str(tmp_path)) == []
