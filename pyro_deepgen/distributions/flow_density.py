r"""A normalizing flow as a Pyro distribution, trained by maximum likelihood."""
import math
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.transforms import AffineTransform, SigmoidTransform
from pyro.nn import PyroModule, PyroParam, pyro_method

from .._checks import finite_float, non_negative_int, positive_int
from ..plates import data_plate
from .transforms import build_flow, flow_family, to_pyro_module_


class FlowDensity(PyroModule):
    r"""A density :math:`p(\mathbf x)` given by a normalizing flow, for maximum likelihood.

    A standard (or learned diagonal) Gaussian base :math:`p_0` is pushed through the flow
    :math:`f = f_K\circ\cdots\circ f_1` of
    :func:`~pyro_deepgen.distributions.transforms.build_flow`:

    .. math::

        \log p(\mathbf x) = \log p_0(f^{-1}(\mathbf x))
            - \sum_{k=1}^K \log\left|\det \frac{\partial f_k}{\partial \mathbf z_{k-1}}\right|.

    :meth:`distribution` is a :class:`pyro.distributions.TransformedDistribution` (``sample``,
    ``rsample``, ``log_prob``). :meth:`model` observes a batch ``x`` inside
    ``pyro.plate("data")`` and :meth:`guide` is empty (there are no latent variables), so
    :math:`-\mathrm{ELBO}` is exactly the negative log-likelihood and the package's training
    loop does maximum likelihood::

        density = FlowDensity(2, flow="realnvp", depth=6)
        fit(density.model, density.guide, x, loss=Trace_ELBO(), epochs=50)

    **Dequantization** (``levels=L``, for images with ``L`` intensity levels, stored as
    :math:`x = k/(L-1)`, :math:`k \in \{0, \dots, L-1\}`, as the package's loaders return
    them). :meth:`model` replaces each :math:`x` by :math:`y = (k + u)/L`, :math:`u \sim
    \mathcal U(0,1)^D`, fresh at every call, and the flow lives in logit space: the
    distribution over :math:`y \in [0,1]^D` is the flow followed by
    :math:`y = (\sigma(w) - \alpha)/(1 - 2\alpha)`, so its ``log_prob`` includes the change of
    variables :math:`\log|dw/dy| = \sum_i \log\frac{1 - 2\alpha}{s_i(1 - s_i)}`,
    :math:`s = \alpha + (1-2\alpha)y`. The probability of the discrete data then satisfies
    (Theis et al. 2016)

    .. math::

        \log P(k) = \log \int_{[0,1)^D} p\big(\tfrac{k + u}{L}\big) L^{-D}\,du
            \ \ge\ \mathbb E_u\big[\log p\big(\tfrac{k + u}{L}\big)\big] - D \log L,

    which :meth:`model` reports through the extra factor ``"dequantization"`` (:math:`-D\log L`
    per data point), so ``Trace_ELBO``'s loss per data point is :math:`-` this bound in nats;
    :func:`bits_per_dim` divides by :math:`D \log 2`.

    :param int dim: event dimension :math:`D`.
    :param str flow: a name in :data:`~pyro_deepgen.distributions.transforms.registry.FLOWS`
        (``"planar"``, ``"radial"``, ``"iaf"``, ``"nice"``, ``"realnvp"``, ...).
        ``log_prob`` of data needs the inverse :math:`f^{-1}`: one pass for NICE and RealNVP,
        :math:`D` sequential passes for IAF, and a numerical (planar) or closed-form (radial)
        inverse per layer; the flow's own samples are scored from the transforms' caches
        without inverting.
    :param int depth: number :math:`K` of flow layers. Default 4.
    :param hidden_dims: hidden sizes of each layer's network (see ``build_flow``).
    :param levels: number of intensity levels for dequantization, or ``None`` (default) for
        continuous data on :math:`\mathbb R^D`.
    :param float alpha: the logit margin :math:`\alpha` (default 0.05, as RealNVP).
    :param bool learn_base: learn the base Gaussian's mean and scale (default ``False``: a
        fixed :math:`\mathcal N(0, I)`, stored as buffers so that ``.to(device)`` moves it).
    :param flow_kwargs: more keywords for ``build_flow`` (e.g. ``permutation="random"``).

    .. note:: Pyro 1.9 records a ``PyroModule``'s parameters in a trace only while the module's
        context is open, but a ``TransformedDistribution`` evaluates its transforms lazily,
        when the ELBO computes ``log_prob`` after the model has returned. With a plain
        ``pyro.sample("x", flow_dist, obs=x)`` the flow's parameters therefore never reach the
        optimizer (checked: the loss of ``SVI`` stays constant). :meth:`distribution` reads
        every flow parameter inside its ``pyro_method`` so that they are recorded.

    .. note:: As for every ``PyroModule``, the parameters are looked up by name in Pyro's
        global param store (``base_loc``, ``flow.0.u``, ...): two densities used against the
        same store share them. Clear the store between models, or use one
        ``pyro.get_param_store().scope()`` per density (as :mod:`pyro_deepgen.experiments.flows2d` does).

    **References**: [1] L. Dinh, J. Sohl-Dickstein, S. Bengio, *Density estimation using Real
    NVP*, arXiv:1605.08803. [2] L. Theis, A. van den Oord, M. Bethge, *A note on the
    evaluation of generative models*, arXiv:1511.01844. [3] G. Papamakarios et al.,
    *Normalizing Flows for Probabilistic Modeling and Inference*, arXiv:1912.02762.
    """

    def __init__(
        self,
        dim: int,
        flow: str = "realnvp",
        depth: int = 4,
        hidden_dims: Optional[Sequence[int]] = None,
        levels: Optional[int] = None,
        alpha: float = 0.05,
        learn_base: bool = False,
        **flow_kwargs,
    ) -> None:
        super().__init__()
        flow_family(flow, "flow")
        if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int)
                                   or levels < 2):
            raise ValueError(f"levels must be an integer >= 2 or None, got {levels!r}")
        if not 0 <= finite_float(alpha, "alpha") < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
        self.dim, self.kind = positive_int(dim, "dim"), flow
        self.depth = non_negative_int(depth, "depth")
        self.levels, self.alpha = levels, float(alpha)
        layers = build_flow(flow, dim, depth, hidden_dims=hidden_dims, **flow_kwargs)
        to_pyro_module_(layers)  # its parameters are then named "flow.<k>.<name>"
        self.flow = layers
        if learn_base:
            self.base_loc = PyroParam(torch.zeros(self.dim))
            self.base_scale = PyroParam(torch.ones(self.dim), constraint=constraints.positive)
        else:
            self.register_buffer("base_loc", torch.zeros(self.dim))
            self.register_buffer("base_scale", torch.ones(self.dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, flow={self.kind!r}, depth={self.depth}, levels={self.levels}"

    # -- the distribution ----------------------------------------------------------------
    def _output_transforms(self):
        if self.levels is None:
            return []
        a = self.alpha
        return [SigmoidTransform(), AffineTransform(-a / (1 - 2 * a), 1 / (1 - 2 * a))]

    @pyro_method
    def distribution(self) -> dist.TransformedDistribution:
        """The flow distribution, event shape ``(dim,)``, batch shape ``()``.

        Each call starts with empty transform caches: the caches (size 1) let ``log_prob`` of
        the distribution's own sample skip the inverse, but a cache kept across calls would
        hand back a result of an earlier autograd graph when the same data tensor is
        observed again.
        """
        self._register_flow_params()
        base = dist.Normal(self.base_loc, self.base_scale).to_event(1)
        d = dist.TransformedDistribution(base, list(self.flow) + self._output_transforms())
        d.clear_cache()
        return d

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(x)` of the continuous density (of :math:`y` with ``levels``)."""
        self._check(x, batched=False)
        return self.distribution().log_prob(x)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Samples of shape ``sample_shape + (dim,)`` (without gradient)."""
        return self.distribution().sample(sample_shape)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Reparametrized samples of shape ``sample_shape + (dim,)``."""
        return self.distribution().rsample(sample_shape)

    # -- maximum likelihood --------------------------------------------------------------
    def dequantize(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`y = (k + u)/L` with :math:`k = x (L-1)` rounded and fresh
        :math:`u\\sim\\mathcal U(0,1)^D`."""
        if self.levels is None:
            raise ValueError("dequantize needs levels=L (the number of intensity levels)")
        k = torch.round(x * (self.levels - 1))
        return (k + torch.rand_like(x)) / self.levels

    @pyro_method
    def model(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        """Observe the batch ``x`` (shape ``(N, dim)``) as site ``"x"`` in ``plate("data")``."""
        self._check(x, batched=True)
        d = self.distribution()
        with data_plate(x, num_data):
            if self.levels is None:
                pyro.sample("x", d, obs=x)
            else:
                pyro.sample("x", d, obs=self.dequantize(x))
                const = -self.dim * math.log(self.levels)
                pyro.factor("dequantization", x.new_full(x.shape[:1], const))

    def _register_flow_params(self) -> None:
        # The TransformedDistribution samples and scores lazily, after this PyroModule's
        # context has closed, where its parameters are no longer recorded in the trace.
        # Reading every flow parameter here records it as a param site, so that SVI and
        # ``fit`` find and train it (in a model as in a guide).
        for module in self.flow.modules():
            for name in list(module._parameters):
                getattr(module, name)

    def guide(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        """The empty guide: a flow density has no latent variables."""

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """Per data point: :math:`\\log p(x)` for continuous data, or with ``levels`` the
        dequantization lower bound on :math:`\\log P(x)` averaged over ``num_samples`` noise
        draws (nats, shape ``(N,)``)."""
        self._check(x, batched=True)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        if self.levels is None:
            return self.distribution().log_prob(x)
        y = self.dequantize(x.expand((num_samples,) + x.shape))
        return self.distribution().log_prob(y).mean(0) - self.dim * math.log(self.levels)

    def _check(self, x: torch.Tensor, batched: bool) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (..., {self.dim}), got {shape}")
        if batched and x.dim() != 2:
            raise ValueError(f"x must have shape (N, {self.dim}), got {tuple(x.shape)}")


def bits_per_dim(log_likelihood: torch.Tensor, dim: int) -> torch.Tensor:
    """Convert a log-likelihood in nats (per data point) to bits per dimension,
    :math:`-\\log p / (D \\log 2)`."""
    return -log_likelihood / (dim * math.log(2))
