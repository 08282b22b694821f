"""The data plate shared by every model and guide of the package."""
from typing import Optional

import pyro
import torch


def data_plate(x: torch.Tensor, num_data: Optional[int] = None, name: str = "data") -> pyro.plate:
    """The data plate over the leading dimension of ``x``.

    With ``num_data`` (the full data set size) the plate treats ``x`` as a minibatch and scales
    every site inside it by ``num_data / len(x)``, as :class:`pyro.plate` does for subsampling.
    """
    n = x.shape[0]
    if num_data is None:
        return pyro.plate(name, n)
    if num_data < n:
        raise ValueError(f"num_data={num_data} is smaller than the batch size {n}")
    return pyro.plate(name, num_data, subsample=torch.arange(n, device=x.device))
