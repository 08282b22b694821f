r"""The importance-weighted bound of Burda et al. (2016) with the IWAE, STL and DReG gradients."""
import math
from typing import Callable, List, Optional

import torch
from pyro import poutine
from pyro.util import warn_if_nan

from .elbo import ParticleELBO
from .particles import LogWeights, log_weights, site_log_prob_per_datapoint, trace_elbo_costs
from .util import log_mean_exp, value_with_surrogate_grad

ESTIMATORS = ("iwae", "stl", "dreg")


def _leave_one_out_log_mean_exp(x: torch.Tensor) -> torch.Tensor:
    """``out[k] = log mean_{j != k} exp(x[j])`` along dim 0 (``K >= 2``)."""
    k = x.shape[0]
    eye = torch.eye(k, dtype=torch.bool, device=x.device).reshape((k, k) + (1,) * (x.dim() - 1))
    masked = x.unsqueeze(0).masked_fill(eye, -math.inf)
    return torch.logsumexp(masked, 1) - math.log(k - 1)


class TraceIWAE_ELBO(ParticleELBO):
    r"""The importance-weighted autoencoder bound [1] with three gradient estimators.

    **What is computed.** Particles are vectorized in an outermost ``pyro.plate``; every latent
    site of the guide is drawn ``num_particles`` (:math:`K`) times. With
    :math:`w_{kn}=\log p(x_n,z_{kn}\mid\cdot)-\log q(z_{kn}\mid\cdot)` the summed log-weight of
    the sites inside the data plate (``plate_name``) for particle :math:`k` and data point
    :math:`n`, :math:`w_{\theta k}` that of the sites outside it, and :math:`s = N/B` the data
    plate's subsampling scale (1 without subsampling), the loss is the *negative* of:

    * all latents inside the data plate (the default case)

      .. math:: \mathcal L_K = s \sum_{n=1}^{B} \log \frac1K \sum_{k=1}^K e^{w_{kn}},

      one log-mean-exp per data point, summed over the minibatch and scaled by :math:`N/B`.
      This equals Pyro's :class:`~pyro.infer.RenyiELBO` with ``alpha=0`` when :math:`s=1`.
      With subsampling Pyro instead computes :math:`\sum_n\log\frac1K\sum_k e^{s\,w_{kn}}`
      (the scale multiplies the log-weights inside the log-mean-exp), which is not an
      estimate of :math:`\sum_n \mathcal L_K(x_n)`.

    * latents outside the data plate (global latents), ``nested=False``

      .. math:: \mathcal L_K = \log \frac1K \sum_{k=1}^K
                \exp\Big(w_{\theta k} + s\sum_{n=1}^B w_{kn}\Big),

      the bound of one importance sampler over all latents jointly. This is what Pyro's
      ``RenyiELBO(alpha=0)`` computes (pyro issue #3104); its weights degenerate quickly as
      :math:`N` grows. (The same form is used when a site outside the data plate is observed
      and its log-density varies across particles.)

    * global latents, ``nested=True``: :math:`K` global particles
      :math:`\theta_k\sim q(\theta)`, and for each of them and each data point
      :math:`J` = ``num_local_particles`` local particles :math:`z_{nkj}\sim q(z_n\mid\theta_k)`:

      .. math:: \mathcal L_{K,J} = \log \frac1K \sum_{k=1}^K \exp\Big(w_{\theta k}
                + s\sum_{n=1}^B \log\frac1J\sum_{j=1}^J e^{w_{nkj}}\Big).

      Since :math:`\frac1J\sum_j e^{w_{nkj}}` is an unbiased estimate of
      :math:`p(x_n\mid\theta_k)` and the product over :math:`n` of independent unbiased
      estimates is unbiased, :math:`\mathcal L_{K,J}\le\log p(x)` by Jensen's inequality
      (for :math:`s=1`). It reduces to the lumped bound at :math:`J=1` and is much tighter
      for large :math:`N`. Cost: :math:`K J` local draws per data point. Every site outside
      the data plate must depend on global latents only.

    * no vectorized plate (no plate at all, or sequential ``pyro.plate`` loops only): the whole
      program is one data point, :math:`\mathcal L_K = \log\frac1K\sum_k e^{w_k}` with
      :math:`w_k = \log p(x, z_k) - \log q(z_k)` of the whole program (the plate rule of
      :class:`~pyro_deepgen.infer.elbo.ParticleELBO`). ``nested=True`` needs a vectorized
      data plate and refuses such a program.

    Limiting cases: ``num_particles=1`` (and ``J=1``) is :class:`~pyro.infer.Trace_ELBO`,
    value and gradient at the same seed, on every site type: no particle plate is added (user
    shape assertions hold), and a non-reparameterized guide site gets exactly Pyro's
    score-function term (see ``"iwae"`` below); :math:`\mathcal L_K\uparrow\log p(x)` as
    :math:`K\to\infty`. Pyro's model/guide checks apply (mismatched shapes raise, sites
    missing on one side warn; see :class:`~pyro_deepgen.infer.elbo.ParticleELBO`).

    **Gradient estimators** (the returned value is always the exact bound above; the gradient
    comes from a surrogate, see :func:`~pyro_deepgen.infer.util.value_with_surrogate_grad`).
    With :math:`\tilde w_k = e^{w_k}/\sum_j e^{w_j}` the normalized weights:

    * ``"iwae"``: the gradient of the bound itself,
      :math:`\sum_k \tilde w_k \nabla w_k` (pathwise for reparameterized guide sites).
      Guide sites without ``rsample`` get the score-function term
      :math:`\sum_k (\mathcal L_K - \mathcal L_K^{(-k)})\nabla\log q(z_k)` with the
      leave-one-out baseline :math:`\mathcal L_K^{(-k)} = \log\frac{1}{K-1}\sum_{j\ne k}
      e^{w_j}` (independent of :math:`z_k`, so the estimator stays unbiased). Per data point
      in the default case; per particle in the lumped one. At :math:`K=1` the term is
      :class:`~pyro.infer.Trace_ELBO`'s, :math:`\bot(r_s)\nabla\log q(z_s)` with the cost
      :math:`r_s` Rao-Blackwellized over the site's plates (no baseline), and the bound's own
      :math:`-\nabla\log q(z_s)` is cancelled, so the gradient equals Pyro's at the same
      seed, not only in expectation. Pyro's
      ``RenyiELBO(alpha=0)`` silently gives these sites a zero gradient (its score term is
      multiplied by ``alpha``; checked with Pyro 1.9.2). For discrete latents prefer
      :class:`~pyro_deepgen.infer.TraceVIMCO_ELBO`, whose control variates are better.
    * ``"stl"`` (sticking the landing [2]): :math:`\log q` is evaluated with the guide's
      parameters stopped, so the inference network gets the path derivative only,
      :math:`\sum_k\tilde w_k\,\partial_z w_k\,\partial_\phi z_k`. Unbiased at :math:`K=1`
      (where it has zero variance at the exact posterior); **biased for** :math:`K>1`
      (Tucker et al. [3], Sec. 3), the bias vanishing as :math:`q` approaches the posterior.
    * ``"dreg"`` (doubly reparameterized [3]): inference network
      :math:`\sum_k\tilde w_k^2\,\partial_z w_k\,\partial_\phi z_k` (unbiased, and its
      signal-to-noise ratio does not decay with :math:`K`, unlike ``"iwae"`` [4]); model
      parameters get the usual :math:`\sum_k\tilde w_k\nabla_\theta w_k`. Equal to ``"stl"``
      at :math:`K=1`. Not available with ``nested=True``.

    STL and DReG need every latent guide site to be reparameterizable (``has_rsample``). The
    stopped :math:`\log q_{\bot(\phi)}` comes from a second run of the guide at the drawn
    values with the gradient of every tensor its densities depend on stopped: the leaves of the
    autograd graph of the drawn sites (``pyro.param``, :class:`~pyro.nn.PyroModule` and
    ``pyro.module`` parameters, unregistered ``nn.Module`` parameters, plain tensors with
    ``requires_grad``, the parameters of flows), not the param store. A density that reaches a
    tensor requiring grad through a graph built *outside* the guide (e.g. ``loc = net(x)``
    computed once and captured) cannot be stopped and raises a ``ValueError`` naming the site.
    The distributions must evaluate ``log_prob`` at a value that is not the cached output of
    their own ``rsample`` (flows need an inverse). Model parameters used inside the guide are
    stopped too.

    :param int num_particles: :math:`K` (global particles when ``nested=True``). Default 2.
    :param str estimator: ``"iwae"`` (default), ``"stl"`` or ``"dreg"``.
    :param bool nested: use the nested bound for global latents (default ``False``).
    :param int num_local_particles: :math:`J`, local particles per global particle and data
        point with ``nested=True`` (default: ``num_particles``).
    :param int max_plate_nesting: number of user plates (default: guessed once, by running the
        model and guide on the first call under a forked random state, and cached; see
        :class:`~pyro_deepgen.infer.elbo.ParticleELBO`).
    :param str plate_name: name of the data plate (default ``"data"``).

    Example::

        elbo = TraceIWAE_ELBO(num_particles=50, estimator="dreg")
        svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), elbo)

    **References**

    [1] Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*,
    arXiv:1509.00519.
    [2] G. Roeder, Y. Wu, D. Duvenaud, *Sticking the Landing: Simple, Lower-Variance Gradient
    Estimators for Variational Inference*, arXiv:1703.09194.
    [3] G. Tucker, D. Lawson, S. Gu, C. J. Maddison, *Doubly Reparameterized Gradient
    Estimators for Monte Carlo Objectives*, arXiv:1810.04152.
    [4] T. Rainforth, A. R. Kosiorek, T. A. Le, C. J. Maddison, M. Igl, F. Wood, Y. W. Teh,
    *Tighter Variational Bounds are Not Necessarily Better*, arXiv:1802.04537.
    """

    refuses_enumerated = True  # a guide-enumerated site is a ValueError (see _non_reparameterized_sites)

    def __init__(
        self,
        num_particles: int = 2,
        estimator: str = "iwae",
        nested: bool = False,
        num_local_particles: Optional[int] = None,
        max_plate_nesting: float = float("inf"),
        plate_name: str = "data",
    ) -> None:
        super().__init__(num_particles, max_plate_nesting, plate_name=plate_name)
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator={estimator!r} is not known; use one of {ESTIMATORS}")
        if num_local_particles is not None:
            if not nested:
                raise ValueError("num_local_particles is only used with nested=True")
            if not isinstance(num_local_particles, int) or num_local_particles < 1:
                raise ValueError(
                    f"num_local_particles must be a positive integer, got {num_local_particles!r}"
                )
        if nested and estimator == "dreg":
            raise ValueError(
                "estimator='dreg' is not available with nested=True; use 'iwae' or 'stl'"
            )
        self.estimator = estimator
        self.nested = bool(nested)
        self.num_local_particles = (
            (num_local_particles or num_particles) if self.nested else None
        )

    def _non_reparameterized_sites(self, guide_trace: poutine.Trace) -> List[str]:
        names = []
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if site["infer"].get("enumerate"):
                raise ValueError(
                    f"guide site {name!r} is enumerated; TraceIWAE_ELBO samples every latent "
                    "(use pyro.infer.TraceEnum_ELBO for enumeration)"
                )
            if not site["fn"].has_rsample:
                names.append(name)
        if names and self.estimator != "iwae":
            raise ValueError(
                f"estimator={self.estimator!r} needs a reparameterizable guide, but guide site "
                f"{names[0]!r} ({type(guide_trace.nodes[names[0]]['fn']).__name__}) has no "
                "rsample; use estimator='iwae' (score-function term) or TraceVIMCO_ELBO"
            )
        if names and self.nested:
            raise ValueError(
                f"nested=True needs a reparameterizable guide, but guide site {names[0]!r} has "
                "no rsample; use nested=False (score-function term) or TraceVIMCO_ELBO"
            )
        return names

    @staticmethod
    def _lumped(w: LogWeights) -> bool:
        g = w.global_
        return bool(w.global_latents) or not torch.equal(g, g[:1].expand_as(g))

    def _particle_log_weights(self, w: LogWeights, lumped: bool) -> torch.Tensor:
        """The log-weights whose log-mean-exp over dim 0 is taken: ``(K, N)`` per data point,
        ``(K,)`` lumped or nested (each already summed over data points and scaled)."""
        scale = w.scale
        if self.nested:
            inner = log_mean_exp(w.local, 1)  # (K, N)
            return w.global_.reshape(-1) + scale * inner.sum(-1)
        if lumped:
            return w.global_.reshape(-1) + scale * w.local.sum(-1)
        return w.local

    def _bound(self, w: LogWeights, lumped: bool) -> torch.Tensor:
        lw = self._particle_log_weights(w, lumped)
        if lw.dim() == 1:
            return log_mean_exp(lw, 0)
        scale = w.scale
        return scale * log_mean_exp(lw, 0).sum() + log_mean_exp(w.global_.reshape(-1), 0)

    def _score_function_surrogate(
        self, w: LogWeights, lumped: bool, guide_trace: poutine.Trace, names: List[str]
    ) -> torch.Tensor:
        """:math:`\\sum_k \\bot(\\mathcal L - \\mathcal L^{(-k)}) \\log q(z_k)` over the guide
        sites in ``names`` (per data point unless lumped)."""
        mpn = int(self.max_plate_nesting)
        log_q = 0.0
        for name in names:
            lp, is_local = site_log_prob_per_datapoint(guide_trace.nodes[name], w.data, mpn)
            log_q = log_q + (lp.sum(-1) if lumped else lp)
        with torch.no_grad():
            lw = self._particle_log_weights(w, lumped)
            signal = log_mean_exp(lw, 0)
            if lw.shape[0] > 1:
                signal = signal - _leave_one_out_log_mean_exp(lw)
        scale = 1.0 if lumped else w.scale
        return scale * (signal * log_q).sum()

    def _dreg_surrogate(
        self, w: LogWeights, w_stl: LogWeights, lumped: bool, traces
    ) -> torch.Tensor:
        r"""Surrogate :math:`\sum_k \bot(\tilde w_k)\, w_k^{\mathrm{STL}}` with the gradient of
        every latent value scaled by :math:`\tilde w_k` on its way back, so that the inference
        network gets :math:`\tilde w_k^2` and the model :math:`\tilde w_k`."""
        with torch.no_grad():
            normalized = torch.softmax(self._particle_log_weights(w, lumped), 0)
        mpn = int(self.max_plate_nesting)
        data_size = normalized.shape[-1] if normalized.dim() == 2 and w.data is not None else None
        # one particle: every weight is 1 (and there is no particle dim), so nothing is scaled
        holders = traces.holders if normalized.shape[0] > 1 else {}
        for name, holder in holders.items():
            site = traces.guide.nodes[name]
            value = site["value"]
            batch_ndim = value.dim() - site["fn"].event_dim
            shape = [1] * value.dim()
            shape[batch_ndim - mpn - 1] = normalized.shape[0]
            if data_size is not None:
                shape[batch_ndim + w.data.dim] = data_size
            holder.scale = normalized.reshape(shape)
        lw_stl = self._particle_log_weights(w_stl, lumped)
        surrogate = (normalized * lw_stl).sum(0)
        if not lumped:
            scale = w.scale
            g = w_stl.global_.reshape(-1)
            surrogate = scale * surrogate.sum() + g.mean()
        return surrogate

    @staticmethod
    def _trace_elbo_score_surrogate(traces, names: List[str]) -> torch.Tensor:
        r"""At :math:`K=1`: :class:`~pyro.infer.Trace_ELBO`'s score-function term exactly.

        The bound is then :math:`w = \log p - \log q`, whose gradient already holds
        :math:`-\nabla_\phi\, c\log q(z_s)` of each non-reparameterized site :math:`s`
        (through the value; :math:`c` its scale and mask). Pyro's surrogate has no such term
        (its ``entropy_term`` is 0 for these sites) and adds :math:`\bot(r_s)\log q(z_s)`
        with :math:`r_s` the detached cost Rao-Blackwellized over the site's plates and
        :math:`\log q` neither scaled nor masked (``ScoreParts.score_function``). So the
        surrogate here is :math:`\bot(r_s)\log q(z_s) + c\log q(z_s)`: the second term
        cancels the value's, and the total gradient is :math:`r_s\nabla\log q(z_s)`."""
        costs = trace_elbo_costs(traces.model, traces.guide, names)
        total = 0.0
        for name in names:
            site = traces.guide.nodes[name]
            total = total + (costs[name] * site["unscaled_log_prob"]).sum() + site["log_prob"].sum()
        return total

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args, **kwargs
    ) -> torch.Tensor:
        """The negative bound (see the class docstring) as a scalar tensor whose gradient is the
        chosen estimator's; use it with :class:`~pyro.infer.ELBOModule` (``elbo(model, guide)``)
        or any PyTorch optimizer."""
        grad = torch.is_grad_enabled()
        rescore = grad and self.estimator != "iwae"
        num_particle_dims = 2 if self.nested else 1
        traces = self._draw(model, guide, args, kwargs, rescore_guide=rescore)
        mpn = int(self.max_plate_nesting)
        non_reparam = self._non_reparameterized_sites(traces.guide)
        w = log_weights(
            traces.model, traces.guide, mpn, self.plate_name, num_particle_dims, allow_none=True
        )
        if w.data is None and self.nested:
            raise ValueError(
                "nested=True needs a vectorized data plate (the bound nests a log-mean-exp per "
                f"data point), but the program has no vectorized plate; wrap the observations "
                f"in pyro.plate({self.plate_name!r}, N) or use nested=False"
            )
        lumped = self._lumped(w)
        value = self._bound(w, lumped)
        if not grad:
            surrogate = value
        elif self.estimator == "iwae":
            surrogate = value
            if non_reparam and self.num_particles == 1 and not self.nested:
                surrogate = surrogate + self._trace_elbo_score_surrogate(traces, non_reparam)
            elif non_reparam:
                surrogate = surrogate + self._score_function_surrogate(
                    w, lumped, traces.guide, non_reparam
                )
        else:
            w_stl = log_weights(
                traces.model, traces.guide_rescored, mpn, self.plate_name, num_particle_dims,
                allow_none=True,
            )
            if self.estimator == "stl":
                surrogate = self._bound(w_stl, lumped)
            else:
                surrogate = self._dreg_surrogate(w, w_stl, lumped, traces)
        loss = -value if surrogate is value else value_with_surrogate_grad(-value, -surrogate)
        warn_if_nan(loss, "loss")
        return loss
