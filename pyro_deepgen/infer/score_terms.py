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
Rao-Blackwellized over *every* plate (Pyro's plate rule) and optionally over the sites it does
not reach (provenance tracking, Pyro's ``TraceGraph_ELBO`` rule), in the shape of the site's
``log_prob`` (used by :class:`~pyro_deepgen.infer.TraceScoreFunction_ELBO`).
"""
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

import torch
from pyro import poutine
from pyro.ops.provenance import extract_provenance
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
    model_trace: poutine.Trace,
    guide_trace: poutine.Trace,
    sites: Sequence[str],
    provenance: bool = False,
) -> Dict[str, torch.Tensor]:
    r"""The learning signal of each guide site in ``sites``, Rao-Blackwellized over every plate
    and, with ``provenance=True``, over every site it does not reach.

    The cost of the program is :math:`f = \sum_t c_t` over every sample site :math:`t` of the
    model (:math:`c_t = \log p`) and of the guide (:math:`c_t = -\log q`), each scaled and
    masked as in the ELBO. For a guide site :math:`s` in the plates :math:`F_s`, every term
    :math:`c_t` is summed over the dims of the plates in :math:`F_t\setminus F_s` and broadcast
    over those of :math:`F_s`: each element (plate slice) of :math:`\log q(z_s)` is weighted by
    the terms of its own slice and by the terms of every plate it does not lie in, never by the
    other slices of its plates, which are conditionally independent of it. This is the rule of
    Pyro's :class:`~pyro.infer.Trace_ELBO` (``MultiFrameTensor.sum_to``).

    With ``provenance=True`` (the traces drawn with ``track_provenance=True``), a term
    :math:`c_t` enters the signal of :math:`s` only if it was computed from :math:`z_s`
    (:math:`s` is in :func:`~pyro.ops.provenance.get_provenance` of :math:`c_t`): the rule of
    Pyro's :class:`~pyro.infer.TraceGraph_ELBO`. A term that does not depend on :math:`z_s`
    has zero mean against :math:`\nabla\log q(z_s)`, so dropping it keeps the estimator
    unbiased and lowers its variance. Dependence is tracked through tensor operations only:
    a value that leaves torch (``.item()``, ``float()``, Python control flow on :math:`z_s`)
    loses it, as in ``TraceGraph_ELBO``.

    The returned tensors are detached, free of provenance, and have the shape of the site's
    ``log_prob``.
    """
    groups: Dict[Tuple[FrozenSet, FrozenSet], torch.Tensor] = {}
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            lp, sources = extract_provenance(site["log_prob"])
            key = (_plate_frames(site), frozenset(sources) if provenance else frozenset())
            lp = sign * lp.detach()
            groups[key] = groups[key] + lp if key in groups else lp
    out: Dict[str, torch.Tensor] = {}
    reduced: Dict[Tuple[FrozenSet, FrozenSet, FrozenSet], torch.Tensor] = {}
    for name in sites:
        site = guide_trace.nodes[name]
        target = _plate_frames(site)
        shape = site["log_prob"].shape
        total = extract_provenance(site["log_prob"])[0].new_zeros(())
        for (frames, sources), value in groups.items():
            if provenance and name not in sources:
                continue
            key = (frames, sources, target)
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
