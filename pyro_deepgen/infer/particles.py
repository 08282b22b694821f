"""Vectorized particles and per-data-point log importance weights.

Every multi-sample estimator in this package (the IWAE family, VIMCO, the log-likelihood
evaluator) draws its particles the same way: the model and guide run once inside an outermost
``pyro.plate`` of size ``num_particles``, and each site's ``log_prob`` is reduced to shape
``(num_particles, N)``: one entry per particle and per data point of the data plate.
"""
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

PARTICLE_PLATE = "num_particles_vectorized"


def guess_max_plate_nesting(model: Callable, guide: Callable, args: Sequence, kwargs: Dict) -> int:
    """Run the guide and the replayed model once (blocked) and return the deepest plate dim."""
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    dims = [
        frame.dim
        for trace in (model_trace, guide_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return -min(dims) if dims else 0


def vectorized_traces(
    model: Callable,
    guide: Callable,
    args: Sequence,
    kwargs: Dict,
    num_particles: int,
    max_plate_nesting: int,
) -> Tuple[poutine.Trace, poutine.Trace]:
    """Guide and replayed model traces with ``num_particles`` particles in the plate at
    ``dim = -max_plate_nesting - 1``; ``log_prob`` is computed at every sample site."""
    plate = pyro.plate(PARTICLE_PLATE, num_particles, dim=-max_plate_nesting - 1)
    guide_trace = poutine.trace(plate(guide)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(plate(model), trace=guide_trace)).get_trace(
        *args, **kwargs
    )
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace = prune_subsample_sites(model_trace)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    return model_trace, guide_trace


class DataPlate(NamedTuple):
    name: str
    dim: int  # negative, counted without the particle dim
    size: int  # full size of the data set (plate size)
    subsample_size: int  # number of data points present in this trace


def find_data_plate(trace: poutine.Trace, plate_name: Optional[str] = "data") -> DataPlate:
    """Locate the data plate in a trace.

    With ``plate_name=None`` the outermost vectorized plate shared by every observed site is
    used. Raises a ``ValueError`` listing the plates found when there is no such plate.
    """
    frames = {}
    observed_stacks = []
    for site in trace.nodes.values():
        if site["type"] != "sample":
            continue
        stack = [f for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLE_PLATE]
        for f in stack:
            frames.setdefault(f.name, f)
        if site["is_observed"]:
            observed_stacks.append([f.name for f in stack])
    if plate_name is None:
        common = observed_stacks[0] if observed_stacks else []
        common = [n for n in common if all(n in s for s in observed_stacks)]
        if not common:
            raise ValueError(
                "could not find a plate shared by all observed sites; wrap the observations "
                "in pyro.plate('data', ...) or pass plate_name"
            )
        plate_name = common[0]
    if plate_name not in frames:
        raise ValueError(
            f"no vectorized plate named {plate_name!r} in the model or guide "
            f"(plates found: {sorted(frames)}); pass plate_name=<your data plate's name>"
        )
    f = frames[plate_name]
    return DataPlate(plate_name, f.dim, int(f.full_size or f.size), int(f.size))


def site_log_prob_per_datapoint(
    site: Dict, data: DataPlate, max_plate_nesting: int
) -> Tuple[torch.Tensor, bool]:
    """Reduce one site's ``log_prob`` (unscaled) to shape ``(num_particles, N)`` or
    ``(num_particles, 1)``; the flag says whether the site lies inside the data plate."""
    lp = site["log_prob"]
    ndim = max_plate_nesting + 1
    if lp.dim() > ndim:
        raise ValueError(
            f"site {site['name']!r} has batch dims outside any plate (log_prob shape "
            f"{tuple(lp.shape)}); declare them with pyro.plate or .to_event()"
        )
    lp = lp.reshape((1,) * (ndim - lp.dim()) + lp.shape)
    data_axis = ndim + data.dim
    local = any(f.name == data.name for f in site["cond_indep_stack"])
    other = [d for d in range(1, ndim) if d != data_axis]
    if other:
        lp = lp.sum(other, keepdim=True)
    return lp.reshape(lp.shape[0], lp.shape[data_axis]), local


class LogWeights(NamedTuple):
    """Per-particle, per-data-point log densities of a vectorized model/guide pair."""

    local: torch.Tensor  # (P, N): log p - log q of the sites inside the data plate
    global_: torch.Tensor  # (P, 1): log p - log q of the sites outside it
    data: DataPlate
    global_latents: Tuple[str, ...]  # names of latent sites outside the data plate


def log_weights(
    model_trace: poutine.Trace,
    guide_trace: poutine.Trace,
    max_plate_nesting: int,
    plate_name: Optional[str] = "data",
) -> LogWeights:
    r"""Split :math:`\log p(x,z) - \log q(z)` into per-data-point and global parts.

    Returns ``local`` of shape ``(P, N)`` with the terms of every site inside the data plate and
    ``global_`` of shape ``(P, 1)`` with the rest. Scales from subsampling are *not* applied.
    """
    data = find_data_plate(model_trace, plate_name)
    num_particles = None
    local = 0.0
    global_ = 0.0
    global_latents = []
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            lp, is_local = site_log_prob_per_datapoint(site, data, max_plate_nesting)
            num_particles = lp.shape[0] if num_particles is None else max(num_particles, lp.shape[0])
            if is_local:
                local = local + sign * lp
            else:
                global_ = global_ + sign * lp
                if sign > 0 and not site["is_observed"]:
                    global_latents.append(name)
    if not torch.is_tensor(local):
        raise ValueError(f"no site lies inside the data plate {data.name!r}")
    zero = local.new_zeros(local.shape[0], 1)
    local = local.expand(num_particles, data.subsample_size)
    global_ = (zero + global_).expand(num_particles, 1)
    return LogWeights(local, global_, data, tuple(global_latents))
