r"""A GAN's two networks: the generator as a Pyro model, the discriminator as an ``nn.Module``.

The generator is the implicit model

.. math:: z \sim \mathcal N(0, I_{d_z}),\qquad x = G_\theta(z) \ (\text{or } G_\theta(z, y)),

a ``PyroModule`` whose :meth:`Generator.model` draws ``z`` in a ``pyro.plate("data", n)`` and
records ``x`` with ``pyro.deterministic``. It has no likelihood: it is trained with
:class:`~pyro_deepgen.infer.AdversarialLoss` against a :class:`Discriminator` (Goodfellow et al.
2014, arXiv:1406.2661), e.g. ``fit(gen.model, None, x, loss=AdversarialLoss(disc))``. With
``num_classes`` both are conditional (Mirza & Osindero 2014, arXiv:1411.1784): the generator takes
the one-hot label next to ``z``, the discriminator a learned label embedding next to ``x``.
"""
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from .._checks import one_of, positive_int, positive_ints
from ..nn import MLP

OUTPUTS = ("sigmoid", "identity")


def _labels(y: Optional[torch.Tensor], num_classes: Optional[int], n: int, who: str) -> Optional[torch.Tensor]:
    if num_classes is None:
        if y is not None:
            raise ValueError(f"{who} is unconditional (num_classes=None) but was given labels y")
        return None
    if y is None:
        raise ValueError(f"{who} is conditional (num_classes={num_classes}): pass the labels y")
    if y.shape != (n,):
        raise ValueError(f"y must be ({n},) integer labels, got shape {tuple(y.shape)}")
    return y


