r"""The one base class of every particle estimator of :mod:`pyro_deepgen.infer`.

:class:`ParticleELBO` is a :class:`pyro.infer.elbo.ELBO` whose subclasses write only
``differentiable_loss`` (and ``__init__``). Everything else is written here once:

* :meth:`~ParticleELBO.loss` (the value, under :func:`torch.no_grad`) and
  :meth:`~ParticleELBO.loss_and_grads` (``backward`` on the surrogate, skipped when nothing
  requires a gradient, with ``retain_graph``);
* the check of ``num_particles`` (:func:`check_num_particles`);
* the guess of ``max_plate_nesting`` on the first call, under a forked random state so that
  guessing never shifts the particles;
* the particle draw (:meth:`~ParticleELBO._draw`, through
  :func:`~pyro_deepgen.infer.particles.draw_particles`), which is also Pyro's ``_get_trace``,
  with Pyro's model/guide checks and the named errors for degenerate programs.
"""
from abc import abstractmethod
from typing import Callable, Iterator, Optional, Tuple

import torch
from pyro import poutine
from pyro.infer.elbo import ELBO
from pyro.infer.util import is_validation_enabled, torch_item
from pyro.poutine.util import site_is_subsample
from pyro.util import check_if_enumerated

from .particles import ParticleTraces, draw_particles, guess_max_plate_nesting
from .score_terms import ParticleTerms, particle_terms


def check_num_particles(
    num_particles: int, minimum: int = 1, estimator: str = "this estimator", why: str = ""
) -> int:
    """Reject a ``num_particles`` that is not an integer ``>= minimum`` (booleans included),
    with one message format for every estimator: what is needed, why, and what was given."""
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or (
        num_particles < minimum
    ):
        why = f": {why}" if why else ""
        raise ValueError(
            f"num_particles must be a positive integer ({estimator} needs num_particles >= "
            f"{minimum}{why}); got num_particles={num_particles!r}"
        )
    return num_particles


def _sample_sites(trace: poutine.Trace) -> Iterator[dict]:
    """The sample sites of a trace, without the plates' subsample sites."""
    return (
        site for site in trace.nodes.values()
        if site["type"] == "sample" and not site_is_subsample(site)
    )


