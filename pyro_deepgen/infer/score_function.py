r"""The single-sample score-function (REINFORCE / black-box VI) estimator of the ELBO."""
from typing import Callable, Optional

import pyro
import torch
from pyro.util import warn_if_nan

from .elbo import ParticleELBO
from .score_terms import SiteTerm
from .util import value_with_surrogate_grad

CONTROL_VARIATES = ("leave_one_out", "baseline", None)
_BASELINE_KEYS = (
    "use_decaying_avg_baseline",
    "baseline_beta",
    "nn_baseline",
    "nn_baseline_input",
    "baseline_value",
)


class TraceScoreFunction_ELBO(ParticleELBO):
    r"""The score-function gradient of the ELBO for every guide site, with a control variate.

    The objective is the ELBO (the value returned is the usual Monte Carlo estimate, equal to
    :class:`~pyro.infer.Trace_ELBO`'s with the same random draws)

    .. math::

        \mathcal L(\theta,\phi) = \mathbb E_{q_\phi(z)}\big[\log p_\theta(x,z)
            - \log q_\phi(z)\big],

    and the gradient is the score-function estimator of Paisley et al. [1] and Ranganath et
    al. [2] with :math:`S` particles :math:`z_s\sim q_\phi` and a control variate :math:`b_s`:

    .. math::

        \widehat{\nabla_\phi\mathcal L} = \frac1S\sum_{s=1}^S
            \big(f(z_s) - b_s\big)\,\nabla_\phi\log q_\phi(z_s),
        \qquad f(z) = \log p_\theta(x,z) - \log q_\phi(z),

        \widehat{\nabla_\theta\mathcal L} = \frac1S\sum_{s=1}^S
            \nabla_\theta\log p_\theta(x, z_s).

    **Every** guide site is treated by the score function, reparameterizable or not: samples of
    reparameterizable sites are detached (drawn by ``rsample`` with the same random numbers as
    :class:`~pyro.infer.Trace_ELBO`, then cut from the graph), so that the score-function
    gradient (unbiased, high variance) can be compared with the reparameterization gradient on
    the same model; for a practical estimator use :class:`~pyro.infer.Trace_ELBO` (which picks
    the pathwise gradient where it can) or :class:`~pyro_deepgen.infer.TraceVIMCO_ELBO`.

    The score is Rao-Blackwellized over the data plate as in Pyro: a latent inside the data
    plate is weighted by its own data point's :math:`f_n` (times the subsampling scale), a latent
    outside it by the whole :math:`f` (so observed sites outside the data plate must not depend
    on latents inside it). Particles are vectorized in an outermost plate.

    **Control variates** (all keep the estimator unbiased):

    * ``"leave_one_out"`` (default): :math:`b_s = \frac1{S-1}\sum_{s'\neq s} f(z_{s'})`,
      per data point; needs :math:`S\ge 2`.
    * ``"baseline"``: Pyro's per-site baselines, read from the guide site's
      ``infer={"baseline": {...}}`` with the keys of :class:`~pyro.infer.TraceGraph_ELBO`:
      ``use_decaying_avg_baseline`` with ``baseline_beta`` (default 0.90), ``nn_baseline``
      with ``nn_baseline_input``, or ``baseline_value``. A site without options gets a
      decaying-average baseline. Unlike Pyro's, the decaying average is one number per site
      (averaged over particles and data points), so minibatches of any size work; it lives in
      the param store as ``"__sf_baseline_avg_<site>"``. Learned baselines (``nn_baseline``,
      ``baseline_value``) must return one value per data point (shape ``(N,)``) for sites inside
      the data plate and a scalar otherwise; their squared-error loss is added to the surrogate.
    * ``None``: the plain estimator.

    **Limiting case**: with ``num_particles=1`` and ``control_variate=None`` or ``"baseline"``
    the value equals :class:`~pyro.infer.Trace_ELBO`'s for the same seed.

    :param int num_particles: :math:`S`, particles per step (vectorized).
    :param str control_variate: ``"leave_one_out"`` (default), ``"baseline"`` or ``None``.
    :param int max_plate_nesting: as in :class:`~pyro.infer.elbo.ELBO` (guessed if omitted).
    :param str plate_name: name of the data plate (default ``"data"``; a program without any
        plate counts as one data point).

    **References**

    [1] J. Paisley, D. Blei, M. Jordan, *Variational Bayesian Inference with Stochastic Search*,
    ICML 2012, arXiv:1206.6430.

    [2] R. Ranganath, S. Gerrish, D. Blei, *Black Box Variational Inference*, AISTATS 2014,
    arXiv:1401.0118.
    """

    pathwise = False  # every guide site takes the score-function gradient

    def __init__(
        self,
        num_particles: int = 2,
        control_variate: Optional[str] = "leave_one_out",
        max_plate_nesting: float = float("inf"),
        plate_name: Optional[str] = "data",
    ) -> None:
        if control_variate not in CONTROL_VARIATES:
            raise ValueError(
                f"control_variate={control_variate!r}; use one of {CONTROL_VARIATES}"
            )
        loo = control_variate == "leave_one_out"
        super().__init__(
            num_particles,
            max_plate_nesting,
            min_particles=2 if loo else 1,
            why="the leave-one-out control variate needs another particle" if loo else "",
            plate_name=plate_name,
        )
        self.control_variate = control_variate

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        """The negative ELBO, with the score-function surrogate's gradient."""
        terms = self._particle_terms(model, guide, args, kwargs)
        cost_local = 0.0
        cost_global = 0.0
        for t, sign in [(t, 1.0) for t in terms.model] + [(t, -1.0) for t in terms.guide]:
            if t.local:
                cost_local = cost_local + sign * t.log_prob
            else:
                cost_global = cost_global + sign * t.log_prob
        zero = terms.model[0].log_prob.new_zeros(self.num_particles, 1)
        cost_local, cost_global = zero + cost_local, zero + cost_global  # (P, N), (P, 1)
        total = (cost_local.sum(-1, keepdim=True) + cost_global).detach()  # (P, 1)
        elbo = total.mean()

        surrogate = sum(t.log_prob.sum() for t in terms.model)  # theta-gradient; z are detached
        for t in terms.guide:
            if t.is_observed:
                continue
            cost = (cost_local if t.local else total).detach()
            baseline, baseline_loss = self._control_variate(t, cost)
            surrogate = surrogate + ((cost - baseline) * t.unscaled).sum() - baseline_loss
        surrogate = surrogate / self.num_particles
        loss = value_with_surrogate_grad(-elbo, -surrogate)
        warn_if_nan(loss, "loss")
        return loss

    def _control_variate(self, site: SiteTerm, cost: torch.Tensor):
        """Return the baseline for ``cost`` (shape ``(P, N)`` or ``(P, 1)``) and the loss that
        trains a learned baseline (subtracted from the surrogate ELBO)."""
        if self.control_variate is None:
            return 0.0, 0.0
        if self.control_variate == "leave_one_out":
            num = cost.shape[0]
            return (cost.sum(0, keepdim=True) - cost) / (num - 1), 0.0
        options = dict(site.infer.get("baseline", {}))
        unknown = set(options) - set(_BASELINE_KEYS)
        if unknown:
            raise ValueError(
                f"unrecognized baseline options {sorted(unknown)} at guide site {site.name!r}; "
                f"use {_BASELINE_KEYS}"
            )
        nn_baseline = options.get("nn_baseline")
        value = options.get("baseline_value")
        if nn_baseline is not None and value is not None:
            raise ValueError(
                f"guide site {site.name!r}: use either nn_baseline or baseline_value, not both"
            )
        if nn_baseline is not None:
            if "nn_baseline_input" not in options:
                raise ValueError(f"guide site {site.name!r}: nn_baseline needs nn_baseline_input")
            value = nn_baseline(options["nn_baseline_input"].detach())
        if value is not None:
            target = cost.shape[1:] if site.local else ()
            value = torch.as_tensor(value, dtype=cost.dtype, device=cost.device)
            if value.shape not in (torch.Size(target), torch.Size(cost.shape[1:])):
                raise ValueError(
                    f"the baseline at guide site {site.name!r} has shape {tuple(value.shape)}; "
                    f"expected {tuple(target)} (one value per data point inside the data plate)"
                )
            value = value.reshape(1, -1)
            return value.detach(), (cost - value).pow(2).sum() / 2
        # decaying average (Pyro's use_decaying_avg_baseline), one number per site
        beta = float(options.get("baseline_beta", 0.90))
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"baseline_beta={beta} at guide site {site.name!r}: use 0 <= beta < 1")
        name = "__sf_baseline_avg_" + site.name
        store = pyro.get_param_store()
        old = store[name].detach() if name in store else None
        mean = cost.mean().detach()
        if torch.is_grad_enabled():  # training step; loss() evaluations leave it alone
            with torch.no_grad():
                store[name] = mean if old is None else beta * old + (1 - beta) * mean
        # the very first step has no history: no baseline rather than a biased one
        return (0.0 if old is None else old), 0.0
