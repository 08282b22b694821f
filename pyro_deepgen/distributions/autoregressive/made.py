r"""MADE, the masked autoencoder for distribution estimation (Germain et al. 2015)."""
from typing import Optional, Sequence

import torch
from torch.nn import functional as F

from ..._checks import non_negative_int, positive_int, positive_ints
from ...nn.masks import made_degrees, made_masks
from .base import AutoregressiveModule


class MADE(AutoregressiveModule):
    r"""MADE over ``dim`` binary variables: an MLP whose weights are multiplied by the masks of
    :mod:`pyro_deepgen.nn.masks`, so that logit :math:`d` sees only the inputs before :math:`d`
    in the ordering, for any hidden widths (narrower than ``dim`` included, unlike
    ``pyro.nn.AutoRegressiveNN``):

    .. math:: h^{l} = \mathrm{relu}\big((W^l \odot M^l) h^{l-1} + b^l\big), \qquad
              \ell = (W^{\mathrm{out}} \odot M^{\mathrm{out}}) h^L + b^{\mathrm{out}}.

    **Order-agnostic training** (``num_masks`` = K > 1): K orderings and connectivities are
    drawn once (seeded, kept as buffers, so saved and moved with the module); training cycles
    through them, changing mask every ``resample_every`` steps of :meth:`model`. In ``eval()``
    mode ``log_prob`` is the ensemble :math:`\log \frac1K \sum_k p_k(x)` (log-mean-exp over
    masks). With K = 1 the ordering is ``0..dim-1`` (``random_order=False``) and the one
    connectivity is fixed.

    With ``context_dim``, the context enters the first hidden layer and the output logits
    through unmasked linear maps (a conditional MADE, e.g. the decoder :math:`p(x|z)` of a VAE).

    :param int dim: number of binary variables :math:`D`.
    :param hidden_dims: hidden widths, at least one (the paper: one layer of 500 on MNIST).
    :param int num_masks: K, the orderings/masks trained over and averaged at test time.
    :param int resample_every: training steps per mask.
    :param int context_dim: size of the conditioning input, or ``None``.
    :param str name: the prefix of its parameters in Pyro's param store (see :meth:`model`).
    :param bool random_order: draw the orderings (default: when ``num_masks`` > 1).
    :param int seed: seed of the masks.

    **Reference**: M. Germain, K. Gregor, I. Murray, H. Larochelle, *MADE: Masked Autoencoder for
    Distribution Estimation*, ICML 2015, arXiv:1502.03509.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] = (500,), num_masks: int = 1,
                 resample_every: int = 1, context_dim: Optional[int] = None,
                 random_order: Optional[bool] = None, seed: int = 0, name: str = "made") -> None:
        super().__init__()
        self.name = name
        self.dim = positive_int(dim, "dim")
        self.hidden_dims = positive_ints(hidden_dims, "hidden_dims", allow_empty=False)
        self.num_masks = positive_int(num_masks, "num_masks")
        self.resample_every = positive_int(resample_every, "resample_every")
        self.context_dim = None if context_dim is None else positive_int(context_dim, "context_dim")
        random_order = self.num_masks > 1 if random_order is None else bool(random_order)
        g = torch.Generator().manual_seed(non_negative_int(seed, "seed"))
        per_layer = [[] for _ in range(len(self.hidden_dims) + 1)]
        degrees = []
        for _ in range(self.num_masks):
            order = torch.randperm(dim, generator=g) if random_order else torch.arange(dim)
            m0 = order.argsort() + 1  # the degree of input i is its position in the ordering
            degrees.append(m0)
            for layer, mask in zip(per_layer, made_masks(m0, made_degrees(m0, self.hidden_dims, True, g))):
                layer.append(mask)
        self.register_buffer("input_degrees", torch.stack(degrees))  # (K, D)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        sizes = (dim,) + self.hidden_dims + (dim,)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        for i, masks in enumerate(per_layer):
            self.register_buffer(f"mask{i}", torch.stack(masks))  # (K, out, in)
        self.context_in = self.context_out = None
        if context_dim is not None:
            self.context_in = torch.nn.Linear(context_dim, self.hidden_dims[0])
            self.context_out = torch.nn.Linear(context_dim, dim)

    def order(self, mask: int = 0) -> torch.Tensor:
        return self.input_degrees[mask].argsort()

    def current_mask(self) -> int:
        return int(self.step) // self.resample_every % self.num_masks

    def step_masks(self) -> None:
        if self.num_masks > 1:
            self.step += 1

    def resample_masks(self) -> None:
        """Move on to the next of the K masks now."""
        self.step += self.resample_every - int(self.step) % self.resample_every

    def logits(self, x: torch.Tensor, context: Optional[torch.Tensor] = None, mask: int = 0) -> torch.Tensor:
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = F.linear(h, layer.weight * getattr(self, f"mask{i}")[mask], layer.bias)
            if i == 0 and context is not None:
                h = h + self.context_in(context)
            if i < last:
                h = F.relu(h)
        return h if context is None else h + self.context_out(context)