class ParticleELBO(ELBO):
    r"""Base of every particle estimator: subclasses implement ``differentiable_loss`` only.

    **Contract.** A subclass implements

    * ``__init__``: validates its own options and calls
      ``super().__init__(num_particles, max_plate_nesting, min_particles=..., why=...,
      plate_name=...)``;
    * ``differentiable_loss(model, guide, *args, **kwargs) -> Tensor``: the *exact* negative
      objective for the particles drawn, carrying its estimator's gradient (write it as
      :func:`~pyro_deepgen.infer.util.value_with_surrogate_grad`). It may read
      ``torch.is_grad_enabled()`` to skip gradient-only work.

    and draws its particles with ``_draw`` (or ``_particle_terms`` for per-site
    terms). Everything else has a default:

    * :meth:`loss`: ``differentiable_loss`` under :func:`torch.no_grad`, as a float;
    * :meth:`loss_and_grads`: ``differentiable_loss``, then ``backward(retain_graph=...)`` when
      the loss requires a gradient, as a float;
    * ``max_plate_nesting`` (the number of the *user's* plates; the particle plate lies
      outside them): guessed on the first call by running the guide and the replayed model
      once under :func:`torch.random.fork_rng`, so the first call draws exactly what a call
      with ``max_plate_nesting`` given draws (e.g. ``TraceIWAE_ELBO(num_particles=1)`` equals
      :class:`~pyro.infer.Trace_ELBO` from its first call);
    * Pyro's hooks: ``_get_trace`` returns the model and guide traces of all
      ``num_particles`` particles (vectorized in one plate; none for one particle), ``_get_traces`` yields that one
      pair, ``_guess_max_plate_nesting`` is the protected guess above.

    **Plate rule (every estimator).** The importance weight of a particle is taken per data
    point of the *data plate*: the vectorized ``pyro.plate`` named ``plate_name`` (default
    ``"data"``; ``plate_name=None`` picks the outermost plate shared by every observed site).
    A program with **no vectorized plate** (no plate at all, or only sequential
    ``for i in pyro.plate(...)`` loops) is accepted and counts as **one data point**: the
    weight of a particle is :math:`\log p(x, z) - \log q(z)` of the whole program. The
    estimators whose weights are per data point (:class:`~pyro_deepgen.infer.TraceIWAE_ELBO`,
    :class:`~pyro_deepgen.infer.TraceVIMCO_ELBO`, the wake-sleep family) refuse a program whose
    vectorized plates do not include the data plate, naming the plates found and the fix
    (``plate_name=...``); those whose objective is the ELBO itself (score-function, HVI) take
    any plates. Bounds that need data points with separate weights (the nested IWAE bound) and
    the wake-sleep family (every site local to a data point) need an explicit vectorized data
    plate. Other user plates (next to or inside the data plate) are summed within a data point;
    ``max_plate_nesting`` counts the user's plates only.

    **One particle.** With ``num_particles=1`` no particle plate is added, as in Pyro's
    vectorized ELBO: the guide and model run exactly as under :class:`~pyro.infer.Trace_ELBO`
    (same random numbers, same shapes), so shape assertions in user code hold.

    **Checks** (in ``_draw``, shared by every estimator): with Pyro's validation on
    (:func:`pyro.infer.util.is_validation_enabled`, the default), Pyro's own
    :func:`pyro.util.check_model_guide_match` with the particle plate counted as Pyro counts it,
    so the errors and warnings are Pyro's: model/guide shapes or event dims that disagree raise
    ``ValueError("Model and guide shapes disagree at site ...")``; model latents missing from
    the guide warn ``"Found vars in model but not guide"`` (and are then weighted by their prior
    draw, as in Pyro); guide sites missing from the model warn ``"Found non-auxiliary vars in
    guide but not model"``; guide sites configured for enumeration warn ``"... you need to use
    TraceEnum_ELBO instead"`` (Pyro's ``check_if_enumerated``; they are sampled), except in a class that refuses them by
    name (``refuses_enumerated = True``, e.g. :class:`~pyro_deepgen.infer.TraceIWAE_ELBO`).
    Always: a program without any ``pyro.sample`` site raises
    ``ValueError("<estimator>: the model and guide have no sample sites ...")``; a user plate
    beyond ``max_plate_nesting`` or batch dims outside every plate raise a ``ValueError``
    naming the user's plate or site and ``max_plate_nesting`` (never the internal particle
    plate). Estimators that need a latent site call ``_require_latents``. Not detectable:
    undeclared batch dims left of every plate whose size equals ``num_particles`` at the
    particle plate's dim are taken for particles (guides that build their own particles rely
    on it).

    Class attributes a subclass may set: ``pathwise`` (default ``True``; ``False`` draws every
    guide site without its reparameterization path) and ``num_local_particles`` (default
    ``None``; an integer selects the nested layout of
    :func:`~pyro_deepgen.infer.particles.draw_particles`).

    :param int num_particles: particles per call, vectorized (checked against
        ``min_particles`` by :func:`check_num_particles`).
    :param int max_plate_nesting: number of user plates (default: guessed on the first call).
    :param int min_particles: the estimator's minimum ``num_particles`` (default 1).
    :param str why: why the estimator needs ``min_particles`` (shown in the error).
    :param str plate_name: name of the data plate (default ``"data"``).
    :param bool retain_graph: passed to ``backward`` by :meth:`loss_and_grads`.
    """

    pathwise: bool = True
    num_local_particles: Optional[int] = None
    refuses_enumerated: bool = False  # True: the class raises on enumerated guide sites itself

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        *,
        min_particles: int = 1,
        why: str = "",
        plate_name: Optional[str] = "data",
        retain_graph: Optional[bool] = None,
    ) -> None:
        check_num_particles(num_particles, min_particles, type(self).__name__, why)
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
            retain_graph=retain_graph,
        )
        # Pyro adds one to a given max_plate_nesting for its own particle plate; here it counts
        # the user's plates only (the particle plate goes at dim -max_plate_nesting - 1)
        self.max_plate_nesting = max_plate_nesting
        # the nesting Pyro's model/guide check uses: as given, or None (inf, as Trace_ELBO's)
        self._given_max_plate_nesting = (
            None if max_plate_nesting == float("inf") else max_plate_nesting
        )
        self.plate_name = plate_name

    # -- particles --------------------------------------------------------------------------
    def _guess_max_plate_nesting(self, model: Callable, guide: Callable, args, kwargs) -> None:
        """Set ``max_plate_nesting`` from one blocked run of guide and model, without shifting
        the random state (see :func:`~pyro_deepgen.infer.particles.guess_max_plate_nesting`)."""
        self.max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)

    def _draw(
        self,
        model: Callable,
        guide: Callable,
        args,
        kwargs,
        *,
        pathwise: Optional[bool] = None,
        rescore_guide: bool = False,
        prune: bool = True,
        track_provenance: bool = False,
    ) -> ParticleTraces:
        """Draw ``num_particles`` vectorized particles with
        :func:`~pyro_deepgen.infer.particles.draw_particles` (guessing ``max_plate_nesting``
        first if it is not known; Pyro's model/guide checks included); ``pathwise`` defaults to
        the class attribute. A program without any sample site is a ``ValueError``."""
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        traces = draw_particles(
            model,
            guide,
            args,
            kwargs,
            self.num_particles,
            self.max_plate_nesting,
            pathwise=self.pathwise if pathwise is None else pathwise,
            num_local_particles=self.num_local_particles,
            plate_name=self.plate_name,
            rescore_guide=rescore_guide,
            prune=prune,
            check_plate_nesting=getattr(self, "_given_max_plate_nesting", self.max_plate_nesting),
            track_provenance=track_provenance,
        )
        if is_validation_enabled() and not self.refuses_enumerated:  # Pyro's warning
            check_if_enumerated(traces.guide)
        if not any(_sample_sites(traces.model)) and not any(_sample_sites(traces.guide)):
            raise ValueError(
                f"{type(self).__name__}: the model and guide have no sample sites (the program "
                "has no sample sites, so no density to bound); add the model's pyro.sample sites"
            )
        return traces

    def _require_latents(self, traces: ParticleTraces, why: str) -> None:
        """Refuse a model without any latent sample site, naming the estimator and ``why`` it
        needs one (e.g. a gradient with respect to latent values)."""
        if not any(not site["is_observed"] for site in _sample_sites(traces.model)):
            raise ValueError(
                f"{type(self).__name__} needs at least one latent (unobserved) sample site in "
                f"the model ({why}), but every sample site is observed; for a model without "
                "latents the log-likelihood is exact: use Trace_ELBO, or add the latent sites"
            )

    def _particle_terms(
        self, model: Callable, guide: Callable, args, kwargs, pathwise: Optional[bool] = None
    ) -> ParticleTerms:
        """Draw the particles and reduce every site to per-data-point terms
        (:func:`~pyro_deepgen.infer.score_terms.particle_terms`)."""
        traces = self._draw(model, guide, args, kwargs, pathwise=pathwise)
        return particle_terms(traces.model, traces.guide, self.max_plate_nesting, self.plate_name)

    def _get_trace(
        self, model: Callable, guide: Callable, args, kwargs
    ) -> Tuple[poutine.Trace, poutine.Trace]:
        """Pyro's hook: the model and guide traces of all ``num_particles`` particles."""
        traces = self._draw(model, guide, args, kwargs)
        return traces.model, traces.guide

    def _get_traces(
        self, model: Callable, guide: Callable, args, kwargs
    ) -> Iterator[Tuple[poutine.Trace, poutine.Trace]]:
        """Pyro's hook: one (model, guide) pair holds every particle (they are vectorized)."""
        yield self._get_trace(model, guide, args, kwargs)

    # -- the objective ------------------------------------------------------------------------
    @abstractmethod
    def differentiable_loss(
        self, model: Callable, guide: Callable, *args, **kwargs
    ) -> torch.Tensor:
        """The exact negative objective as a scalar tensor carrying the estimator's gradient;
        every subclass implements it (the base is abstract)."""

    @torch.no_grad()
    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The negative objective (a float), without gradient bookkeeping."""
        return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The negative objective (a float); backpropagates the estimator's surrogate."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if torch.is_tensor(loss) and loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return torch_item(loss)
