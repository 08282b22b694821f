r"""Per-site, per-particle, per-data-point terms for score-function estimators.

The score-function estimators of this package (:class:`~pyro_deepgen.infer.TraceVIMCO_ELBO`,
:class:`~pyro_deepgen.infer.TraceScoreFunction_ELBO`) need, for every particle :math:`s` and
every data point :math:`n` of the data plate,

* the log weight :math:`\log p(x_n, z_{sn}) - \log q(z_{sn}\mid x_n)` (with the particles'
  reparameterization path where the estimator wants it), and
* the score :math:`\log q_\phi(z_{sn}\mid x_n)` of each guide site, whose gradient with the sample
  held fixed is :math:`\nabla_\phi\log q_\phi`.

:func:`draw_particles` runs the guide and the replayed model once in a vectorized particle plate
(optionally sampling every guide site *without* its reparameterization path) and
:func:`particle_terms` reduces each site's ``log_prob`` to shape ``(P, N)`` (sites inside the
data plate) or ``(P, 1)`` (sites outside it).
"""
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer.elbo import ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites

from .particles import (
    PARTICLE_PLATE,
    DataPlate,
    find_data_plate,
    guess_max_plate_nesting,
)


class _SampleWithoutPath(Messenger):
    """Draw every latent sample site without its reparameterization path.

    Reparameterizable distributions are still drawn with ``rsample`` (so the random numbers are
    exactly those :class:`~pyro.infer.Trace_ELBO` would draw) and then detached; the others with
    ``sample``. Must be applied *outside* every plate so that sites are already broadcast.
    """

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or msg["value"] is not None or msg["done"]:
            return
        fn = msg["fn"]
        value = fn.rsample() if fn.has_rsample else fn.sample()
        msg["value"] = value.detach()


def draw_particles(
    model: Callable,
    guide: Callable,
    args: Sequence,
    kwargs: Dict,
    num_particles: int,
    max_plate_nesting: int,
    pathwise: bool = True,
    prune: bool = True,
) -> Tuple[poutine.Trace, poutine.Trace]:
    """Vectorized guide and replayed model traces (``log_prob`` computed at every site).

    :param bool pathwise: keep the reparameterization path of reparameterizable guide sites
        (``True``, as :func:`~pyro_deepgen.infer.particles.vectorized_traces`) or detach every
        sampled value so that gradients reach the guide only through its densities (``False``).
    :param bool prune: drop the plates' subsample sites (keep them to replay the same
        minibatch indices later).
    """
    plate = pyro.plate(PARTICLE_PLATE, num_particles, dim=-max_plate_nesting - 1)
    guide = plate(guide)
    if not pathwise:
        guide = _SampleWithoutPath()(guide)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(plate(model), trace=guide_trace)).get_trace(
        *args, **kwargs
    )
    if prune:
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    return model_trace, guide_trace


class SiteTerm(NamedTuple):
    """One sample site's log density reduced to ``(P, N)`` (local) or ``(P, 1)`` (global)."""

    name: str
    log_prob: torch.Tensor  # scaled (subsampling, poutine.scale) and masked, as in the ELBO
    unscaled: torch.Tensor  # masked but not scaled: the density of what was actually drawn
    local: bool  # inside the data plate
    is_observed: bool
    has_rsample: bool
    infer: Dict


class ParticleTerms(NamedTuple):
    model: List[SiteTerm]
    guide: List[SiteTerm]
    data: Optional[DataPlate]  # None when the program has no plate: one "data point"
    scale: float  # subsampling factor of the data plate (full size / minibatch size)

    @property
    def global_latents(self) -> Tuple[str, ...]:
        return tuple(t.name for t in self.model if not t.local and not t.is_observed)


