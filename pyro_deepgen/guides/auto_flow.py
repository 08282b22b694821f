"""A normalizing-flow autoguide for the global latents of any Pyro model."""
from typing import Callable, Optional, Sequence

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median
from pyro.nn import PyroParam
from torch.distributions import AffineTransform, ComposeTransform

from .._checks import finite_float, non_negative_int, positive_ints
from ..distributions.transforms import FLOWS, build_flow, flow_family, to_pyro_module_


class AutoFlow(AutoContinuous):
    r"""Autoguide: a diagonal Gaussian on the model's unconstrained latent vector, pushed
    through a normalizing flow,

    .. math::

        \boldsymbol\epsilon\sim\mathcal N(0, I),\qquad
        \mathbf{u} = f_K\circ\cdots\circ f_1(\boldsymbol\mu + \boldsymbol\sigma\odot
            \boldsymbol\epsilon),\qquad
        \log q(\mathbf{u}) = \log\mathcal N(\mathbf{u}_0;\boldsymbol\mu,
            \mathrm{diag}\,\boldsymbol\sigma^2)
            - \sum_k \log\left|\det\frac{\partial f_k}{\partial\mathbf{u}_{k-1}}\right|,

    where :math:`\mathbf{u}` packs every latent site of the model in unconstrained space
    (:class:`~pyro.infer.autoguide.AutoContinuous` maps it back to each site's support).
    Like Pyro's :class:`~pyro.infer.autoguide.AutoNormalizingFlow`, but the flow is chosen by
    name with :func:`~pyro_deepgen.distributions.transforms.build_flow` (planar, radial, iaf,
    nice, realnvp or any family of :data:`~pyro_deepgen.distributions.transforms.registry.FLOWS`), and
    the base is a learned diagonal Gaussian started at the ``init_loc_fn`` values, so that
    ``depth=0`` is :class:`~pyro.infer.autoguide.AutoDiagonalNormal` and a shallow flow of
    non-affine layers (planar, radial) need not learn location and scale itself. Being an
    ``AutoContinuous`` guide, it supports subsampled plates wherever Pyro's ``AutoContinuous``
    guides do: every latent is global (outside subsampled plates), while observations may be
    subsampled.

    Example usage::

        guide = AutoFlow(model, flow="iaf", depth=4)
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())

    :param callable model: a Pyro model.
    :param str flow: a name in :data:`~pyro_deepgen.distributions.transforms.registry.FLOWS`
        (``"planar"``, ``"radial"``, ``"iaf"``, ``"nice"``, ``"realnvp"``, ...).
    :param int depth: number of flow layers (``0``: a diagonal Gaussian).
    :param hidden_dims: hidden sizes of each layer's network (see ``build_flow``).
    :param callable init_loc_fn: per-site initialisation of the base mean, default
        :func:`~pyro.infer.autoguide.initialization.init_to_median`.
    :param float init_scale: initial base standard deviation, default 0.1.
    :param flow_kwargs: further keywords for ``build_flow``.

    **References**: [1] D. J. Rezende, S. Mohamed, *Variational Inference with Normalizing
    Flows*, arXiv:1505.05770. [2] D. P. Kingma et al., *Improving Variational Inference with
    Inverse Autoregressive Flow*, arXiv:1606.04934. [3] L. Dinh, D. Krueger, Y. Bengio,
    *NICE*, arXiv:1410.8516.
    """

    def __init__(
        self,
        model: Callable,
        flow: str = "iaf",
        depth: int = 2,
        hidden_dims: Optional[Sequence[int]] = None,
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
        **flow_kwargs,
    ) -> None:
        flow_family(flow, "flow")
        non_negative_int(depth, "depth")
        finite_float(init_scale, "init_scale", low=0.0, strict=True)
        if hidden_dims is not None:
            hidden_dims = positive_ints(hidden_dims, "hidden_dims")
        self.flow_kind, self.depth, self._init_scale = flow, depth, float(init_scale)
        self._hidden_dims = hidden_dims
        self._flow_kwargs = flow_kwargs
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        init_loc = self._init_loc()
        min_dim = flow_family(self.flow_kind, "flow").min_dim
        if self.latent_dim < min_dim and self.depth:
            fits = tuple(name for name, f in FLOWS.items() if f.min_dim <= self.latent_dim)
            raise ValueError(
                f"flow={self.flow_kind!r} needs at least {min_dim} latent dimensions, the model "
                f"has {self.latent_dim}; use one of {fits}"
            )
        self.loc = torch.nn.Parameter(init_loc)
        self.scale = PyroParam(
            torch.full_like(init_loc, self._init_scale), constraints.softplus_positive
        )
        flow = build_flow(
            self.flow_kind, self.latent_dim, self.depth, None, self._hidden_dims,
            **self._flow_kwargs,
        )
        self.flow = to_pyro_module_(flow.to(device=init_loc.device, dtype=init_loc.dtype))

    def get_base_dist(self) -> dist.Distribution:
        """The standard normal on the latent vector (the posterior's noise)."""
        zero = self.loc.new_zeros(self.latent_dim)
        return dist.Normal(zero, 1.0 + zero).to_event(1)

    def get_transform(self, *args, **kwargs) -> ComposeTransform:
        """Base noise to unconstrained latent: the diagonal affine map, then the flow."""
        affine = AffineTransform(self.loc, self.scale, event_dim=1)
        return ComposeTransform([affine] + list(self.flow))

    def get_posterior(self, *args, **kwargs) -> dist.TransformedDistribution:
        """The flow distribution over the unconstrained latent vector."""
        affine = AffineTransform(self.loc, self.scale, event_dim=1)
        return dist.TransformedDistribution(self.get_base_dist(), [affine] + list(self.flow))
