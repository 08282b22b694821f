r"""Per-site, per-particle, per-data-point terms for score-function estimators.

The score-function estimators of this package (:class:`~pyro_deepgen.infer.TraceVIMCO_ELBO`,
:class:`~pyro_deepgen.infer.TraceScoreFunction_ELBO`) need, for every particle :math:`s` and
every data point :math:`n` of the data plate,

* the log weight :math:`\log p(x_n, z_{sn}) - \log q(z_{sn}\mid x_n)` (with the particles'
  reparameterization path where the estimator wants it), and
* the score :math:`\log q_\phi(z_{sn}\mid x_n)` of each guide site, whose gradient with the sample
  held fixed is :math:`\nabla_\phi\log q_\phi`.

:func:`particle_terms` reduces each site of the traces drawn by
:func:`~pyro_deepgen.infer.particles.draw_particles` to shape ``(P, N)`` (sites inside the data
plate) or ``(P, 1)`` (sites outside it) with
:func:`~pyro_deepgen.infer.particles.site_log_prob_per_datapoint`, keeping both the scaled
density (as in the ELBO) and the unscaled one (the density of what was actually drawn).

:func:`plate_rao_blackwellized_costs` gives instead, for each guide site, its learning signal
Rao-Blackwellized over *every* plate (Pyro's plate rule), in the shape of the site's
``log_prob`` (used by :class:`~pyro_deepgen.infer.TraceScoreFunction_ELBO`).
"""
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

from .._compat import moved_attributes
from .particles import DataPlate, find_data_plate, site_log_prob_per_datapoint


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
    data = find_data_plate(model_trace, plate_name, allow_none=True)
    out = {}
    for key, trace in (("model", model_trace), ("guide", guide_trace)):
        terms = []
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            lp, local = site_log_prob_per_datapoint(
                site, data, max_plate_nesting, unscale_data_plate=False
            )
            unscaled = scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])
            unscaled, _ = site_log_prob_per_datapoint(
                site, data, max_plate_nesting, log_prob=unscaled, unscale_data_plate=False
            )
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
    scale = 1.0 if data is None else data.scale
    return ParticleTerms(out["model"], out["guide"], data, scale)


def _plate_frames(site: Dict) -> FrozenSet[Tuple[str, int]]:
    """The vectorized plates of a site, as ``(name, dim)`` pairs."""
    return frozenset((f.name, f.dim) for f in site["cond_indep_stack"] if f.vectorized)


def plate_rao_blackwellized_costs(
    model_trace: poutine.Trace, guide_trace: poutine.Trace, sites: Sequence[str]
) -> Dict[str, torch.Tensor]:
    r"""The learning signal of each guide site in ``sites``, Rao-Blackwellized over every plate.

    The cost of the program is :math:`f = \sum_t c_t` over every sample site :math:`t` of the
    model (:math:`c_t = \log p`) and of the guide (:math:`c_t = -\log q`), each scaled and
    masked as in the ELBO. For a guide site :math:`s` in the plates :math:`F_s`, every term
    :math:`c_t` is summed over the dims of the plates in :math:`F_t\setminus F_s` and broadcast
    over those of :math:`F_s`: each element (plate slice) of :math:`\log q(z_s)` is weighted by
    the terms of its own slice and by the terms of every plate it does not lie in, never by the
    other slices of its plates, which are conditionally independent of it. This is the rule of
    Pyro's :class:`~pyro.infer.Trace_ELBO` (``MultiFrameTensor.sum_to``); unlike Pyro's
    :class:`~pyro.infer.TraceGraph_ELBO` it keeps terms that do not depend on :math:`z_s`
    (zero-mean, so the estimator stays unbiased), since it tracks plates, not provenance.

    The returned tensors are detached and have the shape of the site's ``log_prob``.
    """
    groups: Dict[FrozenSet, torch.Tensor] = {}
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            key = _plate_frames(site)
            lp = sign * site["log_prob"].detach()
            groups[key] = groups[key] + lp if key in groups else lp
    out: Dict[str, torch.Tensor] = {}
    reduced: Dict[Tuple[FrozenSet, FrozenSet], torch.Tensor] = {}
    for name in sites:
        site = guide_trace.nodes[name]
        target = _plate_frames(site)
        shape = site["log_prob"].shape
        total = site["log_prob"].new_zeros(())
        for frames, value in groups.items():
            key = (frames, target)
            if key not in reduced:
                dims = [d for n, d in frames - target if -value.dim() <= d and value.shape[d] != 1]
                reduced[key] = value.sum(dims, keepdim=True) if dims else value
            total = total + reduced[key]
        out[name] = _fit_shape(total, shape, name)
    return out


def _fit_shape(cost: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    """Broadcast a cost to a site's ``log_prob`` shape; dims that do not fit (terms outside
    any plate of the site's, e.g. undeclared batch dims) are summed out first."""
    while cost.dim() > len(shape):
        cost = cost.sum(0)
    dims = [i for i in range(-cost.dim(), 0) if cost.shape[i] != 1 and cost.shape[i] != shape[i]]
    if dims:
        cost = cost.sum(dims, keepdim=True)
    return cost.expand(shape)


# ParticleELBO and the num_particles check moved to pyro_deepgen.infer.elbo (release 0.2)
__getattr__ = moved_attributes(
    __name__,
    {"ParticleELBO": "pyro_deepgen.infer.elbo", "check_num_particles": "pyro_deepgen.infer.elbo"},
)
