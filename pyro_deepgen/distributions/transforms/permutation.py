"""A fixed permutation of the event dimensions, as a module so that it moves and saves with the flow."""
from typing import Optional

import torch
from torch import nn

from .pyro_module import DropCacheOnPickle
from pyro.distributions import constraints
from pyro.distributions.torch_transform import TransformModule


class Permutation(DropCacheOnPickle, TransformModule):
    r"""A fixed reordering of the last dimension, :math:`\mathbf{y} = \mathbf{x}_{\pi}`.

    Used between coupling and autoregressive layers so that every coordinate is transformed
    (NICE and RealNVP alternate the halves; IAF reverses the order between steps). Volume
    preserving: :math:`\log|\det J| = 0`.

    Unlike Pyro's :class:`~pyro.distributions.transforms.Permute`, the permutation and its
    inverse are registered buffers, so ``.to(device)`` moves them and ``state_dict`` saves them.

    Example usage:

    >>> flip = Permutation(torch.tensor([2, 1, 0]))
    >>> flip(torch.tensor([1.0, 2.0, 3.0]))
    tensor([3., 2., 1.])

    :param torch.LongTensor permutation: ``y[..., i] = x[..., permutation[i]]``.

    **References**: [1] L. Dinh, D. Krueger, Y. Bengio, *NICE: Non-linear Independent
    Components Estimation*, arXiv:1410.8516. [2] D. P. Kingma et al., *Improving Variational
    Inference with Inverse Autoregressive Flow*, arXiv:1606.04934.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    volume_preserving = True

    def __init__(self, permutation: torch.Tensor) -> None:
        super().__init__(cache_size=1)
        permutation = torch.as_tensor(permutation, dtype=torch.long)
        n = permutation.numel()
        if permutation.dim() != 1 or not torch.equal(
            permutation.sort().values, torch.arange(n, device=permutation.device)
        ):
            raise ValueError(
                f"permutation must be a 1-D reordering of 0..{n - 1}, got {permutation.tolist()}"
            )
        self.register_buffer("permutation", permutation)
        self.register_buffer("inv_permutation", torch.argsort(permutation))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.permutation]

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y[..., self.inv_permutation]

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[:-1])

    __repr__ = nn.Module.__repr__  # torch Transform.__repr__ would hide extra_repr

    def extra_repr(self) -> str:
        return f"permutation={self.permutation.tolist()}"


def permutation(
    input_dim: int, kind: str = "reverse", generator: Optional[torch.Generator] = None
) -> Permutation:
    """A :class:`Permutation` of ``input_dim`` coordinates: ``kind="reverse"`` flips the order,
    ``kind="random"`` draws one with ``torch.randperm`` (fixed afterwards)."""
    if kind == "reverse":
        return Permutation(torch.arange(input_dim - 1, -1, -1))
    if kind == "random":
        return Permutation(torch.randperm(input_dim, generator=generator))
    raise ValueError(f"kind={kind!r}; use 'reverse' or 'random'")
