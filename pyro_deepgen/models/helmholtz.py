"""Helmholtz machine: a sigmoid belief net with a recognition network (Dayan et al. 1995)."""
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from pyro.nn.module import to_pyro_module_
from torch import nn

from .._checks import positive_int, positive_ints
from ..energy.rbm import MAX_ENUMERATED_UNITS, binary_states
from ..plates import data_plate
from ._inputs import check_batch


class HelmholtzMachine(PyroModule):
    r"""A sigmoid belief net :math:`p_\theta` with a recognition network :math:`q_\phi`.

    With ``hidden_dims = (H_1, ..., H_L)`` (one or two layers are typical), the generative
    model is a top-down chain of stochastic binary layers and the recognition model the
    bottom-up chain,

    .. math::

        p_\theta(h_L) = \mathrm{Bernoulli}(\sigma(b_L)),\quad
        p_\theta(h_{l-1}\mid h_l) = \mathrm{Bernoulli}(\sigma(W_l h_l + b_{l-1})),\quad
        h_0 \equiv x,

        q_\phi(h_1\mid x) = \mathrm{Bernoulli}(\sigma(R_1 x + c_1)),\quad
        q_\phi(h_l\mid h_{l-1}) = \mathrm{Bernoulli}(\sigma(R_l h_{l-1} + c_l)).

    ``model(x, num_data=None)`` and ``guide(x, num_data=None)`` put the latents ``"h1"``, ...,
    ``"hL"`` (event dim 1) inside ``pyro.plate("data")`` and observe ``"x"``, so the pair trains
    with :class:`~pyro_deepgen.infer.WakeSleep` and
    :class:`~pyro_deepgen.infer.ReweightedWakeSleep` and is evaluated with
    :func:`pyro_deepgen.evaluate.log_likelihood`. The latents are discrete, so the
    reparameterized ELBOs do not apply.

    :param int x_dim: number of visible units; the data are binary (or grey values in [0, 1],
        scored by the cross-entropy), with the parameters' dtype (else a ``ValueError``).
    :param hidden_dims: sizes of the stochastic hidden layers, bottom (nearest the data) first.
        Default ``(200,)``.

    **Limiting case**: with all weights zero, :math:`p(x) = \prod_i \sigma(b_{0,i})^{x_i}
    (1-\sigma(b_{0,i}))^{1-x_i}` and :meth:`log_prob_exact` returns that.

    **References**: [1] P. Dayan, G. E. Hinton, R. M. Neal, R. S. Zemel, *The Helmholtz
    Machine*, Neural Computation 7 (1995). [2] G. E. Hinton, P. Dayan, B. J. Frey, R. M. Neal,
    *The wake-sleep algorithm for unsupervised neural networks*, Science 268 (1995).
    [3] J. Bornschein, Y. Bengio, *Reweighted Wake-Sleep*, arXiv:1406.2751.
    """

    def __init__(self, x_dim: int, hidden_dims: Sequence[int] = (200,)) -> None:
        super().__init__()
        hidden_dims = positive_ints(hidden_dims, "hidden_dims", allow_empty=False)
        self.x_dim, self.hidden_dims = positive_int(x_dim, "x_dim"), hidden_dims
        sizes = (self.x_dim,) + hidden_dims
        # decoders[l] maps h_{l+1} -> logits of h_l (h_0 = x); encoders[l] maps h_l -> h_{l+1}
        layers = range(len(hidden_dims))
        self.decoders = nn.ModuleList(nn.Linear(sizes[i + 1], sizes[i]) for i in layers)
        self.encoders = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in layers)
        to_pyro_module_(self.decoders)
        to_pyro_module_(self.encoders)
        self.prior_logits = PyroParam(torch.zeros(hidden_dims[-1]))

    @property
    def num_layers(self) -> int:
        return len(self.hidden_dims)

    def _check(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[-1] != self.x_dim:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(
                f"x must have shape (batch, {self.x_dim}); got {shape}. "
                "Flatten images with x.reshape(len(x), -1)."
            )
        # dtype, and values in [0, 1] (binary or grey): one reduction per batch
        check_batch(self, x, "x", "HelmholtzMachine", unit_interval=True)

    @staticmethod
    def _bernoulli(logits: torch.Tensor, validate: Optional[bool] = None) -> dist.Distribution:
        return dist.Bernoulli(logits=logits, validate_args=validate).to_event(1)

    # -- Pyro programs --------------------------------------------------------------------
    def model(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        """p(x, h_1, ..., h_L); ``num_data`` marks ``x`` as a minibatch of that data set."""
        self._check(x)
        with data_plate(x, num_data):
            top = self.prior_logits.expand(x.shape[0], self.hidden_dims[-1])
            h = pyro.sample(f"h{self.num_layers}", self._bernoulli(top))
            for layer in range(self.num_layers - 1, 0, -1):
                h = pyro.sample(f"h{layer}", self._bernoulli(self.decoders[layer](h)))
            # grey values in [0, 1] are allowed: the log-likelihood is then the cross-entropy
            pyro.sample("x", self._bernoulli(self.decoders[0](h), validate=False), obs=x)

    def guide(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        """q(h_1, ..., h_L | x), bottom-up."""
        self._check(x)
        with data_plate(x, num_data):
            h = x
            for layer in range(self.num_layers):
                h = pyro.sample(f"h{layer + 1}", self._bernoulli(self.encoders[layer](h)))

    # -- exact computations on tiny models ------------------------------------------------
    def log_prob_exact(self, x: torch.Tensor) -> torch.Tensor:
        r"""Exact :math:`\log p(x)` per row of ``x`` by enumerating every hidden layer.

        Needs at most 20 hidden units in total; for tests and tiny
        models.
        """
        self._check(x)
        total = sum(self.hidden_dims)
        if total > MAX_ENUMERATED_UNITS:
            raise ValueError(
                f"log_prob_exact enumerates 2**{total} hidden states; at most "
                f"{MAX_ENUMERATED_UNITS} hidden units in total. Use "
                "pyro_deepgen.evaluate.log_likelihood(hm.model, hm.guide, x) instead."
            )
        configs = binary_states(total, device=x.device, dtype=x.dtype)  # (C, total)
        layers = configs.split(self.hidden_dims, dim=-1)
        log_joint = self._bernoulli(self.prior_logits).log_prob(layers[-1])  # (C,)
        for layer in range(self.num_layers - 1, 0, -1):
            log_joint = log_joint + self._bernoulli(self.decoders[layer](layers[layer])).log_prob(
                layers[layer - 1]
            )
        logits = self.decoders[0](layers[0])  # (C, D)
        log_px = self._bernoulli(logits.unsqueeze(1), validate=False).log_prob(x)  # (C, N)
        return torch.logsumexp(log_joint.unsqueeze(-1) + log_px, dim=0)

    # -- sampling -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """Ancestral samples from p(x); ``mean=True`` returns E[x | h_1] instead of binary x."""
        probs = torch.sigmoid(self.prior_logits).expand(n, self.hidden_dims[-1])
        h = torch.bernoulli(probs)
        for layer in range(self.num_layers - 1, -1, -1):
            probs = torch.sigmoid(self.decoders[layer](h))
            h = torch.bernoulli(probs)
        return probs if mean else h
