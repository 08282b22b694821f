r"""Hamiltonian variational inference (Salimans, Kingma & Welling 2015)."""
import math
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import Distribution
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from pyro.distributions.util import is_identically_zero, scale_and_mask, sum_rightmost
from pyro.poutine.util import prune_subsample_sites
from pyro.util import warn_if_nan
from torch.distributions import biject_to, constraints

from .elbo import ParticleELBO
from .particles import PARTICLE_PLATE, trace_elbo_log_r
from .util import value_with_surrogate_grad

ReverseModel = Union[str, Callable[..., Tuple[torch.Tensor, torch.Tensor]]]
REVERSE_MODELS = ("linear", "constant")


class _Site(NamedTuple):
    name: str
    transform: torch.distributions.Transform
    event_dim: int  # event dims of the unconstrained value
    scale: Union[float, torch.Tensor]  # the site's scale (subsampling, poutine.scale)
    mask: Optional[torch.Tensor]
    param_shape: Tuple[int, ...]  # shape of the per-site parameters (data-plate dim = 1)


def _log_prob_sum(trace: poutine.Trace) -> torch.Tensor:
    """``trace.log_prob_sum()`` from the ``log_prob`` already computed at every sample site."""
    total = 0.0
    for site in trace.nodes.values():
        if site["type"] == "sample":
            total = total + site["log_prob"].sum()
    return total


def _site_sum(value: torch.Tensor, site: _Site) -> torch.Tensor:
    """Scale and mask a per-batch-element density like the site's own ``log_prob`` and sum."""
    return scale_and_mask(value, site.scale, site.mask).sum()


_DEFAULT_SCORE_PARTS = (
    Distribution.score_parts,
    MaskedDistribution.score_parts,
    ExpandedDistribution.score_parts,
)


def _fully_reparameterized(fn) -> bool:
    """Whether Pyro's ``score_parts`` of ``fn`` is ``(log_prob, 0, log_prob)``: ``has_rsample``
    and no partially reparameterized sampler (a ``score_parts`` override) down its
    ``base_dist`` chain."""
    if not fn.has_rsample:
        return False
    while fn is not None:
        method = getattr(type(fn), "score_parts", Distribution.score_parts)
        if method not in _DEFAULT_SCORE_PARTS:
            return False
        fn = getattr(fn, "base_dist", None)
    return True


def _trace_elbo(model_trace: poutine.Trace, guide_trace: poutine.Trace):
    r"""The ELBO of one vectorized model/guide pair and Pyro's :class:`~pyro.infer.Trace_ELBO`
    surrogate (both summed over particles): the log density of every model site, the entropy
    term of every guide site and, for each guide site that is not fully reparameterized, its
    (unscaled) score function times the detached :math:`\log p - \log q`
    (:func:`~pyro_deepgen.infer.particles.trace_elbo_log_r`: auxiliary guide sites included,
    as in :class:`~pyro.infer.TraceGraph_ELBO`) summed to the site's plates."""
    elbo = _log_prob_sum(model_trace)
    surrogate = elbo
    log_r = None
    for site in guide_trace.nodes.values():
        if site["type"] != "sample":
            continue
        elbo = elbo - site["log_prob"].sum()
        if _fully_reparameterized(site["fn"]):
            surrogate = surrogate - site["log_prob"].sum()
            continue
        parts = site["fn"].score_parts(site["value"], *site["args"], **site["kwargs"])
        parts = parts.scale_and_mask(site["scale"], site["mask"])
        if not is_identically_zero(parts.entropy_term):
            surrogate = surrogate - parts.entropy_term.sum()
        if not is_identically_zero(parts.score_function):
            if log_r is None:
                log_r = trace_elbo_log_r(model_trace, guide_trace)
            cost = log_r.sum_to(site["cond_indep_stack"])
            surrogate = surrogate + (cost * parts.score_function).sum()
    return elbo, surrogate


