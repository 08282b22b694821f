"""Fixed, seeded hold-out splits."""
from typing import Tuple

import torch


def holdout_indices(
    n: int, test_fraction: float = 0.1, seed: int = 0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices of a fixed random hold-out: ``round(test_fraction * n)`` points (at least one).

    The same ``(n, test_fraction, seed)`` always give the same split (a ``torch.Generator``
    seeded with ``seed`` draws one permutation). Both index sets are sorted.

    :returns: ``(train_index, test_index)``, int64 Tensors partitioning ``range(n)``.
    """
    if not (isinstance(n, int) and n >= 2):
        raise ValueError(f"n must be an int >= 2 to hold out a test set; got {n!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    n_test = min(max(int(round(test_fraction * n)), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_test:].sort().values, perm[:n_test].sort().values
