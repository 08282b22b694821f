r"""Gaussian diffusion probabilistic model (Sohl-Dickstein et al. 2015; Ho et al. 2020).

The generative model is a reverse Markov chain and the guide is the fixed forward (noising)
chain, both written as Pyro programs, so that ``Trace_ELBO`` on the pair is the diffusion
variational bound. :meth:`GaussianDiffusion.training_loss` (used by
:class:`~pyro_deepgen.infer.DiffusionELBO`) is the same bound estimated with one drawn time step
(uniform, or importance-sampled by the running loss) and closed-form Gaussian KL terms. Fast
samplers (DDIM) and the probability-flow ODE are in
:mod:`~pyro_deepgen.models.diffusion_samplers`.
"""
import math
import numbers
from typing import Dict, NamedTuple, Optional, Sequence, Tuple, Union

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from torch import nn
from tqdm.auto import tqdm

from .._checks import one_of, positive_int, positive_ints
from ..distributions.discretized_normal import DiscretizedNormal
from .diffusion_schedules import make_schedule, schedule_coefficients
from ..plates import data_plate
from ._inputs import check_batch

#: The choices of ``mean_type`` of :class:`GaussianDiffusion`, what the network predicts (the
#: noise :math:`\epsilon`, the velocity :math:`v`, the clean image :math:`x_0`, or the mean).
MEAN_TYPES = ("eps", "v", "x0", "mean")
VAR_TYPES = ("learned_range", "learned", "fixed_small", "fixed_large")
DATA_TYPES = ("continuous", "discrete")
WEIGHTINGS = ("elbo", "ddpm")
#: The choices of ``t_sampling`` of :class:`GaussianDiffusion`: how the training loss draws t.
T_SAMPLINGS = ("uniform", "importance")
#: Importance sampling of t keeps the last this many values of each step's loss term, and stays
#: uniform until every step has that many (Nichol & Dhariwal 2021, sec. 3.3).
LOSS_HISTORY = 10
#: The share of the uniform distribution mixed into the importance distribution of t (so that
#: every p_t > 0; the value of Nichol & Dhariwal's code).
UNIFORM_MIX = 1e-3

TimeStep = Union[int, torch.Tensor]


def normal_kl(
    mean1: torch.Tensor, log_var1: torch.Tensor, mean2: torch.Tensor, log_var2: torch.Tensor
) -> torch.Tensor:
    r"""Elementwise
    :math:`\mathrm{KL}(\mathcal N(m_1, e^{v_1}) \,\|\, \mathcal N(m_2, e^{v_2}))`."""
    return 0.5 * (
        log_var2 - log_var1 + torch.exp(log_var1 - log_var2)
        + (mean1 - mean2) ** 2 * torch.exp(-log_var2) - 1.0
    )


class DiffusionBound(NamedTuple):
    """Per data point: ``nats`` (lower bound on log p(x_0)), ``bits_per_dim`` (upper bound on
    -log2 p(x_0) / D) and ``terms`` ``(N, T + 1)``: column ``s`` is :math:`L_s` (see
    :meth:`GaussianDiffusion.bound`)."""

    nats: torch.Tensor
    bits_per_dim: torch.Tensor
    terms: torch.Tensor

    def summary(self) -> Dict[str, float]:
        r"""The data-set bound with its standard error, one sign convention: ``nats`` is the mean
        lower bound on :math:`\log p(x_0)` per point (higher is better), ``bits_per_dim`` the
        mean upper bound on :math:`-\log_2 p(x_0)/D` (positive, lower is better), each with
        ``*_stderr`` = sample standard deviation over the points / :math:`\sqrt N`. Each point's
        value is an unbiased estimate of its bound, so the standard error covers both the Monte
        Carlo noise of the estimator and the spread of the data (it is 0 for a single point:
        ``nan`` is returned then)."""
        n = len(self.nats)
        out = {"num_points": n}
        for key, values in (("nats", self.nats), ("bits_per_dim", self.bits_per_dim)):
            values = values.double()
            out[key] = values.mean().item()
            out[f"{key}_stderr"] = (values.std() / math.sqrt(n)).item() if n > 1 else float("nan")
        return out


class _LearnedBetas(PyroModule):
    """Learned schedule :math:`\\beta_t = \\sigma(\\ell_t)`, initialized at a given schedule."""

    def __init__(self, betas: torch.Tensor) -> None:
        super().__init__()
        b = betas.clamp(1e-6, 1 - 1e-6)
        self.logits = nn.Parameter(torch.logit(b).to(torch.get_default_dtype()))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)


