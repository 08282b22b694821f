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

    :param x_dim: data dimension.
    :param hidden: hidden layer sizes.
    :param num_classes: labels for a conditional discriminator; ``None``: none.
    :param label_dim: size of the learned label embedding (conditional only).
    """

    def __init__(self, x_dim: int, hidden: Sequence[int] = (256, 256), num_classes: Optional[int] = None,
                 label_dim: int = 16) -> None:
        super().__init__()
        self.x_dim = positive_int(x_dim, "x_dim")
        self.num_classes = None if num_classes is None else positive_int(num_classes, "num_classes")
        self.embed = None
        extra = 0
        if self.num_classes is not None:
            extra = positive_int(label_dim, "label_dim")
            self.embed = nn.Embedding(self.num_classes, extra)
        self.net = MLP(self.x_dim + extra, positive_ints(hidden, "hidden"), 1, activation=lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = _labels(y, self.num_classes, x.shape[0], "the discriminator")
        h = x if y is None else torch.cat([x, self.embed(y).to(x.dtype)], dim=-1)
        return self.net(h).squeeze(-1)
