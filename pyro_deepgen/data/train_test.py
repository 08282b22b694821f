"""One call that gives every command line tool its training and test sets."""
import os
from dataclasses import dataclass
from typing import Optional

import torch

from .binarization import binarize_split, check_binarize
from .digits import load_digits
from .mnist import find_mnist_files, has_mnist_split, load_mnist
from .split import holdout_indices

DATASETS = ("digits", "mnist")


@dataclass(frozen=True)
class TrainTestData:
    """Training and test sets and the rule that produced the test set.

    :ivar x_train: ``(N_train, D)`` float32; grey values when ``binarize == "dynamic"``.
    :ivar y_train: ``(N_train,)`` int64 labels.
    :ivar x_test: ``(N_test, D)`` float32; one fixed draw when ``binarize == "dynamic"``.
    :ivar y_test: ``(N_test,)`` int64 labels.
    :ivar test_split: which rule gave the test set, e.g. ``"held-out 10% of train (seed 0)"``.
    :ivar name: the data set's name.
    :ivar binarize: the binarization method (pass it on to the training loop).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    test_split: str
    name: str
    binarize: Optional[str] = None


def _holdout(name, x, y, binarize, test_fraction, seed, of):
    train_index, test_index = holdout_indices(x.shape[0], test_fraction, seed)
    # one fixed draw of the whole set (so a row's binarization does not depend on the split)
    x_fixed = binarize_split(x, binarize, "test", seed)
    x_train = x[train_index] if binarize == "dynamic" else x_fixed[train_index]
    rule = f"held-out {test_fraction * 100:g}% of {of} (seed {seed})"
    return TrainTestData(x_train, y[train_index], x_fixed[test_index], y[test_index], rule, name,
                         binarize)


def load_train_test(
    name: str,
    root: Optional[str] = None,
    binarize: Optional[str] = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
) -> TrainTestData:
    """Load a data set's training and test sets by one fixed rule.

    - ``"digits"`` (:func:`~pyro_deepgen.data.load_digits`): a fixed seeded ``test_fraction``
      of the 1797 images is held out.
    - ``"mnist"`` (:func:`~pyro_deepgen.data.load_mnist`): the test set is the ``t10k`` files
      when they exist under ``root``; otherwise a fixed seeded ``test_fraction`` of the training
      split is held out.

    With ``binarize="dynamic"`` the training images are grey values (the training loop draws
    afresh each epoch) and the test images one fixed seeded draw; ``"stochastic"`` uses one
    fixed seeded draw for both.

    :param name: ``"digits"`` or ``"mnist"``.
    :param root: folder with the MNIST IDX files (required for ``"mnist"``).
    :param binarize: ``None``/``"none"``, ``"threshold"``, ``"stochastic"`` or ``"dynamic"``.
    :param test_fraction: fraction held out where there is no separate test split.
    :param seed: seed of the hold-out and of the stochastic binarization.
    :param download: for ``"mnist"``, first fetch the missing official files of both splits
        into ``root`` (checked by MD5, see :func:`~pyro_deepgen.data.load_mnist`); the test set
        is then the ``t10k`` files.
    """
    binarize = check_binarize(binarize)
    if name not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}; got {name!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    if name == "digits":
        x, y = load_digits()
        return _holdout(name, x, y, binarize, test_fraction, seed, of="digits")
    if root is None:
        raise ValueError(
            "root is required for name='mnist': the folder with train-images-idx3-ubyte[.gz] "
            "(or use name='digits', the embedded data; download=True fetches the files into root)"
        )
    root = os.path.expanduser(os.fspath(root))
    if download or has_mnist_split(root, "test"):
        x_train, y_train = load_mnist(root, "train", binarize, download=download, seed=seed)
        x_test, y_test = load_mnist(root, "test", binarize, download=download, seed=seed)
        folder = os.path.dirname(find_mnist_files(root, "test")[0] or root)
        rule = f"t10k files in {folder}"
        return TrainTestData(x_train, y_train, x_test, y_test, rule, name, binarize)
    x, y = load_mnist(root, "train")
    return _holdout(name, x, y, binarize, test_fraction, seed, of="train")