class Generator(PyroModule):
    r"""The generator :math:`x = G_\theta(z[, y])`, :math:`z\sim\mathcal N(0, I)`: an MLP (ReLU)
    from ``z_dim`` (plus ``num_classes`` one-hot entries) to ``x_dim``.

    :param x_dim: data dimension.
    :param z_dim: latent dimension.
    :param hidden: hidden layer sizes.
    :param num_classes: labels ``0..num_classes-1`` for a conditional generator; ``None``: none.
    :param output: ``"sigmoid"`` (pixels in [0, 1], default) or ``"identity"`` (real data).
    """

    def __init__(self, x_dim: int, z_dim: int = 32, hidden: Sequence[int] = (256, 256),
                 num_classes: Optional[int] = None, output: str = "sigmoid") -> None:
        super().__init__()
        self.x_dim = positive_int(x_dim, "x_dim")
        self.z_dim = positive_int(z_dim, "z_dim")
        self.num_classes = None if num_classes is None else positive_int(num_classes, "num_classes")
        self.output = one_of(output, "output", OUTPUTS)
        self.net = MLP(self.z_dim + (self.num_classes or 0), positive_ints(hidden, "hidden"), self.x_dim,
                       activation="relu")
        self.register_buffer("_zero", torch.zeros(()))

    def decode(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:math:`G_\\theta(z[, y])` for ``z`` of shape ``(n, z_dim)``."""
        y = _labels(y, self.num_classes, z.shape[0], "the generator")
        h = z if y is None else torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=-1)
        out = self.net(h)
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def model(self, num_samples: int, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The Pyro model: ``num_samples`` draws ``z`` (site ``"z"``) and ``x = G(z[, y])`` (site
        ``"x"``, deterministic) in ``pyro.plate("data")``; returns ``x``."""
        zero = self._zero.expand(self.z_dim)
        with pyro.plate("data", num_samples):
            z = pyro.sample("z", dist.Normal(zero, 1.0).to_event(1))
            return pyro.deterministic("x", self.decode(z, y), event_dim=1)

    forward = model

    @torch.no_grad()
    def sample(self, num_samples: int, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``num_samples`` draws of ``x`` (no gradients)."""
        z = torch.randn(num_samples, self.z_dim, dtype=self._zero.dtype, device=self._zero.device)
        return self.decode(z, y)


class Discriminator(nn.Module):
    r"""The discriminator (critic) :math:`D_\phi(x[, y])`: an MLP with LeakyReLU(0.2) from
    ``x_dim`` (plus a ``label_dim`` label embedding) to one logit per sample, shape ``(n,)``.

    With ``spectral_norm=True`` every linear layer's weight is divided by its largest singular
    value (Miyato et al. 2018, arXiv:1802.05957),

    .. math:: \bar W = W / \sigma(W),\qquad \sigma(W) = \max_{\lVert h\rVert_2 = 1}\lVert W h\rVert_2,

    with :math:`\sigma` estimated by one power iteration per training-mode call
    (:func:`torch.nn.utils.parametrizations.spectral_norm`), so that :math:`D` is 1-Lipschitz in
    :math:`x` (LeakyReLU is). This bounds how sharply the discriminator can single out a region of
    the data: on mnist-5k it took the MLP GAN from 5 to 8 digit classes at 5 % or more and its
    Fréchet distance from 111 to 61, but with ``minibatch_std`` it did worse than the feature
    alone (Fréchet 58 against 9; docs/implicit.rst). The label embedding is not normalized.

    With ``minibatch_std=True`` the last hidden layer's activations :math:`h_i` of the batch get one
    more feature before the output layer, the same for every sample (Karras et al. 2018,
    arXiv:1710.10196, Sec. 3):

    .. math:: s = \frac1H\sum_{j=1}^H \sqrt{\frac1n\sum_{i=1}^n (h_{ij} - \bar h_j)^2 + 10^{-8}},

    the batch's standard deviation per feature, averaged. A batch of generated images that
    collapsed to a few modes has a smaller spread than a real batch, which the discriminator can
    now see, so collapse is penalized directly. It made the largest difference on mnist-5k: 5 to
    10 classes at 5 % or more, Fréchet distance 111 to 9 (last iterates; docs/implicit.rst). The output of one
    sample then depends on the rest of its batch: call the discriminator on a batch of real or of
    generated data, not on a mixture, and with more than one sample (:math:`n = 1` gives
    :math:`s = 10^{-4}`).

    :param x_dim: data dimension.
    :param hidden: hidden layer sizes.
    :param num_classes: labels for a conditional discriminator; ``None``: none.
    :param label_dim: size of the learned label embedding (conditional only).
    :param spectral_norm: normalize every linear layer's weight by its spectral norm.
    :param minibatch_std: append the minibatch standard deviation :math:`s` before the output layer.
    """

    def __init__(self, x_dim: int, hidden: Sequence[int] = (256, 256), num_classes: Optional[int] = None,
                 label_dim: int = 16, spectral_norm: bool = False, minibatch_std: bool = False) -> None:
        super().__init__()
        self.x_dim = positive_int(x_dim, "x_dim")
        self.num_classes = None if num_classes is None else positive_int(num_classes, "num_classes")
        if not isinstance(spectral_norm, bool):
            raise ValueError(f"spectral_norm must be True or False, got {spectral_norm!r}")
        if not isinstance(minibatch_std, bool):
            raise ValueError(f"minibatch_std must be True or False, got {minibatch_std!r}")
        self.spectral_norm, self.minibatch_std = spectral_norm, minibatch_std
        self.embed = None
        extra = 0
        if self.num_classes is not None:
            extra = positive_int(label_dim, "label_dim")
            self.embed = nn.Embedding(self.num_classes, extra)
        hidden = positive_ints(hidden, "hidden")
        self.head = None
        if minibatch_std:  # the MLP ends at the last hidden layer; the output layer sees one more input
            self.net = MLP(self.x_dim + extra, hidden[:-1], hidden[-1], activation=lambda: nn.LeakyReLU(0.2))
            self.head = nn.Linear(hidden[-1] + 1, 1)
        else:
            self.net = MLP(self.x_dim + extra, hidden, 1, activation=lambda: nn.LeakyReLU(0.2))
        if spectral_norm:
            layers = self.net.net
            for i, layer in enumerate(layers):
                if isinstance(layer, nn.Linear):
                    layers[i] = _spectral_norm(layer)
            if self.head is not None:
                self.head = _spectral_norm(self.head)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = _labels(y, self.num_classes, x.shape[0], "the discriminator")
        h = x if y is None else torch.cat([x, self.embed(y).to(x.dtype)], dim=-1)
        if self.head is None:
            return self.net(h).squeeze(-1)
        h = F.leaky_relu(self.net(h), 0.2)
        spread = (h.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        return self.head(torch.cat([h, spread.expand(h.shape[0], 1)], dim=-1)).squeeze(-1)
