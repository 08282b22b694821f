"""Wake-sleep (Hinton et al. 1995) and reweighted wake-sleep (Bornschein & Bengio 2015)."""
from typing import Callable, Dict, Optional, Tuple

import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites

from .elbo import ParticleELBO
from .particles import DataPlate, find_data_plate, site_log_prob_per_datapoint
from .util import log_mean_exp, value_with_surrogate_grad

SleepArgs = Callable[[Dict[str, torch.Tensor], tuple, dict], Tuple[tuple, dict]]


class ReweightedWakeSleep(ParticleELBO):
    r"""Reweighted wake-sleep with per-data-point importance weights and minibatch support.

    For each data point :math:`x_n` the guide draws :math:`K` particles
    :math:`h_{nk}\sim q_\phi(h\mid x_n)` with importance weights
    :math:`w_{nk} = p_\theta(x_n, h_{nk}) / q_\phi(h_{nk}\mid x_n)` and normalized weights
    :math:`\tilde w_{nk} = w_{nk} / \sum_j w_{nj}`. The updates of [1] are

    .. math::

        \Delta\theta \propto \sum_n \sum_k \tilde w_{nk}\,
            \nabla_\theta \log p_\theta(x_n, h_{nk})
            \qquad\text{(wake phase, p)}

        \Delta\phi \propto \lambda \sum_n \sum_k \tilde w_{nk}\,
            \nabla_\phi \log q_\phi(h_{nk}\mid x_n)
            + (1-\lambda) \sum_n \nabla_\phi \log q_\phi(\tilde h_n\mid \tilde x_n),
            \quad (\tilde x_n, \tilde h_n)\sim p_\theta
            \qquad\text{(wake and sleep phase, q)}

    with :math:`\lambda` = ``insomnia``. The wake-phase :math:`\theta` update is the gradient
    of the importance-weighted bound :math:`\mathcal L_K = \sum_n \log \frac1K \sum_k w_{nk}`
    (Burda et al. 2016), and the returned *value* is exactly :math:`-\mathcal L_K`; the
    gradients of both :math:`\theta` and :math:`\phi` are carried by a surrogate
    (:func:`~pyro_deepgen.infer.util.value_with_surrogate_grad`), so a plain ``.backward()``
    (or :meth:`loss_and_grads`, or ``loss=`` of :func:`pyro_deepgen.train.fit`) trains model
    and guide together.

    **Minibatches.** The weights are kept per data point: every site's log-density is summed
    over everything except the particle dimension and the dimension of ``pyro.plate(plate_name)``,
    and the plate's subsampling scale :math:`N/B` multiplies the per-data-point terms *after*
    the log-mean-exp, so a minibatch of size :math:`B` gives an unbiased estimate of the full
    data set's objective. Every sample site must therefore lie inside that plate (all latents
    local to a data point, as in a Helmholtz machine).

    **Pyro's** :class:`pyro.infer.ReweightedWakeSleep` **(1.9.2) falls short here** (verified by
    running it, ``tests/energy/test_wake_sleep.py``): its docstring says "Mini-batch training is
    not supported yet", and it sums the log-weights over the whole batch *before* the
    log-sum-exp over particles. So (a) its particles weight whole batches, not data points: on
    64 points with :math:`K=50` its value lies about 30 nats above the exact
    :math:`-\sum_n\log p(x_n)` where ours is within 2; and (b) with a subsampled plate the
    scale :math:`N/B` ends up inside the exponent, so a half batch misses twice its exact
    value by 3-5 nats however large :math:`K` is.

    **Sleep phase.** One dream :math:`(\tilde x, \tilde h)` per data point of the batch is
    drawn from ``poutine.uncondition(model)``; the guide is then run on the dreamt observations
    with its latents replayed from the dream. The guide's arguments are found by replacing
    every argument that *is* (by identity) the observed value of a model site by that site's
    dream, which covers the usual ``model(x)`` / ``guide(x)`` pattern; otherwise pass
    ``sleep_args(observations, args, kwargs) -> (args, kwargs)``.

    :param int num_particles: :math:`K`, particles per data point (vectorized). Default 5, as
        in [1].
    :param float insomnia: :math:`\lambda\in[0, 1]`, weight of the wake-phase :math:`q` update
        (1: wake only, the default as in Pyro; 0: sleep only; 0.5: the "wake+sleep" average).
    :param str plate_name: name of the data plate. Default ``"data"``.
    :param sleep_args: optional callable mapping ``(observations, args, kwargs)`` to the guide's
        ``(args, kwargs)`` for the sleep phase.
    :param max_plate_nesting: number of nested plates of the model (the particle plate goes
        outside them); guessed from a first run by default.

    **Limiting cases**: with ``num_particles=1`` and ``insomnia=0`` this is exactly
    :class:`WakeSleep` (same value, same gradients on the same draws); with ``num_particles=1``
    the value is the negative ELBO.

    **References**: [1] J. Bornschein, Y. Bengio, *Reweighted Wake-Sleep*, arXiv:1406.2751.
    [2] T. A. Le, A. R. Kosiorek, N. Siddharth, Y. W. Teh, F. Wood, *Revisiting Reweighted
    Wake-Sleep for Models with Stochastic Control Flow*, arXiv:1805.10469. [3] Y. Burda,
    R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, arXiv:1509.00519.
    """

    pathwise = False  # the particles are constants for the updates: drawn, then detached

    def __init__(
        self,
        num_particles: int = 5,
        insomnia: float = 1.0,
        plate_name: str = "data",
        sleep_args: Optional[SleepArgs] = None,
        max_plate_nesting: float = float("inf"),
    ) -> None:
        super().__init__(num_particles, max_plate_nesting, plate_name=plate_name)
        if not 0.0 <= insomnia <= 1.0:
            raise ValueError(f"insomnia must lie in [0, 1], got {insomnia}")
        if sleep_args is not None and not callable(sleep_args):
            raise TypeError("sleep_args must be a callable (observations, args, kwargs) -> ...")
        self.insomnia = float(insomnia)
        self.sleep_args = sleep_args

    # -- wake phase -----------------------------------------------------------------------
    def _per_datum_log_prob(self, trace, data: DataPlate) -> torch.Tensor:
        """Sum a trace's per-data-point log-densities (subsampling scale divided out) to shape
        ``(K, B)``."""
        total = 0.0
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            log_p, local = site_log_prob_per_datapoint(site, data, self.max_plate_nesting)
            if not local:
                raise ValueError(
                    f"sample site {name!r} is outside pyro.plate({data.name!r}); (reweighted) "
                    "wake-sleep needs every latent and observation local to a data point"
                )
            total = total + log_p
        return total.expand(self.num_particles, data.subsample_size)

    def _wake(self, model, guide, args, kwargs):
        """Per-data-point ``log p(x, h)`` and ``log q(h|x)`` of shape ``(K, B)``, and the
        subsampling scale ``N / B`` of the data plate."""
        traces = self._draw(model, guide, args, kwargs)
        self._require_latents(traces, "the wake phase trains q(h|x) on the model's latents")
        model_trace, guide_trace = traces.model, traces.guide
        if not any(s["type"] == "sample" for s in guide_trace.nodes.values()):
            raise ValueError(
                f"{type(self).__name__}: the guide samples no latent site, so there is no q(h|x) to "
                "train; sample each of the model's latent sites in the guide"
            )
        data = find_data_plate(model_trace, self.plate_name)
        log_p = self._per_datum_log_prob(model_trace, data)
        log_q = self._per_datum_log_prob(guide_trace, data)
        return log_p, log_q, data.size / data.subsample_size

    # -- sleep phase ----------------------------------------------------------------------
    def _sleep_log_q(self, model, guide, args, kwargs) -> torch.Tensor:
        """``sum_n log q(h_n | x_n)`` (plate-scaled) on one dream per data point."""
        dream = poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs)
        dream.detach_()
        observations, originals = {}, {}
        for name, site in dream.nodes.items():
            if site["type"] == "sample" and site["infer"].get("was_observed", False):
                observations[name] = site["value"]
                originals[id(site["infer"]["obs"])] = name
        if self.sleep_args is not None:
            args, kwargs = self.sleep_args(observations, args, kwargs)
        else:
            replaced = [0]

            def swap(value):
                name = originals.get(id(value))
                if name is None:
                    return value
                replaced[0] += 1
                return observations[name]

            args = tuple(swap(a) for a in args)
            kwargs = {k: swap(v) for k, v in kwargs.items()}
            if not replaced[0]:
                raise ValueError(
                    "sleep phase: no argument of the model is the value observed at a sample "
                    "site, so the dreams cannot be handed to the guide; pass sleep_args="
                )
        guide_trace = poutine.trace(poutine.replay(guide, trace=dream)).get_trace(*args, **kwargs)
        guide_trace = prune_subsample_sites(guide_trace)
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and name not in dream.nodes:
                raise ValueError(f"guide site {name!r} does not appear in the model")
        return guide_trace.log_prob_sum()

    # -- the objective --------------------------------------------------------------------
    def _theta_surrogate(self, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """Per data point: the quantity whose gradient is the wake-phase p update."""
        return torch.logsumexp(log_p - log_q.detach(), dim=0)

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """Per data point: the bound on log p(x) reported as the (negative) value."""
        return log_mean_exp(log_w, 0)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        r"""The negative bound (:math:`-\mathcal L_K` here) with the surrogate gradients of
        p and q."""
        log_p, log_q, scale = self._wake(model, guide, args, kwargs)
        log_w = (log_p - log_q).detach()
        value = -scale * self._bound(log_w).sum()
        surrogate = -scale * self._theta_surrogate(log_p, log_q).sum()
        if self.insomnia > 0:
            weights = torch.softmax(log_w, dim=0)
            surrogate = surrogate - self.insomnia * scale * (weights * log_q).sum()
        if self.insomnia < 1:
            sleep = self._sleep_log_q(model, guide, args, kwargs)
            surrogate = surrogate - (1.0 - self.insomnia) * sleep
        return value_with_surrogate_grad(value, surrogate)


class WakeSleep(ReweightedWakeSleep):
    r"""The wake-sleep algorithm of Hinton et al. (1995) for Helmholtz machines.

    .. math::

        \Delta\theta \propto \sum_n \frac1K\sum_k \nabla_\theta \log p_\theta(x_n, h_{nk}),
            \quad h_{nk}\sim q_\phi(h\mid x_n) \qquad\text{(wake phase)}

        \Delta\phi \propto \sum_n \nabla_\phi \log q_\phi(\tilde h_n\mid\tilde x_n),
            \quad (\tilde x_n,\tilde h_n)\sim p_\theta \qquad\text{(sleep phase)}

    The returned value is the negative ELBO :math:`-\sum_n \frac1K\sum_k \log w_{nk}` (the
    quantity wake-sleep approximately maximizes; its :math:`q` update minimizes
    :math:`\mathrm{KL}(p\,\|\,q)` instead of :math:`\mathrm{KL}(q\,\|\,p)`). Minibatches,
    plates and ``sleep_args`` work as in :class:`ReweightedWakeSleep`.

    :param int num_particles: wake-phase samples per data point, averaged. Default 1.
    :param str plate_name: name of the data plate. Default ``"data"``.
    :param sleep_args: see :class:`ReweightedWakeSleep`.
    :param max_plate_nesting: bound on nested plates; guessed by default.

    **Limiting case**: equals ``ReweightedWakeSleep(num_particles=1, insomnia=0)``.

    **Reference**: G. E. Hinton, P. Dayan, B. J. Frey, R. M. Neal, *The wake-sleep algorithm
    for unsupervised neural networks*, Science 268 (1995).
    """

    def __init__(
        self,
        num_particles: int = 1,
        plate_name: str = "data",
        sleep_args: Optional[SleepArgs] = None,
        max_plate_nesting: float = float("inf"),
    ) -> None:
        super().__init__(num_particles, 0.0, plate_name, sleep_args, max_plate_nesting)

    def _theta_surrogate(self, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        return log_p.mean(0)

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.mean(0)
