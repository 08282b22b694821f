r"""Fast samplers and the exact likelihood of diffusion models: DDIM and the probability-flow ODE.

Two kinds of model are accepted:

- a discrete-time :class:`~pyro_deepgen.models.GaussianDiffusion` (its :math:`\bar\alpha_t` grid,
  chain coordinates :math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon`);
- a continuous-time variance-preserving model meeting this **protocol**:

  * ``model.gamma(t)``: :math:`\gamma(t) = -\log\mathrm{SNR}(t)` for ``t`` of shape ``(B,)`` in
    [0, 1], increasing, differentiable in ``t`` (by autograd; else a central difference is used);
    :math:`\alpha_t^2 = \mathrm{sigmoid}(-\gamma(t))`, :math:`\sigma_t^2 = \mathrm{sigmoid}(\gamma(t))`,
    :math:`z_t = \alpha_t x + \sigma_t\epsilon`;
  * ``model.predict_eps(z, t)``: the noise prediction :math:`\hat\epsilon(z_t, t)`, ``z`` of shape
    ``(B, *data_shape)``, each row depending on its own row of ``z`` only;
  * ``model.data_shape``: the shape of one point;
  * ``model.decode(z0)``: :math:`z_0` to data values (for samples);
  * optionally ``model.encode(x)`` (or ``model.to_chain(x)``): data values to the clean latent
    :math:`x` of :math:`z_t = \alpha_t x + \sigma_t\epsilon` (used by :func:`inpaint` and
    :func:`dequantized_log_likelihood`; the identity if absent).

  ``pyro_deepgen.models.vdm.VariationalDiffusion`` implements it (Kingma et al. 2021).

Functions: :func:`ddim_sample` (both kinds); :func:`ode_sample`, :func:`ode_log_likelihood`,
:func:`dequantized_log_likelihood` and :func:`ode_variational_bound` (continuous time);
:func:`inpaint` (DDIM or ODE with the known entries replaced by their forward-noised values at
every step); :func:`hutchinson_trace`.

**References**: [1] J. Song, C. Meng, S. Ermon, *Denoising Diffusion Implicit Models*,
arXiv:2010.02502. [2] Y. Song, J. Sohl-Dickstein, D. Kingma, A. Kumar, S. Ermon, B. Poole,
*Score-Based Generative Modeling through Stochastic Differential Equations*, arXiv:2011.13456.
[3] W. Grathwohl, R. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud, *FFJORD: Free-form
Continuous Dynamics for Scalable Reversible Generative Models*, arXiv:1810.01367.
[4] D. Kingma, T. Salimans, B. Poole, J. Ho, *Variational Diffusion Models*, arXiv:2107.00630.
"""
import math
from typing import Any, Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._checks import one_of, positive_int
from .diffusion import GaussianDiffusion

#: The integrators of the probability-flow ODE (fixed steps, uniform in t).
ODE_METHODS = ("rk4", "heun", "euler")
#: The samplers of :func:`inpaint`.
SAMPLERS = ("ddim", "ode")
PROTOCOL = ("gamma", "predict_eps", "data_shape", "decode")


def _is_discrete(model: Any) -> bool:
    if isinstance(model, GaussianDiffusion):
        return True
    missing = [name for name in PROTOCOL if not hasattr(model, name)]
    if missing:
        raise TypeError(
            f"model must be a GaussianDiffusion or a continuous-time model with gamma(t), "
            f"predict_eps(z, t), data_shape and decode(z0); {type(model).__name__} lacks "
            f"{', '.join(missing)}"
        )
    return False


def _continuous(model: Any, what: str) -> None:
    if _is_discrete(model):
        raise ValueError(
            f"{what} needs a continuous-time model (gamma(t), predict_eps(z, t), data_shape, "
            "decode); a discrete-time GaussianDiffusion has no probability-flow ODE here: use "
            "ddim_sample or train with the vdm objective"
        )


def _reference(model: Any) -> torch.Tensor:
    """A tensor with the model's device and floating dtype (a parameter or buffer)."""
    tensors = list(model.parameters()) + list(model.buffers()) if hasattr(model, "parameters") else []
    for tensor in tensors:
        if tensor.is_floating_point():
            return tensor
    return torch.zeros(())


