r"""Particles and per-data-point log densities: the one pipeline of every particle estimator.

Every multi-sample estimator of this package (the IWAE family, VIMCO, the score-function ELBO,
HVI, (reweighted) wake-sleep, the log-likelihood evaluator) draws its particles the same way,
with :func:`draw_particles`: the guide and the replayed model run once inside an outermost
``pyro.plate`` of size ``num_particles`` (at ``dim = -max_plate_nesting - 1``; no plate at all
for one particle, as in Pyro's vectorized ELBO), with Pyro's model/guide checks, optionally

* without the reparameterization path (``pathwise=False``: the score-function estimators),
* in the nested layout of global and local particles (``num_local_particles``),
* with the guide re-scored at the drawn values with the gradient of every tensor its densities
  depend on stopped (``rescore_guide=True``: STL and DReG).

:func:`find_data_plate` locates the data plate and :func:`site_log_prob_per_datapoint` reduces
one site's ``log_prob`` to shape ``(P, N)`` (one entry per particle and data point) or
``(P, 1)`` (a site outside the data plate); :func:`log_weights` sums them into
:math:`\log p - \log q`. :func:`guess_max_plate_nesting` finds the number of user plates
without shifting the random state.
"""
import contextlib
import math
import re
import warnings
from typing import Any, Callable, Dict, Iterator, NamedTuple, Optional, Sequence, Tuple

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer.util import MultiFrameTensor, get_plate_stacks, is_validation_enabled
from pyro.ops.provenance import track_provenance as tag_provenance
from pyro.poutine.messenger import Messenger
from pyro.poutine.plate_messenger import PlateMessenger
from pyro.poutine.subsample_messenger import _Subsample
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from pyro.util import check_model_guide_match

from .._compat import warn_renamed

PARTICLE_PLATE = "num_particles_vectorized"
LOCAL_PARTICLE_PLATE = "num_local_particles_vectorized"
PARTICLE_PLATES = (PARTICLE_PLATE, LOCAL_PARTICLE_PLATE)


def _cuda_devices(values: Sequence[Any]) -> list:
    """The CUDA devices of ``values`` and the current one (if CUDA is initialized)."""
    devices = {v.device.index or 0 for v in values if torch.is_tensor(v) and v.is_cuda}
    if torch.cuda.is_initialized():
        devices.add(torch.cuda.current_device())
    return sorted(devices)


def guess_max_plate_nesting(model: Callable, guide: Callable, args: Sequence, kwargs: Dict) -> int:
    """Run the guide and the replayed model once (blocked) and return the deepest plate dim.

    The run happens under :func:`torch.random.fork_rng` (CPU, the current CUDA device and those
    of the arguments), so guessing never shifts the particles drawn afterwards: an estimator's first
    call draws what a call with ``max_plate_nesting`` given would draw. A site with batch dims left
    of every plate is a ``ValueError`` naming it (the particle plate would take that dim; with
    ``max_plate_nesting`` given and no guess, such a dim is caught from the ``log_prob`` shapes
    unless it has exactly the particle plate's size, as in Pyro's vectorized ELBO).
    """
    devices = _cuda_devices(list(args) + list(kwargs.values()))
    with torch.random.fork_rng(devices=devices), poutine.block():
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
    nesting = -min(dims) if dims else 0
    _check_site_batch_shapes((model_trace, guide_trace), nesting)
    return nesting


def _check_site_batch_shapes(traces: Sequence[poutine.Trace], max_plate_nesting: int) -> None:
    """A site of a particle-free run whose batch shape (with an observed value's) has a dim of
    size > 1 left of ``max_plate_nesting`` is a ``ValueError`` naming it: the particle plate
    would go there, and a dim of the particle plate's size would be taken silently for it (e.g.
    ``TraceVIMCO_ELBO(num_particles=2)`` and an undeclared dim of size 2)."""
    for trace in traces:
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            fn, value = site["fn"], site["value"]
            shape = getattr(fn, "batch_shape", ())
            if site["is_observed"] and torch.is_tensor(value):
                event_dim = len(getattr(fn, "event_shape", ()))
                try:
                    shape = torch.broadcast_shapes(shape, value.shape[: value.dim() - event_dim])
                except RuntimeError:  # the program's own shape error: log_prob reports it
                    continue
            if any(size != 1 for size in shape[: max(len(shape) - max_plate_nesting, 0)]):
                raise _outside_plates(name, shape, max_plate_nesting)


