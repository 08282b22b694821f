"""Variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014) as a Pyro model/guide pair."""
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from torch.nn import functional as F

from .._checks import finite_float, one_of, positive_int, positive_ints
from ..distributions.bernoulli_image import BernoulliImage
from ..nn import MLP
from ..plates import data_plate  # noqa: F401  (re-exported)
from ..nn.mlp import Activation
from ._inputs import check_batch

LIKELIHOODS = ("bernoulli", "gaussian")


class VAE(PyroModule):
    r"""The variational autoencoder of Kingma & Welling (2014), arXiv:1312.6114.

    Generative model and amortized mean-field guide:

    .. math::

        p_\theta(z) = \mathcal N(0, I),\qquad
        p_\theta(x\mid z) = \mathrm{Bernoulli}(\sigma(f_\theta(z)))
        \ \text{or}\ \mathcal N(\mu_\theta(z), \mathrm{diag}\,\sigma^2_\theta(z)),

        q_\phi(z\mid x) = \mathcal N(\bar\mu_\phi(x), \mathrm{diag}\,\bar\sigma^2_\phi(x)).

    ``model(x)`` and ``guide(x)`` put one latent ``"z"`` per data point inside
    ``pyro.plate("data")``, so they work unchanged with :class:`~pyro.infer.Trace_ELBO`,
    :class:`~pyro.infer.TraceMeanField_ELBO` and every estimator of :mod:`pyro_deepgen.infer`.

    :param int x_dim: data dimension (e.g. 784 for MNIST, 64 for 8x8 digits).
    :param int z_dim: latent dimension.
    :param hidden_dims: hidden layer sizes of the encoder; the decoder uses them reversed.
        Default ``(200, 200)`` as in Burda et al. (2016).
    :param str likelihood: ``"bernoulli"`` (logits; accepts grey values in [0, 1], i.e. the
        cross-entropy; values outside [0, 1] are an error) or ``"gaussian"`` (learned diagonal
        covariance).
    :param activation: hidden activation, default ``"tanh"``.
    :param float min_scale: lower bound added to every standard deviation, for stability.

    **References**: [1] D. P. Kingma, M. Welling, *Auto-Encoding Variational Bayes*,
    arXiv:1312.6114. [2] D. J. Rezende, S. Mohamed, D. Wierstra, *Stochastic Backpropagation
    and Approximate Inference in Deep Generative Models*, arXiv:1401.4082.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dims: Sequence[int] = (200, 200),
        likelihood: str = "bernoulli",
        activation: Activation = "tanh",
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        self.likelihood = one_of(likelihood, "likelihood", LIKELIHOODS)
        self.x_dim, self.z_dim = positive_int(x_dim, "x_dim"), positive_int(z_dim, "z_dim")
        self.hidden_dims = positive_ints(hidden_dims, "hidden_dims")
        self.min_scale = finite_float(min_scale, "min_scale", low=0.0)
        self.encoder = MLP(x_dim, self.hidden_dims, (z_dim, z_dim), activation)
        out = x_dim if likelihood == "bernoulli" else (x_dim, x_dim)
        self.decoder = MLP(z_dim, self.hidden_dims[::-1], out, activation)
        to_pyro_module_(self.encoder)
        to_pyro_module_(self.decoder)

    # -- networks -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor):
        """Return the guide's ``(loc, scale)`` for a batch ``x`` of shape ``(..., x_dim)``."""
        loc, raw = self.encoder(x)
        return loc, F.softplus(raw) + self.min_scale

    def likelihood_dist(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z) with event shape ``(x_dim,)``."""
        if self.likelihood == "bernoulli":
            return BernoulliImage(self.decoder(z))
        loc, raw = self.decoder(z)
        return dist.Normal(loc, F.softplus(raw) + self.min_scale).to_event(1)

    def _check(self, x: torch.Tensor, values: bool = False) -> None:
        if not torch.is_tensor(x) or x.dim() != 2 or x.shape[-1] != self.x_dim:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(
                f"x must have shape (batch, {self.x_dim}); got {shape}. "
                "Flatten images with x.reshape(len(x), -1)."
            )
        if values:  # dtype, NaN/inf and (Bernoulli) [0, 1]: one reduction per batch
            check_batch(self, x, "x", "VAE", self.likelihood == "bernoulli")

    # -- Pyro programs --------------------------------------------------------------------
    def model(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        """p(x, z); ``num_data`` marks ``x`` as a minibatch of a data set of that size.

        ``x`` must have the dtype of the parameters and finite values, in [0, 1] for the
        Bernoulli likelihood (else a ``ValueError`` naming the first bad entry)."""
        self._check(x, values=True)
        with data_plate(x, num_data):
            zero = x.new_zeros(x.shape[0], self.z_dim)
            z = pyro.sample("z", dist.Normal(zero, 1.0 + zero).to_event(1))
            pyro.sample("x", self.likelihood_dist(z), obs=x)

    def guide(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        """q(z | x)."""
        self._check(x, values=True)
        with data_plate(x, num_data):
            loc, scale = self.encode(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # -- utilities ------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the guide's mean: the Bernoulli probabilities or the Gaussian mean."""
        self._check(x, values=True)
        return self.mean(self.encode(x)[0])

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z]."""
        return self.likelihood_dist(z).mean

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """Draw ``n`` samples from p(x); ``mean=True`` returns E[x | z] for each z ~ p(z)."""
        p = next(self.parameters())
        z = torch.randn(n, self.z_dim, device=p.device, dtype=p.dtype)
        return self.mean(z) if mean else self.likelihood_dist(z).sample()