def _batches(n: int, batch_size: Optional[int]):
    n = positive_int(n, "num_samples")
    size = n if batch_size is None else positive_int(batch_size, "batch_size")
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def ddim_timesteps(num_train_steps: int, num_steps: int) -> torch.Tensor:
    r"""The strided subsequence :math:`1 \le \tau_1 < \dots < \tau_S = T` of the training steps
    that DDIM visits: :math:`\tau_i = \mathrm{round}(1 + (i-1)(T-1)/(S-1))` (``num_steps`` = S
    <= T; S = T gives every step, S = 1 the single step T)."""
    T, S = positive_int(num_train_steps, "num_train_steps"), positive_int(num_steps, "num_steps")
    if S > T:
        raise ValueError(f"num_steps={S} exceeds the model's {T} steps; use at most {T}")
    if S == 1:
        return torch.tensor([T])
    taus = torch.floor(torch.linspace(1, T, S, dtype=torch.float64) + 0.5).long()
    assert bool((taus[1:] > taus[:-1]).all()) and taus[-1] == T
    return taus


def _vp(gamma: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """alpha, sigma and log alpha^2 of a variance-preserving process at -log SNR gamma."""
    return torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt(), F.logsigmoid(-gamma)


def _gamma(model: Any, t: float, ref: torch.Tensor) -> torch.Tensor:
    t = min(max(float(t), 0.0), 1.0)
    g = model.gamma(torch.full((1,), float(t), device=ref.device, dtype=ref.dtype))
    return g.reshape(()).to(ref.dtype)


def _gamma_and_derivative(model: Any, t: float, ref: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\gamma(t)` and :math:`\gamma'(t)` (autograd; a central difference if ``gamma``
    is not differentiable by autograd)."""
    t = min(max(float(t), 0.0), 1.0)
    with torch.enable_grad():
        tt = torch.full((1,), t, device=ref.device, dtype=ref.dtype, requires_grad=True)
        g = model.gamma(tt).reshape(())
        if g.requires_grad:
            (dg,) = torch.autograd.grad(g, tt, allow_unused=True)
            if dg is not None:
                return g.detach().to(ref.dtype), dg.reshape(()).to(ref.dtype)
    h = 1e-4
    lo, hi = max(t - h, 0.0), min(t + h, 1.0)
    with torch.no_grad():
        dg = (_gamma(model, hi, ref) - _gamma(model, lo, ref)) / (hi - lo)
    return g.detach().to(ref.dtype), dg


# -- DDIM -------------------------------------------------------------------------------------
@torch.no_grad()
def ddim_sample(
    model: Any,
    num_samples: int,
    num_steps: int,
    eta: float = 0.0,
    batch_size: Optional[int] = None,
    progress: bool = False,
    clip_denoised: Optional[bool] = None,
) -> torch.Tensor:
    r"""DDIM sampling (Song, Meng & Ermon 2021) on ``num_steps`` steps.

    On a decreasing grid of noise levels :math:`t_S > \dots > t_1 > t_0` (a
    :class:`~pyro_deepgen.models.GaussianDiffusion`: the strided training steps
    :func:`ddim_timesteps` and :math:`t_0 = 0`, :math:`\bar\alpha_0 = 1`; a continuous-time
    model: :math:`t_i = i/S`, :math:`\bar\alpha = \alpha_t^2`), starting from
    :math:`x_{t_S}\sim\mathcal N(0, I)`, each step from t to s is

    .. math::

        x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1-\bar\alpha_s-c^2}\;\hat\epsilon + c\,\xi,
        \quad c = \eta\sqrt{\frac{1-\bar\alpha_s}{1-\bar\alpha_t}
        \Big(1-\frac{\bar\alpha_t}{\bar\alpha_s}\Big)},\ \xi\sim\mathcal N(0, I),

    with the model's predictions :math:`(\hat x_0, \hat\epsilon)` at :math:`x_t`. Limiting
    cases: ``eta=0`` is deterministic given :math:`x_{t_S}` (the exponential-integrator
    discretization of the probability-flow ODE, which it approaches as S grows); ``eta=1`` with
    every step (S = T) is ancestral sampling with the reverse variance
    :math:`\tilde\beta_t` (``var_type="fixed_small"``; draw for draw the same chain as
    :meth:`GaussianDiffusion.sample <pyro_deepgen.models.GaussianDiffusion.sample>` under the
    same seed); for a continuous-time model ``eta=1`` is the ancestral sampler
    :math:`z_s \sim q(z_s\mid z_t, x=\hat x_0)` of Kingma et al. A GaussianDiffusion's last step
    (s = 0) returns :math:`\hat x_0`; a continuous-time model's returns ``model.decode`` of
    :math:`z_0`.

    :param model: a GaussianDiffusion or a continuous-time model (module docstring).
    :param int num_samples: number of samples N.
    :param int num_steps: S, network calls per sample (<= T for a GaussianDiffusion).
    :param float eta: :math:`\eta \ge 0` (default 0).
    :param batch_size: samples per batch (default all).
    :param clip_denoised: clip :math:`\hat x_0` to [-1, 1] (GaussianDiffusion only; default:
        True for discrete data, as its ancestral sampler).
    :returns: ``(N, *event_shape)`` samples in data coordinates (GaussianDiffusion: on the pixel
        grid for discrete data).
    """
    return _ddim(model, num_samples, num_steps, eta, batch_size, progress, clip_denoised)


def _check_eta(eta: float) -> float:
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 0 or math.isinf(eta):
        raise ValueError(f"eta must be a finite number >= 0 (0: deterministic DDIM, 1: ancestral), got {eta!r}")
    return float(eta)


def _ddim(model, num_samples, num_steps, eta, batch_size, progress, clip_denoised, x=None, mask=None):
    eta = _check_eta(eta)
    discrete = _is_discrete(model)
    batches = _batches(len(x) if x is not None else num_samples, batch_size)
    if discrete:
        taus = ddim_timesteps(model.num_steps, num_steps)
        clip = model.data == "discrete" if clip_denoised is None else bool(clip_denoised)
        known = model.to_chain(x, known=mask) if x is not None else None
    else:
        num_steps = positive_int(num_steps, "num_steps")
        known = _to_chain(model, x).to(_reference(model)) if x is not None else None
    outs = []
    total = len(batches) * (len(taus) if discrete else num_steps)
    with tqdm(total=total, desc="DDIM sampling", disable=not progress, leave=False) as bar:
        for a, b in batches:
            part = () if x is None else (known[a:b], mask[a:b])
            if discrete:
                outs.append(_ddim_discrete(model, b - a, taus, eta, clip, bar, *part))
            else:
                outs.append(_ddim_continuous(model, b - a, num_steps, eta, bar, *part))
    out = torch.cat(outs)
    if x is not None and (discrete or _data_coordinates(model)):
        out = torch.where(mask, x, out)  # the known entries exactly, in data coordinates
    return out


def _ddim_discrete(model, n, taus, eta, clip, bar, known=None, mask=None):
    coefs = model.coefficients()
    ab = coefs["alpha_bar"]
    y = torch.randn(n, *model.event_shape, device=ab.device, dtype=ab.dtype)
    if mask is not None:
        y = torch.where(mask, model._q_sample(known, model._steps(int(taus[-1]), n, y), coefs), y)
    for i in range(len(taus) - 1, -1, -1):
        t, s = int(taus[i]), (int(taus[i - 1]) if i > 0 else 0)
        x0_hat, eps_hat = model._predict_x0_eps(y, model._steps(t, n, y), coefs, clip)
        c2 = eta**2 * (1 - ab[s]) / (1 - ab[t]) * (1 - ab[t] / ab[s])
        y = ab[s].sqrt() * x0_hat + (1 - ab[s] - c2).clamp(min=0).sqrt() * eps_hat
        if eta > 0 and s > 0:
            y = y + c2.sqrt() * torch.randn_like(y)
        if mask is not None:
            fixed = model._q_sample(known, model._steps(s, n, y), coefs) if s > 0 else known
            y = torch.where(mask, fixed, y)
        bar.update(1)
    return model.to_data(y)


def _ddim_continuous(model, n, num_steps, eta, bar, known=None, mask=None):
    ref = _reference(model)
    z = torch.randn(n, *model.data_shape, device=ref.device, dtype=ref.dtype)
    grid = torch.linspace(1, 0, num_steps + 1, dtype=torch.float64).tolist()
    if mask is not None:
        z = torch.where(mask, _noised(model, known, grid[0], ref), z)
    for t, s in zip(grid[:-1], grid[1:]):
        alpha_t, sigma_t, log_a2_t = _vp(_gamma(model, t, ref))
        alpha_s, sigma_s, log_a2_s = _vp(_gamma(model, s, ref))
        eps_hat = model.predict_eps(z, torch.full((n,), t, device=ref.device, dtype=ref.dtype))
        x_hat = (z - sigma_t * eps_hat) / alpha_t
        c2 = eta**2 * sigma_s**2 / sigma_t**2 * -torch.expm1(log_a2_t - log_a2_s)
        z = alpha_s * x_hat + (sigma_s**2 - c2).clamp(min=0).sqrt() * eps_hat
        if eta > 0:
            z = z + c2.sqrt() * torch.randn_like(z)
        if mask is not None:
            z = torch.where(mask, _noised(model, known, s, ref) if s > 0 else known, z)
        bar.update(1)
    return model.decode(z)


def _data_coordinates(model: Any) -> bool:
    return hasattr(model, "encode") or hasattr(model, "to_chain")


def _to_chain(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Data to the clean latent of z_t = alpha_t x + sigma_t eps: ``encode``, else ``to_chain``,
    else the identity."""
    if hasattr(model, "encode"):
        return model.encode(x)
    return model.to_chain(x) if hasattr(model, "to_chain") else x


