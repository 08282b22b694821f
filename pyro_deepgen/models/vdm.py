r"""Variational diffusion model (Kingma, Salimans, Poole & Ho 2021) on discrete data.

A continuous-time Gaussian diffusion with a learned monotone noise schedule whose variational
bound is a true lower bound on the log-probability :math:`\log P(x)` of discrete (e.g. 8-bit)
data: the prior term, the reconstruction term of a per-dimension categorical over the grid
values, and the continuous-time diffusion loss (or its T-step discrete-time version).
:meth:`VariationalDiffusion.training_loss` (used by :class:`~pyro_deepgen.infer.DiffusionELBO`)
estimates the bound with low-discrepancy times and carries the paper's variance-minimizing
gradient for the schedule.
"""
import math
import numbers
from typing import Optional, Sequence, Tuple, Union

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from torch import nn
from torch.nn import functional as F

from .._checks import finite_float, positive_int, positive_ints
from ..plates import data_plate
from ._inputs import check_batch
from .diffusion import DiffusionBound

#: The paper's initial endpoints of :math:`\gamma = -\log\mathrm{SNR}` (their code's
#: ``gamma_min``, ``gamma_max``); the network is conditioned on :math:`\gamma` normalized by them.
GAMMA_RANGE = (-13.3, 5.0)
#: The columns of :attr:`DiffusionBound.terms` returned by :meth:`VariationalDiffusion.bound`.
TERM_NAMES = ("reconstruction", "diffusion", "prior")


