"""An amortized normalizing-flow guide for latents in the data plate (e.g. a VAE's ``z``)."""
from typing import Optional, Sequence, Tuple

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch.nn import functional as F

from .._checks import finite_float, non_negative_int, positive_int, positive_ints
from ..distributions.transforms import build_flow, condition, flow_family, to_pyro_module_
from ..models.vae import VAE
from ..plates import data_plate
from ..nn import MLP
from ..nn.mlp import Activation


class AmortizedFlowGuide(PyroModule):
    r"""Amortized guide :math:`q_\phi(\mathbf{z}\mid\mathbf{x})`: a Gaussian from an encoder,
    pushed through a normalizing flow conditioned on the same encoder.

    .. math::

        \mathbf{z}_0 \sim \mathcal N(\boldsymbol\mu_\phi(\mathbf{x}),
            \mathrm{diag}\,\boldsymbol\sigma^2_\phi(\mathbf{x})),\qquad
        \mathbf{z} = \mathbf{z}_K = f_K(\cdot\,;\mathbf{h})\circ\cdots\circ
            f_1(\mathbf{z}_0;\mathbf{h}),\qquad \mathbf{h} = h_\phi(\mathbf{x}),

        \log q_\phi(\mathbf{z}_K\mid\mathbf{x}) = \log\mathcal N(\mathbf{z}_0)
            - \sum_{k=1}^K \log\left|\det\frac{\partial f_k}{\partial\mathbf{z}_{k-1}}\right|.

    One encoder :class:`~pyro_deepgen.nn.MLP` outputs :math:`(\boldsymbol\mu,
    \boldsymbol\sigma, \mathbf{h})`. For ``planar`` and ``radial`` every layer's parameters
    :math:`(\mathbf{u}, \mathbf{w}, b)` resp. :math:`(\mathbf{x}_0, \alpha, \beta)` are linear
    functions of :math:`\mathbf{h}`, i.e. outputs of the inference network per data point as
    in Rezende & Mohamed (2015); for ``iaf``, ``nice`` and ``realnvp``, :math:`\mathbf{h}` is
    an extra input of every layer's network (Kingma et al. 2016). See
    :func:`~pyro_deepgen.distributions.transforms.build_flow` for the layers. ``depth=0`` is the
    diagonal Gaussian guide of :class:`~pyro_deepgen.models.VAE`.

    ``guide(x)`` samples the site ``site`` (event dim 1) inside ``pyro.plate("data")`` from a
    :class:`~pyro.distributions.TransformedDistribution`, so its ``log_prob`` is exact (also for
    a replayed value: every flow here is invertible), its ``rsample`` is reparameterized, and it
    works unchanged with :class:`~pyro.infer.Trace_ELBO` (vectorized particles included) and
    with the estimators of :mod:`pyro_deepgen.infer`. All parameters, the flow's included, are
    Pyro params (via :func:`~pyro.nn.module.to_pyro_module_`), so an estimator can detach them
    by intercepting ``pyro.param`` (STL, DReG).

    Example usage::

        vae, guide = flow_vae(784, 32, flow="planar", depth=10)
        svi = pyro.infer.SVI(vae.model, guide, pyro.optim.Adam({"lr": 1e-3}),
                             pyro.infer.Trace_ELBO())

    :param int x_dim: data dimension.
    :param int z_dim: latent dimension.
    :param str flow: a name in :data:`~pyro_deepgen.distributions.transforms.registry.FLOWS`
        (``"planar"``, ``"radial"``, ``"iaf"``, ``"nice"``, ``"realnvp"``, ...).
    :param int depth: number :math:`K` of flow layers (``0``: a diagonal Gaussian guide).
    :param hidden_dims: encoder hidden sizes, default ``(200, 200)``.
    :param context_dim: size of :math:`\mathbf{h}`, default ``hidden_dims[-1]`` (or ``2 *
        z_dim`` with no hidden layer).
    :param str site: name of the latent sample site, default ``"z"``.
    :param activation: encoder activation, default ``"tanh"``.
    :param flow_hidden_dims: hidden sizes of each layer's network (see ``build_flow``; for
        planar/radial the hypernetwork from :math:`\mathbf{h}`, default linear).
    :param float min_scale: added to the base standard deviation, for stability.
    :param str name: prefix of the parameter names in Pyro's param store (so that the
        guide's encoder does not share parameters with a model's networks).
    :param flow_kwargs: further keywords for ``build_flow`` (e.g. ``permutation="random"``).

    **References**: [1] D. J. Rezende, S. Mohamed, *Variational Inference with Normalizing
    Flows*, arXiv:1505.05770. [2] D. P. Kingma et al., *Improving Variational Inference with
    Inverse Autoregressive Flow*, arXiv:1606.04934. [3] L. Dinh, D. Krueger, Y. Bengio,
    *NICE*, arXiv:1410.8516. [4] L. Dinh, J. Sohl-Dickstein, S. Bengio, *Density estimation
    using Real NVP*, arXiv:1605.08803.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        flow: str = "planar",
        depth: int = 10,
        hidden_dims: Sequence[int] = (200, 200),
        context_dim: Optional[int] = None,
        site: str = "z",
        activation: Activation = "tanh",
        flow_hidden_dims: Optional[Sequence[int]] = None,
        min_scale: float = 1e-4,
        name: str = "guide",
        **flow_kwargs,
    ) -> None:
        super().__init__(name=name)
        flow_family(flow, "flow")
        self.x_dim, self.z_dim = positive_int(x_dim, "x_dim"), positive_int(z_dim, "z_dim")
        self.site = site
        self.flow_kind, self.depth = flow, non_negative_int(depth, "depth")
        self.hidden_dims = positive_ints(hidden_dims, "hidden_dims")
        if context_dim is None:
            context_dim = self.hidden_dims[-1] if self.hidden_dims else 2 * z_dim
        self.context_dim = positive_int(context_dim, "context_dim")
        self.min_scale = finite_float(min_scale, "min_scale", low=0.0)
        self.flow = build_flow(flow, z_dim, depth, self.context_dim, flow_hidden_dims, **flow_kwargs)
        self.encoder = MLP(x_dim, self.hidden_dims, (z_dim, z_dim, self.context_dim), activation)
        to_pyro_module_(self)

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The base Gaussian's ``(loc, scale)`` and the flow's context ``h`` for a batch ``x``."""
        loc, raw, h = self.encoder(x)
        return loc, F.softplus(raw) + self.min_scale, h

    def posterior(self, x: torch.Tensor) -> dist.TransformedDistribution:
        r""":math:`q_\phi(\mathbf{z}\mid\mathbf{x})`, batch shape ``x.shape[:-1]``, event shape
        ``(z_dim,)``."""
        self._check(x)
        loc, scale, h = self.encode(x)
        base = dist.Normal(loc, scale).to_event(1)
        return dist.TransformedDistribution(base, condition(self.flow, h))

    def _check(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or x.dim() < 1 or x.shape[-1] != self.x_dim:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {self.x_dim}); got {shape}")

    def forward(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        """Sample the latent site for a batch ``x`` of shape ``(batch, x_dim)``; ``num_data`` marks
        ``x`` as a minibatch of a data set of that size (as in ``VAE.model``)."""
        self._check(x)
        if x.dim() != 2:
            raise ValueError(f"x must have shape (batch, {self.x_dim}); got {tuple(x.shape)}")
        with data_plate(x, num_data):
            pyro.sample(self.site, self.posterior(x))

    def guide(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        """Same as calling the module, ``guide(x, num_data)`` (through ``__call__``, so that every
        parameter access is a ``pyro.param`` statement), for symmetry with ``VAE.guide``."""
        return self(x, num_data)

    def extra_repr(self) -> str:
        return f"flow={self.flow_kind!r}, depth={self.depth}, site={self.site!r}"


def flow_vae(
    x_dim: int,
    z_dim: int,
    flow: str = "planar",
    depth: int = 10,
    hidden_dims: Sequence[int] = (200, 200),
    likelihood: str = "bernoulli",
    activation: Activation = "tanh",
    **guide_kwargs,
) -> Tuple[VAE, AmortizedFlowGuide]:
    """A :class:`~pyro_deepgen.models.VAE` and an :class:`AmortizedFlowGuide` for it: train
    ``vae.model`` with ``guide`` (the VAE's own diagonal guide is not used).

    >>> vae, guide = flow_vae(64, 4, flow="iaf", depth=2, hidden_dims=(32,))
    >>> x = torch.rand(10, 64)
    >>> pyro.infer.Trace_ELBO().differentiable_loss(vae.model, guide, x).shape
    torch.Size([])
    """
    flow_family(flow, "flow")
    vae = VAE(x_dim, z_dim, hidden_dims, likelihood=likelihood, activation=activation)
    guide = AmortizedFlowGuide(
        x_dim, z_dim, flow, depth, hidden_dims, activation=activation, **guide_kwargs
    )
    return vae, guide
