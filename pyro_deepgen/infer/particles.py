"""Vectorized particles and per-data-point log importance weights.

Every multi-sample estimator in this package (the IWAE family, VIMCO, the log-likelihood
evaluator) draws its particles the same way: the model and guide run once inside an outermost
``pyro.plate`` of size ``num_particles``, and each site's ``log_prob`` is reduced to shape
``(num_particles, N)``: one entry per particle and per data point of the data plate.
"""
import contextlib
from typing import Callable, Dict, Iterator, NamedTuple, Optional, Sequence, Tuple

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.plate_messenger import PlateMessenger
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

PARTICLE_PLATE = "num_particles_vectorized"
LOCAL_PARTICLE_PLATE = "num_local_particles_vectorized"
PARTICLE_PLATES = (PARTICLE_PLATE, LOCAL_PARTICLE_PLATE)


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


class _LocalParticlePlate(PlateMessenger):
    """The inner particle plate of the nested layout: it broadcasts only the sites that lie
    inside the data plate, so global sites keep one draw per outer (global) particle."""

    def __init__(self, size: int, dim: int, data_plate: str) -> None:
        super().__init__(LOCAL_PARTICLE_PLATE, size, dim=dim)
        self.data_plate = data_plate

    def _process_message(self, msg) -> None:
        if any(f.name == self.data_plate for f in msg["cond_indep_stack"]):
            super()._process_message(msg)


class _GradScale(torch.autograd.Function):
    """Identity whose backward multiplies the incoming gradient by ``holder.scale`` (set after
    the forward pass, e.g. to normalized importance weights); ``None`` means 1."""

    @staticmethod
    def forward(ctx, x, holder):
        ctx.holder = holder
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        scale = ctx.holder.scale
        return (grad if scale is None else grad * scale), None


class GradScaleHolder:
    """Mutable slot read by the backward pass of a value replayed through :func:`particle_traces`
    with ``rescore_guide=True``."""

    def __init__(self) -> None:
        self.scale: Optional[torch.Tensor] = None


@contextlib.contextmanager
def _frozen_params(trace: poutine.Trace) -> Iterator[None]:
    """Temporarily set ``requires_grad=False`` on the leaf tensors of every ``pyro.param`` in
    ``trace`` (``PyroModule`` parameters and ``pyro.module`` parameters included)."""
    leaves = []
    for site in trace.nodes.values():
        if site["type"] != "param":
            continue
        value = site["value"]
        unconstrained = getattr(value, "unconstrained", None)
        leaf = unconstrained() if callable(unconstrained) else value
        if torch.is_tensor(leaf) and leaf.is_leaf and leaf.requires_grad:
            leaves.append(leaf)
    for leaf in leaves:
        leaf.requires_grad_(False)
    try:
        yield
    finally:
        for leaf in leaves:
            leaf.requires_grad_(True)


def _compute_log_prob(trace: poutine.Trace) -> None:
    """``trace.compute_log_prob()`` without the per-site ``log_prob_sum`` and NaN/Inf checks
    (each a device sync; the estimators check their final loss instead). Errors are re-raised
    by Pyro's version, which names the site and prints the shapes."""
    try:
        for site in trace.nodes.values():
            if site["type"] == "sample" and "log_prob" not in site:
                lp = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
                site["unscaled_log_prob"] = lp
                site["log_prob"] = scale_and_mask(lp, site["scale"], site["mask"])
    except ValueError:
        trace.compute_log_prob()
        raise


class ParticleTraces(NamedTuple):
    model: poutine.Trace
    guide: poutine.Trace
    # the guide re-run at the same values with its parameters frozen (path derivative only)
    guide_rescored: Optional[poutine.Trace]
    # one GradScaleHolder per latent guide site (only with rescore_guide=True)
    holders: Dict[str, GradScaleHolder]


