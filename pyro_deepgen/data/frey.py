"""Brendan Frey's face images: 1965 grey 28x20 frames in ``frey_rawface.mat`` (Roweis' page)."""
import os

import numpy as np
import torch

from .download import download_file
from .files import CorruptDataError

FREY_FILE = "frey_rawface.mat"
FREY_URLS = ("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",)
FREY_SHAPE = (28, 20)


def _read_frey(path: str) -> np.ndarray:
    """The ``ff`` matrix of ``path`` as ``(N, 560)`` uint8, or a CorruptDataError naming it."""
    import scipy.io

    fix = "Delete it and run again with download=True, or replace it with an intact copy."
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises ValueError, OSError, TypeError or MatReadError
        raise CorruptDataError(f"{path} is not a readable MATLAB file ({e}). {fix}") from e
    ff = mat.get("ff")
    pixels = FREY_SHAPE[0] * FREY_SHAPE[1]
    if not isinstance(ff, np.ndarray) or ff.ndim != 2 or ff.shape[0] != pixels:
        found = f"shape {ff.shape}" if isinstance(ff, np.ndarray) else "no such variable"
        raise CorruptDataError(
            f"{path} has no {pixels} x N matrix 'ff' of 28x20 face images ({found}). {fix}"
        )
    return np.ascontiguousarray(ff.T)


def load_frey_faces(root: str, download: bool = False) -> torch.Tensor:
    """The Frey faces as flat images in [0, 1] (grey levels divided by 255).

    Each row reshapes to a 28x20 image with ``x.reshape(-1, 28, 20)``.

    :param root: folder holding ``frey_rawface.mat``.
    :param download: fetch the file into ``root`` if missing. No checksum is published for this
        file, so the download is verified by parsing it (a ``560 x N`` matrix ``ff``) before it
        is atomically moved into place.
    :returns: float32 Tensor of shape ``(1965, 560)`` for the original file.
    :raises FileNotFoundError: naming the path searched if the file is missing.
    :raises CorruptDataError: (a :class:`ValueError`) if the file cannot be read.
    """
    path = os.path.join(os.path.expanduser(os.fspath(root)), FREY_FILE)
    if download and not os.path.isfile(path):
        download_file(FREY_URLS, path, verify=_read_frey)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found. Pass download=True to fetch it from {FREY_URLS[0]}, or point "
            "root at the folder that holds frey_rawface.mat."
        )
    return torch.from_numpy(_read_frey(path)).to(torch.float32) / 255.0
