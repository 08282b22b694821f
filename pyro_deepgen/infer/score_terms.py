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
"""
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask

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


# ParticleELBO and the num_particles check moved to pyro_deepgen.infer.elbo (release 0.2)
__getattr__ = moved_attributes(
    __name__,
    {"ParticleELBO": "pyro_deepgen.infer.elbo", "check_num_particles": "pyro_deepgen.infer.elbo"},
)