class GaussianDiffusion(PyroModule):
    r"""Diffusion probabilistic model with Gaussian forward and reverse kernels.

    Forward process (the guide; fixed unless ``learn_schedule``) and its closed forms:

    .. math::

        q(x_t\mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I),\qquad
        q(x_t\mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t) I),

        q(x_{t-1}\mid x_t, x_0) = \mathcal N\Big(
            \tfrac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t} x_0
            + \tfrac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} x_t,\
            \tilde\beta_t I\Big),\quad
        \tilde\beta_t = \tfrac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t,

    with :math:`\alpha_t = 1-\beta_t`, :math:`\bar\alpha_t=\prod_{s\le t}\alpha_s`. Generative
    model (the reverse chain): :math:`p(x_T) = \mathcal N(0, I)` and
    :math:`p(x_{t-1}\mid x_t) = \mathcal N(\mu_\theta(x_t,t), \mathrm{diag}\,\Sigma_\theta(x_t,t))`;
    at the last step :math:`p(x_0\mid x_1)` is that Gaussian for continuous data, or for
    ``data="discrete"`` the same Gaussian discretized onto the pixel grid
    (:class:`~pyro_deepgen.distributions.DiscretizedNormal`), so that the bound is a bound on
    the log-probability of the discrete data and can be reported in bits per dimension.

    The variational bound (:meth:`bound`, ``Trace_ELBO`` on :meth:`model`/:meth:`guide`) is

    .. math::

        \log p(x_0) \ge \mathbb E_q\Big[\log p(x_T)
            + \sum_{t=1}^T \log\frac{p(x_{t-1}\mid x_t)}{q(x_t\mid x_{t-1})}\Big]
        = -L_T - \sum_{t=2}^T L_{t-1} - L_0,

        L_T = \mathrm{KL}(q(x_T\mid x_0)\,\|\,p(x_T)),\
        L_{t-1} = \mathbb E_q\,\mathrm{KL}(q(x_{t-1}\mid x_t,x_0)\,\|\,p(x_{t-1}\mid x_t)),\
        L_0 = -\mathbb E_q \log p(x_0\mid x_1).

    **Plugging in a network.** ``net`` is any :class:`torch.nn.Module` called as
    ``net(x_t, t)`` with ``x_t`` of shape ``(N, *event_shape)`` and integer steps ``t`` of
    shape ``(N,)`` with values in ``1..T``, returning a pair ``(mean_param, var_param)`` of
    tensors of ``x_t``'s shape. ``mean_type`` says what ``mean_param`` is: ``"eps"`` (the
    noise, Ho et al.:
    :math:`\mu = (x_t - \beta_t\hat\epsilon/\sqrt{1-\bar\alpha_t})/\sqrt{\alpha_t}`),
    ``"v"`` (Salimans & Ho's :math:`v = \sqrt{\bar\alpha_t}\epsilon - \sqrt{1-\bar\alpha_t}x_0`,
    so :math:`\hat x_0 = \sqrt{\bar\alpha_t}x_t - \sqrt{1-\bar\alpha_t}\hat v`), ``"x0"``
    (a prediction of :math:`x_0`; both are plugged into the posterior mean) or ``"mean"``
    (:math:`\mu` itself). The :math:`\epsilon`-parameterization amplifies errors by
    :math:`1/\sqrt{\alpha_t}`, about 32 at :math:`\beta_t = 0.999` (the last step of the
    cosine and Sohl-Dickstein schedules), which makes that step's KL term large unless the
    network is very accurate; ``"v"`` is well conditioned at every t. ``var_type`` says what
    ``var_param`` is: ``"learned_range"`` (Nichol & Dhariwal:
    :math:`\log\Sigma = \tfrac{v+1}2\log\beta_t + \tfrac{1-v}2\log\tilde\beta_t`),
    ``"learned"`` (:math:`\log\Sigma` itself), or it is ignored for the fixed choices
    ``"fixed_small"`` (:math:`\tilde\beta_t`) and ``"fixed_large"`` (:math:`\beta_t`).
    :class:`~pyro_deepgen.nn.TimeMLP` (vectors) and :class:`~pyro_deepgen.nn.UNet` (images
    ``(C, H, W)``) have this signature.

    **Coordinates.** With ``data="discrete"`` the data are values ``k / (num_levels - 1)`` in
    [0, 1] (e.g. 8-bit images divided by 255) and the chain runs on ``2 x - 1`` in [-1, 1];
    the sites ``"x_1"..."x_T"`` and the observed ``"x_0"`` of the Pyro programs, and the
    methods :meth:`q_sample`, :meth:`q_marginal`, :meth:`q_posterior` and
    :meth:`p_mean_variance`, use these chain coordinates. With ``data="continuous"`` the
    chain coordinates are the data (scale them to about unit variance yourself).

    All constants of the schedule are buffers (they follow ``.to(device)``); with
    ``learn_schedule=True`` the logits of :math:`\beta_t` are parameters instead, as in
    Sohl-Dickstein et al.

    :param net: the time-conditioned network (see above); it is converted in place to a
        :class:`~pyro.nn.PyroModule` so that its parameters are Pyro params.
    :param event_shape: shape of one data point, e.g. ``2`` or ``(1, 28, 28)``.
    :param int num_steps: T (default 1000). Ignored when ``schedule`` is a tensor.
    :param schedule: ``"sohl"``, ``"linear"`` (default) or ``"cosine"``
        (see :mod:`~pyro_deepgen.models.diffusion_schedules`), or a tensor of betas.
    :param str mean_type: ``"eps"`` (default), ``"v"``, ``"x0"`` or ``"mean"``.
    :param str var_type: ``"learned_range"`` (default), ``"learned"``, ``"fixed_small"``,
        ``"fixed_large"``.
    :param str data: ``"continuous"`` (default) or ``"discrete"``.
    :param int num_levels: grid size of discrete data (256 for 8-bit images, 17 for sklearn's
        8x8 digits).
    :param bool learn_schedule: learn :math:`\beta_{1..T}` (default False).
    :param str t_sampling: how :meth:`training_loss` draws the step t: ``"uniform"``
        (default) or ``"importance"``, Nichol & Dhariwal's importance sampling by the running
        loss (:meth:`t_probabilities`; the last ``LOSS_HISTORY = 10`` values of each step's term
        are kept in the buffers ``loss_history`` / ``loss_history_count``, so they follow
        ``.to(device)`` and are saved in checkpoints).

    **Limiting case**: with T=1 the model is a one-step Gaussian VAE whose encoder
    :math:`q(x_1\mid x_0) = \mathcal N(\sqrt{1-\beta_1}x_0, \beta_1 I)` is fixed.

    **References**: [1] J. Sohl-Dickstein, E. Weiss, N. Maheswaranathan, S. Ganguli, *Deep
    Unsupervised Learning using Nonequilibrium Thermodynamics*, arXiv:1503.03585.
    [2] J. Ho, A. Jain, P. Abbeel, *Denoising Diffusion Probabilistic Models*, arXiv:2006.11239.
    [3] A. Nichol, P. Dhariwal, *Improved Denoising Diffusion Probabilistic Models*,
    arXiv:2102.09672. [4] T. Salimans, J. Ho, *Progressive Distillation for Fast Sampling of
    Diffusion Models*, arXiv:2202.00512.
    """

    def __init__(
        self,
        net: nn.Module,
        event_shape: Union[int, Sequence[int]],
        num_steps: int = 1000,
        schedule: Union[str, torch.Tensor] = "linear",
        mean_type: str = "eps",
        var_type: str = "learned_range",
        data: str = "continuous",
        num_levels: int = 256,
        learn_schedule: bool = False,
        t_sampling: str = "uniform",
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(
                f"net must be an nn.Module called as net(x_t, t), got {type(net).__name__}"
            )
        one_of(mean_type, "mean_type", MEAN_TYPES)
        one_of(var_type, "var_type", VAR_TYPES)
        one_of(data, "data", DATA_TYPES)
        one_of(t_sampling, "t_sampling", T_SAMPLINGS)
        if data == "discrete" and (positive_int(num_levels, "num_levels") < 2):
            raise ValueError(f"num_levels must be an integer >= 2, got {num_levels!r}")
        if not isinstance(learn_schedule, bool):
            raise ValueError(f"learn_schedule must be True or False, got {learn_schedule!r}")
        integer = isinstance(event_shape, numbers.Integral) and not isinstance(event_shape, bool)
        shape = (event_shape,) if integer else event_shape
        self.event_shape = torch.Size(positive_ints(shape, "event_shape", allow_empty=False))
        if isinstance(schedule, str):
            betas = make_schedule(schedule, positive_int(num_steps, "num_steps"))
        elif torch.is_tensor(schedule) or isinstance(schedule, (list, tuple)):
            betas = torch.as_tensor(schedule, dtype=torch.float64).detach().cpu()
            if betas.dim() != 1 or len(betas) == 0:
                raise ValueError(
                    f"schedule must be a name or a 1-D tensor of betas, got shape {tuple(betas.shape)}"
                )
        else:
            raise ValueError(
                f"schedule must be a name ('sohl', 'linear', 'cosine') or a 1-D tensor of betas, "
                f"got {schedule!r}"
            )
        self.schedule_name = schedule if isinstance(schedule, str) else "custom"
        self.num_steps = len(betas)
        self.mean_type, self.var_type, self.data = mean_type, var_type, data
        self.num_levels = int(num_levels)
        self.learn_schedule = bool(learn_schedule)
        self.t_sampling = t_sampling
        if t_sampling == "importance":
            dtype = torch.get_default_dtype()
            self.register_buffer("loss_history", torch.zeros(self.num_steps, LOSS_HISTORY, dtype=dtype))
            self.register_buffer("loss_history_count", torch.zeros(self.num_steps, dtype=torch.long))
        coefs = schedule_coefficients(betas)  # validates the betas
        if self.learn_schedule:
            self.learned_betas = _LearnedBetas(betas)
        else:
            for key, value in coefs.items():
                self.register_buffer(key, value.to(torch.get_default_dtype()))
        to_pyro_module_(net)  # before assignment, so that its Pyro names are set now
        self.net = net

    # -- schedule constants -----------------------------------------------------------------
    @property
    def event_dim(self) -> int:
        return len(self.event_shape)

    @property
    def num_dims(self) -> int:
        """D, the number of dimensions of one data point (for bits/dim)."""
        return self.event_shape.numel()

    def coefficients(self) -> Dict[str, torch.Tensor]:
        """The constants of :func:`~pyro_deepgen.models.diffusion_schedules.schedule_coefficients`
        (length T + 1, entry t for step t): the buffers, or recomputed from the learned betas."""
        if self.learn_schedule:
            betas = self.learned_betas()
            return {k: v.to(betas.dtype) for k, v in schedule_coefficients(betas).items()}
        return {k: getattr(self, k) for k in ("betas", "log_betas", "alphas", "alpha_bar",
                                              "sqrt_alpha_bar", "one_minus_alpha_bar",
                                              "sqrt_one_minus_alpha_bar", "posterior_variance",
                                              "posterior_log_variance_clipped", "coef_x0",
                                              "coef_xt")}

    def _at(self, coef: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``coef[t]`` shaped to broadcast against ``(N, *event_shape)``."""
        return coef[t].reshape(-1, *([1] * self.event_dim))

    def _steps(self, t: TimeStep, n: int, like: torch.Tensor) -> torch.Tensor:
        if isinstance(t, int):
            if not 0 <= t <= self.num_steps:
                raise ValueError(f"t={t} is outside 0..{self.num_steps}")
            return torch.full((n,), t, dtype=torch.long, device=like.device)
        t = torch.as_tensor(t, device=like.device)
        if t.dtype not in (torch.int32, torch.int64) or t.shape != (n,):
            raise ValueError(f"t must be an int or an integer tensor of shape ({n},)")
        return t.long()

    # -- coordinates --------------------------------------------------------------------------
    def _check_shape(self, x: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
        if x.dim() != 1 + self.event_dim or x.shape[1:] != self.event_shape:
            raise ValueError(
                f"{name} must have shape (batch, {', '.join(map(str, self.event_shape))}); got "
                f"{tuple(x.shape)}. Reshape the data to the diffusion's event_shape."
            )

    def to_chain(self, x0: torch.Tensor, known: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Data -> chain coordinates (``2 x - 1`` for discrete data), checking the values of the
        entries where ``known`` is True (all by default)."""
        self._check_shape(x0, "x0")
        if known is None:  # dtype and NaN/inf: one reduction per batch
            check_batch(self, x0, "x0", "GaussianDiffusion")
        if self.data == "continuous":
            return x0
        vals = x0 if known is None else x0[known.expand_as(x0)]
        k = vals * (self.num_levels - 1)
        if vals.numel() and (
            bool((vals < 0).any() | (vals > 1).any()) or float((k - k.round()).abs().max()) > 1e-3
        ):
            raise ValueError(
                f"discrete data must be values k/{self.num_levels - 1} in [0, 1] "
                f"(num_levels={self.num_levels}); rescale or set num_levels"
            )
        return 2 * x0 - 1

    def to_data(self, y: torch.Tensor) -> torch.Tensor:
        """Chain -> data coordinates; discrete values are rounded to the grid."""
        if self.data == "continuous":
            return y
        k = ((y.clamp(-1, 1) + 1) / 2 * (self.num_levels - 1)).round()
        return k / (self.num_levels - 1)

    # -- closed forms (chain coordinates) ------------------------------------------------------
    def q_marginal(self, x0: torch.Tensor, t: TimeStep) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""Mean and variance of :math:`q(x_t\mid x_0)`."""
        coefs, t = self.coefficients(), self._steps(t, x0.shape[0], x0)
        var = self._at(coefs["one_minus_alpha_bar"], t).expand_as(x0)
        return self._at(coefs["sqrt_alpha_bar"], t) * x0, var

    def q_sample(
        self, x0: torch.Tensor, t: TimeStep, noise: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        r""":math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`, a draw of
        :math:`q(x_t\mid x_0)` (``noise`` is :math:`\epsilon`, drawn if not given)."""
        return self._q_sample(x0, self._steps(t, x0.shape[0], x0), self.coefficients(), noise)

    def _q_sample(self, x0, t, coefs, noise=None):
        noise = torch.randn_like(x0) if noise is None else noise
        return (self._at(coefs["sqrt_alpha_bar"], t) * x0
                + self._at(coefs["sqrt_one_minus_alpha_bar"], t) * noise)

    def q_posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: TimeStep
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""Mean and variance :math:`\tilde\beta_t` of :math:`q(x_{t-1}\mid x_t, x_0)`, t >= 1."""
        coefs, t = self.coefficients(), self._steps(t, x0.shape[0], x0)
        if bool((t < 1).any()):
            raise ValueError("the posterior q(x_{t-1} | x_t, x_0) needs t >= 1")
        mean = self._at(coefs["coef_x0"], t) * x0 + self._at(coefs["coef_xt"], t) * x_t
        return mean, self._at(coefs["posterior_variance"], t).expand_as(x0)

    def p_mean_variance(self, x_t: torch.Tensor, t: TimeStep) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""Mean and log-variance of the reverse kernel :math:`p(x_{t-1}\mid x_t)`."""
        self._check_shape(x_t, "x_t")
        mean, log_var, _ = self._p_mean_variance(
            x_t, self._steps(t, x_t.shape[0], x_t), self.coefficients()
        )
        return mean, log_var

    def _p_mean_variance(self, y_t, t, coefs, clip=False):
        """Mean and log-variance of p(x_{t-1} | x_t), and the network's raw mean prediction."""
        out = self.net(y_t, t)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError("net(x_t, t) must return a pair (mean_param, var_param)")
        mean_param, var_param = out
        if mean_param.shape != y_t.shape or var_param.shape != y_t.shape:
            raise ValueError(
                f"net(x_t, t) returned shapes {tuple(mean_param.shape)} and "
                f"{tuple(var_param.shape)}; both must equal x_t's shape {tuple(y_t.shape)}"
            )
        at = lambda key: self._at(coefs[key], t)  # noqa: E731
        if self.var_type == "learned_range":
            frac = (var_param + 1) / 2
            log_var = frac * at("log_betas") + (1 - frac) * at("posterior_log_variance_clipped")
        elif self.var_type == "learned":
            log_var = var_param
        elif self.var_type == "fixed_small":
            log_var = at("posterior_log_variance_clipped").expand_as(y_t)
        else:
            log_var = at("log_betas").expand_as(y_t)
        sqrt_1m = at("sqrt_one_minus_alpha_bar")
        if self.mean_type == "mean":
            return mean_param, log_var, mean_param
        if self.mean_type == "eps" and not clip:
            mean = (y_t - at("betas") / sqrt_1m * mean_param) / at("alphas").sqrt()
            return mean, log_var, mean_param
        if self.mean_type == "eps":
            x0_hat = (y_t - sqrt_1m * mean_param) / at("sqrt_alpha_bar")
        elif self.mean_type == "v":
            x0_hat = at("sqrt_alpha_bar") * y_t - sqrt_1m * mean_param
        else:
            x0_hat = mean_param
        if clip:
            x0_hat = x0_hat.clamp(-1, 1)
        return at("coef_x0") * x0_hat + at("coef_xt") * y_t, log_var, mean_param

    def predict_x0_eps(
        self, x_t: torch.Tensor, t: TimeStep, clip_denoised: bool = False
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""The network's implied predictions :math:`(\hat x_0, \hat\epsilon)` at
        :math:`x_t` (chain coordinates), tied by
        :math:`x_t = \sqrt{\bar\alpha_t}\hat x_0 + \sqrt{1-\bar\alpha_t}\hat\epsilon`, for every
        ``mean_type`` (``"mean"``: :math:`\hat x_0` solved from the posterior mean, t >= 1).
        With ``clip_denoised`` :math:`\hat x_0` is clipped to [-1, 1] and :math:`\hat\epsilon`
        recomputed from it (as the ancestral sampler's clipped posterior mean does). Used by
        :func:`~pyro_deepgen.models.diffusion_samplers.ddim_sample`."""
        self._check_shape(x_t, "x_t")
        steps = self._steps(t, x_t.shape[0], x_t)
        if bool((steps < 1).any()):
            raise ValueError("predict_x0_eps needs t >= 1")
        return self._predict_x0_eps(x_t, steps, self.coefficients(), bool(clip_denoised))

    def _predict_x0_eps(self, y_t, t, coefs, clip):
        out = self.net(y_t, t)
        if not (isinstance(out, (tuple, list)) and len(out) == 2) or out[0].shape != y_t.shape:
            raise TypeError("net(x_t, t) must return a pair (mean_param, var_param) of x_t's shape")
        param = out[0]
        at = lambda key: self._at(coefs[key], t)  # noqa: E731
        sqrt_ab, sqrt_1m = at("sqrt_alpha_bar"), at("sqrt_one_minus_alpha_bar")
        if self.mean_type == "eps" and not clip:
            return (y_t - sqrt_1m * param) / sqrt_ab, param
        if self.mean_type == "eps":
            x0_hat = (y_t - sqrt_1m * param) / sqrt_ab
        elif self.mean_type == "v":
            x0_hat = sqrt_ab * y_t - sqrt_1m * param
        elif self.mean_type == "x0":
            x0_hat = param
        else:
            x0_hat = (param - at("coef_xt") * y_t) / at("coef_x0")
        if clip:
            x0_hat = x0_hat.clamp(-1, 1)
        return x0_hat, (y_t - sqrt_ab * x0_hat) / sqrt_1m

    def decoder(self, mean: torch.Tensor, log_var: torch.Tensor) -> dist.Distribution:
        r""":math:`p(x_0\mid x_1)` with event shape ``event_shape`` (chain coordinates)."""
        scale = torch.exp(0.5 * log_var)
        if self.data == "discrete":
            base = DiscretizedNormal(mean, scale, self.num_levels, validate_args=False)
        else:
            base = dist.Normal(mean, scale, validate_args=False)
        return base.to_event(self.event_dim)

    # -- bound terms ----------------------------------------------------------------------------
    def prior_kl(self, y0: torch.Tensor) -> torch.Tensor:
        r""":math:`L_T = \mathrm{KL}(q(x_T\mid x_0)\,\|\,\mathcal N(0, I))` per data point
        (chain coordinates)."""
        return self._prior_kl(y0, self.coefficients())

    def _prior_kl(self, y0, coefs):
        T = self.num_steps
        var = coefs["one_minus_alpha_bar"][T]
        kl = 0.5 * (-torch.log(var) + var + coefs["alpha_bar"][T] * y0**2 - 1)
        return kl.reshape(len(y0), -1).sum(-1)

    def _step_terms(self, y0, t, coefs, noise=None):
        """Per data point: L_{t-1} (a KL) for t >= 2, L_0 = -log p(x_0 | x_1) for t = 1, at one
        draw x_t ~ q(x_t | x_0); also the noise, the reverse kernel and the posterior."""
        noise = torch.randn_like(y0) if noise is None else noise
        y_t = self._q_sample(y0, t, coefs, noise)
        mean, log_var, pred = self._p_mean_variance(y_t, t, coefs)
        post_mean = self._at(coefs["coef_x0"], t) * y0 + self._at(coefs["coef_xt"], t) * y_t
        post_log_var = self._at(coefs["posterior_log_variance_clipped"], t)
        n = len(y0)
        kl = normal_kl(post_mean, post_log_var, mean, log_var).reshape(n, -1).sum(-1)
        first = t == 1
        if bool(first.any()):
            idx = first.nonzero().squeeze(-1)
            nll = -self.decoder(mean[idx], log_var[idx]).log_prob(y0[idx])
            kl = kl.index_put((idx,), nll)
        return kl, noise, pred, (mean, log_var, post_mean, post_log_var, first)

    def _regression_target(self, y0, noise, t, coefs, post_mean):
        """What the network's mean output should be: eps, v, x_0 or the posterior mean."""
        if self.mean_type == "eps":
            return noise
        if self.mean_type == "v":
            return (self._at(coefs["sqrt_alpha_bar"], t) * noise
                    - self._at(coefs["sqrt_one_minus_alpha_bar"], t) * y0)
        return y0 if self.mean_type == "x0" else post_mean

    # -- importance sampling of t ------------------------------------------------------------
    def t_probabilities(self) -> torch.Tensor:
        r"""The distribution :math:`p_t` (shape ``(T,)``, entry ``t - 1`` for step t) from which
        :meth:`training_loss` draws t.

        ``t_sampling="uniform"``: :math:`p_t = 1/T`. ``t_sampling="importance"`` (Nichol &
        Dhariwal 2021, sec. 3.3):

        .. math:: p_t \propto \sqrt{\mathbb E[\ell_t^2]},\qquad
            p_t \leftarrow (1-\lambda)\,p_t + \lambda/T,\ \lambda = 10^{-3},

        with :math:`\mathbb E[\ell_t^2]` the mean of the last 10 recorded values of the step's
        term :math:`\ell_t` (:meth:`update_loss_history`); until every step has 10 values (or
        if they are all 0) it is uniform. For a fixed history :math:`\ell_t/p_t` has the
        smallest variance among :math:`p` when :math:`p_t \propto \sqrt{\mathbb E\ell_t^2}`
        (the :math:`\lambda` mix keeps every :math:`p_t > 0`, so the reweighted estimate stays
        unbiased)."""
        ref = self.betas if not self.learn_schedule else self.learned_betas.logits
        T = self.num_steps
        uniform = torch.full((T,), 1.0 / T, device=ref.device, dtype=ref.dtype)
        if self.t_sampling == "uniform" or bool((self.loss_history_count < LOSS_HISTORY).any()):
            return uniform
        weights = self.loss_history.to(ref.dtype).pow(2).mean(-1).sqrt()
        total = weights.sum()
        if not bool(torch.isfinite(total)) or float(total) <= 0:
            return uniform
        return (1 - UNIFORM_MIX) * weights / total + UNIFORM_MIX * uniform

    @torch.no_grad()
    def update_loss_history(self, t: torch.Tensor, terms: torch.Tensor) -> None:
        r"""Record the values ``terms`` ``(N,)`` of :math:`\ell_{t_n}` at steps ``t`` ``(N,)`` in
        1..T (a ring buffer of the last 10 per step; for a step drawn more than 10 times in one
        call the last 10 are kept). A no-op for ``t_sampling="uniform"``."""
        if self.t_sampling != "importance":
            return
        T = self.num_steps
        t0 = torch.as_tensor(t, device=self.loss_history.device).long().reshape(-1) - 1
        terms = torch.as_tensor(terms).detach().reshape(-1).to(self.loss_history)
        if t0.shape != terms.shape or bool(((t0 < 0) | (t0 >= T)).any()):
            raise ValueError("update_loss_history needs steps t in 1..T and one term per step")
        order = torch.sort(t0, stable=True).indices
        ts, values = t0[order], terms[order]
        per_step = torch.bincount(ts, minlength=T)
        first = torch.cumsum(per_step, 0) - per_step
        rank = torch.arange(len(ts), device=ts.device) - first[ts]
        keep = per_step[ts] - rank <= LOSS_HISTORY  # the last 10 of each step
        slot = (self.loss_history_count[ts] + rank) % LOSS_HISTORY
        self.loss_history[ts[keep], slot[keep]] = values[keep]
        self.loss_history_count += per_step

    def training_loss(
        self,
        x0: torch.Tensor,
        weighting: str = "elbo",
        vlb_weight: float = 1e-3,
        t: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""One-step estimate of the negative bound and a training surrogate, per data point.

        Draws :math:`t\sim p_t` per data point (:meth:`t_probabilities`: uniform, or
        importance-sampled by the running loss) and returns

        .. math:: \hat L = L_T + \ell_t / p_t,\qquad \ell_1 = L_0,\ \ell_t = L_{t-1}\ (t\ge2),

        (:math:`\hat L = L_T + T\,\ell_t` for uniform t), with the Gaussian KLs in closed form,
        so :math:`\mathbb E_t \hat L = L_T + \sum_t \ell_t = -\text{bound}` (unbiased for every
        :math:`p` with :math:`p_t > 0`). The surrogate (whose gradient is used) is
        :math:`\hat L` itself for ``weighting="elbo"``, and for ``weighting="ddpm"`` Ho et al.'s
        reweighting, the unweighted regression of the network's mean output on its target
        (:math:`\|\epsilon-\hat\epsilon_\theta(x_t,t)\|^2` for ``mean_type="eps"``; v, x_0
        or the posterior mean for the other types) plus Nichol & Dhariwal's
        ``vlb_weight`` times :math:`\hat L` with the mean held fixed (so that a learned
        variance still gets a gradient; the ``L_hybrid`` objective). Under importance sampling
        both parts are multiplied by :math:`1/(T p_t)`, so the surrogate's expectation (and
        its expected gradient) is that of uniform t.

        With ``t_sampling="importance"``, in training mode (``module.training``) and when t is
        drawn here, the drawn terms :math:`\ell_t` are recorded (:meth:`update_loss_history`).
        Each process of a distributed run keeps its own history: each one's estimate stays
        unbiased.

        :param x0: data ``(N, *event_shape)`` (data coordinates).
        :param t: optional steps ``(N,)`` in 1..T; then :math:`\hat L = L_T + T\ell_t` (the
            uniform weight) and nothing is recorded.
        :param noise: optional :math:`\epsilon` of ``x0``'s shape.
        :returns: ``(value, surrogate)``, both of shape ``(N,)``.
        """
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={weighting!r}; use one of {WEIGHTINGS}")
        y0 = self.to_chain(x0)
        coefs = self.coefficients()
        n, T = len(y0), self.num_steps
        drawn = t is None
        if drawn and self.t_sampling == "importance":
            probs = self.t_probabilities().to(y0.device)
            t = torch.multinomial(probs, n, replacement=True) + 1
            weight = 1.0 / probs[t - 1].to(y0.dtype)
        elif drawn:
            t = torch.randint(1, T + 1, (n,), device=y0.device)
            weight = T
        else:
            t = self._steps(t, n, y0)
            if bool((t < 1).any()):
                raise ValueError("t must be in 1..T")
            weight = T
        term, noise, pred, parts = self._step_terms(y0, t, coefs, noise)
        if drawn and self.t_sampling == "importance" and self.training:
            self.update_loss_history(t, term)
        value = self._prior_kl(y0, coefs) + weight * term
        if weighting == "elbo":
            return value, value
        mean, log_var, post_mean, post_log_var, first = parts
        mse = (self._regression_target(y0, noise, t, coefs, post_mean) - pred).pow(2)
        mse = mse.reshape(n, -1).sum(-1)
        frozen = normal_kl(post_mean, post_log_var, mean.detach(), log_var).reshape(n, -1).sum(-1)
        if bool(first.any()):
            idx = first.nonzero().squeeze(-1)
            nll = -self.decoder(mean[idx].detach(), log_var[idx]).log_prob(y0[idx])
            frozen = frozen.index_put((idx,), nll)
        return value, (weight / T) * mse + vlb_weight * weight * frozen

    @torch.no_grad()
    def bound(
        self, x0: torch.Tensor, chunk_size: Optional[int] = None, estimator: str = "kl"
    ) -> DiffusionBound:
        r"""The full variational bound per data point, all T terms (vectorized over t).

        Two unbiased estimators of the same bound, both with T network calls batched over t:

        - ``estimator="kl"`` (default): each :math:`L_{t-1}` is the closed-form KL at one draw
          :math:`x_t\sim q(x_t\mid x_0)` (independent across t) and :math:`L_T` is exact;
          ``terms`` column 0 is :math:`L_0`, column s is :math:`L_s`, column T is :math:`L_T`.
        - ``estimator="trajectory"``: one joint draw of the forward chain, i.e. exactly one
          ``Trace_ELBO`` particle of :meth:`model`/:meth:`guide`, vectorized; column
          :math:`s<T` is :math:`\log q(x_{s+1}\mid x_s) - \log p(x_s\mid x_{s+1})` and
          column T is :math:`-\log p(x_T)`.

        Their variances differ: along one joint trajectory the log-ratios largely cancel once
        the model is trained, while independent KL terms do not (2-D data, T=100, trained
        TimeMLP: per-point variance 0.10 for ``"trajectory"`` vs 2.6 for ``"kl"``); the KL
        form gives the per-term breakdown of the bound.

        :param x0: data ``(N, *event_shape)``.
        :param chunk_size: number of time steps evaluated per network call (default: about
            1024 network inputs per call).
        :param str estimator: ``"kl"`` or ``"trajectory"``.
        :returns: :class:`~pyro_deepgen.models.diffusion.DiffusionBound` with ``nats`` = lower bound on
            :math:`\log p(x_0)`,
            ``bits_per_dim`` = :math:`-\mathrm{nats}/(D\log 2)` and ``terms`` ``(N, T+1)``
            whose rows sum to ``-nats``.
        """
        if estimator not in ("kl", "trajectory"):
            raise ValueError(f"estimator={estimator!r}; use 'kl' or 'trajectory'")
        y0 = self.to_chain(x0)
        coefs = self.coefficients()
        n, T = len(y0), self.num_steps
        if chunk_size is None:
            chunk_size = max(1, 1024 // max(n, 1))
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        terms = y0.new_zeros(n, T + 1)
        y_prev = y0
        for start in range(1, T + 1, chunk_size):
            steps = torch.arange(start, min(start + chunk_size, T + 1), device=y0.device)
            k = len(steps)
            t = steps.repeat_interleave(n)
            if estimator == "kl":
                term, *_ = self._step_terms(y0.repeat(k, *([1] * self.event_dim)), t, coefs)
            else:
                prevs, currents = [], []
                for step in steps.tolist():  # the forward chain, one cheap step at a time
                    y_t = (coefs["alphas"][step].sqrt() * y_prev
                           + coefs["betas"][step].sqrt() * torch.randn_like(y_prev))
                    prevs.append(y_prev)
                    currents.append(y_t)
                    y_prev = y_t
                term = self._log_ratio_terms(torch.cat(prevs), torch.cat(currents), t, coefs,
                                             y0.repeat(k, *([1] * self.event_dim)))
            terms[:, steps - 1] = term.reshape(k, n).T
        if estimator == "kl":
            terms[:, T] = self._prior_kl(y0, coefs)
        else:
            prior = dist.Normal(torch.zeros_like(y_prev), 1.0).to_event(self.event_dim)
            terms[:, T] = -prior.log_prob(y_prev)
        nats = -terms.sum(-1)
        return DiffusionBound(nats, -nats / (self.num_dims * math.log(2)), terms)

    def _log_ratio_terms(self, y_prev, y_t, t, coefs, y0):
        """log q(x_t | x_{t-1}) - log p(x_{t-1} | x_t) (the decoder of x_0 at t = 1)."""
        mean, log_var, _ = self._p_mean_variance(y_t, t, coefs)
        at = lambda key: self._at(coefs[key], t)  # noqa: E731
        log_q = dist.Normal(at("alphas").sqrt() * y_prev, at("betas").sqrt().expand_as(y_t))
        log_q = log_q.to_event(self.event_dim).log_prob(y_t)
        kernel = dist.Normal(mean, torch.exp(0.5 * log_var)).to_event(self.event_dim)
        log_p = kernel.log_prob(y_prev)
        first = t == 1
        if bool(first.any()):
            idx = first.nonzero().squeeze(-1)
            log_p = log_p.index_put((idx,), self.decoder(mean[idx], log_var[idx]).log_prob(y0[idx]))
        return log_q - log_p

    # -- Pyro programs --------------------------------------------------------------------------
    def model(self, x0: torch.Tensor, num_data: Optional[int] = None) -> None:
        r"""The reverse chain :math:`p(x_T)\prod_t p(x_{t-1}\mid x_t)`: sites ``"x_T"`` ...
        ``"x_1"`` and the observed ``"x_0"`` (chain coordinates) inside
        ``pyro.plate("data")``; ``num_data`` marks ``x0`` as a minibatch."""
        y0 = self.to_chain(x0)
        coefs = self.coefficients()
        n, T = len(y0), self.num_steps
        with data_plate(y0, num_data):
            zero = torch.zeros_like(y0)
            y = pyro.sample(f"x_{T}", dist.Normal(zero, 1.0 + zero).to_event(self.event_dim))
            for t in range(T, 0, -1):
                mean, log_var, _ = self._p_mean_variance(y, self._steps(t, n, y0), coefs)
                if t > 1:
                    kernel = dist.Normal(mean, torch.exp(0.5 * log_var)).to_event(self.event_dim)
                    y = pyro.sample(f"x_{t - 1}", kernel)
                else:
                    pyro.sample("x_0", self.decoder(mean, log_var), obs=y0)

    def guide(self, x0: torch.Tensor, num_data: Optional[int] = None) -> None:
        r"""The forward chain :math:`\prod_t q(x_t\mid x_{t-1})`: sites ``"x_1"`` ... ``"x_T"``."""
        y = self.to_chain(x0)
        coefs = self.coefficients()
        with data_plate(y, num_data):
            for t in range(1, self.num_steps + 1):
                loc = coefs["alphas"][t].sqrt() * y
                scale = coefs["betas"][t].sqrt().expand_as(y)
                y = pyro.sample(f"x_{t}", dist.Normal(loc, scale).to_event(self.event_dim))

    # -- sampling ------------------------------------------------------------------------------
    def _reverse_chain(self, n, coefs, clip, bar, known=None, mask=None, record=False):
        ref = coefs["betas"]
        y = torch.randn(n, *self.event_shape, device=ref.device, dtype=ref.dtype)
        T = self.num_steps
        if mask is not None:
            y = torch.where(mask, self._q_sample(known, self._steps(T, n, y), coefs), y)
        path = [y] if record else None
        for t in range(T, 0, -1):
            steps = self._steps(t, n, y)
            mean, log_var, _ = self._p_mean_variance(y, steps, coefs, clip)
            y = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean) if t > 1 else mean
            if mask is not None:
                fixed = self._q_sample(known, self._steps(t - 1, n, y), coefs) if t > 1 else known
                y = torch.where(mask, fixed, y)
            if record:
                path.append(y)
            bar.update(1)
        return y, (torch.stack(path[::-1]) if record else None)

    def _batches(self, n: int, batch_size: Optional[int], desc: str, progress: bool):
        batch_size = n if batch_size is None else int(batch_size)
        if n < 1 or batch_size < 1:
            raise ValueError(
                f"need a positive number of samples and batch_size, got {n}, {batch_size}"
            )
        starts = range(0, n, batch_size)
        bar = tqdm(total=len(starts) * self.num_steps, desc=desc, disable=not progress, leave=False)
        return [(s, min(s + batch_size, n)) for s in starts], bar

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        batch_size: Optional[int] = None,
        progress: bool = True,
        trajectory: bool = False,
        clip_denoised: Optional[bool] = None,
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        r"""Ancestral sampling :math:`x_T\sim\mathcal N(0,I)`,
        :math:`x_{t-1}\sim p(x_{t-1}\mid x_t)`,
        and :math:`x_0` = the mean of :math:`p(x_0\mid x_1)` (noise-free last step, as Ho et al.).

        Runs in batches of ``batch_size`` (default: all at once) on the module's device with a
        tqdm progress bar over time steps.

        :param bool clip_denoised: clip the implied prediction of :math:`x_0` to [-1, 1] at
            each step (default: True for discrete data, False otherwise).
        :param bool trajectory: also return the whole chain ``(T + 1, N, *event_shape)`` in
            chain coordinates, entry t being :math:`x_t`.
        :returns: samples ``(N, *event_shape)`` in data coordinates (discrete: on the grid).
        """
        clip = self.data == "discrete" if clip_denoised is None else bool(clip_denoised)
        coefs = self.coefficients()
        batches, bar = self._batches(int(num_samples), batch_size, "diffusion sampling", progress)
        outs, paths = [], []
        with bar:
            for start, stop in batches:
                y, path = self._reverse_chain(stop - start, coefs, clip, bar, record=trajectory)
                outs.append(self.to_data(y))
                paths.append(path)
        samples = torch.cat(outs)
        return (samples, torch.cat(paths, dim=1)) if trajectory else samples

    @torch.no_grad()
    def inpaint(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        batch_size: Optional[int] = None,
        progress: bool = True,
        clip_denoised: Optional[bool] = None,
    ) -> torch.Tensor:
        r"""Fill in the unknown entries of ``x`` by the reverse chain constrained to the known ones.

        At every step the known entries of :math:`x_t` are replaced by a draw of
        :math:`q(x_t\mid x_0^{\text{known}})` (the forward-noised known values), and at t=0 by
        the known values themselves, so the known pixels of the result equal ``x`` exactly.
        (Exact Pyro conditioning of :meth:`model` on part of :math:`x_0` would need posterior
        inference over the whole chain; this is the replacement scheme of Sohl-Dickstein et
        al.'s inpainting figure without their perturbed kernels.)

        :param x: ``(N, *event_shape)`` data coordinates; only the known entries are read.
        :param mask: bool tensor broadcastable to ``x``, True where the value is known.
        :returns: ``(N, *event_shape)`` in data coordinates.
        """
        self._check_shape(x, "x")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError("mask must be a bool tensor, True where x is known")
        try:
            mask = mask.to(x.device).expand_as(x)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(x.shape)}"
            )
        known = self.to_chain(x, known=mask)
        clip = self.data == "discrete" if clip_denoised is None else bool(clip_denoised)
        coefs = self.coefficients()
        batches, bar = self._batches(len(x), batch_size, "diffusion inpainting", progress)
        outs = []
        with bar:
            for start, stop in batches:
                y, _ = self._reverse_chain(stop - start, coefs, clip, bar,
                                           known=known[start:stop], mask=mask[start:stop])
                outs.append(self.to_data(y))
        return torch.where(mask, x, torch.cat(outs))
