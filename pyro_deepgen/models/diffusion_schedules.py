r"""Variance schedules :math:`\beta_1,\dots,\beta_T` of the forward process of a Gaussian diffusion.

Every schedule returns a float64 tensor of shape ``(T,)`` with :math:`0 < \beta_t \le 1`;
entry ``t - 1`` is :math:`\beta_t`. :func:`schedule_coefficients` turns it into the constants
that the closed forms of :class:`~pyro_deepgen.models.GaussianDiffusion` need.
"""
import math
from typing import Dict

import torch

from .._checks import positive_int

#: The names :func:`make_schedule` knows.
SCHEDULES = ("sohl", "linear", "cosine")


def _check_steps(num_steps: int) -> None:
    positive_int(num_steps, "num_steps")


def sohl_schedule(num_steps: int, max_beta: float = 0.999) -> torch.Tensor:
    r"""Sohl-Dickstein et al.'s schedule :math:`\beta_t = 1/(T - t + 1)`.

    It erases a constant fraction of the remaining signal per step:
    :math:`\bar\alpha_t = \prod_{s\le t}(1-\beta_s) = 1 - t/T`, so :math:`q(x_T\mid x_0)`
    is exactly :math:`\mathcal N(0, I)` when ``max_beta=1``. The default clips the last
    :math:`\beta_T = 1` to ``max_beta = 0.999`` (as Nichol & Dhariwal clip the cosine schedule)
    so that the :math:`\epsilon`-parameterization, which divides by :math:`\sqrt{1-\beta_t}`,
    stays finite.

    **Reference**: J. Sohl-Dickstein, E. Weiss, N. Maheswaranathan, S. Ganguli, *Deep
    Unsupervised Learning using Nonequilibrium Thermodynamics*, arXiv:1503.03585.
    """
    _check_steps(num_steps)
    t = torch.arange(1, num_steps + 1, dtype=torch.float64)
    return (1.0 / (num_steps - t + 1)).clamp(max=max_beta)


def linear_schedule(
    num_steps: int,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    reference_steps: int = 1000,
    max_beta: float = 0.999,
) -> torch.Tensor:
    r"""Ho et al.'s linear schedule from ``beta_start`` to ``beta_end`` over ``reference_steps``.

    For :math:`T \ne 1000` both ends are multiplied by ``reference_steps / T`` (as in Nichol &
    Dhariwal's code) so that :math:`\bar\alpha_T` is about the same for every T; with
    :math:`T=1000` this is exactly DDPM's :math:`10^{-4}\to 0.02`.

    **Reference**: J. Ho, A. Jain, P. Abbeel, *Denoising Diffusion Probabilistic Models*,
    arXiv:2006.11239.
    """
    _check_steps(num_steps)
    scale = reference_steps / num_steps
    betas = torch.linspace(beta_start * scale, beta_end * scale, num_steps, dtype=torch.float64)
    return betas.clamp(max=max_beta)


def cosine_schedule(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    r"""Nichol & Dhariwal's cosine schedule.

    .. math:: \bar\alpha_t = f(t)/f(0),\quad f(t) = \cos^2\Big(\frac{t/T + s}{1+s}\frac\pi2\Big),
        \quad \beta_t = \min(1 - \bar\alpha_t/\bar\alpha_{t-1}, \beta_{\max}).

    **Reference**: A. Nichol, P. Dhariwal, *Improved Denoising Diffusion Probabilistic Models*,
    arXiv:2102.09672.
    """
    _check_steps(num_steps)
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def make_schedule(name: str, num_steps: int) -> torch.Tensor:
    """The schedule called ``name`` (one of :data:`SCHEDULES`) with its default settings."""
    fns = {"sohl": sohl_schedule, "linear": linear_schedule, "cosine": cosine_schedule}
    if name not in fns:
        raise ValueError(f"schedule={name!r} is not known; use one of {SCHEDULES} or pass betas")
    return fns[name](num_steps)


def schedule_coefficients(betas: torch.Tensor) -> Dict[str, torch.Tensor]:
    r"""All constants of the closed forms, computed in float64, as tensors of length ``T + 1``.

    Entry ``t`` belongs to step ``t``; entry 0 is the data (:math:`\beta_0 = 0`,
    :math:`\bar\alpha_0 = 1`). With :math:`\alpha_t = 1-\beta_t` and
    :math:`\bar\alpha_t = \prod_{s\le t}\alpha_s`:

    - ``q(x_t | x_0) = N(sqrt_alpha_bar[t] x_0, one_minus_alpha_bar[t])``;
    - ``q(x_{t-1} | x_t, x_0) = N(coef_x0[t] x_0 + coef_xt[t] x_t, posterior_variance[t])`` with
      :math:`\tilde\beta_t = \beta_t(1-\bar\alpha_{t-1})/(1-\bar\alpha_t)`;
    - ``posterior_log_variance_clipped[t]`` is :math:`\log\tilde\beta_t` with the zero
      :math:`\tilde\beta_1` replaced by :math:`\tilde\beta_2` (by :math:`\beta_1` when T=1).
    """
    if betas.dim() != 1 or len(betas) < 1:
        raise ValueError(
            f"betas must be a 1-d tensor of length T >= 1, got shape {tuple(betas.shape)}"
        )
    if not bool(((betas > 0) & (betas <= 1)).all()):
        raise ValueError("every beta_t must lie in (0, 1]")
    b = torch.cat([betas.new_zeros(1), betas.double()])
    log_alpha_bar = torch.cumsum(torch.log1p(-b), 0)
    alpha_bar = log_alpha_bar.exp()
    one_minus_alpha_bar = -torch.expm1(log_alpha_bar)
    alpha_bar_prev = torch.cat([b.new_ones(1), alpha_bar[:-1]])
    one_minus_prev = torch.cat([b.new_zeros(1), one_minus_alpha_bar[:-1]])
    denom = torch.cat([b.new_ones(1), one_minus_alpha_bar[1:]])  # avoid 0/0 at t = 0
    posterior_variance = b * one_minus_prev / denom
    first = posterior_variance[2] if len(betas) > 1 else b[1]
    clipped = torch.cat([first.reshape(1), first.reshape(1), posterior_variance[2:]])
    return {
        "betas": b,
        "log_betas": torch.cat([clipped[:1], b[1:].log()]),
        "alphas": 1 - b,
        "alpha_bar": alpha_bar,
        "sqrt_alpha_bar": alpha_bar.sqrt(),
        "one_minus_alpha_bar": one_minus_alpha_bar,
        "sqrt_one_minus_alpha_bar": one_minus_alpha_bar.sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": clipped.log(),
        "coef_x0": b * alpha_bar_prev.sqrt() / denom,
        "coef_xt": (1 - b).sqrt() * one_minus_prev / denom,
    }
