"""scikit-learn's shipped 8x8 handwritten digits: the embedded default data (no download)."""
from typing import Optional, Tuple

import torch

from .binarization import binarize as binarize_images
from .binarization import check_binarize


def load_digits(binarize: Optional[str] = None, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The 1797 8x8 digits of :func:`sklearn.datasets.load_digits` as flat images in [0, 1].

    The 17 grey levels 0..16 are divided by 16.

    :param binarize: ``None``, ``"threshold"``, ``"stochastic"`` or ``"dynamic"`` (grey values
        are returned, the training loop draws each epoch;
        :func:`~pyro_deepgen.data.train_test.load_train_test` gives the held-out test images one
        fixed draw).
    :param seed: seed of the stochastic binarization.
    :returns: ``(x, y)``: ``x`` float32 ``(1797, 64)``, ``y`` int64 ``(1797,)`` in 0..9.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits

    binarize = check_binarize(binarize)
    bunch = sklearn_load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return binarize_images(x, binarize, seed), y
