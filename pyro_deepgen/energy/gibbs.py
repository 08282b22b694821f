"""Block-Gibbs MCMC kernel for every energy model (RBM, DBN, DBM), for :class:`pyro.infer.MCMC`."""
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from .base import EnergyModel, State


class BlockGibbs(MCMCKernel):
    r"""Block-Gibbs sweeps of an :class:`~pyro_deepgen.energy.EnergyModel` (RBM, DBN or DBM),
    as a :class:`pyro.infer.mcmc.mcmc_kernel.MCMCKernel`: each step is ``num_sweeps`` calls of
    the model's :meth:`~pyro_deepgen.energy.EnergyModel.gibbs_step` on the full state.

    For an RBM a sweep is :math:`h \sim p(h\mid v)`, :math:`v \sim p(v\mid h)`: both
    conditionals factorize over units, so each half-sweep is one matrix product and one batch of
    independent Bernoulli (or Gaussian) draws, and if :math:`v \sim p(v)` the pair
    :math:`(v', h)` produced by a sweep is an exact draw from the joint :math:`p(v, h)`. For a
    DBM a sweep draws :math:`h^1` given its neighbours, then :math:`v` and :math:`h^2` given
    :math:`h^1`; for a DBN it is a sweep of the top RBM followed by a downward pass. In every
    case the chain's stationary distribution is the model's joint.

    Each state is a dict with the sites

    - one per layer, named by ``model.layer_names`` (``"v"``, ``"h"`` for an RBM; ``"v"``,
      ``"h1"``, ``"h2"``, ... for a DBM or DBN), shape ``(size,)``;
    - ``"energy"``: :math:`E(x)` of the state; ``"free_energy"``: :math:`F(v)` (models with a
      closed-form free energy, i.e. the RBM);
    - ``"mean_hidden"`` (one hidden layer; else ``"mean_h1"``, ``"mean_h2"``, ...) and
      ``"mean_visible"``: the mean activation of each layer,

    so :meth:`pyro.infer.MCMC.summary` and :func:`pyro_deepgen.diagnostics.summary` report R-hat and ESS of
    these chain statistics (``kernel.statistics`` lists them; for an RBM they are
    :attr:`STATISTICS`; pass ``save_params=list(kernel.statistics)`` to ``MCMC`` to keep only
    the scalars for big models).

    **Chains.** :meth:`sample` is vectorized: given states with any leading batch shape
    ``(..., V)`` it advances all of them at once, which is how
    :meth:`~pyro_deepgen.energy.RBM.sample` and AIS run thousands of chains. Pyro 1.9's
    :class:`~pyro.infer.MCMC` has no vectorized ``chain_method`` (NumPyro's
    ``chain_method="vectorized"`` has no Pyro equivalent): with ``num_chains > 1`` it runs one
    chain per worker process (the default ``mp_context``, ``fork`` on Linux, works on CPU; the
    kernel is picklable, so ``mp_context="spawn"`` works too), or, when ``num_chains`` exceeds the
    CPU count minus one, sequentially in this process after a ``UserWarning``. Both paths give
    each chain its own random initial state and seed, and are tested. ``num_particles`` adds
    vectorized chains inside each Pyro chain. For a model on CUDA pass
    ``mp_context="spawn"`` (forked workers cannot use CUDA) or sample a CPU copy.

    :param model: the :class:`~pyro_deepgen.energy.EnergyModel` to sample from (not modified).
    :param int num_sweeps: Gibbs sweeps per returned sample (thinning), default 1.
    :param init: optional initial visible state ``(V,)`` or ``(P, V)`` (e.g. data), the hidden
        layers filled in by ``model.init_state(init)``; by default each chain starts from
        ``model.init_state()`` (for an RBM :math:`v \sim p(v\mid h)` with uniformly random
        :math:`h`).
    :param int num_particles: if given, every Pyro chain carries ``P = num_particles``
        independent Gibbs chains advanced together (vectorized within the Pyro chain): the sites
        get a leading dimension ``P`` (e.g. ``"energy"`` has shape ``(P,)``), and ``MCMC`` /
        arviz report per-particle diagnostics.

    **Reference**: [1] S. Geman, D. Geman, *Stochastic relaxation, Gibbs distributions, and the
    Bayesian restoration of images*, IEEE PAMI 6 (1984). Pyro issue #1772 asks for this kernel.
    """

    #: the chain statistics of an RBM (``kernel.statistics`` gives any model's)
    STATISTICS = ("energy", "free_energy", "mean_hidden", "mean_visible")

    def __init__(self, model: EnergyModel, num_sweeps: int = 1, init: Optional[torch.Tensor] = None,
                 num_particles: Optional[int] = None) -> None:
        if not isinstance(model, EnergyModel):
            raise TypeError("model must be a pyro_deepgen.energy.EnergyModel (RBM, DBN or DBM), "
                            f"got {type(model).__name__}")
        if int(num_sweeps) < 1:
            raise ValueError(f"num_sweeps must be a positive integer, got {num_sweeps}")
        if num_particles is not None and int(num_particles) < 1:
            raise ValueError(f"num_particles must be a positive integer or None, "
                             f"got {num_particles}")
        num_visible = model.layer_sizes[0]
        if init is not None:
            model.check_visible(init, "init")
            if num_particles is not None and init.shape[:-1] != (int(num_particles),):
                raise ValueError(f"init must have shape ({num_particles}, {num_visible}) "
                                 f"with num_particles={num_particles}; got {tuple(init.shape)}")
        self.energy_model, self.num_sweeps, self.init = model, int(num_sweeps), init
        self.num_particles = None if num_particles is None else int(num_particles)
        self.layer_names: Tuple[str, ...] = tuple(model.layer_names)
        hidden = self.layer_names[1:]
        means = ("mean_hidden",) if len(hidden) == 1 else tuple(f"mean_{n}" for n in hidden)
        self.statistics: Tuple[str, ...] = (
            ("energy",) + (("free_energy",) if model.has_free_energy else ()) + means
            + ("mean_visible",))
        self.model = None  # no Pyro model to trace: arviz.from_pyro skips observations
        self.transforms = {}  # the units live in their own space: MCMC needs no transforms
        self._initial_params: Optional[Dict[str, torch.Tensor]] = None
        self._last_energy = float("nan")

    @property
    def rbm(self) -> EnergyModel:
        """The model (the attribute's name when the kernel took only RBMs)."""
        return self.energy_model

    # -- MCMCKernel API -------------------------------------------------------------------
    @property
    def initial_params(self) -> Dict[str, torch.Tensor]:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: Dict[str, torch.Tensor]) -> None:
        if "v" not in params:
            raise ValueError("BlockGibbs initial_params need the visible state under key 'v'")
        self._initial_params = self._sites(self._state_of(params))

    def setup(self, warmup_steps: int, *args, **kwargs) -> None:
        """Draw this chain's initial state unless one was set through ``initial_params``."""
        if self._initial_params is None:
            model = self.energy_model
            with torch.no_grad():
                if self.init is not None:
                    state = model.init_state(self.init)
                else:
                    shape = () if self.num_particles is None else (self.num_particles,)
                    state = model.init_state(None, shape)
            self._initial_params = self._sites(state)

    def cleanup(self) -> None:
        """Forget the initial state so the next chain draws its own."""
        self._initial_params = None

    @torch.no_grad()
    def sample(self, params: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``num_sweeps`` sweeps from the state in ``params`` (any batch shape; given only
        ``params["v"]``, the hidden layers are filled in by ``model.init_state``)."""
        state = self._state_of(params)
        step = self.energy_model.gibbs_step
        for _ in range(self.num_sweeps):
            state = step(state)
        sites = self._sites(state)
        self._last_energy = sites["energy"].mean().item()
        return sites

    def logging(self):
        return OrderedDict(energy=f"{self._last_energy:.4g}")

    def diagnostics(self):
        # block Gibbs never diverges; arviz.from_pyro reads this key for its sample_stats
        return {"divergences": []}

    # -- helpers --------------------------------------------------------------------------
    def _state_of(self, params: Dict[str, torch.Tensor]) -> State:
        """The state tuple of the sites in ``params``; from ``params["v"]`` alone when a hidden
        layer is missing."""
        model = self.energy_model
        if all(name in params for name in self.layer_names):
            v = params["v"]
            model.check_visible(v)
            return tuple(params[name] for name in self.layer_names)
        with torch.no_grad():
            return model.init_state(params["v"])

    def _sites(self, state: State) -> Dict[str, torch.Tensor]:
        model = self.energy_model
        with torch.no_grad():
            sites = dict(zip(self.layer_names, state))
            sites["energy"] = model.energy(*state)
            if model.has_free_energy:
                sites["free_energy"] = model.free_energy(state[0])
            hidden = state[1:]
            if len(hidden) == 1:
                sites["mean_hidden"] = hidden[0].mean(-1)
            else:
                for name, h in zip(self.layer_names[1:], hidden):
                    sites[f"mean_{name}"] = h.mean(-1)
            sites["mean_visible"] = state[0].mean(-1)
            return sites


@torch.no_grad()
def fantasy_particles(model: EnergyModel, num_particles: int, num_steps: int = 1000,
                      image_shape=None, init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Fantasy particles of a trained model (RBM, DBN or DBM) as images: ``num_particles`` chains
    run in parallel for ``num_steps`` sweeps (``model.sample``), returned as E[v | h] of the last
    sweep with shape ``(num_particles, *image_shape)`` (default: square images when V is a
    perfect square, else ``(V,)``)."""
    kwargs = {} if init is None else {"init": init}
    v = model.sample(num_particles, num_steps, mean=True, **kwargs)
    num_visible = model.layer_sizes[0]
    if image_shape is None:
        side = int(round(num_visible ** 0.5))
        image_shape = (side, side) if side * side == num_visible else (num_visible,)
    if int(torch.Size(image_shape).numel()) != num_visible:
        raise ValueError(f"image_shape {tuple(image_shape)} does not hold {num_visible} units")
    return v.reshape(num_particles, *image_shape)


@torch.no_grad()
def run_chains(kernel: BlockGibbs, num_samples: int, warmup_steps: int = 0,
               sites: Optional[Sequence[str]] = None, progress: bool = False,
               every: Optional[Dict[str, int]] = None) -> Dict[str, torch.Tensor]:
    r"""Run the ``kernel.num_particles`` chains of a :class:`BlockGibbs` or
    :class:`~pyro_deepgen.energy.ParallelTempering` kernel together, vectorized: every step
    advances all chains with one batched sweep, on the model's device.

    This is the vectorized chain method that Pyro 1.9's :class:`~pyro.infer.MCMC` lacks (it runs
    ``num_chains`` chains one after another, or one process each; NumPyro has
    ``chain_method="vectorized"``). The steps are those ``MCMC`` would take, ``kernel.setup
    (warmup_steps)`` and then ``warmup_steps + num_samples`` calls of ``kernel.sample``, so a
    parallel-tempering ladder adapts during the warm-up exactly as under ``MCMC``, here shared by
    the chains (:meth:`~pyro_deepgen.energy.ParallelTempering.adapt` averages the swap rates
    over them); afterwards the chains are independent given the frozen ladder.

    :param kernel: a kernel built with ``num_particles`` = the number of chains.
    :param int num_samples: draws kept per chain.
    :param int warmup_steps: steps discarded first (default 0).
    :param sites: the sites to keep (default: the chain statistics,
        :attr:`BlockGibbs.STATISTICS`, that the model has).
    :param bool progress: show a progress bar.
    :param every: sites kept only at every n-th draw, ``{site: n}`` (e.g. ``{"v": 5000}``: a
        few states of each chain for a figure, without storing every image).
    :return: ``{site: tensor of shape (chains, draws, ...)}`` on the CPU, the layout of
        ``MCMC.get_samples(group_by_chain=True)`` that
        :func:`pyro_deepgen.diagnostics.summary` and arviz take (a site of ``every``: its
        ``draws // n`` kept draws, the n-th, 2n-th, ...).
    """
    if not isinstance(kernel, BlockGibbs) or kernel.num_particles is None:
        raise ValueError("kernel must be a BlockGibbs or ParallelTempering kernel built with "
                         "num_particles=<number of chains>")
    for name, value in (("num_samples", num_samples), ("warmup_steps", warmup_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "num_samples" else 0):
            raise ValueError(f"{name} must be an integer >= {1 if name == 'num_samples' else 0}, got {value!r}")
    kernel.setup(warmup_steps)
    params = kernel.initial_params
    names = [name for name in (BlockGibbs.STATISTICS if sites is None else sites) if name in params]
    if sites is not None and len(names) != len(sites):
        missing = sorted(set(sites) - set(params))
        raise ValueError(f"sites {missing} are not sites of this kernel; it has {sorted(params)}")
    every = dict(every or {})
    for name, n in every.items():
        if name not in params or isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= num_samples:
            raise ValueError(f"every must map sites of this kernel ({sorted(params)}) to integers from 1 "
                             f"to num_samples ({num_samples}); got {name!r}: {n!r}")
    names = [name for name in names if name not in every]
    draws: Dict[str, list] = {name: [] for name in names + list(every)}
    steps = range(warmup_steps + num_samples)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"{kernel.num_particles} chains")
    for t in steps:
        params = kernel.sample(params)
        if t >= warmup_steps:  # kept on the device (no synchronization per step), moved at the end
            for name in names:
                draws[name].append(params[name].clone())
            for name, n in every.items():
                if (t - warmup_steps + 1) % n == 0:
                    draws[name].append(params[name].clone())
    kernel.cleanup()
    return {name: torch.stack(values, dim=1).cpu() for name, values in draws.items()}
