r"""The autoencoder with a pluggable encoder, decoder, loss and regularizers.

.. math::

    \min_{\Phi, \Psi}\ \frac1n \sum_{i=1}^n \ell\big(x_i, \Psi(\Phi(\tilde x_i))\big)
        + \sum_r R_r(\Phi, \tilde x_i),

with :math:`\ell` the squared error :math:`\|x - \hat x\|^2` or the Bernoulli cross-entropy
:math:`-\sum_j x_j \log \hat x_j + (1-x_j)\log(1-\hat x_j)` (grey values allowed), and the
regularizers of :mod:`pyro_deepgen.models.autoencoder_penalties`: :class:`L1` (sparse),
:class:`Contractive` and the :class:`Denoising` corruption :math:`\tilde x` (:math:`\tilde x =
x` without one).

**Limits.** A linear encoder and a linear decoder with the squared error span the principal
subspace of centred data (Baldi & Hornik 1989): :meth:`Autoencoder.linear`; a one-hot encoder
with a linear decoder is K-means (:class:`~pyro_deepgen.models.KMeansAutoencoder`).

**Probabilistic reading.** :meth:`Autoencoder.model` is the generative model
:math:`p(z)\,p(x\mid z)` whose MAP point-estimate posterior :math:`q(z\mid x) = \delta(z -
\Phi(x))` (:class:`~pyro_deepgen.guides.AutoencoderGuide`) makes the negative ELBO equal to the
regularized reconstruction objective up to a constant.

**References**: P. Baldi, K. Hornik, *Neural networks and principal component analysis:
learning from examples without local minima*, Neural Networks 2 (1989). Y. Bengio, A.
Courville, P. Vincent, *Representation Learning: A Review and New Perspectives*, IEEE TPAMI
2013, arXiv:1206.5538.
"""
import math
from typing import Iterable, Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from .._checks import one_of, positive_int
from ..distributions.bernoulli_image import BernoulliImage
from ..nn.mlp import get_activation
from ..plates import data_plate
from .autoencoder_penalties import L1, Penalty, jacobian_frobenius_sq

LOSSES = ("squared", "bernoulli")
#: the Gaussian likelihood whose negative log-density is the squared error plus a constant:
#: :math:`-\log\mathcal N(x; \hat x, \tfrac12 I) = \|x-\hat x\|^2 + \tfrac d2 \log\pi`
SQUARED_SCALE = math.sqrt(0.5)


