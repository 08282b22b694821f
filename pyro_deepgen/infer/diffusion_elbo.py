"""The one-step closed-form training objective of a Gaussian diffusion model, as a Pyro ELBO."""
from typing import Any, Callable

import torch

from .elbo import ParticleELBO
from .util import value_with_surrogate_grad

WEIGHTINGS = ("elbo", "ddpm")


class DiffusionELBO(ParticleELBO):
    r"""Diffusion variational bound estimated with one uniformly drawn step per data point.

    For ``model=diffusion.model, guide=diffusion.guide`` of a
    :class:`~pyro_deepgen.models.GaussianDiffusion` this returns (per particle, summed over the
    data plate and scaled by ``num_data / N`` when given)

    .. math::

        \hat L = \sum_n \big[L_T(x_0^n) + T\,\ell_{t_n}(x_0^n)\big],\quad
        t_n \sim \mathrm{Uniform}\{1,\dots,T\},

    where :math:`\ell_1 = -\log p(x_0\mid x_1)` and :math:`\ell_t = \mathrm{KL}(q(x_{t-1}\mid
    x_t,x_0)\,\|\,p(x_{t-1}\mid x_t))` are evaluated in closed form at one draw of
    :math:`q(x_t\mid x_0)`. Its expectation is exactly ``Trace_ELBO().loss(model, guide, x0)``
    (the negative diffusion bound), at a cost of one network call per data point instead of
    T. The closed-form KLs remove the Monte Carlo noise of each step's log-ratio, but drawing
    one t and multiplying by T adds variance to the *value*: for a trained model one
    ``Trace_ELBO`` particle has the smaller variance (use
    :meth:`~pyro_deepgen.models.GaussianDiffusion.bound` to evaluate). What makes this loss the
    one to train with is its cost and, with ``weighting="ddpm"``, a well-scaled gradient.
    The value returned is always this unbiased estimate; the gradient comes from a surrogate
    chosen by ``weighting``:

    - ``"elbo"``: the gradient of :math:`\hat L` itself (unbiased for the bound);
    - ``"ddpm"``: Ho et al.'s :math:`\epsilon`-prediction reweighting
      :math:`\|\epsilon - \hat\epsilon_\theta\|^2` plus ``vlb_weight`` :math:`\times \hat L`
      with the mean held fixed, Nichol & Dhariwal's :math:`L_{\text{hybrid}}` (biased for the
      bound but better samples).

    With ``GaussianDiffusion(..., t_sampling="importance")`` the step is drawn from Nichol &
    Dhariwal's importance distribution :math:`p_t \propto \sqrt{\mathbb E[\ell_t^2]}` (from
    the last 10 values of each term, uniform until every step has 10) and :math:`T\,\ell_t`
    becomes :math:`\ell_t/p_t`: the value stays unbiased for the bound with a smaller variance,
    which matters most for ``weighting="elbo"`` (see
    :meth:`~pyro_deepgen.models.GaussianDiffusion.training_loss`).

    The guide is never run: the forward process is fixed and its closed forms are used (only
    ``differentiable_loss`` is written here; ``loss`` and ``loss_and_grads`` come from
    :class:`~pyro_deepgen.infer.elbo.ParticleELBO`). Usable with :class:`~pyro.infer.SVI` and
    as ``loss=`` of :func:`pyro_deepgen.train.fit`.

    :param str weighting: ``"elbo"`` (default) or ``"ddpm"``.
    :param float vlb_weight: :math:`\lambda` of :math:`L_{\text{hybrid}}` (default 1e-3).
    :param int num_particles: independent draws of (t, x_t) averaged (default 1).

    **References**: [1] J. Ho, A. Jain, P. Abbeel, *Denoising Diffusion Probabilistic Models*,
    arXiv:2006.11239. [2] A. Nichol, P. Dhariwal, *Improved Denoising Diffusion Probabilistic
    Models*, arXiv:2102.09672.
    """

    def __init__(self, weighting: str = "elbo", vlb_weight: float = 1e-3, num_particles: int = 1):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={weighting!r}; use one of {WEIGHTINGS}")
        if not vlb_weight >= 0:
            raise ValueError(f"vlb_weight must be non-negative, got {vlb_weight}")
        super().__init__(num_particles)
        self.weighting, self.vlb_weight = weighting, float(vlb_weight)

    @staticmethod
    def _diffusion(model: Callable) -> Any:
        diffusion = getattr(model, "__self__", None)
        if not hasattr(diffusion, "training_loss"):
            raise TypeError(
                "DiffusionELBO needs model=diffusion.model, a bound method of a GaussianDiffusion"
            )
        return diffusion

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args, **kwargs
    ) -> torch.Tensor:
        diffusion = self._diffusion(model)
        if not args:
            raise ValueError("DiffusionELBO needs the data x0 as the first argument")
        x0 = args[0]
        num_data = kwargs.get("num_data", args[1] if len(args) > 1 else None)
        value, surrogate = 0.0, 0.0
        for _ in range(self.num_particles):
            v, s = diffusion.training_loss(x0, self.weighting, self.vlb_weight)
            value, surrogate = value + v.sum(), surrogate + s.sum()
        scale = (num_data / len(x0) if num_data is not None else 1.0) / self.num_particles
        return value_with_surrogate_grad(value, surrogate) * scale
