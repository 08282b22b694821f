r"""The encoder as a point-estimate posterior, :math:`q(z\mid x) = \delta(z - \Phi(x))`.

With :meth:`~pyro_deepgen.models.Autoencoder.model` (:math:`p(z)\,p(x\mid z)`) and the
:class:`~pyro.distributions.Delta` guide of this module, the ELBO has no entropy term (a Delta's
``log_prob`` at its own value is its ``log_density``, 0 by default), so

.. math:: -\mathrm{ELBO}(x) = -\log p(x\mid\Phi(x)) - \log p(\Phi(x))
          = \ell(x, \Psi(\Phi(x))) + R(\Phi(x)) + c,

the regularized reconstruction objective of an autoencoder up to the constants of the prior and
the likelihood (see :meth:`~pyro_deepgen.models.Autoencoder.model`): training the pair with
:class:`~pyro.infer.Trace_ELBO` is training the autoencoder, i.e. MAP inference of each code
with an amortized encoder. It is *not* a bound on :math:`\log p(x)`: a Delta has no density
with respect to Lebesgue measure, the "ELBO" :math:`\log p(x, \Phi(x))` can exceed
:math:`\log p(x)`, and importance sampling with it returns the same number for any number of
samples. A correct estimate of :math:`\log p(x)` needs a proposal with a density: ``scale=s``
gives :math:`q(z\mid x) = \mathcal N(\Phi(x), s^2 I)` around the same encoder, with which
:func:`pyro_deepgen.evaluate.log_likelihood` is consistent (the importance-weighted estimate
:math:`\log\frac1K\sum_k p(x, z_k)/q(z_k\mid x)` tends to :math:`\log p(x)` as :math:`K \to
\infty`, Burda et al. 2016).
"""
from typing import Optional

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .._checks import finite_float
from ..plates import data_plate


class AutoencoderGuide(nn.Module):
    r"""The guide :math:`q(z\mid x) = \delta(z - \Phi(x))` of one latent per data point, or, with
    ``scale``, :math:`\mathcal N(\Phi(x), \text{scale}^2 I)` for importance sampling.

    :param encoder: :math:`\Phi`, an ``nn.Module`` from ``(batch, x_dim)`` to ``(batch,
        code_dim)`` (e.g. an :class:`~pyro_deepgen.models.Autoencoder`'s ``encoder``; it is
        shared, not copied).
    :param float scale: ``None`` (default): a :class:`~pyro.distributions.Delta` with
        ``log_density`` 0; a number > 0: a Gaussian of that standard deviation.
    :param str site: the latent site's name (default ``"z"``).

    ``guide(x, num_data=None)`` samples ``site`` inside ``pyro.plate("data")``, matching
    :meth:`~pyro_deepgen.models.Autoencoder.model`. Example::

        ae = Autoencoder.one_layer(64, 16, "relu", penalties=[L1(0.1)])
        guide = AutoencoderGuide(ae.encoder)
        fit(ae.model, guide, x, loss=pyro.infer.Trace_ELBO())   # = fit(ae, None, x, loss=Autoencoder.loss)
        log_likelihood(ae.model, AutoencoderGuide(ae.encoder, scale=0.1), x, num_samples=1000)
    """

    def __init__(self, encoder: nn.Module, scale: Optional[float] = None, site: str = "z") -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise ValueError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        if not isinstance(site, str) or not site:
            raise ValueError(f"site must be a non-empty string, got {site!r}")
        self.encoder = encoder
        self.scale = None if scale is None else finite_float(scale, "scale", low=0.0, strict=True)
        self.site = site

    def distribution(self, x: torch.Tensor) -> dist.Distribution:
        r""":math:`q(z\mid x)` with batch shape ``(batch,)`` and event shape ``(code_dim,)``."""
        code = self.encoder(x)
        if self.scale is None:
            return dist.Delta(code, event_dim=1)
        return dist.Normal(code, torch.full_like(code, self.scale)).to_event(1)

    def forward(self, x: torch.Tensor, num_data: Optional[int] = None) -> torch.Tensor:
        with data_plate(x, num_data):
            return pyro.sample(self.site, self.distribution(x))