class Autoencoder(nn.Module):
    r"""An autoencoder :math:`x \mapsto \Psi(\Phi(x))` trained on the objective of the module doc.

    :param encoder: :math:`\Phi`, an ``nn.Module`` mapping ``(batch, x_dim)`` to ``(batch,
        code_dim)`` row by row.
    :param decoder: :math:`\Psi`, mapping codes to ``(batch, x_dim)``: the reconstruction for
        ``loss="squared"``, the logits for ``loss="bernoulli"``.
    :param str loss: ``"squared"`` (sum of squares per point) or ``"bernoulli"`` (cross-entropy
        from logits; data in [0, 1]).
    :param penalties: :class:`~pyro_deepgen.models.autoencoder_penalties.Penalty` objects
        (``L1``, ``Contractive``, ``Denoising``), applied in order.

    Train with :func:`~pyro_deepgen.train.fit` and the loss callable :meth:`loss`
    (``fit(ae, None, x, loss=Autoencoder.loss)``); the reported training loss is then the
    objective per data point. Example::

        ae = Autoencoder.one_layer(64, 32, "sigmoid", penalties=[Contractive(0.1)])
        fit(ae, None, x, loss=Autoencoder.loss, epochs=20)
        ae.reconstruction_error(x).mean()
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, loss: str = "squared",
                 penalties: Iterable[Penalty] = ()) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module) or not isinstance(decoder, nn.Module):
            raise ValueError("encoder and decoder must be torch.nn.Module instances")
        self.encoder, self.decoder = encoder, decoder
        self.loss_name = one_of(loss, "loss", LOSSES)
        self.penalties = tuple(penalties)
        for p in self.penalties:
            if not isinstance(p, Penalty):
                raise ValueError(f"penalties must be Penalty objects (L1, Contractive, Denoising), got {p!r}")

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def linear(cls, x_dim: int, code_dim: int, bias: bool = True, penalties: Sequence[Penalty] = ()
               ) -> "Autoencoder":
        r"""The linear autoencoder :math:`\hat x = D(Ex + b) + c` with the squared error. On centred
        data, trained to convergence, the span of :math:`D`'s columns is the top-``code_dim``
        principal subspace, and its reconstruction error is PCA's (Baldi & Hornik 1989; the
        loss has saddles but no spurious local minima)."""
        x_dim, code_dim = positive_int(x_dim, "x_dim"), positive_int(code_dim, "code_dim")
        return cls(nn.Linear(x_dim, code_dim, bias=bias), nn.Linear(code_dim, x_dim, bias=bias), "squared",
                   penalties)

    @classmethod
    def one_layer(cls, x_dim: int, code_dim: int, activation: str = "sigmoid", loss: str = "squared",
                  penalties: Sequence[Penalty] = ()) -> "Autoencoder":
        r"""Encoder :math:`h = \sigma(Wx + b)` (``nn.Sequential(Linear, activation)``, for which the
        contractive penalty has its :math:`O(d h)` closed form) and a linear decoder."""
        x_dim, code_dim = positive_int(x_dim, "x_dim"), positive_int(code_dim, "code_dim")
        encoder = nn.Sequential(nn.Linear(x_dim, code_dim), get_activation(activation))
        return cls(encoder, nn.Linear(code_dim, x_dim), loss, penalties)

    # -- the maps -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r"""The code :math:`\Phi(x)` (no corruption)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        r"""The reconstruction :math:`\Psi(z)` (for the Bernoulli loss the probabilities
        :math:`\sigma(\text{logits})`)."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.loss_name == "bernoulli" else out

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\Psi(\Phi(x))`, as :meth:`decode` gives it."""
        return self.decode(self.encode(x))

    def _loss(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "squared":
            return (x - out).pow(2).sum(-1)
        return F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        r"""Per point :math:`\ell(x_i, \Psi(\Phi(x_i)))`, shape ``(batch,)`` (no corruption, no
        penalty)."""
        return self._loss(x, self.decoder(self.encoder(x)))

    def contraction(self, x: torch.Tensor) -> torch.Tensor:
        r"""Per point :math:`\|J_\Phi(x_i)\|_F`, exact (closed form for one-layer encoders, else
        the ``torch.func`` Jacobian)."""
        return jacobian_frobenius_sq(self.encoder, x, "auto").clamp_min(0).sqrt()

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        r"""Per point :math:`\ell(x_i, \Psi(\Phi(\tilde x_i))) + \sum_r R_r`, shape ``(batch,)``:
        the encoder sees the input corrupted by every penalty's ``corrupt`` in turn, the loss
        compares with the clean ``x``."""
        x_in = x
        for p in self.penalties:
            x_in = p.corrupt(x_in)
        code = self.encoder(x_in)
        total = self._loss(x, self.decoder(code))
        for p in self.penalties:
            total = total + p.value(self.encoder, x_in, code)
        return total

    @staticmethod
    def loss(model: "Autoencoder", guide=None, x: Optional[torch.Tensor] = None, **kwargs) -> torch.Tensor:
        """The loss callable of :func:`~pyro_deepgen.train.fit`: ``model.objective(x).sum()``
        (``guide`` is unused; pass ``None``)."""
        if not isinstance(model, Autoencoder):
            raise ValueError(f"Autoencoder.loss trains an Autoencoder, got {type(model).__name__}")
        return model.objective(x).sum()

    # -- the probabilistic reading ----------------------------------------------------------
    def prior(self, like: torch.Tensor) -> dist.Distribution:
        r""":math:`p(z)` with batch shape ``like.shape[:-1]``: a Laplace prior
        :math:`\prod_j \tfrac\lambda2 e^{-\lambda |z_j|}` when the penalties hold an :class:`L1`
        with :math:`\lambda > 0` (its :math:`-\log p(z) = \lambda\|z\|_1 + h\log\frac2\lambda`),
        else :math:`\mathcal N(0, I)`."""
        lam = sum(p.lam for p in self.penalties if isinstance(p, L1))
        zero = torch.zeros_like(like)
        if lam > 0:
            return dist.Laplace(zero, zero + 1.0 / lam).to_event(1)
        return dist.Normal(zero, zero + 1.0).to_event(1)

    def likelihood(self, z: torch.Tensor) -> dist.Distribution:
        r""":math:`p(x\mid z)`: :math:`\mathcal N(\Psi(z), \tfrac12 I)` for the squared error
        (``-log p = ‖x - Ψ(z)‖² + (d/2) log π``), Bernoulli with logits :math:`\Psi(z)` for the
        cross-entropy."""
        out = self.decoder(z)
        if self.loss_name == "bernoulli":
            return BernoulliImage(out)
        return dist.Normal(out, SQUARED_SCALE).to_event(1)

    def model(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        r"""The VAE-shaped Pyro model :math:`z_i \sim p(z)` (:meth:`prior`), :math:`x_i \sim
        p(x\mid z_i)` (:meth:`likelihood`), one latent ``"z"`` per point in
        ``pyro.plate("data")``.

        With :class:`~pyro_deepgen.guides.AutoencoderGuide` (:math:`q(z\mid x) = \delta(z -
        \Phi(x))`, log-density 0), :class:`~pyro.infer.Trace_ELBO` gives per point

        .. math:: -\mathrm{ELBO}(x) = \ell(x, \Psi(\Phi(x))) - \log p(\Phi(x))
                  = \ell + \lambda\|\Phi(x)\|_1 + c,

        the sparse objective (:class:`L1`) plus the constant :math:`c = h\log\frac2\lambda`
        (+ :math:`\frac d2\log\pi` for the squared error); without :class:`L1`, the penalty is
        :math:`\tfrac12\|\Phi(x)\|^2` and :math:`c = \frac h2 \log 2\pi` (+ the same). Training
        with that guide is MAP estimation of the code, and the contractive and denoising terms
        have no place in this model (they regularize :math:`\Phi`, not :math:`z`).
        """
        with data_plate(x, num_data):
            code_shape = x.new_zeros(x.shape[0], self._code_dim(x))
            z = pyro.sample("z", self.prior(code_shape))
            pyro.sample("x", self.likelihood(z), obs=x)

    def log_prior_constant(self, code_dim: int) -> float:
        r"""The constant :math:`-\log p(z) - R(z)` of :meth:`prior`: :math:`h\log\frac2\lambda`
        (Laplace) or :math:`\frac h2\log 2\pi` (normal, with :math:`R = \frac12\|z\|^2`)."""
        lam = sum(p.lam for p in self.penalties if isinstance(p, L1))
        return code_dim * (math.log(2 / lam) if lam > 0 else 0.5 * math.log(2 * math.pi))

    def likelihood_constant(self, x_dim: int) -> float:
        r""":math:`-\log p(x\mid z) - \ell(x, \Psi(z))`: :math:`\frac d2 \log\pi` for the squared
        error, 0 for the cross-entropy."""
        return 0.5 * x_dim * math.log(math.pi) if self.loss_name == "squared" else 0.0

    def _code_dim(self, x: torch.Tensor) -> int:
        if not hasattr(self, "_h"):
            with torch.no_grad():
                self._h = int(self.encoder(x[:1]).shape[-1])
        return self._h
