r"""The single-sample score-function (REINFORCE / black-box VI) estimator of the ELBO."""
from typing import Callable, Dict, Optional

import pyro
import torch
from pyro.ops.provenance import detach_provenance
from pyro.util import warn_if_nan

from .elbo import ParticleELBO
from .score_terms import plate_rao_blackwellized_costs
from .util import value_with_surrogate_grad

CONTROL_VARIATES = ("leave_one_out", "baseline", None)
RAO_BLACKWELLIZATIONS = ("provenance", "plates")
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

    **Rao-Blackwellization.** The learning signal of a guide site :math:`s` is not the whole
    :math:`f` but :math:`f_s`, the detached terms :math:`\log p` and :math:`-\log q` that
    depend on :math:`z_s`, summed over the plates :math:`s` does not lie in and kept per element
    of the plates it does lie in
    (:func:`~pyro_deepgen.infer.score_terms.plate_rao_blackwellized_costs`). With
    ``rao_blackwellize="provenance"`` (default) dependence is found by provenance tracking, as
    in Pyro's :class:`~pyro.infer.TraceGraph_ELBO` (the same value and gradient at the same
    seed on sites without ``rsample``); with ``"plates"`` every term of the site's own plate
    slice and of the plates it is not in is kept, the rule of :class:`~pyro.infer.Trace_ELBO`
    (the same value and gradient as ``Trace_ELBO`` there, auxiliary sites aside). Both are unbiased; provenance has the
    lower variance (on two independent sites in one plate slice, 12.3 against 28.8, see
    ``docs/infer/conformance.rst``). Provenance follows tensor operations only: a value that
    leaves torch (``.item()``, Python control flow) loses it, as in ``TraceGraph_ELBO``. Guide-only
    (auxiliary) sites are in the cost, as in ``TraceGraph_ELBO``; Pyro's ``Trace_ELBO`` leaves
    them out, which biases the gradient of a site they depend on. The plate rule holds for
    every user plate, not only the data plate. The score
    :math:`\log q(z_s)` is neither scaled nor masked, as in Pyro; the costs are (subsampling,
    :func:`~pyro.poutine.scale`, :func:`~pyro.poutine.mask`). Particles are vectorized in an
    outermost plate.

    **Control variates** (all keep the estimator unbiased):

    * ``"leave_one_out"`` (default): :math:`b_s = \frac1{S-1}\sum_{s'\neq s} f(z_{s'})`,
      per plate element of the Rao-Blackwellized signal; needs :math:`S\ge 2`.
    * ``"baseline"``: Pyro's per-site baselines, read from the guide site's
      ``infer={"baseline": {...}}`` with the keys of :class:`~pyro.infer.TraceGraph_ELBO`:
      ``use_decaying_avg_baseline`` with ``baseline_beta`` (default 0.90), ``nn_baseline``
      with ``nn_baseline_input``, or ``baseline_value``. A site without options gets a
      decaying-average baseline. Unlike Pyro's, the decaying average is one number per site
      (averaged over particles and data points), so minibatches of any size work; it lives in
      the param store as ``"__sf_baseline_avg_<site>"``. Learned baselines (``nn_baseline``,
      ``baseline_value``) return a tensor broadcastable to the site's batch shape (e.g.
      ``(N,)`` inside a data plate at dim -1, a scalar outside every plate); their
      squared-error loss is added to the surrogate.
    * ``None``: the plain estimator.

    **Limiting cases**: whatever the control variate, the value equals
    :class:`~pyro.infer.Trace_ELBO`'s (same ``num_particles``, ``vectorize_particles=True``)
    for the same seed; with
    ``control_variate=None`` on a program whose guide sites all lack ``rsample`` (discrete or
    non-reparameterizable), the gradient equals :class:`~pyro.infer.TraceGraph_ELBO`'s
    (``"provenance"``) or ``Trace_ELBO``'s (``"plates"``), at any ``num_particles``.

    A program without any sample site is refused with a ``ValueError``.

    :param int num_particles: :math:`S`, particles per step (vectorized).
    :param str control_variate: ``"leave_one_out"`` (default), ``"baseline"`` or ``None``.
    :param int max_plate_nesting: as in :class:`~pyro.infer.elbo.ELBO` (guessed if omitted).
    :param str plate_name: name of the data plate (default ``"data"``); the
        Rao-Blackwellization does not need it (it uses every plate).
    :param str rao_blackwellize: ``"provenance"`` (default; ``TraceGraph_ELBO``'s rule) or
        ``"plates"`` (``Trace_ELBO``'s rule).

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
        rao_blackwellize: str = "provenance",
    ) -> None:
        if rao_blackwellize not in RAO_BLACKWELLIZATIONS:
            raise ValueError(
                f"rao_blackwellize={rao_blackwellize!r}; use one of {RAO_BLACKWELLIZATIONS}"
            )
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
        self.rao_blackwellize = rao_blackwellize

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        """The negative ELBO, with the score-function surrogate's gradient."""
        provenance = self.rao_blackwellize == "provenance"
        traces = self._draw(model, guide, args, kwargs, track_provenance=provenance)
        model_trace, guide_trace = traces.model, traces.guide
        model_sites = [s for s in model_trace.nodes.values() if s["type"] == "sample"]
        guide_sites = [s for s in guide_trace.nodes.values() if s["type"] == "sample"]
        if not model_sites and not guide_sites:
            raise ValueError(
                "TraceScoreFunction_ELBO: the model and guide have no sample site (pyro.sample), "
                "so there is no density to estimate; add the model's latent and observed sites"
            )
        zero = (model_sites or guide_sites)[0]["log_prob"].new_zeros(())
        elbo = sum((s["log_prob"].detach().sum() for s in model_sites), zero)
        elbo = elbo - sum((s["log_prob"].detach().sum() for s in guide_sites), zero)
        surrogate = sum((s["log_prob"].sum() for s in model_sites), zero)  # theta; z detached
        latents = [s["name"] for s in guide_sites if not s["is_observed"]]
        costs = plate_rao_blackwellized_costs(model_trace, guide_trace, latents, provenance)
        for name in latents:
            site = guide_trace.nodes[name]
            cost = costs[name]
            baseline, baseline_loss = self._control_variate(name, site["infer"], cost)
            # the score is neither scaled nor masked (Pyro's ScoreParts.scale_and_mask)
            score = site["unscaled_log_prob"]
            surrogate = surrogate + ((cost - baseline) * score).sum() - baseline_loss
        loss = value_with_surrogate_grad(
            detach_provenance(-elbo), detach_provenance(-surrogate)
        ) / self.num_particles
        warn_if_nan(loss, "loss")
        return loss

    def _control_variate(self, name: str, infer: Dict, cost: torch.Tensor):
        """Return the baseline for ``cost`` (the site's ``log_prob`` shape, particles first) and
        the loss that trains a learned baseline (subtracted from the surrogate ELBO)."""
        if self.control_variate is None:
            return 0.0, 0.0
        if self.control_variate == "leave_one_out":
            num = cost.shape[0]
            return (cost.sum(0, keepdim=True) - cost) / (num - 1), 0.0
        options = dict(infer.get("baseline", {}))
        unknown = set(options) - set(_BASELINE_KEYS)
        if unknown:
            raise ValueError(
                f"unrecognized baseline options {sorted(unknown)} at guide site {name!r}; "
                f"use {_BASELINE_KEYS}"
            )
        nn_baseline = options.get("nn_baseline")
        value = options.get("baseline_value")
        if nn_baseline is not None and value is not None:
            raise ValueError(
                f"guide site {name!r}: use either nn_baseline or baseline_value, not both"
            )
        if nn_baseline is not None:
            if "nn_baseline_input" not in options:
                raise ValueError(f"guide site {name!r}: nn_baseline needs nn_baseline_input")
            value = nn_baseline(options["nn_baseline_input"].detach())
        if value is not None:
            batch = cost.shape[1:]
            value = torch.as_tensor(value, dtype=cost.dtype, device=cost.device)
            try:
                fits = value.dim() <= len(batch)
                fits = fits and torch.broadcast_shapes(value.shape, batch) == batch
            except RuntimeError:
                fits = False
            if not fits:
                raise ValueError(
                    f"the baseline at guide site {name!r} has shape {tuple(value.shape)}; "
                    f"expected one broadcastable to the site's batch shape {tuple(batch)} "
                    "(one value per plate element, e.g. (N,) inside a data plate at dim -1)"
                )
            return value.detach(), (cost - value).pow(2).sum() / 2
        # decaying average (Pyro's use_decaying_avg_baseline), one number per site
        beta = float(options.get("baseline_beta", 0.90))
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"baseline_beta={beta} at guide site {name!r}: use 0 <= beta < 1")
        key = "__sf_baseline_avg_" + name
        store = pyro.get_param_store()
        old = store[key].detach() if key in store else None
        mean = cost.mean().detach()
        if torch.is_grad_enabled():  # training step; loss() evaluations leave it alone
            with torch.no_grad():
                store[key] = mean if old is None else beta * old + (1 - beta) * mean
        # the very first step has no history: no baseline rather than a biased one
        return (0.0 if old is None else old), 0.0