def _outside_plates(name: str, shape: Sequence[int], max_plate_nesting: int) -> ValueError:
    """The error of both batch-dim checks: site ``name`` has dims left of every plate."""
    return ValueError(
        f"site {name!r} has batch dims outside any plate (invalid log_prob shape "
        f"{tuple(shape)}, max_plate_nesting={max_plate_nesting}); declare them with "
        "pyro.plate or .to_event()"
    )


class _SampleWithoutPath(Messenger):
    """Draw every latent sample site without its reparameterization path.

    Reparameterizable distributions are still drawn with ``rsample`` (so the random numbers are
    exactly those :class:`~pyro.infer.Trace_ELBO` would draw) and then detached; the others with
    ``sample``. Applied *outside* every plate so that sites are already broadcast, and before
    the trace records them, so that the model is replayed at the detached values. With
    ``track_provenance=True`` each value is a :class:`~pyro.ops.provenance.ProvenanceTensor`
    tagged with its site's name, so that every ``log_prob`` computed downstream records which
    latent sites it depends on (read with :func:`~pyro.ops.provenance.get_provenance`).
    """

    def __init__(self, track_provenance: bool = False) -> None:
        super().__init__()
        self.track_provenance = track_provenance

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or msg["value"] is not None or msg["done"]:
            return
        fn = msg["fn"]
        value = (fn.rsample() if fn.has_rsample else fn.sample()).detach()
        if self.track_provenance and not isinstance(fn, _Subsample):
            # every density computed from this value carries the site's name
            # (pyro.ops.provenance; TraceGraph_ELBO's TrackNonReparam does the same)
            value = tag_provenance(value, frozenset({msg["name"]}))
        msg["value"] = value


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
    """Mutable slot read by the backward pass of a value replayed through :func:`draw_particles`
    with ``rescore_guide=True``."""

    def __init__(self) -> None:
        self.scale: Optional[torch.Tensor] = None


def _leaves(roots: Sequence[torch.Tensor], stop: type = type(None)) -> Dict[int, torch.Tensor]:
    """The leaf tensors requiring grad that ``roots`` depend on, found by walking their autograd
    graph; the walk does not pass through nodes of type ``stop``."""
    found: Dict[int, torch.Tensor] = {}
    stack = [r.grad_fn for r in roots if torch.is_tensor(r) and r.grad_fn is not None]
    stack += [r for r in roots if torch.is_tensor(r) and r.is_leaf and r.requires_grad]
    seen = set()
    while stack:
        node = stack.pop()
        if torch.is_tensor(node):  # a root that is itself a leaf
            found[id(node)] = node
            continue
        if node in seen or isinstance(node, stop):
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # AccumulateGrad
        if leaf is not None:
            found[id(leaf)] = leaf
            continue
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return found


@contextlib.contextmanager
def _stopped(leaves: Sequence[torch.Tensor]) -> Iterator[None]:
    """Temporarily set ``requires_grad=False`` on ``leaves``. ``pyro.module``'s warning about
    parameters "not registered ... because requires_grad=False" is silenced meanwhile: the
    parameters are registered already, by the run that drew the particles."""
    for leaf in leaves:
        leaf.requires_grad_(False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*was not registered in the param store because requires_grad"
            )
            yield
    finally:
        for leaf in leaves:
            leaf.requires_grad_(True)