class TraceHVI_ELBO(ParticleELBO):
    r"""Hamiltonian variational inference: an auxiliary-variable bound with :math:`T` leapfrog
    steps on the model's log joint, started from the guide [1].

    **Transition.** :math:`z_0\sim q_\phi(z\mid x)` (reparameterized) is mapped to unconstrained
    space, :math:`u_0 = T^{-1}(z_0)` with :math:`T` = ``biject_to(site.support)``. A momentum
    :math:`v_0\sim q(v_0) = \mathcal N(0, \mathrm{diag}\,m^2)` (learnable scale :math:`m`) is
    drawn, and :math:`T` leapfrog steps with learnable step sizes :math:`\epsilon_t` (per step,
    per site and coordinate), mass :math:`m^2` and *no* accept/reject are taken on the target

    .. math::

        \log\pi(u) = \log p_\theta(x, T(u)) + \log\big|\det \partial T(u)/\partial u\big|.

    Each leapfrog step is a composition of shears, hence volume preserving.

    **Bound.** With a reverse model :math:`r_\psi(v_T\mid u_T, x)`, the auxiliary bound

    .. math::

        \mathcal L_{\text{aux}} = \mathbb E\Big[\log p_\theta(x, z_T)
            + \log\big|\det \partial T(u_T)\big|
            + \log r_\psi(v_T\mid u_T, x)
            - \log q_\phi(z_0\mid x) - \log\big|\det \partial T(u_0)\big|
            - \log q(v_0)\Big] \le \log p_\theta(x)

    holds for any step sizes, masses and reverse model ([1] eq. 11: the transition is
    deterministic and volume preserving, so no Jacobian term enters besides the two of the
    constrained-space map). The loss is :math:`-\mathcal L_{\text{aux}}` averaged over
    ``num_particles`` vectorized particles; every term is reparameterized, so the value is
    its own gradient estimator (second derivatives flow through the leapfrog forces).

    **Plates and subsampling.** Every site-wise term is scaled like the site's own
    ``log_prob`` (so minibatches scaled by ``pyro.plate(subsample=...)`` give the usual
    unbiased estimate). The force on a latent is the gradient of the log joint *divided by the
    latent's scale*: a latent inside a subsampled data plate feels the unscaled
    :math:`\nabla\log p(x_n, z_n)` of its own data point, a global latent the (scaled) gradient
    of the minibatch estimate of the full log joint.

    **Auxiliary variables and parameters.** The momenta are drawn as sample sites named
    ``"<name>.<site>.momentum"`` with ``infer={"is_auxiliary": True}`` (they show up in an outer
    :func:`~pyro.poutine.trace`). The step sizes ``"<name>.<site>.step_size"`` (shape
    ``(T, *s)``), the momentum scale ``"<name>.<site>.momentum_scale"`` and the reverse model's
    parameters are registered in Pyro's param store, so :class:`~pyro.infer.SVI` and
    :func:`pyro_deepgen.train.fit` train them. ``s`` is the site's unconstrained shape with the
    particle and data-plate dims set to 1: every data point shares the per-coordinate values.

    **Reverse models** :math:`r(v_T\mid u_T, x) = \mathcal N(\mu, \mathrm{diag}\,\sigma^2)`:

    * ``"linear"`` (default): :math:`\mu = a\odot u_T + b`, per-site coordinate-wise
      parameters ``"<name>.<site>.reverse_{weight,bias,scale}"``; per data point it depends
      on that point's :math:`u_T`.
    * ``"constant"``: :math:`\mu = b`, :math:`\sigma` per site and coordinate.
    * a callable ``reverse_model(site_name, u_T, *args, **kwargs) -> (loc, scale)`` (the model's
      arguments are passed, e.g. ``x``), broadcastable to :math:`u_T`; an ``nn.Module`` is
      registered with ``pyro.module("<name>.reverse_model", ...)``.

    **Limiting cases.** ``num_steps=0`` draws no momentum and is exactly
    :class:`~pyro.infer.Trace_ELBO` with ``vectorize_particles=True`` (value and gradient, same
    seed) on every site type: a guide site that is discrete or not reparameterizable gets
    Trace_ELBO's score-function term :math:`\nabla\log q(z_s)` times the detached
    :math:`\log p - \log q` of the model's sites summed to the site's plates. As the leapfrog
    trajectory approaches the posterior and :math:`r` the exact reverse density, the bound
    tends to :math:`\log p(x)`.

    With ``num_steps >= 1`` every latent must be continuous and reparameterizable in the
    guide; discrete or non-reparameterizable sites are refused by name, and so is a model
    without latent sites (use ``num_steps=0``). A program without any sample site is refused
    whatever ``num_steps``.

    :param int num_steps: :math:`T\ge 0`, leapfrog steps (default 4).
    :param float step_size: initial leapfrog step size (default 0.1).
    :param bool learn_step_size: train the step sizes (default ``True``).
    :param float momentum_scale: initial :math:`m` (default 1.0).
    :param bool learn_momentum_scale: train :math:`m` (default ``True``).
    :param reverse_model: ``"linear"`` (default), ``"constant"`` or a callable (see above).
    :param int num_particles: particles (vectorized).
    :param int max_plate_nesting: as in :class:`~pyro.infer.elbo.ELBO` (guessed if omitted).
    :param str plate_name: the data plate, whose dim the per-site parameters broadcast over.
    :param str name: prefix of the param-store names (use different names for two instances).

    **References**

    [1] T. Salimans, D. P. Kingma, M. Welling, *Markov Chain Monte Carlo and Variational
    Inference: Bridging the Gap*, ICML 2015, arXiv:1410.6460.

    [2] R. M. Neal, *MCMC using Hamiltonian dynamics*, Handbook of MCMC, 2011,
    arXiv:1206.1901.
    """

    def __init__(
        self,
        num_steps: int = 4,
        step_size: float = 0.1,
        learn_step_size: bool = True,
        momentum_scale: float = 1.0,
        learn_momentum_scale: bool = True,
        reverse_model: ReverseModel = "linear",
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        plate_name: Optional[str] = "data",
        name: str = "hvi",
    ) -> None:
        if not isinstance(num_steps, int) or num_steps < 0:
            raise ValueError(f"num_steps must be a non-negative integer, got {num_steps!r}")
        for arg, val in (("step_size", step_size), ("momentum_scale", momentum_scale)):
            if not (isinstance(val, (int, float)) and val > 0 and math.isfinite(val)):
                raise ValueError(f"{arg} must be a positive number, got {val!r}")
        if not (callable(reverse_model) or reverse_model in REVERSE_MODELS):
            raise ValueError(
                f"reverse_model={reverse_model!r}; use one of {REVERSE_MODELS} or a callable "
                "(site_name, u_T, *args, **kwargs) -> (loc, scale)"
            )
        super().__init__(num_particles, max_plate_nesting, plate_name=plate_name)
        self.num_steps = num_steps
        self.step_size = float(step_size)
        self.learn_step_size = bool(learn_step_size)
        self.momentum_scale = float(momentum_scale)
        self.learn_momentum_scale = bool(learn_momentum_scale)
        self.reverse_model = reverse_model
        self.name = name

    # -- traces ---------------------------------------------------------------------------
    def _latent_sites(self, model_trace: poutine.Trace, guide_trace: poutine.Trace) -> List[_Site]:
        sites = []
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if name not in guide_trace.nodes:
                raise ValueError(f"model latent site {name!r} has no site in the guide")
            fn = guide_trace.nodes[name]["fn"]
            if site["fn"].support.is_discrete or not fn.has_rsample:
                raise ValueError(
                    f"latent site {name!r} is discrete or not reparameterizable in the guide; "
                    "TraceHVI_ELBO needs continuous latents drawn with rsample (enumerate or "
                    "marginalize discrete latents in the model first)"
                )
            transform = biject_to(site["fn"].support)
            u = transform.inv(site["value"])
            event_dim = transform.domain.event_dim
            # one parameter per element of the site's value, shared over the particles and the
            # data plate (absent dims stay absent: at k=1 there is no particle dim to add)
            shape = list(u.shape)
            for frame in site["cond_indep_stack"]:
                if not frame.vectorized or frame.name not in (self.plate_name, PARTICLE_PLATE):
                    continue
                index = u.dim() - event_dim + frame.dim
                if 0 <= index < len(shape):
                    shape[index] = 1
            sites.append(
                _Site(name, transform, event_dim, site["scale"], site["mask"], tuple(shape))
            )
        return sites

    # -- learnable pieces -----------------------------------------------------------------
    def _positive(self, key: str, init: torch.Tensor, learn: bool = True) -> torch.Tensor:
        if not learn:
            return init
        return pyro.param(f"{self.name}.{key}", init, constraint=constraints.positive)

    def _reverse(self, site: _Site, u: torch.Tensor, args, kwargs):
        if callable(self.reverse_model):
            if isinstance(self.reverse_model, torch.nn.Module):
                pyro.module(f"{self.name}.reverse_model", self.reverse_model)
            return self.reverse_model(site.name, u, *args, **kwargs)
        init = u.new_full(site.param_shape, self.momentum_scale)
        scale = self._positive(f"{site.name}.reverse_scale", init)
        bias = pyro.param(f"{self.name}.{site.name}.reverse_bias", u.new_zeros(site.param_shape))
        if self.reverse_model == "constant":
            return bias, scale
        weight = pyro.param(
            f"{self.name}.{site.name}.reverse_weight", u.new_zeros(site.param_shape)
        )
        return weight * u + bias, scale

    # -- the bound ------------------------------------------------------------------------
    def _log_target(self, model, sites: List[_Site], us: Dict, guide_trace, args, kwargs):
        r""":math:`\log p(x, T(u)) + \log|\det\partial T(u)|`, summed (site-wise scaled).

        The model is replayed against the (unpruned) guide trace so that subsampled plates
        keep the minibatch indices the guide drew."""
        values = {s.name: s.transform(us[s.name]) for s in sites}
        plate = pyro.plate(PARTICLE_PLATE, self.num_particles, dim=-self.max_plate_nesting - 1)
        replayed = poutine.replay(plate(model), trace=guide_trace)
        conditioned = poutine.condition(replayed, data=values)
        trace = poutine.trace(conditioned).get_trace(*args, **kwargs)
        total = trace.log_prob_sum()
        for s in sites:
            ladj = s.transform.log_abs_det_jacobian(us[s.name], values[s.name])
            batch_dim = us[s.name].dim() - s.event_dim
            total = total + _site_sum(sum_rightmost(ladj, ladj.dim() - batch_dim), s)
        return total

    def _force(self, model, sites, us, guide_trace, args, kwargs, create_graph: bool):
        """The log target and its gradient w.r.t. each site's u, divided by the site's scale."""
        with torch.enable_grad():
            us = {k: u if u.requires_grad else u.detach().requires_grad_() for k, u in us.items()}
            log_target = self._log_target(model, sites, us, guide_trace, args, kwargs)
            grads = torch.autograd.grad(
                log_target, [us[s.name] for s in sites], create_graph=create_graph
            )
        return log_target, {s.name: g / s.scale for s, g in zip(sites, grads)}, us

    def _aux_bound(self, model, guide, args, kwargs, create_graph: bool) -> torch.Tensor:
        model_trace, raw_guide_trace = self._draw(model, guide, args, kwargs, prune=False)[:2]
        model_trace = prune_subsample_sites(model_trace)
        guide_trace = prune_subsample_sites(raw_guide_trace)
        if not any(
            site["type"] == "sample" for tr in (model_trace, guide_trace) for site in tr.nodes.values()
        ):
            raise ValueError(
                "TraceHVI_ELBO: the model and guide have no sample site (pyro.sample), so there "
                "is no density to bound; add the model's latent and observed sites"
            )
        if self.num_steps == 0:
            elbo, surrogate = _trace_elbo(model_trace, guide_trace)
            return value_with_surrogate_grad(elbo, surrogate) / self.num_particles
        log_q = _log_prob_sum(guide_trace)
        sites = self._latent_sites(model_trace, guide_trace)
        if not sites:
            raise ValueError(
                f"TraceHVI_ELBO(num_steps={self.num_steps}): the model has no latent sample site "
                "for the leapfrog steps to move; use num_steps=0 (the plain ELBO) or "
                "pyro.infer.Trace_ELBO"
            )
        us, vs, masses, log_aux = {}, {}, {}, -log_q
        for s in sites:
            z0 = guide_trace.nodes[s.name]["value"]
            u0 = s.transform.inv(z0)
            ladj = s.transform.log_abs_det_jacobian(u0, z0)
            batch_dim = u0.dim() - s.event_dim
            log_aux = log_aux - _site_sum(sum_rightmost(ladj, ladj.dim() - batch_dim), s)
            mass = self._positive(
                f"{s.name}.momentum_scale",
                u0.new_full(s.param_shape, self.momentum_scale),
                self.learn_momentum_scale,
            )
            q_v = dist.Normal(torch.zeros_like(u0), mass).to_event(s.event_dim)
            vs[s.name] = pyro.sample(
                f"{self.name}.{s.name}.momentum", q_v, infer={"is_auxiliary": True}
            )
            log_aux = log_aux - _site_sum(q_v.log_prob(vs[s.name]), s)
            us[s.name], masses[s.name] = u0, mass.pow(2)
        steps = {
            s.name: self._positive(
                f"{s.name}.step_size",
                torch.full((self.num_steps,) + s.param_shape, self.step_size).to(us[s.name]),
                self.learn_step_size,
            )
            for s in sites
        }
        for s in sites:
            if steps[s.name].shape[0] != self.num_steps:
                raise ValueError(
                    f"the param store's '{self.name}.{s.name}.step_size' has "
                    f"{steps[s.name].shape[0]} steps but num_steps={self.num_steps}; give this "
                    "TraceHVI_ELBO another name=... or clear the param store"
                )

        def potential_force(us):
            return self._force(model, sites, us, raw_guide_trace, args, kwargs, create_graph)

        log_target, force, us = potential_force(us)
        for t in range(self.num_steps):
            for s in sites:
                eps = steps[s.name][t]
                v = vs[s.name] + 0.5 * eps * force[s.name]
                vs[s.name] = v
                us[s.name] = us[s.name] + eps * v / masses[s.name]
            log_target, force, us = potential_force(us)
            for s in sites:
                vs[s.name] = vs[s.name] + 0.5 * steps[s.name][t] * force[s.name]
        for s in sites:
            loc, scale = self._reverse(s, us[s.name], args, kwargs)
            r_v = dist.Normal(loc, scale).expand(us[s.name].shape).to_event(s.event_dim)
            log_aux = log_aux + _site_sum(r_v.log_prob(vs[s.name]), s)
        return (log_target + log_aux) / self.num_particles

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        r"""The negative auxiliary bound :math:`-\mathcal L_{\text{aux}}` (differentiable).

        The leapfrog forces always use autograd; under :func:`torch.no_grad` (as in
        :meth:`loss`) they are computed without building a second-order graph."""
        loss = -self._aux_bound(model, guide, args, kwargs, torch.is_grad_enabled())
        warn_if_nan(loss, "loss")
        return loss