def _reduce(
    site: Dict, log_prob: torch.Tensor, data: Optional[DataPlate], max_plate_nesting: int
) -> Tuple[torch.Tensor, bool]:
    """Sum ``log_prob`` (batch shape) over every plate but the data plate: ``(P, N)`` for a
    site inside the data plate, ``(P, 1)`` otherwise; the flag says which."""
    ndim = max_plate_nesting + 1
    if log_prob.dim() > ndim:
        raise ValueError(
            f"site {site['name']!r} has batch dims outside any plate (log_prob shape "
            f"{tuple(log_prob.shape)}); declare them with pyro.plate or .to_event()"
        )
    lp = log_prob.reshape((1,) * (ndim - log_prob.dim()) + log_prob.shape)
    local = data is not None and any(f.name == data.name for f in site["cond_indep_stack"])
    if not local:
        return lp.reshape(lp.shape[0], -1).sum(-1, keepdim=True), False
    lp = lp.movedim(ndim + data.dim, 1)
    return lp.reshape(lp.shape[0], lp.shape[1], -1).sum(-1), True


def _find_data_plate(trace: poutine.Trace, plate_name: Optional[str]) -> Optional[DataPlate]:
    try:
        return find_data_plate(trace, plate_name)
    except ValueError:
        plates = {
            f.name
            for site in trace.nodes.values()
            if site["type"] == "sample"
            for f in site["cond_indep_stack"]
            if f.vectorized and f.name != PARTICLE_PLATE
        }
        if plates:
            raise
        return None  # no plate at all: the whole program is one data point


def particle_terms(
    model_trace: poutine.Trace,
    guide_trace: poutine.Trace,
    max_plate_nesting: int,
    plate_name: Optional[str] = "data",
) -> ParticleTerms:
    """Reduce every sample site of a vectorized model/guide pair to per-data-point terms.

    Without any vectorized plate in the program, the whole program counts as one data point
    (every term has shape ``(P, 1)``).
    """
    data = _find_data_plate(model_trace, plate_name)
    out = {}
    for key, trace in (("model", model_trace), ("guide", guide_trace)):
        terms = []
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            lp, local = _reduce(site, site["log_prob"], data, max_plate_nesting)
            unscaled = scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])
            unscaled, _ = _reduce(site, unscaled, data, max_plate_nesting)
            terms.append(
                SiteTerm(
                    name,
                    lp,
                    unscaled,
                    local,
                    bool(site["is_observed"]),
                    bool(site["fn"].has_rsample),
                    site["infer"],
                )
            )
        out[key] = terms
    scale = 1.0 if data is None else data.size / data.subsample_size
    return ParticleTerms(out["model"], out["guide"], data, scale)


def check_num_particles(num_particles: int, minimum: int, estimator: str, why: str) -> None:
    if not isinstance(num_particles, int) or num_particles < minimum:
        raise ValueError(
            f"{estimator} needs num_particles >= {minimum} ({why}); got num_particles="
            f"{num_particles!r}"
        )


class ParticleELBO(ELBO):
    """An :class:`~pyro.infer.elbo.ELBO` with vectorized particles whose subclasses write only
    ``differentiable_loss`` (the exact negative objective carrying its estimator's gradient);
    ``loss`` and ``loss_and_grads`` are built from it. Subclasses set ``self.plate_name``."""

    plate_name: Optional[str] = "data"

    def _get_trace(
        self, model: Callable, guide: Callable, args, kwargs, pathwise: bool = True, prune=True
    ):
        """The vectorized model and guide traces of ``num_particles`` particles."""
        if self.max_plate_nesting == float("inf"):
            with torch.random.fork_rng():  # the guess must not shift the particles' draws
                self.max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
        return draw_particles(
            model, guide, args, kwargs, self.num_particles, self.max_plate_nesting, pathwise, prune
        )

    def _particle_terms(
        self, model: Callable, guide: Callable, args, kwargs, pathwise: bool = True
    ) -> ParticleTerms:
        """Draw ``num_particles`` vectorized particles and reduce them to per-site terms."""
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs, pathwise)
        return particle_terms(model_trace, guide_trace, self.max_plate_nesting, self.plate_name)

    @torch.no_grad()
    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The negative objective (a float)."""
        return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The negative objective; backpropagates the estimator's surrogate."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()