def _rescore_guide(
    guide: Callable, guide_trace: poutine.Trace, replay_trace: poutine.Trace, args, kwargs
) -> poutine.Trace:
    r"""The guide re-run at the replayed values with every tensor its densities depend on
    stopped: :math:`\log q_{\bot(\phi)}(z)`.

    The tensors to stop are the leaves of the autograd graph of the drawn trace's values and
    ``log_prob``\ s (``pyro.param``\ s, ``PyroModule`` and ``pyro.module`` parameters, unregistered
    ``nn.Module`` parameters, plain tensors with ``requires_grad``), so nothing depends on the
    param store. A site of the re-run whose density still reaches one of them, a ``pyro.param``
    or an ``nn.Parameter`` other than through the replayed values (a parameter computed outside
    the guide, whose graph is already built) is an error naming the site. A plain tensor with
    ``requires_grad`` that the re-run creates itself (e.g. ``torch.tensor(0.5,
    requires_grad=True)`` written in the guide, as in Pyro's ``test_valid_models``) is a
    constant of that call: nothing can read its gradient, so it is left alone.
    """
    roots = [
        site[key] for site in guide_trace.nodes.values()
        if site["type"] == "sample" and not site["is_observed"]
        for key in ("log_prob", "value")  # a volume-preserving flow's inverse is in the value
    ]
    leaves = list(_leaves(roots).values())
    with _stopped(leaves):
        rescored = poutine.trace(poutine.replay(guide, trace=replay_trace)).get_trace(
            *args, **kwargs
        )
        rescored = prune_subsample_sites(rescored)
        # inside: conditioned flows compute their parameters lazily, in log_prob
        _compute_log_prob(rescored)
    stopped_ids = {id(leaf) for leaf in leaves}
    store_ids = None  # the param store's tensors, gathered only when a site reaches a leaf (rare)
    for name, site in rescored.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        reached = _leaves([site["log_prob"]], stop=_GradScale._backward_cls)
        if reached and store_ids is None:
            store_ids = {id(p) for _, p in pyro.get_param_store().named_parameters()}
        # a plain tensor with requires_grad created by the re-run itself (``torch.tensor(0.5,
        # requires_grad=True)`` inside the guide) is no parameter: nothing can read its gradient
        unstopped = {
            key: leaf
            for key, leaf in reached.items()
            if key in stopped_ids or key in store_ids or isinstance(leaf, torch.nn.Parameter)
        }
        if unstopped:
            shapes = [tuple(t.shape) for t in unstopped.values()]
            raise ValueError(
                f"guide site {name!r}: its density depends on tensors requiring grad (shapes "
                f"{shapes}) through a graph built outside the guide, so STL/DReG cannot stop "
                "their gradient; compute the distribution's parameters inside the guide "
                "(from pyro.param, an nn.Module or leaf tensors), or use estimator='iwae'"
            )
    return rescored


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
    """What :func:`draw_particles` returns; ``model`` and ``guide`` carry ``log_prob`` (scaled
    and masked) and ``unscaled_log_prob`` at every sample site."""

    model: poutine.Trace
    guide: poutine.Trace
    # the guide re-run at the same values with its parameters stopped (path derivative only)
    guide_rescored: Optional[poutine.Trace]
    # one GradScaleHolder per latent guide site (only with rescore_guide=True)
    holders: Dict[str, GradScaleHolder]