def _softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class MonotoneSchedule(nn.Module):
    r"""The learned noise schedule :math:`\gamma(t) = -\log\mathrm{SNR}(t)` of VDM, increasing in t.

    A monotone network (all weights positive through a softplus)

    .. math::

        \tilde\gamma(t) = l_1(t) + \frac1H\,w_3^\top\big(\mathrm{sigmoid}(l_2(l_1(t))) - \tfrac12\big),
        \qquad l_1(t) = w_1 t + b_1,\ l_2(h) = w_2 h + b_2\ (H \text{ units}),

    rescaled so that its endpoints are the learned :math:`\gamma_0 < \gamma_1`:

    .. math::

        \gamma(t) = \gamma_0 + (\gamma_1 - \gamma_0)\,
            \frac{\tilde\gamma(t) - \tilde\gamma(0)}{\tilde\gamma(1) - \tilde\gamma(0)},
        \qquad \gamma_1 = \gamma_0 + \mathrm{softplus}(\delta).

    Since :math:`\tilde\gamma' \ge w_1 > 0`, :math:`\gamma` is strictly increasing for every
    value of the parameters, and :math:`\gamma(0) = \gamma_0`, :math:`\gamma(1) = \gamma_1`
    exactly. The *interior* (shape) parameters are ``w1, b1, w2, b2, w3``; the *endpoints*
    ``gamma_0`` and ``delta``. :meth:`forward` returns :math:`\gamma(t)` and its exact
    derivative :math:`\gamma'(t)` (in closed form, no double backward).

    Limiting case: with ``w3 = 0`` the schedule is linear in t,
    :math:`\gamma(t) = \gamma_0 + (\gamma_1-\gamma_0) t`, which is how it starts.

    :param float gamma_0: initial :math:`\gamma(0)` (default -13.3, the paper's).
    :param float gamma_1: initial :math:`\gamma(1)` (default 5.0); must exceed ``gamma_0``.
    :param int hidden: H (default 1024, the paper's).

    **Reference**: D. P. Kingma, T. Salimans, B. Poole, J. Ho, *Variational Diffusion Models*,
    NeurIPS 2021, arXiv:2107.00630, Appendix H.
    """

    def __init__(self, gamma_0: float = GAMMA_RANGE[0], gamma_1: float = GAMMA_RANGE[1], hidden: int = 1024) -> None:
        super().__init__()
        gamma_0 = finite_float(gamma_0, "gamma_0")
        gamma_1 = finite_float(gamma_1, "gamma_1")
        if not gamma_1 > gamma_0:
            raise ValueError(f"gamma_1 must exceed gamma_0 (gamma = -log SNR increases in t), got "
                             f"gamma_0={gamma_0}, gamma_1={gamma_1}")
        hidden = positive_int(hidden, "hidden")
        dtype = torch.get_default_dtype()
        self.gamma_0 = nn.Parameter(torch.tensor(gamma_0, dtype=dtype))
        self.delta = nn.Parameter(torch.tensor(_softplus_inverse(gamma_1 - gamma_0), dtype=dtype))
        self.w1 = nn.Parameter(torch.tensor(_softplus_inverse(1.0), dtype=dtype))
        self.b1 = nn.Parameter(torch.zeros((), dtype=dtype))
        self.w2 = nn.Parameter(torch.randn(hidden, dtype=dtype))
        self.b2 = nn.Parameter(torch.randn(hidden, dtype=dtype))
        self.w3 = nn.Parameter(torch.full((hidden,), -10.0, dtype=dtype))  # softplus ~ 0: linear start

    def interior_parameters(self) -> Tuple[nn.Parameter, ...]:
        """The shape parameters (trained to minimize the variance of the loss estimate)."""
        return (self.w1, self.b1, self.w2, self.b2, self.w3)

    def endpoint_parameters(self) -> Tuple[nn.Parameter, ...]:
        """The endpoint parameters ``gamma_0`` and ``delta`` (trained on the bound)."""
        return (self.gamma_0, self.delta)

    def _tilde(self, t: torch.Tensor, interior) -> Tuple[torch.Tensor, torch.Tensor]:
        w1, b1, w2, b2, w3 = interior
        w1, w2, w3 = F.softplus(w1), F.softplus(w2), F.softplus(w3)
        h = w1 * t + b1
        s = torch.sigmoid(h[..., None] * w2 + b2)
        value = h + ((s - 0.5) * w3).mean(-1)
        slope = w1 + (s * (1 - s) * w2 * w3).mean(-1) * w1
        return value, slope

    def forward(
        self, t: torch.Tensor, detach_interior: bool = False, detach_endpoints: bool = False
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\gamma(t), \gamma'(t))` of t's shape. ``detach_*`` cut the gradient to one
        group of parameters (used by the variance-minimizing gradient)."""
        interior = [p.detach() if detach_interior else p for p in self.interior_parameters()]
        gamma_0, delta = [p.detach() if detach_endpoints else p for p in self.endpoint_parameters()]
        ends = torch.stack([torch.zeros_like(gamma_0), torch.ones_like(gamma_0)])
        (v0, v1), _ = self._tilde(ends, interior)
        value, slope = self._tilde(t, interior)
        span = F.softplus(delta)
        scale = span / (v1 - v0)
        return gamma_0 + scale * (value - v0), scale * slope


def fourier_features(z: torch.Tensor, frequencies: Sequence[float]) -> torch.Tensor:
    r"""``z`` with :math:`\sin(2\pi\nu z)` and :math:`\cos(2\pi\nu z)` for each frequency
    :math:`\nu` appended along dimension 1 (channels of images, the features of vectors): for
    ``k`` frequencies dimension 1 grows by the factor ``1 + 2k``."""
    if not frequencies:
        return z
    nu = torch.as_tensor(frequencies, dtype=z.dtype, device=z.device)
    shape = (1, -1) + (1,) * (z.dim() - 1)
    h = 2 * math.pi * z.unsqueeze(1) * nu.reshape(shape)  # (N, k, C, ...)
    h = h.flatten(1, 2)
    return torch.cat([z, torch.sin(h), torch.cos(h)], dim=1)


class VariationalDiffusion(PyroModule):
    r"""Variational diffusion model (VDM) with a learned schedule, on discrete data.

    **Data.** Values :math:`x = k/(L-1)`, :math:`k \in \{0,\dots,L-1\}` (8-bit images divided
    by 255: :math:`L = 256`), encoded as :math:`f = 2(k + \tfrac12)/L - 1 \in (-1, 1)`.

    **Forward process** (variance preserving), with :math:`\gamma(t) = -\log\mathrm{SNR}(t)` the
    learned monotone :class:`~pyro_deepgen.models.vdm.MonotoneSchedule`, :math:`t\in[0,1]`:

    .. math::

        q(z_t\mid x) = \mathcal N(\alpha_t f, \sigma_t^2 I),\quad
        \alpha_t^2 = \mathrm{sigmoid}(-\gamma(t)),\ \sigma_t^2 = \mathrm{sigmoid}(\gamma(t)).

    **Generative model**: :math:`p(z_1) = \mathcal N(0, I)`; for T steps
    :math:`s = (i-1)/T \to t = i/T` the reverse kernel
    :math:`p(z_s\mid z_t) = q(z_s\mid z_t, x = \hat x_\theta(z_t; t))` with
    :math:`\hat x_\theta = (z_t - \sigma_t\hat\epsilon_\theta(z_t; t))/\alpha_t`; and the
    decoder :math:`p(x\mid z_0) = \prod_d \mathrm{Categorical}(k_d;\ \mathrm{softmax}_k
    -\tfrac12 (z_{0,d}/\alpha_0 - f_k)^2 e^{-\gamma_0})`, exact for independent dimensions
    given :math:`z_0`.

    **The bound** (nats per data point; :math:`\log P(x) \ge -\mathcal L`):

    .. math::

        \mathcal L = \underbrace{\mathrm{KL}(q(z_1\mid x)\,\|\,\mathcal N(0,I))}_{\text{prior}}
          + \underbrace{\mathbb E_{q(z_0\mid x)}[-\log p(x\mid z_0)]}_{\text{reconstruction}}
          + \mathcal L_{\text{diff}},

        \mathcal L_T = \frac T2\,\mathbb E_{i,\epsilon}\big[\mathrm{expm1}(\gamma(t_i) - \gamma(s_i))
            \,\|\epsilon - \hat\epsilon_\theta(z_{t_i}; t_i)\|^2\big]\quad(\text{T steps}),

        \mathcal L_\infty = \frac12\,\mathbb E_{t\sim U(0,1),\epsilon}\big[\gamma'(t)
            \,\|\epsilon - \hat\epsilon_\theta(z_t; t)\|^2\big]\quad(T\to\infty),

    with :math:`z_t = \alpha_t f + \sigma_t\epsilon`. :math:`\mathcal L_T` is exactly the sum of
    the T KL terms :math:`\mathrm{KL}(q(z_s\mid z_t,x)\,\|\,p(z_s\mid z_t))`, so the T-step
    bound is the variational bound of the T-step model above, a true bound on :math:`\log P(x)`
    for every T; :math:`\mathcal L_{2T} \le \mathcal L_T` and
    :math:`\mathcal L_T \to \mathcal L_\infty` (the paper's eq. 13-17). ``num_steps=None`` (the
    default) trains and evaluates :math:`\mathcal L_\infty`.

    **Why a learned schedule.** :math:`\mathcal L_\infty` depends on the schedule only through
    its endpoints :math:`\gamma_0, \gamma_1` (substitute :math:`v = \mathrm{SNR}(t)`); the
    endpoints are trained on the bound, the interior only changes the *variance* of the
    Monte Carlo estimate, and is trained to minimize it: the surrogate whose gradient is used
    gives the interior parameters :math:`\eta` the gradient of
    :math:`\sum_n \hat{\mathcal L}_{\text{diff},n}^2 / (2D)` (:math:`D` = dimensions), an
    unbiased estimate of :math:`\nabla_\eta \mathbb E[\hat{\mathcal L}^2]/(2D)
    = \nabla_\eta \mathrm{Var}[\hat{\mathcal L}]/(2D)` (the paper's Appendix I.2), and every
    other parameter the gradient of the bound. With ``num_steps`` = T the interior changes the
    bound itself, and gets its gradient.

    **Times.** A batch of N draws :math:`t_n = (u + n/N) \bmod 1`, :math:`u \sim U(0,1)`
    (low-discrepancy: each t is uniform, so the estimate stays unbiased).

    **Network.** ``net(h, c)`` with ``h`` = :math:`z_t` with :func:`~pyro_deepgen.models.vdm.fourier_features` appended
    along dimension 1 (frequencies :math:`\nu = m L/2` for ``m`` in ``fourier_multiples``:
    :math:`\nu = L/2` has the period of the grid, so these features tell the network where
    :math:`z` lies between grid values; the paper's :math:`2^7, 2^8` cycles for 8-bit data) and
    ``c = 1000 (\gamma(t) - \gamma_{min})/(\gamma_{max} - \gamma_{min})`` of shape ``(N,)``
    (``GAMMA_RANGE``), returning :math:`\hat\epsilon` of :math:`z_t`'s shape (or a tuple whose
    first entry it is). :class:`~pyro_deepgen.nn.UNet` with ``in_channels = C (1 + 2k)``,
    ``out_channels = C`` and :class:`~pyro_deepgen.nn.TimeMLP` fit
    (:meth:`network_input_size` gives the size).

    :param net: the network (converted in place to a :class:`~pyro.nn.PyroModule`).
    :param data_shape: shape of one data point, e.g. ``1``, ``(1, 28, 28)``.
    :param int num_levels: L, the grid size (256 for 8-bit data), at least 2.
    :param num_steps: ``None`` (continuous time, default) or T for the discrete-time bound.
    :param float gamma_0: initial :math:`\gamma(0)` (default -13.3).
    :param float gamma_1: initial :math:`\gamma(1)` (default 5.0).
    :param int schedule_hidden: H of :class:`~pyro_deepgen.models.vdm.MonotoneSchedule` (default 1024).
    :param fourier_multiples: the ``m`` above (default ``(1, 2)``; ``()`` for none).
    :param bool variance_minimizing: train the schedule's interior on the variance (default
        True); False gives it the gradient of the bound estimate.

    :param base_logits: optional per-dimension categorical logits ``(*data_shape, L)`` (e.g.
        :meth:`histogram_logits` of the training data), a learned parameter: the exact noise
        prediction under that independent-dimension model (:meth:`base_eps`) is added to the
        network's output and the logits to the decoder's. The bound stays a bound for every
        denoiser; with the network at zero and :math:`\gamma_0\to-\infty`,
        :math:`\gamma_1\to\infty` it equals :math:`\log\pi(x)` (the model is :math:`\pi`).

    **Limiting cases**: with ``num_steps=1`` the model is a VAE with latents :math:`z_1, z_0`
    and the fixed Gaussian encoder :math:`q(z_0, z_1\mid x)`; as :math:`\gamma_0 \to -\infty`
    the reconstruction term goes to 0 and as :math:`\gamma_1 \to \infty` the prior term does;
    with the exact posterior-mean denoiser of the data the continuous bound is tight up to those
    two terms.

    **Reference**: D. P. Kingma, T. Salimans, B. Poole, J. Ho, *Variational Diffusion Models*,
    NeurIPS 2021, arXiv:2107.00630.
    """

    def __init__(
        self,
        net: nn.Module,
        data_shape: Union[int, Sequence[int]],
        num_levels: int = 256,
        num_steps: Optional[int] = None,
        gamma_0: float = GAMMA_RANGE[0],
        gamma_1: float = GAMMA_RANGE[1],
        schedule_hidden: int = 1024,
        fourier_multiples: Sequence[float] = (1, 2),
        variance_minimizing: bool = True,
        base_logits: Optional[torch.Tensor] = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module called as net(h, c), got {type(net).__name__}")
        integer = isinstance(data_shape, numbers.Integral) and not isinstance(data_shape, bool)
        shape = (data_shape,) if integer else data_shape
        self.data_shape = tuple(positive_ints(shape, "data_shape", allow_empty=False))
        if positive_int(num_levels, "num_levels") < 2:
            raise ValueError(f"num_levels must be an integer >= 2 (the grid size of the data), got {num_levels!r}")
        self.num_levels = int(num_levels)
        self.num_steps = None if num_steps is None else positive_int(num_steps, "num_steps")
        multiples = tuple(fourier_multiples)
        if not all(isinstance(m, numbers.Real) and m > 0 for m in multiples):
            raise ValueError(f"fourier_multiples must be positive numbers (or empty), got {fourier_multiples!r}")
        self.fourier_frequencies = tuple(m * self.num_levels / 2 for m in multiples)
        if not isinstance(variance_minimizing, bool):
            raise ValueError(f"variance_minimizing must be True or False, got {variance_minimizing!r}")
        self.variance_minimizing = variance_minimizing
        self.schedule = MonotoneSchedule(gamma_0, gamma_1, schedule_hidden)
        dtype = torch.get_default_dtype()
        grid = 2 * (torch.arange(self.num_levels, dtype=dtype) + 0.5) / self.num_levels - 1
        self.register_buffer("grid", grid)
        if base_logits is not None:
            base_logits = torch.as_tensor(base_logits, dtype=dtype).detach().clone()
            if tuple(base_logits.shape) != self.data_shape + (self.num_levels,):
                raise ValueError(f"base_logits must have shape data_shape + (num_levels,) = "
                                 f"{self.data_shape + (self.num_levels,)}, got {tuple(base_logits.shape)}; "
                                 "see VariationalDiffusion.histogram_logits")
            if not bool(torch.isfinite(base_logits).all()):
                raise ValueError("base_logits must be finite")
            self.base_logits = nn.Parameter(base_logits)
        else:
            self.base_logits = None
        to_pyro_module_(net)
        self.net = net

    @staticmethod
    def histogram_logits(x: torch.Tensor, num_levels: int = 256, smoothing: float = 1.0) -> torch.Tensor:
        r"""Log-probabilities ``(*data_shape, L)`` of the per-dimension histogram of data ``x``
        (values ``k/(L-1)``), Laplace-smoothed: :math:`\pi_d(k) = (n_{dk} + a)/(N + aL)`. The
        independent-dimension categorical model, the usual baseline in bits/dim, and the
        ``base_logits`` of :class:`VariationalDiffusion`."""
        num_levels = positive_int(num_levels, "num_levels")
        smoothing = finite_float(smoothing, "smoothing", low=0.0, strict=True)
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or len(x) == 0:
            raise ValueError("x must be a tensor (N, *data_shape) with N >= 1")
        k = torch.round(x * (num_levels - 1)).long()
        if bool((k < 0).any() or (k >= num_levels).any()):
            raise ValueError("x must lie in [0, 1]")
        counts = F.one_hot(k, num_levels).sum(0).to(torch.float64)
        return torch.log((counts + smoothing) / (len(x) + smoothing * num_levels)).to(x.dtype)

    # -- sizes and coordinates --------------------------------------------------------------------
    @staticmethod
    def network_input_size(channels: int, fourier_multiples: Sequence[float] = (1, 2)) -> int:
        """The size of dimension 1 of the network's input for data with ``channels`` there."""
        return int(channels) * (1 + 2 * len(tuple(fourier_multiples)))

    @property
    def num_dims(self) -> int:
        """D, the number of dimensions of one data point (for bits/dim)."""
        return math.prod(self.data_shape)

    @property
    def event_dim(self) -> int:
        return len(self.data_shape)

    def _check_x(self, x: torch.Tensor, name: str = "x") -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a tensor of shape (N, {self.data_shape}), got {type(x).__name__}")
        if x.dim() != 1 + self.event_dim or tuple(x.shape[1:]) != self.data_shape or len(x) == 0:
            raise ValueError(f"{name} must have shape (N, *{self.data_shape}) with N >= 1, got {tuple(x.shape)}; "
                             "add the batch dimension")
        check_batch(self, x, name, "VariationalDiffusion", unit_interval=True)

    def to_index(self, x: torch.Tensor) -> torch.Tensor:
        """The grid index :math:`k` of data ``x = k/(L-1)`` (checked to lie on the grid)."""
        self._check_x(x)
        scaled = x * (self.num_levels - 1)
        k = torch.round(scaled)
        if not bool(((scaled - k).abs() <= 1e-3).all()):
            raise ValueError(f"x must lie on the grid k/{self.num_levels - 1} (k = 0..{self.num_levels - 1}); "
                             "quantize it first, e.g. torch.round(x * (L - 1)) / (L - 1)")
        return k.long()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`f = 2(k + 1/2)/L - 1` of data ``x``."""
        return self.grid[self.to_index(x)]

    def _times(self, t: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
        if t.shape != (n,):
            raise ValueError(f"t must have shape ({n},) (one time per data point), got {tuple(t.shape)}")
        if not bool(((t >= 0) & (t <= 1)).all()):
            raise ValueError("t must lie in [0, 1]")
        return t

    def _bcast(self, v: torch.Tensor) -> torch.Tensor:
        return v.reshape(-1, *([1] * self.event_dim))

    # -- schedule and network (the API of the samplers) -------------------------------------------
    def gamma(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\gamma(t) = -\log\mathrm{SNR}(t)` for t of shape ``(B,)`` in [0, 1]."""
        t = torch.as_tensor(t, dtype=self.grid.dtype, device=self.grid.device)
        if t.dim() != 1:
            raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
        if not bool(((t >= 0) & (t <= 1)).all()):
            raise ValueError("t must lie in [0, 1]")
        return self.schedule(t)[0]

    def _eps_hat(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        low, high = GAMMA_RANGE
        c = 1000 * (g - low) / (high - low)
        out = self.net(fourier_features(z, self.fourier_frequencies), c)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out if self.base_logits is None else out + self.base_eps(z, g)

    def base_eps(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        r"""The exact noise prediction :math:`(z_t - \alpha_t\,\mathbb E_\pi[f\mid z_t])/\sigma_t`
        under the per-dimension categorical base :math:`\pi_d = \mathrm{softmax}` (``base_logits``):
        :math:`\mathbb E_\pi[f_d\mid z_t] = \sum_k f_k\,\mathrm{softmax}_k(\log\pi_d(k)
        - (z_{t,d} - \alpha_t f_k)^2/2\sigma_t^2)`. ``g`` = :math:`\gamma(t)`, shape ``(B,)``."""
        gb = self._bcast(g)
        alpha, sigma = self._alpha_sigma(gb)
        a, s = alpha.unsqueeze(-1), sigma.unsqueeze(-1)
        logits = torch.log_softmax(self.base_logits, -1) - 0.5 * ((z.unsqueeze(-1) - a * self.grid) / s) ** 2
        mean = (torch.softmax(logits, -1) * self.grid).sum(-1)
        return (z - alpha * mean) / sigma

    def predict_eps(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\hat\epsilon_\theta(z_t; t)` for ``z`` ``(B, *data_shape)`` and t ``(B,)``."""
        if z.dim() != 1 + self.event_dim or tuple(z.shape[1:]) != self.data_shape:
            raise ValueError(f"z must have shape (B, *{self.data_shape}), got {tuple(z.shape)}")
        t = self._times(t, len(z), z)
        return self._eps_hat(z, self.schedule(t)[0])

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        r"""The most probable data value under :math:`p(x\mid z_0)` (without ``base_logits``: the
        grid value nearest to :math:`z_0/\alpha_0`), as ``k/(L-1)`` (data scale)."""
        g0 = self.schedule.gamma_0
        k = self._log_decoder(z0 / torch.sigmoid(-g0).sqrt(), g0).argmax(-1)
        return k.to(z0.dtype) / (self.num_levels - 1)

    # -- the terms of the bound -----------------------------------------------------------------
    def _log_decoder(self, z0_rescaled: torch.Tensor, g0: torch.Tensor) -> torch.Tensor:
        """log-probabilities ``(..., L)`` of the grid values given :math:`z_0/\\alpha_0`."""
        logits = -0.5 * (z0_rescaled.unsqueeze(-1) - self.grid) ** 2 * torch.exp(-g0)
        if self.base_logits is not None:
            logits = logits + self.base_logits
        return torch.log_softmax(logits, dim=-1)

    def reconstruction(self, x: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        r""":math:`-\log p(x\mid z_0)` per point at one draw :math:`z_0\sim q(z_0\mid x)`
        (``noise`` = its :math:`\epsilon`, drawn if omitted); an unbiased estimate of the
        reconstruction term."""
        k = self.to_index(x)
        f = self.grid[k]
        noise = torch.randn_like(f) if noise is None else noise
        g0 = self.schedule.gamma_0
        z = f + torch.exp(0.5 * g0) * noise  # z_0 / alpha_0
        logp = self._log_decoder(z, g0).gather(-1, k.unsqueeze(-1)).squeeze(-1)
        return -logp.reshape(len(x), -1).sum(-1)

    def prior_kl(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathrm{KL}(q(z_1\mid x)\,\|\,\mathcal N(0, I))` per point, exact."""
        f = self.encode(x)
        g1 = self.schedule.gamma_0 + F.softplus(self.schedule.delta)
        var1 = torch.sigmoid(g1)
        mean_sq = torch.sigmoid(-g1) * f ** 2
        kl = 0.5 * (var1 + mean_sq - torch.log(var1) - 1)
        return kl.reshape(len(x), -1).sum(-1)

    def low_discrepancy_times(self, n: int, device=None, dtype=None) -> torch.Tensor:
        r""":math:`t_i = (u + i/n) \bmod 1`, :math:`u\sim U(0,1)`, ``i = 0..n-1``."""
        dtype = self.grid.dtype if dtype is None else dtype
        u = torch.rand((), device=device, dtype=dtype)
        return torch.remainder(u + torch.arange(n, device=device, dtype=dtype) / n, 1.0)

    def diffusion_loss(
        self,
        x: torch.Tensor,
        t: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
        num_steps: Optional[int] = None,
        _schedule_hook=None,
    ) -> torch.Tensor:
        r"""One-sample estimate of the diffusion loss per point.

        Continuous (``num_steps=None``; default ``self.num_steps``):
        :math:`\tfrac12\gamma'(t)\|\epsilon-\hat\epsilon\|^2`; T steps:
        :math:`\tfrac T2\,\mathrm{expm1}(\gamma(t)-\gamma(s))\|\epsilon-\hat\epsilon\|^2` at
        :math:`t = \lceil tT\rceil/T`, :math:`s = t - 1/T` (t given in (0, 1]: then each step is
        equally likely for uniform t).

        :param x: data ``(N, *data_shape)`` on the grid.
        :param t: times ``(N,)`` in [0, 1] (default: low-discrepancy draws).
        :param noise: :math:`\epsilon` of ``x``'s shape (default: drawn).
        :param num_steps: T, or ``None`` for the model's own setting.
        """
        f = self.encode(x)
        n = len(f)
        steps = self.num_steps if num_steps is None else positive_int(num_steps, "num_steps")
        t = self.low_discrepancy_times(n, f.device, f.dtype) if t is None else self._times(t, n, f)
        noise = torch.randn_like(f) if noise is None else noise
        if noise.shape != f.shape:
            raise ValueError(f"noise must have x's shape {tuple(f.shape)}, got {tuple(noise.shape)}")
        if steps is not None:
            i = torch.clamp(torch.ceil(t * steps), min=1)
            t, s = i / steps, (i - 1) / steps
        g, dg = self._schedule_values(t, _schedule_hook)
        gb = self._bcast(g)
        z = torch.sigmoid(-gb).sqrt() * f + torch.sigmoid(gb).sqrt() * noise
        mse = (noise - self._eps_hat(z, g)).pow(2).reshape(n, -1).sum(-1)
        if steps is None:
            return 0.5 * dg * mse
        g_s = self._schedule_values(s, _schedule_hook)[0]
        return 0.5 * steps * torch.expm1(g - g_s) * mse

    def _schedule_values(self, t, hook):
        if hook is None or not self.variance_minimizing:
            return self.schedule(t)
        # value from the endpoint path; the interior path adds 0 but its gradient is reweighted
        g_a, dg_a = self.schedule(t, detach_interior=True)
        g_b, dg_b = self.schedule(t, detach_endpoints=True)
        g_b.register_hook(hook)
        dg_b.register_hook(hook)
        return g_a + (g_b - g_b.detach()), dg_a + (dg_b - dg_b.detach())

    def training_loss(
        self,
        x: torch.Tensor,
        weighting: str = "elbo",
        vlb_weight: Optional[float] = None,
        t: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""``(value, surrogate)`` per point: the unbiased estimate :math:`\hat{\mathcal L}` of
        the negative bound (reconstruction at one draw, exact prior KL, diffusion loss at
        low-discrepancy times) and the surrogate whose gradient is used: :math:`\hat{\mathcal L}`
        for every parameter except the schedule's interior, which (``variance_minimizing``,
        continuous time) gets the gradient of :math:`\hat{\mathcal L}_{\text{diff}}^2/(2D)`
        instead. The signature fits :class:`~pyro_deepgen.infer.DiffusionELBO` (whose
        ``weighting`` must be ``"elbo"``; ``vlb_weight`` is ignored).

        :param t: optional times ``(N,)`` (then also used for the check in the tests).
        :param noise: optional :math:`\epsilon` of the diffusion term (``x``'s shape).
        """
        if weighting != "elbo":
            raise ValueError(f"VariationalDiffusion trains on the bound itself: weighting must be 'elbo', "
                             f"got {weighting!r}")
        holder = {}

        def reweight(grad):
            return grad * holder["weight"]

        hook = reweight if self.variance_minimizing and self.num_steps is None else None
        diff = self.diffusion_loss(x, t, noise, _schedule_hook=hook)
        if hook is not None:
            holder["weight"] = diff.detach() / self.num_dims
        value = self.reconstruction(x) + self.prior_kl(x) + diff
        return value, value

    @torch.no_grad()
    def bound(
        self, x: torch.Tensor, num_samples: int = 1, num_steps: Optional[int] = None,
        batch_size: Optional[int] = None,
    ) -> DiffusionBound:
        r"""The bound per point, each term averaged over ``num_samples`` draws of
        :math:`(t, \epsilon)` (times low-discrepancy across the draws of one point).

        :param x: data ``(N, *data_shape)`` on the grid.
        :param int num_samples: draws per point (default 1).
        :param num_steps: T, or ``None`` for the model's own setting (continuous by default).
        :param batch_size: points per network call (default: all of ``x`` at once).
        :returns: :class:`~pyro_deepgen.models.diffusion.DiffusionBound` with ``nats`` (lower bound
            on :math:`\log P(x)`, higher is better), ``bits_per_dim``
            (:math:`-\mathrm{nats}/(D\log 2)`, positive, lower is better) and ``terms`` ``(N, 3)``:
            reconstruction, diffusion, prior (``TERM_NAMES``), summing to ``-nats``; its
            ``summary()`` gives the standard errors.
        """
        self._check_x(x)
        num_samples = positive_int(num_samples, "num_samples")
        n = len(x)
        batch_size = n if batch_size is None else positive_int(batch_size, "batch_size")
        terms = []
        for start in range(0, n, batch_size):
            xb = x[start:start + batch_size]
            m = len(xb)
            rec = xb.new_zeros(m)
            diff = xb.new_zeros(m)
            u = torch.rand(m, 1, dtype=xb.dtype, device=xb.device)
            times = torch.remainder(u + torch.arange(num_samples, dtype=xb.dtype, device=xb.device) / num_samples, 1.0)
            for j in range(num_samples):
                rec += self.reconstruction(xb)
                diff += self.diffusion_loss(xb, times[:, j], num_steps=num_steps)
            terms.append(torch.stack([rec / num_samples, diff / num_samples, self.prior_kl(xb)], -1))
        terms = torch.cat(terms)
        nats = -terms.sum(-1)
        return DiffusionBound(nats, -nats / (self.num_dims * math.log(2)), terms)

    # -- the T-step model ------------------------------------------------------------------------
    def _alpha_sigma(self, g):
        return torch.sigmoid(-g).sqrt(), torch.sigmoid(g).sqrt()

    def reverse_step(
        self, z: torch.Tensor, t: torch.Tensor, s: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""Mean and variance of :math:`p(z_s\mid z_t) = q(z_s\mid z_t, x=\hat x_\theta)`,
        :math:`s < t`:

        .. math:: \mu = \frac{\alpha_s}{\alpha_t}(z_t - c\,\sigma_t\hat\epsilon),\quad
                  \mathrm{var} = c\,\sigma_s^2,\quad c = -\mathrm{expm1}(\gamma(s) - \gamma(t)).

        ``t``, ``s``: ``(B,)``. The variance is returned broadcastable to ``z``."""
        t, s = self._times(t, len(z), z), self._times(s, len(z), z)
        g_t, g_s = self.schedule(t)[0], self.schedule(s)[0]
        eps = self._eps_hat(z, g_t)
        g_t, g_s = self._bcast(g_t), self._bcast(g_s)
        c = -torch.expm1(g_s - g_t)
        (a_t, s_t), (a_s, s_s) = self._alpha_sigma(g_t), self._alpha_sigma(g_s)
        return a_s / a_t * (z - c * s_t * eps), c * s_s ** 2

    def _pyro_steps(self) -> int:
        return self.num_steps if self.num_steps is not None else 1000

    def model(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        r"""The T-step generative model as a Pyro program (T = ``num_steps``, 1000 for the
        continuous model): sites ``"z_T"`` ... ``"z_0"`` and the observed grid index ``"x"``."""
        k = self.to_index(x)
        T = self._pyro_steps()
        n = len(x)
        with data_plate(x, num_data):
            zero = torch.zeros_like(x)
            z = pyro.sample(f"z_{T}", dist.Normal(zero, 1.0 + zero).to_event(self.event_dim))
            for i in range(T, 0, -1):
                t = x.new_full((n,), i / T)
                mean, var = self.reverse_step(z, t, x.new_full((n,), (i - 1) / T))
                z = pyro.sample(f"z_{i - 1}", dist.Normal(mean, var.sqrt().expand_as(mean)).to_event(self.event_dim))
            g0 = self.schedule.gamma_0
            logits = self._log_decoder(z / torch.sigmoid(-g0).sqrt(), g0)
            pyro.sample("x", dist.Categorical(logits=logits).to_event(self.event_dim), obs=k)

    def guide(self, x: torch.Tensor, num_data: Optional[int] = None) -> None:
        r"""The forward chain: :math:`z_0\sim q(z_0\mid x)`, then :math:`q(z_t\mid z_s)` up to
        :math:`z_1` (sites ``"z_0"`` ... ``"z_T"``)."""
        f = self.encode(x)
        T = self._pyro_steps()
        times = torch.linspace(0, 1, T + 1, dtype=f.dtype, device=f.device)
        g = self.schedule(times)[0]
        alpha, sigma = self._alpha_sigma(g)
        with data_plate(x, num_data):
            z = pyro.sample("z_0", dist.Normal(alpha[0] * f, sigma[0].expand_as(f)).to_event(self.event_dim))
            for i in range(1, T + 1):
                a = alpha[i] / alpha[i - 1]
                var = -torch.expm1(g[i - 1] - g[i]) * sigma[i] ** 2  # sigma_{t|s}^2
                z = pyro.sample(f"z_{i}", dist.Normal(a * z, var.sqrt().expand_as(z)).to_event(self.event_dim))

    @torch.no_grad()
    def sample(
        self, num_samples: int, num_steps: int = 256, batch_size: Optional[int] = None,
        known: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        r"""Ancestral samples of the ``num_steps``-step model, :meth:`decode`\ d at :math:`z_0`:
        ``(num_samples, *data_shape)`` in data scale. With ``known`` (data, ``(num_samples,
        *data_shape)``) and a bool ``mask`` (True where known), the known entries are replaced
        by draws of :math:`q(z_s\mid x)` at every step and by ``known`` at the end
        (inpainting by replacement)."""
        num_samples = positive_int(num_samples, "num_samples")
        T = positive_int(num_steps, "num_steps")
        batch_size = num_samples if batch_size is None else positive_int(batch_size, "batch_size")
        if (known is None) != (mask is None):
            raise ValueError("pass known and mask together (inpainting) or neither")
        f_known = None
        if known is not None:
            if len(known) != num_samples:
                raise ValueError(f"known must have num_samples={num_samples} rows, got {len(known)}")
            f_known = self.encode(known)
            mask = mask.to(known.device).expand_as(known)
        outs = []
        for start in range(0, num_samples, batch_size):
            m = min(batch_size, num_samples - start)
            z = torch.randn(m, *self.data_shape, dtype=self.grid.dtype, device=self.grid.device)
            fk = None if f_known is None else f_known[start:start + m]
            mk = None if mask is None else mask[start:start + m]
            for i in range(T, 0, -1):
                if fk is not None:
                    a, sg = self._alpha_sigma(self._bcast(self.schedule(z.new_full((m,), i / T))[0]))
                    z = torch.where(mk, a * fk + sg * torch.randn_like(z), z)
                mean, var = self.reverse_step(z, z.new_full((m,), i / T), z.new_full((m,), (i - 1) / T))
                z = mean + var.sqrt() * torch.randn_like(mean)
            x = self.decode(z)
            if fk is not None:
                x = torch.where(mk, known[start:start + m], x)
            outs.append(x)
        return torch.cat(outs)