def _noised(model, known, t, ref, noise=None):
    """A draw of q(z_t | x) for the known clean values (the fixed ``noise`` if given)."""
    alpha, sigma, _ = _vp(_gamma(model, t, ref))
    return alpha * known + sigma * (torch.randn_like(known) if noise is None else noise)


# -- the probability-flow ODE ------------------------------------------------------------------
def hutchinson_trace(
    fn: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    probes: Optional[torch.Tensor] = None,
    exact: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""``(fn(z), tr J)`` per row, with :math:`J = \partial\,\mathrm{fn}(z)_n/\partial z_n` the
    Jacobian of row n (``fn`` acts on each row separately).

    Hutchinson's estimator :math:`\widehat{\mathrm{tr}} = \frac1K\sum_k v_k^\top J v_k` with
    Rademacher probes :math:`v_k` (``probes`` ``(K, *z.shape)``, entries :math:`\pm1`) is unbiased,
    :math:`\mathbb E_v[v^\top J v] = \mathrm{tr} J`, with variance
    :math:`\frac2K\sum_{i\ne j}\tfrac14(J_{ij}+J_{ji})^2` (0 for a diagonal J). Each
    :math:`v^\top J` is one vector-Jacobian product. ``exact=True`` sums the D diagonal entries
    by D products instead (small D only).
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        out = fn(z)
        dims = tuple(range(1, z.dim()))
        if exact:
            num = z[0].numel()
            flat = torch.zeros(z.shape[0], num, device=z.device, dtype=z.dtype)
            trace = z.new_zeros(z.shape[0])
            for i in range(num):
                basis = flat.clone()
                basis[:, i] = 1
                basis = basis.reshape(z.shape)
                (row,) = torch.autograd.grad(out, z, basis, retain_graph=i < num - 1)
                trace = trace + (row * basis).sum(dims)
        else:
            if probes is None:
                raise ValueError("hutchinson_trace needs probes (K, *z.shape) or exact=True")
            trace = z.new_zeros(z.shape[0])
            for k, v in enumerate(probes):
                (vjp,) = torch.autograd.grad(out, z, v, retain_graph=k < len(probes) - 1)
                trace = trace + (vjp * v).sum(dims)
            trace = trace / len(probes)
    return out.detach(), trace.detach()


def _drift(model, z, t, ref, divergence=False, probes=None, exact=False):
    r"""Probability-flow drift :math:`f = \tfrac12\gamma'(t)(\sigma_t\hat\epsilon - \sigma_t^2 z)`
    and (if asked) its divergence."""
    t = min(max(float(t), 0.0), 1.0)
    g, dg = _gamma_and_derivative(model, t, ref)
    sigma2 = torch.sigmoid(g)
    sigma = sigma2.sqrt()
    times = torch.full((len(z),), float(t), device=ref.device, dtype=ref.dtype)
    eps_fn = lambda u: model.predict_eps(u, times)  # noqa: E731
    if not divergence:
        with torch.no_grad():
            return 0.5 * dg * (sigma * eps_fn(z) - sigma2 * z), None
    eps_hat, trace = hutchinson_trace(eps_fn, z, probes, exact)
    dims = z[0].numel()
    return 0.5 * dg * (sigma * eps_hat - sigma2 * z), 0.5 * dg * (sigma * trace - sigma2 * dims)


def _integrate(model, z, t0, t1, num_steps, method, ref, divergence=False, probes=None, exact=False, bar=None,
               known=None, mask=None, noise=None):
    """Fixed-step integration of (z, int div f dt) from t0 to t1."""
    h = (t1 - t0) / num_steps
    total = z.new_zeros(len(z))
    for i in range(num_steps):
        t = t0 + (t1 - t0) * i / num_steps
        f = lambda u, s: _drift(model, u, s, ref, divergence, probes, exact)  # noqa: E731
        k1, d1 = f(z, t)
        if method == "euler":
            dz, dd = k1, d1
        elif method == "heun":
            k2, d2 = f(z + h * k1, t + h)
            dz = (k1 + k2) / 2
            dd = (d1 + d2) / 2 if divergence else None
        else:
            k2, d2 = f(z + h / 2 * k1, t + h / 2)
            k3, d3 = f(z + h / 2 * k2, t + h / 2)
            k4, d4 = f(z + h * k3, t + h)
            dz = (k1 + 2 * k2 + 2 * k3 + k4) / 6
            dd = (d1 + 2 * d2 + 2 * d3 + d4) / 6 if divergence else None
        z = z + h * dz
        if divergence:
            total = total + h * dd
        if mask is not None:
            z = torch.where(mask, _noised(model, known, t + h, ref, noise), z)
        if bar is not None:
            bar.update(1)
    return z, total


def _check_ode(model, num_steps, method, what):
    _continuous(model, what)
    one_of(method, "method", ODE_METHODS)
    return positive_int(num_steps, "num_steps")


@torch.no_grad()
def ode_sample(
    model: Any,
    num_samples: int,
    num_steps: int,
    method: str = "rk4",
    batch_size: Optional[int] = None,
    progress: bool = False,
) -> torch.Tensor:
    r"""Samples by the probability-flow ODE of a continuous-time VP model (Song et al. 2021).

    The forward SDE with :math:`\alpha_t^2 = \mathrm{sigmoid}(-\gamma(t))` has drift
    :math:`-\tfrac12\beta(t)z`, :math:`\beta(t) = \sigma_t^2\gamma'(t)`, and the ODE with the same
    marginals, with the score :math:`-\hat\epsilon/\sigma_t`, is

    .. math:: \frac{dz}{dt} = f(z, t) = \tfrac12\gamma'(t)\big(\sigma_t\hat\epsilon(z,t)
        - \sigma_t^2 z\big),

    integrated from :math:`z_1\sim\mathcal N(0, I)` at t = 1 to t = 0 with ``num_steps`` fixed
    steps uniform in t (``method``: ``"rk4"`` (default, 4 network calls a step), ``"heun"`` (2),
    ``"euler"`` (1)); the result is ``model.decode(z_0)``. Deterministic given :math:`z_1`. With
    the exact :math:`\epsilon`-predictor of the data the samples have the data's distribution up
    to the prior mismatch :math:`q(z_1) \ne \mathcal N(0, I)` and the step error
    (:math:`O(h^4)` for RK4).

    :returns: ``(N, *data_shape)`` decoded samples.
    """
    num_steps = _check_ode(model, num_steps, method, "ode_sample")
    ref = _reference(model)
    batches = _batches(num_samples, batch_size)
    outs = []
    with tqdm(total=len(batches) * num_steps, desc="ODE sampling", disable=not progress, leave=False) as bar:
        for a, b in batches:
            z = torch.randn(b - a, *model.data_shape, device=ref.device, dtype=ref.dtype)
            z, _ = _integrate(model, z, 1.0, 0.0, num_steps, method, ref, bar=bar)
            outs.append(model.decode(z))
    return torch.cat(outs)


@torch.no_grad()
def ode_log_likelihood(
    model: Any,
    x: torch.Tensor,
    num_steps: int,
    num_probes: int = 1,
    exact_trace: bool = False,
    method: str = "rk4",
    batch_size: Optional[int] = None,
    progress: bool = False,
) -> torch.Tensor:
    r"""The log-density of the probability-flow ODE's model at ``x`` by the instantaneous change
    of variables (Chen et al. 2018; FFJORD; Song et al. 2021).

    ``x`` is a point :math:`z_0` at t = 0 in the model's latent coordinates (for a model with
    ``encode``, apply it first, or use :func:`dequantized_log_likelihood`; with
    :math:`\sigma_0\approx 0` these are the data coordinates). Integrating
    :math:`dz/dt = f(z, t)` (see :func:`ode_sample`) from t = 0 to 1,

    .. math:: \log p_0(z_0) = \log\mathcal N(z_1; 0, I) + \int_0^1 \nabla\cdot f(z_t, t)\,dt,
        \qquad \nabla\cdot f = \tfrac12\gamma'(t)\big(\sigma_t\,\mathrm{tr}\,
        \partial_z\hat\epsilon - \sigma_t^2 D\big),

    with the trace by Hutchinson's estimator (``num_probes`` Rademacher probes per point, drawn
    once and kept along the trajectory, as FFJORD; unbiased for the integral because the path
    of z does not depend on the probes), or exactly (``exact_trace=True``: D
    vector-Jacobian products per evaluation, for small D). This is an exact likelihood of a
    continuous density (up to the integrator's step error), not a bound. For discrete data
    dequantize: :math:`\log P(k) \ge \mathbb E_u \log p_0(y_k + \Delta u) + D\log\Delta` for
    cells of width :math:`\Delta` (Theis et al. 2016).

    :param x: ``(N, *data_shape)``.
    :param int num_steps: fixed integration steps in t.
    :param int num_probes: Rademacher probes per point (default 1).
    :returns: ``(N,)`` log-densities in nats.
    """
    num_steps = _check_ode(model, num_steps, method, "ode_log_likelihood")
    num_probes = positive_int(num_probes, "num_probes")
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != tuple(model.data_shape):
        raise ValueError(
            f"x must be a tensor of shape (N, {', '.join(map(str, model.data_shape))}), got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    ref = _reference(model)
    x = x.to(device=ref.device, dtype=ref.dtype)
    outs = []
    batches = _batches(len(x), batch_size)
    with tqdm(total=len(batches) * num_steps, desc="ODE likelihood", disable=not progress, leave=False) as bar:
        for a, b in batches:
            z = x[a:b]
            probes = None
            if not exact_trace:
                probes = torch.randint(0, 2, (num_probes, *z.shape), device=z.device).to(z.dtype) * 2 - 1
            z1, integral = _integrate(model, z, 0.0, 1.0, num_steps, method, ref, divergence=True,
                                      probes=probes, exact=exact_trace, bar=bar)
            prior = -0.5 * (z1.pow(2) + math.log(2 * math.pi)).reshape(len(z1), -1).sum(-1)
            outs.append(prior + integral)
    return torch.cat(outs)


@torch.no_grad()
def dequantized_log_likelihood(
    model: Any,
    x: torch.Tensor,
    bin_width: float,
    num_steps: int,
    num_probes: int = 1,
    exact_trace: bool = False,
    method: str = "rk4",
    batch_size: Optional[int] = None,
    progress: bool = False,
) -> torch.Tensor:
    r"""A lower bound on the log-probability of discrete data under the probability-flow ODE's
    density, by uniform dequantization (Theis et al. 2016; as for RealNVP and FFJORD).

    A data point of grid cell k has the cell centre :math:`f_k` = ``model.encode(x)`` (the
    identity without ``encode``) of width :math:`w` = ``bin_width`` in the clean latent
    coordinates (``VariationalDiffusion``: :math:`2/L`); at t = 0 the latent is
    :math:`z_0 = \alpha_0 f + \sigma_0\epsilon`, so the cell is scaled by
    :math:`\alpha_0 = \mathrm{sigmoid}(-\gamma(0))^{1/2}`. By Jensen's inequality

    .. math:: \log P(k) = \log\int_{\text{cell}} p_0(z)\,dz
        \ge \mathbb E_{u\sim U(0,1)^D}\log p_0\big(\alpha_0(f_k + w(u - \tfrac12))\big)
        + D\log(\alpha_0 w),

    estimated with one u per point (an unbiased estimate of the bound; the Hutchinson probes add
    unbiased noise). It is a bound for the discretized ODE model, a different model from the
    diffusion's variational bound (which bounds the model with the discrete decoder); the two
    are usually close. In bits per dimension: :math:`-\text{nats}/(D\log 2)`.

    :param x: ``(N, *data_shape)`` data on the grid.
    :param float bin_width: w > 0.
    :returns: ``(N,)`` lower-bound estimates in nats.
    """
    _continuous(model, "dequantized_log_likelihood")
    if isinstance(bin_width, bool) or not isinstance(bin_width, (int, float)) or not 0 < bin_width < math.inf:
        raise ValueError(f"bin_width must be a positive number (the width of a grid cell in the latent "
                         f"coordinates, 2/L for L levels), got {bin_width!r}")
    ref = _reference(model)
    centres = _to_chain(model, x).to(device=ref.device, dtype=ref.dtype)
    alpha_0, _, _ = _vp(_gamma(model, 0.0, ref))
    z0 = alpha_0 * (centres + bin_width * (torch.rand_like(centres) - 0.5))
    log_p = ode_log_likelihood(model, z0, num_steps, num_probes=num_probes, exact_trace=exact_trace,
                               method=method, batch_size=batch_size, progress=progress)
    return log_p + centres[0].numel() * torch.log(alpha_0 * bin_width)


@torch.no_grad()
def ode_variational_bound(
    model: Any,
    x: torch.Tensor,
    num_steps: int,
    num_probes: int = 1,
    exact_trace: bool = False,
    method: str = "rk4",
    batch_size: Optional[int] = None,
    progress: bool = False,
) -> torch.Tensor:
    r"""A lower bound on the log-probability of discrete data under the ODE's density as the prior
    of :math:`z_0`, with the model's own encoder :math:`q(z_0\mid x)` and decoder
    :math:`p(x\mid z_0)` (variational dequantization; Ho et al. 2019, Kingma et al. 2021):

    .. math:: \log P(x) = \log\int p(x\mid z_0)\,p_0(z_0)\,dz_0 \ge
        \mathbb E_{q(z_0\mid x)}\big[\log p(x\mid z_0) + \log p_0(z_0) - \log q(z_0\mid x)\big],

    :math:`q(z_0\mid x) = \mathcal N(\alpha_0 f, \sigma_0^2 I)` with :math:`f` =
    ``model.encode(x)``, :math:`p_0` the probability-flow density (:func:`ode_log_likelihood`) and
    :math:`-\log p(x\mid z_0)` = ``model.reconstruction(x, noise)`` at
    :math:`z_0 = \alpha_0 f + \sigma_0\epsilon`, ``noise`` = :math:`\epsilon`. One draw of
    :math:`\epsilon` per point (an unbiased estimate of the bound). Use this, not
    :func:`dequantized_log_likelihood`, for a model trained on the discrete data itself (as the
    VDM): its :math:`p_0` concentrates within :math:`\sigma_0` of the cell centres, so uniform
    dequantization over whole cells lands where :math:`p_0` is tiny.

    :param x: ``(N, *data_shape)`` data; the model needs ``encode`` and ``reconstruction``.
    :returns: ``(N,)`` lower-bound estimates in nats.
    """
    _continuous(model, "ode_variational_bound")
    if not (hasattr(model, "encode") and hasattr(model, "reconstruction")):
        raise TypeError("ode_variational_bound needs a model with encode(x) and reconstruction(x, noise) "
                        "(the encoder q(z_0 | x) and decoder p(x | z_0)); use dequantized_log_likelihood otherwise")
    ref = _reference(model)
    f = model.encode(x).to(device=ref.device, dtype=ref.dtype)
    alpha_0, sigma_0, _ = _vp(_gamma(model, 0.0, ref))
    noise = torch.randn_like(f)
    z0 = alpha_0 * f + sigma_0 * noise
    log_p = ode_log_likelihood(model, z0, num_steps, num_probes=num_probes, exact_trace=exact_trace,
                               method=method, batch_size=batch_size, progress=progress)
    log_q = (-0.5 * noise.pow(2) - 0.5 * math.log(2 * math.pi) - torch.log(sigma_0)).reshape(len(f), -1).sum(-1)
    return log_p - log_q - model.reconstruction(x, noise=noise).to(log_p)


# -- inpainting --------------------------------------------------------------------------------
@torch.no_grad()
def inpaint(
    model: Any,
    x: torch.Tensor,
    mask: torch.Tensor,
    sampler: str = "ddim",
    num_steps: int = 50,
    eta: float = 0.0,
    method: str = "rk4",
    batch_size: Optional[int] = None,
    progress: bool = False,
    clip_denoised: Optional[bool] = None,
) -> torch.Tensor:
    r"""Fill in the unknown entries of ``x`` with DDIM or the probability-flow ODE.

    As :meth:`GaussianDiffusion.inpaint <pyro_deepgen.models.GaussianDiffusion.inpaint>` does
    for ancestral sampling, after every step the known entries of the state are replaced by
    their forward-noised values, a draw of :math:`q(x_s\mid x^{\text{known}})`, and at the end
    by the known values themselves. ``sampler="ddim"`` draws fresh noise at every step;
    ``sampler="ode"`` (continuous-time models) uses one noise draw :math:`\epsilon` for the
    whole trajectory, :math:`z_s = \alpha_s x + \sigma_s\epsilon`, so that the known part moves
    smoothly as the integrator expects.

    :param x: ``(N, *shape)`` in data coordinates (GaussianDiffusion, or a continuous-time model
        with ``encode``) or the clean latent coordinates; only the known entries are read.
    :param mask: bool tensor broadcastable to ``x``, True where the value is known.
    :param str sampler: ``"ddim"`` (default) or ``"ode"``.
    :param int num_steps: sampler steps (default 50).
    :returns: ``(N, *shape)``; the known entries equal ``x`` (GaussianDiffusion or a model with
        ``encode``; else ``decode`` of the known latent values).
    """
    one_of(sampler, "sampler", SAMPLERS)
    discrete = _is_discrete(model)
    shape = tuple(model.event_shape if discrete else model.data_shape)
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != shape:
        raise ValueError(f"x must be a tensor of shape (N, {', '.join(map(str, shape))})")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError("mask must be a bool tensor, True where x is known")
    try:
        mask = mask.to(x.device).expand_as(x)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(x.shape)}")
    if sampler == "ddim":
        return _ddim(model, len(x), num_steps, eta, batch_size, progress, clip_denoised, x=x, mask=mask)
    num_steps = _check_ode(model, num_steps, method, "inpaint(sampler='ode')")
    ref = _reference(model)
    known = _to_chain(model, x).to(device=ref.device, dtype=ref.dtype)
    outs = []
    batches = _batches(len(x), batch_size)
    with tqdm(total=len(batches) * num_steps, desc="ODE inpainting", disable=not progress, leave=False) as bar:
        for a, b in batches:
            noise = torch.randn_like(known[a:b])
            z = torch.randn_like(known[a:b])
            z = torch.where(mask[a:b], _noised(model, known[a:b], 1.0, ref, noise), z)
            z, _ = _integrate(model, z, 1.0, 0.0, num_steps, method, ref, bar=bar,
                              known=known[a:b], mask=mask[a:b], noise=noise)
            outs.append(model.decode(torch.where(mask[a:b], known[a:b], z)))
    out = torch.cat(outs)
    return torch.where(mask, x, out) if _data_coordinates(model) else out