def draw_particles(
    model: Callable,
    guide: Callable,
    args: Sequence,
    kwargs: Dict,
    num_particles: int,
    max_plate_nesting: int,
    *,
    pathwise: bool = True,
    num_local_particles: Optional[int] = None,
    plate_name: Optional[str] = "data",
    rescore_guide: bool = False,
    prune: bool = True,
    check_plate_nesting: Optional[int] = None,
    track_provenance: bool = False,
) -> ParticleTraces:
    r"""Draw ``num_particles`` vectorized particles: the guide's trace and the model's trace
    replayed against it, with ``log_prob`` computed at every sample site.

    The particle plate ``"num_particles_vectorized"`` lies at ``dim=-max_plate_nesting-1``,
    outside every user plate. With ``num_particles=1`` (flat layout) there is **no** particle
    plate, as in Pyro's vectorized ELBO: the program runs exactly as under
    :class:`~pyro.infer.Trace_ELBO` (same random numbers, same shapes, so shape assertions in the
    user's code hold); every consumer reads a missing particle dim as size 1.

    **Checks.** When Pyro's validation is on (:func:`pyro.infer.util.is_validation_enabled`),
    :func:`pyro.util.check_model_guide_match` runs on the unpruned traces, with the particle
    plates counted in ``max_plate_nesting`` as Pyro's vectorized ELBO counts its own: model and
    guide shapes or event dims that disagree raise ``ValueError`` ("Model and guide shapes
    disagree at site ..."), model latents the guide does not sample warn "Found vars in model
    but not guide", guide sites not in the model (unless ``infer={"is_auxiliary": True}``)
    warn. Always: a user plate at a dim beyond ``max_plate_nesting``, or a site with batch dims
    outside every plate, is a ``ValueError`` naming the plate or site and ``max_plate_nesting``
    (a collision with the particle plate raised while drawing is re-diagnosed the same way).

    :param bool pathwise: keep the reparameterization path of reparameterizable guide sites
        (default), or detach every drawn value (drawn with the same random numbers) so that
        gradients reach the guide only through its densities (score-function estimators).
    :param int num_local_particles: ``J`` selects the *nested* layout: an outer plate of
        ``num_particles`` (K) global particles at ``dim=-max_plate_nesting-2`` and an inner
        plate of J local particles at ``dim=-max_plate_nesting-1`` that only applies to sites
        inside ``plate_name``; sites outside the data plate are drawn K times, sites inside it
        K*J times per data point.
    :param str plate_name: the data plate (used by the nested layout only).
    :param bool rescore_guide: replay fresh views of the guide's latent values (each passed
        through a gradient-scaling identity, see :class:`GradScaleHolder`) into the model and
        into a second run of the guide with the gradient of every tensor its densities depend
        on stopped (found in the autograd graph, not in the param store): its ``log_prob`` is
        :math:`\log q_{\bot(\phi)}(z)`, differentiable in :math:`z` only (STL/DReG). The values
        are fresh tensors so that transforms never answer from their cache.
    :param bool prune: drop the plates' subsample sites (keep them to replay the same minibatch
        indices later).
    :param bool track_provenance: with ``pathwise=False`` only: tag every drawn latent value
        with its site's name (``_SampleWithoutPath``), so that each site's ``log_prob``
        carries the set of guide sites it depends on.
    :param int check_plate_nesting: the ``max_plate_nesting`` the user gave, for Pyro's
        model/guide check (plus the particle plates, as Pyro's vectorized ELBO counts them);
        ``None`` (not given) checks with ``inf``, as :class:`~pyro.infer.Trace_ELBO` does.
    """
    if num_local_particles is None:
        plates = (
            [] if num_particles == 1
            else [pyro.plate(PARTICLE_PLATE, num_particles, dim=-max_plate_nesting - 1)]
        )
    else:
        plates = [
            pyro.plate(PARTICLE_PLATE, num_particles, dim=-max_plate_nesting - 2),
            _LocalParticlePlate(num_local_particles, -max_plate_nesting - 1, plate_name),
        ]

    def wrap(fn):
        for plate in reversed(plates):
            fn = plate(fn)
        return fn

    if track_provenance and pathwise:
        raise ValueError("draw_particles: track_provenance=True needs pathwise=False")
    sampler = wrap(guide) if pathwise else _SampleWithoutPath(track_provenance)(wrap(guide))
    try:
        guide_trace = poutine.trace(sampler).get_trace(*args, **kwargs)
    except ValueError as error:
        if plates and any(name in str(error) for name in PARTICLE_PLATES):
            _diagnose_plate_error(
                model, guide, args, kwargs, max_plate_nesting, check_plate_nesting, error
            )
        raise
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
    try:
        model_trace = poutine.trace(poutine.replay(wrap(model), trace=replay_trace)).get_trace(
            *args, **kwargs
        )
    except ValueError as error:
        if plates and any(name in str(error) for name in PARTICLE_PLATES):
            _diagnose_plate_error(
                model, guide, args, kwargs, max_plate_nesting, check_plate_nesting, error
            )
        raise
    _check_plate_dims(
        (model_trace, guide_trace),
        max_plate_nesting,
        lambda: guess_max_plate_nesting(model, guide, args, kwargs),
    )
    if is_validation_enabled():
        check_model_guide_match(
            model_trace,
            guide_trace,
            math.inf if check_plate_nesting is None else check_plate_nesting + len(plates),
        )
    rescored = None
    if prune:
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
    _compute_log_prob(guide_trace)
    if rescore_guide:
        rescored = _rescore_guide(wrap(guide), guide_trace, replay_trace, args, kwargs)
    _compute_log_prob(model_trace)
    _check_batch_dims((model_trace, guide_trace), max_plate_nesting, len(plates))
    return ParticleTraces(model_trace, guide_trace, rescored, holders)