def particle_traces(
    model: Callable,
    guide: Callable,
    args: Sequence,
    kwargs: Dict,
    num_particles: int,
    max_plate_nesting: int,
    *,
    num_local_particles: Optional[int] = None,
    plate_name: str = "data",
    rescore_guide: bool = False,
) -> ParticleTraces:
    r"""Like :func:`vectorized_traces`, with two options used by the IWAE family.

    ``num_local_particles=J`` selects the *nested* layout: an outer plate of ``num_particles``
    (K) global particles at ``dim=-max_plate_nesting-2`` and an inner plate of J local particles
    at ``dim=-max_plate_nesting-1`` that only applies to sites inside ``plate_name``; sites
    outside the data plate are drawn K times, sites inside it K*J times per data point.

    ``rescore_guide=True`` replays fresh views of the guide's latent values (each passed through
    a gradient-scaling identity, see :class:`GradScaleHolder`) into the model and into a second
    run of the guide whose parameters are frozen: its ``log_prob`` is
    :math:`\log q_{\bot(\phi)}(z)`, differentiable in :math:`z` only (STL/DReG). The values
    are fresh tensors so that transforms never answer from their cache.
    """
    if num_local_particles is None:
        plates = [pyro.plate(PARTICLE_PLATE, num_particles, dim=-max_plate_nesting - 1)]
    else:
        plates = [
            pyro.plate(PARTICLE_PLATE, num_particles, dim=-max_plate_nesting - 2),
            _LocalParticlePlate(num_local_particles, -max_plate_nesting - 1, plate_name),
        ]

    def wrap(fn):
        for plate in reversed(plates):
            fn = plate(fn)
        return fn

    guide_trace = poutine.trace(wrap(guide)).get_trace(*args, **kwargs)
    replay_trace = guide_trace
    holders: Dict[str, GradScaleHolder] = {}
    if rescore_guide:
        replay_trace = guide_trace.copy()
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
                holders[name] = GradScaleHolder()
                site = site.copy()
                site["value"] = _GradScale.apply(site["value"], holders[name])
                replay_trace.nodes[name] = site
    model_trace = poutine.trace(poutine.replay(wrap(model), trace=replay_trace)).get_trace(
        *args, **kwargs
    )
    rescored = None
    if rescore_guide:
        with _frozen_params(guide_trace):
            rescored = poutine.trace(poutine.replay(wrap(guide), trace=replay_trace)).get_trace(
                *args, **kwargs
            )
        rescored = prune_subsample_sites(rescored)
        _compute_log_prob(rescored)
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace = prune_subsample_sites(model_trace)
    _compute_log_prob(guide_trace)
    _compute_log_prob(model_trace)
    return ParticleTraces(model_trace, guide_trace, rescored, holders)


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
        stack = [
            f for f in site["cond_indep_stack"] if f.vectorized and f.name not in PARTICLE_PLATES
        ]
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
    site: Dict, data: DataPlate, max_plate_nesting: int, num_particle_dims: int = 1
) -> Tuple[torch.Tensor, bool]:
    """Reduce one site's ``log_prob`` to shape ``particle_shape + (N,)`` (or ``(1,)`` for a site
    outside the data plate); the flag says whether the site lies inside the data plate.

    Every plate dim other than the data plate's is summed out. The data plate's subsampling
    scale ``size / subsample_size`` is divided out (other scales and masks are kept), so the
    entries are per-data-point log densities whatever the minibatch.
    """
    lp = site["log_prob"]
    ndim = max_plate_nesting + num_particle_dims
    if lp.dim() > ndim:
        raise ValueError(
            f"site {site['name']!r} has batch dims outside any plate (log_prob shape "
            f"{tuple(lp.shape)}); declare them with pyro.plate or .to_event()"
        )
    lp = lp.reshape((1,) * (ndim - lp.dim()) + lp.shape)
    data_axis = ndim + data.dim
    local = any(f.name == data.name for f in site["cond_indep_stack"])
    other = [d for d in range(num_particle_dims, ndim) if d != data_axis]
    if other:
        lp = lp.sum(other, keepdim=True)
    if local and data.size != data.subsample_size:
        lp = lp * (data.subsample_size / data.size)
    return lp.reshape(lp.shape[:num_particle_dims] + lp.shape[data_axis : data_axis + 1]), local


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
    num_particle_dims: int = 1,
) -> LogWeights:
    r"""Split :math:`\log p(x,z) - \log q(z)` into per-data-point and global parts.

    Returns ``local`` of shape ``(P, N)`` with the terms of every site inside the data plate and
    ``global_`` of shape ``(P, 1)`` with the rest. The data plate's subsampling scale is *not*
    applied (other scales, e.g. :func:`pyro.poutine.scale`, are). With the nested layout of
    :func:`particle_traces` (``num_particle_dims=2``) the shapes are ``(K, J, N)`` and
    ``(K, 1, 1)``: a global site whose weight varies over the local particles is an error.
    """
    data = find_data_plate(model_trace, plate_name)
    particle_shape = None
    local = 0.0
    global_ = 0.0
    global_latents = []
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            lp, is_local = site_log_prob_per_datapoint(
                site, data, max_plate_nesting, num_particle_dims
            )
            shape = lp.shape[:num_particle_dims]
            particle_shape = shape if particle_shape is None else torch.broadcast_shapes(
                particle_shape, shape
            )
            if is_local:
                local = local + sign * lp
            else:
                if num_particle_dims == 2 and lp.shape[1] != 1:
                    raise ValueError(
                        f"site {name!r} lies outside the data plate {data.name!r} but depends "
                        "on the local particles; the nested bound needs every site outside the "
                        "data plate to depend on global latents only"
                    )
                global_ = global_ + sign * lp
                if sign > 0 and not site["is_observed"]:
                    global_latents.append(name)
    if not torch.is_tensor(local):
        raise ValueError(f"no site lies inside the data plate {data.name!r}")
    local = local.expand(particle_shape + (data.subsample_size,))
    global_shape = particle_shape[:1] + (1,) * num_particle_dims
    global_ = (local.new_zeros(global_shape) + global_).expand(global_shape)
    return LogWeights(local, global_, data, tuple(global_latents))
