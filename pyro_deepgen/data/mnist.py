"""MNIST from the standard IDX files, plain or gzipped, in ``root`` or ``root/MNIST/raw``."""
import os
from typing import Dict, Optional, Tuple

import torch

from .binarization import binarize_split, check_binarize
from .download import download_file
from .files import CorruptDataError, candidate_paths, find_file
from .idx import read_idx

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# file stem per split: (images, labels)
MNIST_FILES: Dict[str, Tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MD5 of the official gzipped files (the digests torchvision checks)
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# torchvision keeps the raw files in root/MNIST/raw
_SUBDIRS = ("", os.path.join("MNIST", "raw"))


def _check_split(split: str) -> None:
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")


def _candidates(root: str, stem: str):
    return candidate_paths(root, (stem, stem + ".gz"), _SUBDIRS)


def find_mnist_files(root: str, split: str = "train") -> Tuple[Optional[str], Optional[str]]:
    """Paths of the image and label files of ``split`` under ``root`` (``None`` where absent).

    Searched in order: ``root/STEM``, ``root/STEM.gz``, ``root/MNIST/raw/STEM``,
    ``root/MNIST/raw/STEM.gz``.
    """
    _check_split(split)
    return tuple(find_file(_candidates(root, stem)) for stem in MNIST_FILES[split])


def has_mnist_split(root: str, split: str) -> bool:
    """Whether any file of ``split`` (images or labels) is present under ``root``."""
    return any(path is not None for path in find_mnist_files(root, split))


def download_mnist(root: str, split: str = "train") -> None:
    """Download the official gzipped files of ``split`` that are missing under ``root``.

    Each file is checked against its MD5 digest before it is atomically moved into ``root``.
    """
    images, labels = find_mnist_files(root, split)
    for stem, found in zip(MNIST_FILES[split], (images, labels)):
        if found is None:
            name = stem + ".gz"
            download_file(
                [mirror + name for mirror in MNIST_MIRRORS],
                os.path.join(os.path.expanduser(root), name),
                md5=MNIST_MD5[name],
            )


_FIX = ("Pass download=True (command line: --download) to fetch the official files (checked by MD5) "
        "into root, or point root at the folder that holds them (command line: --data-root DIR; "
        "torchvision's root/MNIST/raw layout is accepted).")


def _missing_error(root: str, split: str) -> FileNotFoundError:
    """One line: which files of ``split`` are missing, in which folder, the paths searched and
    the fixes (``download=True`` / ``--download``, or another root)."""
    stems = MNIST_FILES[split]
    found = find_mnist_files(root, split)
    missing = " and ".join(f"{stem}[.gz]" for stem, path in zip(stems, found) if path is None)
    searched = [p for stem in stems for p in _candidates(root, stem)]
    listing = ", ".join(searched)
    if not os.path.isdir(root):
        where = f"{root} does not exist" if not os.path.exists(root) else f"{root} is not a folder"
        return FileNotFoundError(
            f"MNIST {split} files not found: the folder {where} (searched {listing}). {_FIX}"
        )
    if split == "test" and not has_mnist_split(root, "test") and has_mnist_split(root, "train"):
        return FileNotFoundError(
            f"split='test' needs the t10k files ({stems[0]}[.gz], {stems[1]}[.gz]) but {root} "
            f"holds only the training split (searched {listing}). Use split='train' (for "
            "example load_train_test('mnist', root) holds out a fixed fraction of it as the "
            "test set), pass download=True (--download), or point root at a folder with the t10k "
            "files."
        )
    return FileNotFoundError(
        f"MNIST {split} files not found in the folder {root}: missing {missing} (searched {listing}). "
        f"{_FIX}"
    )


def check_mnist_files(root: str, split: str = "train") -> Tuple[str, str]:
    """The paths of the image and label files of ``split`` under ``root`` (see
    :func:`find_mnist_files`).

    :raises FileNotFoundError: (one line) naming the missing files, the folder, the paths
        searched and the fixes, when either file is absent.
    """
    _check_split(split)
    root = os.path.expanduser(os.fspath(root))
    images, labels = find_mnist_files(root, split)
    if images is None or labels is None:
        raise _missing_error(root, split)
    return images, labels


def load_mnist(
    root: str,
    split: str = "train",
    binarize: Optional[str] = None,
    download: bool = False,
    seed: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST split as flat images in [0, 1] and integer labels.

    :param root: folder with ``train-images-idx3-ubyte[.gz]`` and friends, directly or in
        torchvision's ``root/MNIST/raw``.
    :param split: ``"train"`` or ``"test"`` (the ``t10k`` files).
    :param binarize: ``None``, ``"threshold"``, ``"stochastic"`` or ``"dynamic"`` (see
        :mod:`pyro_deepgen.data.binarization`; ``"dynamic"`` returns grey values for
        ``split="train"`` and one fixed seeded draw for ``split="test"``).
    :param download: fetch missing official files into ``root``, checked by MD5.
    :param seed: seed of the stochastic binarization.
    :returns: ``(x, y)``: ``x`` float32 of shape ``(N, rows * cols)`` (``(N, 784)`` for MNIST),
        ``y`` int64 of shape ``(N,)``.
    :raises FileNotFoundError: if the files are missing (the message names the missing files and
        the folder, lists the paths searched and suggests ``download=True``).
    :raises CorruptDataError: (a :class:`ValueError`) if a file is truncated or corrupt.
    """
    _check_split(split)
    binarize = check_binarize(binarize)
    root = os.path.expanduser(os.fspath(root))
    if download:
        download_mnist(root, split)
    images_path, labels_path = check_mnist_files(root, split)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype.itemsize != 1 or images.dtype.kind != "u":
        raise CorruptDataError(
            f"{images_path} holds {images.dtype} data of shape {images.shape}, not unsigned-byte "
            "images of shape (N, rows, cols): is it an image file? Replace it with the original."
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise CorruptDataError(
            f"{labels_path} holds labels of shape {labels.shape} for the {images.shape[0]} images "
            f"in {images_path}; the two files must come from the same split and be intact."
        )
    x = torch.from_numpy(images.reshape(images.shape[0], -1)).to(torch.float32) / 255.0
    y = torch.from_numpy(labels).to(torch.int64)
    return binarize_split(x, binarize, split, seed), y