def _check_plate_dims(
    traces: Sequence[poutine.Trace], max_plate_nesting: int, needed: Callable[[], int]
) -> None:
    """A user plate beyond ``max_plate_nesting`` would be read as a particle dim: a
    ``ValueError`` naming the plate, its site, ``max_plate_nesting`` and the nesting the
    program needs (``needed()``, only called on error). A loop over frames."""
    for trace in traces:
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            for f in site["cond_indep_stack"]:
                if f.vectorized and f.dim < -max_plate_nesting and f.name not in PARTICLE_PLATES:
                    try:
                        n = needed()
                    except Exception:  # the guess failed: the plate's own dim is a lower bound
                        n = -f.dim
                    raise ValueError(
                        f"pyro.plate({f.name!r}) at site {name!r} does not fit in "
                        f"max_plate_nesting={max_plate_nesting}: the program's plates need "
                        f"max_plate_nesting={n} (the particle plate goes outside them); pass "
                        f"max_plate_nesting={n} or leave it out to have it guessed"
                    )


def _deepest_plate(traces: Sequence[poutine.Trace]) -> int:
    """``-dim`` of the deepest vectorized plate of particle-free traces (0 without plates)."""
    dims = [
        f.dim for trace in traces for site in trace.nodes.values() if site["type"] == "sample"
        for f in site["cond_indep_stack"] if f.vectorized
    ]
    return -min(dims) if dims else 0


def _check_batch_dims(
    traces: Sequence[poutine.Trace], max_plate_nesting: int, num_particle_dims: int
) -> None:
    """Batch dims outside every plate would be read as a particle dim: a ``ValueError`` naming
    the site (one ``dim()`` per site)."""
    for trace in traces:
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            log_prob = site.get("log_prob")
            if log_prob is None:
                continue
            extra = log_prob.shape[: max(log_prob.dim() - max_plate_nesting - num_particle_dims, 0)]
            if any(size != 1 for size in extra):  # size-1 dims broadcast, as in Pyro's check
                raise _outside_plates(name, log_prob.shape, max_plate_nesting)


def _diagnose_plate_error(
    model: Callable,
    guide: Callable,
    args,
    kwargs,
    max_plate_nesting: int,
    check_plate_nesting: Optional[float],
    error: ValueError,
) -> None:
    """Pyro reported a clash with the internal particle plate: run the program once without
    particles (blocked, random state forked) and re-raise against the user's plate or site
    (Pyro's model/guide check first, as :class:`~pyro.infer.Trace_ELBO` would). Returns (and
    the original error stands) when the cause is something else."""
    devices = _cuda_devices(list(args) + list(kwargs.values()))
    try:
        with torch.random.fork_rng(devices=devices), poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
                *args, **kwargs
            )
            if is_validation_enabled():
                check_model_guide_match(
                    model_trace, guide_trace,
                    math.inf if check_plate_nesting is None else check_plate_nesting,
                )
            traces = (prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace))
            for trace in traces:
                _compute_log_prob(trace)
    except ValueError as cause:
        raise cause from error
    except Exception:  # the program fails without particles too: the original error stands
        return
    try:
        _check_plate_dims(traces, max_plate_nesting, lambda: _deepest_plate(traces))
        _check_batch_dims(traces, max_plate_nesting, 0)
    except ValueError as cause:
        raise cause from error
    found = re.search(r"invalid shape of pyro\.param\((.*?), \.\.\., event_dim=(\d+)\): ([^\n]*)", str(error))
    if found:  # a param's batch dim that no plate declares, where the particle plate goes
        name, event_dim, shape = found.groups()
        raise ValueError(
            f"pyro.param({name!r}, ..., event_dim={event_dim}) has shape {shape.strip()}: a batch "
            f"dim left of every plate (max_plate_nesting={max_plate_nesting}), where the particle "
            "plate of num_particles > 1 goes (invalid shape of pyro.param); declare that dim with "
            "pyro.plate, fold it into event_dim, or pass max_plate_nesting large enough to hold it"
        ) from error


def trace_elbo_log_r(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> MultiFrameTensor:
    r"""The detached cost :math:`\log p - \log q` of a model/guide pair, per plate stack
    (a :class:`~pyro.infer.util.MultiFrameTensor`): every model sample site's scaled and masked
    ``log_prob`` minus the guide's at the same latent, and :math:`-\log q` of every guide-only
    (auxiliary) latent site at the guide's plates.

    Pyro's :class:`~pyro.infer.Trace_ELBO` (``_compute_log_r``, Pyro 1.9.2) leaves guide-only
    sites out of this cost, so a score-function site upstream of an auxiliary site whose
    entropy depends on it gets a biased gradient (e.g. :math:`z\sim\mathrm{Bernoulli}`,
    :math:`a\sim\mathcal N(0, e^{1.5z})` auxiliary: Trace_ELBO's expected gradient is -0.259
    where the true one is 0.112). Pyro's :class:`~pyro.infer.TraceGraph_ELBO` keeps them
    (provenance tracking) and is unbiased; this cost keeps them too."""
    log_r = MultiFrameTensor()
    stacks = get_plate_stacks(model_trace)
    guide_stacks = None
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and name in stacks:
            term = site["log_prob"]
            if not site["is_observed"] and name in guide_trace.nodes:
                term = term - guide_trace.nodes[name]["log_prob"]
            log_r.add((stacks[name], term.detach()))
    for name, site in guide_trace.nodes.items():
        if (site["type"] == "sample" and not site["is_observed"] and name not in model_trace.nodes
                and not site_is_subsample(site)):
            guide_stacks = guide_stacks or get_plate_stacks(guide_trace)
            log_r.add((guide_stacks[name], -site["log_prob"].detach()))
    return log_r


def trace_elbo_costs(
    model_trace: poutine.Trace, guide_trace: poutine.Trace, sites: Sequence[str]
) -> Dict[str, torch.Tensor]:
    r"""The learning signal :class:`~pyro.infer.Trace_ELBO` gives each guide site of ``sites``:
    :math:`\log p - \log q` (:func:`trace_elbo_log_r`, detached), summed over every plate the
    site is not in (Pyro's ``MultiFrameTensor.sum_to``), so that
    ``(cost * site["log_prob"]).sum()`` is Pyro's score-function surrogate term. For one
    particle (no particle plate), e.g. the :math:`K=1` case of
    :class:`~pyro_deepgen.infer.TraceIWAE_ELBO`. Unlike Pyro's Trace_ELBO, guide-only
    (auxiliary) sites are in the cost, as in :class:`~pyro.infer.TraceGraph_ELBO`."""
    log_r = trace_elbo_log_r(model_trace, guide_trace)
    return {name: log_r.sum_to(guide_trace.nodes[name]["cond_indep_stack"]) for name in sites}


class DataPlate(NamedTuple):
    name: str
    dim: int  # negative, counted without the particle dim
    size: int  # full size of the data set (plate size)
    subsample_size: int  # number of data points present in this trace

    @property
    def scale(self) -> float:
        """The subsampling scale ``size / subsample_size`` (1 without subsampling)."""
        return self.size / self.subsample_size


def find_data_plate(
    trace: poutine.Trace, plate_name: Optional[str] = "data", allow_none: bool = False
) -> Optional[DataPlate]:
    """Locate the data plate in a trace.

    With ``plate_name=None`` the outermost vectorized plate shared by every observed site is
    used. Raises a ``ValueError`` listing the plates found when there is no such plate, except
    that with ``allow_none=True`` a program without any plate returns ``None`` (the whole
    program is one data point).
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
    if allow_none and not frames:
        return None
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
    site: Dict,
    data: Optional[DataPlate],
    max_plate_nesting: int,
    num_particle_dims: int = 1,
    *,
    log_prob: Optional[torch.Tensor] = None,
    unscale_data_plate: bool = True,
) -> Tuple[torch.Tensor, bool]:
    """Reduce one site's ``log_prob`` to shape ``particle_shape + (N,)`` for a site inside the
    data plate, or ``particle_shape + (1,)`` for a site outside it (or when ``data`` is
    ``None``: no data plate); the flag says whether the site lies inside the data plate.

    Every plate dim other than the data plate's is summed out. With ``unscale_data_plate``
    (default) the data plate's subsampling scale ``size / subsample_size`` is divided out
    (other scales and masks are kept), so the entries are per-data-point log densities
    whatever the minibatch.

    :param int num_particle_dims: 1 for the flat layout ``(P, ...)``, 2 for the nested one
        ``(K, J, ...)`` of :func:`draw_particles`.
    :param log_prob: the tensor to reduce (default ``site["log_prob"]``), e.g. the site's
        masked but unscaled density.
    """
    lp = site["log_prob"] if log_prob is None else log_prob
    ndim = max_plate_nesting + num_particle_dims
    if lp.dim() > ndim:
        raise ValueError(
            f"site {site['name']!r} has batch dims outside any plate (invalid log_prob shape "
            f"{tuple(lp.shape)}); declare them with pyro.plate or .to_event()"
        )
    lp = lp.reshape((1,) * (ndim - lp.dim()) + lp.shape)
    local = data is not None and any(f.name == data.name for f in site["cond_indep_stack"])
    data_axis = ndim + data.dim if local else None
    other = [d for d in range(num_particle_dims, ndim) if d != data_axis]
    if other:
        lp = lp.sum(other, keepdim=True)
    particle_shape = lp.shape[:num_particle_dims]
    if not local:
        return lp.reshape(particle_shape + (1,)), False
    if unscale_data_plate and data.size != data.subsample_size:
        lp = lp * (data.subsample_size / data.size)
    return lp.reshape(particle_shape + lp.shape[data_axis : data_axis + 1]), True


class LogWeights(NamedTuple):
    """Per-particle, per-data-point log densities of a vectorized model/guide pair."""

    local: torch.Tensor  # (P, N): log p - log q of the sites inside the data plate
    global_: torch.Tensor  # (P, 1): log p - log q of the sites outside it
    data: Optional[DataPlate]  # None: no plate in the program, which is one data point (N=1)
    global_latents: Tuple[str, ...]  # names of latent sites outside the data plate

    @property
    def scale(self) -> float:
        """The data plate's subsampling scale ``size / subsample_size`` (1 without a plate)."""
        return 1.0 if self.data is None else self.data.scale


def log_weights(
    model_trace: poutine.Trace,
    guide_trace: poutine.Trace,
    max_plate_nesting: int,
    plate_name: Optional[str] = "data",
    num_particle_dims: int = 1,
    allow_none: bool = False,
) -> LogWeights:
    r"""Split :math:`\log p(x,z) - \log q(z)` into per-data-point and global parts.

    Returns ``local`` of shape ``(P, N)`` with the terms of every site inside the data plate and
    ``global_`` of shape ``(P, 1)`` with the rest. The data plate's subsampling scale is *not*
    applied (other scales, e.g. :func:`pyro.poutine.scale`, are). With the nested layout of
    :func:`draw_particles` (``num_particle_dims=2``) the shapes are ``(K, J, N)`` and
    ``(K, 1, 1)``: a global site whose weight varies over the local particles is an error.

    With ``allow_none=True`` a program without any vectorized plate (no plate, or sequential
    ``pyro.plate`` loops only) is one data point: every site goes into ``local`` (``N=1``),
    ``global_`` is zero and ``data`` is ``None``.
    """
    data = find_data_plate(model_trace, plate_name, allow_none=allow_none)
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
            if is_local or data is None:
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
        if data is None:
            raise ValueError("the model and guide have no pyro.sample site")
        raise ValueError(f"no site lies inside the data plate {data.name!r}")
    local = local.expand(particle_shape + (1 if data is None else data.subsample_size,))
    global_shape = particle_shape[:1] + (1,) * num_particle_dims
    global_ = (local.new_zeros(global_shape) + global_).expand(global_shape)
    return LogWeights(local, global_, data, tuple(global_latents))


# -- deprecated names (removed in pyro_deepgen 0.3) ---------------------------------------------
def vectorized_traces(
    model: Callable,
    guide: Callable,
    args: Sequence,
    kwargs: Dict,
    num_particles: int,
    max_plate_nesting: int,
    prune: bool = True,
) -> Tuple[poutine.Trace, poutine.Trace]:
    """Deprecated: ``draw_particles(...)[:2]``, the model and guide traces."""
    warn_renamed(f"{__name__}.vectorized_traces", "draw_particles(...)[:2]")
    traces = draw_particles(
        model, guide, args, kwargs, num_particles, max_plate_nesting, prune=prune
    )
    return traces.model, traces.guide


def __getattr__(name: str) -> Any:
    if name == "particle_traces":
        warn_renamed(f"{__name__}.particle_traces", "draw_particles")
        return draw_particles
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
