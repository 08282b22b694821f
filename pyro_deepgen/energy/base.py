r"""The contract shared by the Boltzmann family (:class:`EnergyModel`)."""
from typing import Optional, Tuple

import torch
from pyro.nn import PyroModule

#: a full state: one tensor per layer, visible first, each with the same batch shape ``(...)``
State = Tuple[torch.Tensor, ...]


class EnergyModel(PyroModule):
    r"""Base class of the energy-based models: :math:`p(x) = e^{-E(x)}/Z` over a state
    :math:`x = (v, h^1, \dots, h^L)` of layers, visible first.

    **The contract.** A subclass implements

    - ``layer_sizes`` (tuple of ints, visible first) and :meth:`energy` ``(*state)``:
      :math:`E(x)` per state, vectorized over any batch shape, so that
      :math:`\log p(x) = -E(x) - \log Z` (for a DBN, :math:`E` is minus the log of the
      unnormalized directed-undirected joint, and :math:`Z` is the top RBM's);
    - :meth:`gibbs_step` ``(state, beta=None) -> state``: one sweep of a Markov kernel that
      leaves :math:`p(x)` invariant (block Gibbs over layers whose units are conditionally
      independent); given a tensor ``beta`` of inverse temperatures (broadcastable to
      ``(..., 1)``), one that leaves the tempered :math:`p_\beta(x)\propto
      e^{-\beta E_t(x)}\,e^{-(E(x) - E_t(x))}` invariant, where :math:`E_t` =
      :meth:`tempering_energy` (by default :math:`E` itself), for
      :class:`~pyro_deepgen.energy.ParallelTempering`;
    - :meth:`init_state` ``(v=None, batch_shape=())``: a starting state, filled in from visible
      units ``v`` or drawn at random;
    - :meth:`log_partition_exact` ``()``: :math:`\log Z` by enumeration (small models);
    - :meth:`log_partition_ais` ``(betas=None, num_runs=100, base_rate=None)``: an AIS estimate
      of :math:`\log Z` and its standard error, via the generic
      :func:`pyro_deepgen.infer.annealed_importance_sampling` along a path of the model's own
      choice;

    and, where it exists in closed form, :meth:`free_energy` ``(v)``
    :math:`F(v) = -\log\sum_h e^{-E(v, h)}`, declared by setting ``has_free_energy = True``.
    Everything else has a default: ``layer_names`` (``"v"``, ``"h1"``, ...), :meth:`log_prob`
    (:math:`-F(v) - \log Z`) and :meth:`sample_chains` (``num_steps`` sweeps of all chains at
    once). Code that works on any energy model (:class:`~pyro_deepgen.energy.BlockGibbs`,
    :func:`~pyro_deepgen.energy.ais_log_partition`) uses only this contract; fast paths that
    rely on a particular energy check a declared class attribute (e.g.
    :attr:`pyro_deepgen.energy.RBM.plain_energy`), never method identities.

    **State convention.** A state is a tuple of layer tensors ``(v, h1, ..., hL)`` with shapes
    ``(..., layer_sizes[l])`` and a common batch shape (chains, particles), in the order of
    ``layer_names``.
    """

    #: the number of units of each layer, visible first (an attribute or a property)
    layer_sizes: Tuple[int, ...]
    #: whether :meth:`free_energy` is implemented (the visible marginal in closed form)
    has_free_energy: bool = False

    @property
    def layer_names(self) -> Tuple[str, ...]:
        """The names of the layers of a state (sites of :class:`~pyro_deepgen.energy.BlockGibbs`):
        ``("v", "h1", ..., "hL")`` by default."""
        return ("v",) + tuple(f"h{i}" for i in range(1, len(self.layer_sizes)))

    @staticmethod
    def check_layer(x: torch.Tensor, size: int, name: str, matrix: bool = False) -> None:
        """Reject ``x`` unless it is a tensor of shape ``(..., size)`` (``(N, size)`` with
        ``matrix=True``), with a one-line error naming the argument."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[-1] != size or (matrix and x.dim() != 2):
            raise ValueError(
                f"{name} must have shape ({'N' if matrix else '...'}, {size}); got "
                f"{tuple(x.shape)}. Flatten images with x.reshape(len(x), -1)."
            )

    def check_visible(self, v: torch.Tensor, name: str = "v") -> None:
        """Reject ``v`` unless it is a tensor of shape ``(..., V)``."""
        self.check_layer(v, self.layer_sizes[0], name)

    def energy(self, *state: torch.Tensor) -> torch.Tensor:
        r""":math:`E(x)` of the full state ``(v, h1, ...)``, shape: the batch shape."""
        raise NotImplementedError(f"{type(self).__name__} must implement energy(*state)")

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`F(v) = -\log\sum_h e^{-E(v, h)}` where it is tractable."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form free energy (has_free_energy is False)")

    def gibbs_step(self, state: State, beta: Optional[torch.Tensor] = None) -> State:
        """One sweep of a kernel that leaves the model's joint invariant (with ``beta``: the
        tempered joint, see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must implement gibbs_step(state)")

    def tempering_energy(self, *state: torch.Tensor) -> torch.Tensor:
        r"""The part :math:`E_t(x)` of the energy that an inverse temperature :math:`\beta`
        multiplies (:meth:`gibbs_step` with ``beta``); by default all of :meth:`energy`, so that
        :math:`p_\beta\propto e^{-\beta E}`."""
        return self.energy(*state)

    def init_state(self, v: Optional[torch.Tensor] = None, batch_shape: Tuple[int, ...] = ()
                   ) -> State:
        """A starting state: hidden layers filled in from ``v``, or all drawn at random with
        the given batch shape."""
        raise NotImplementedError(f"{type(self).__name__} must implement init_state")

    def log_partition_exact(self) -> torch.Tensor:
        r"""Exact :math:`\log Z` by enumeration (small models only)."""
        raise NotImplementedError(f"{type(self).__name__} has no exact log Z")

    def log_partition_ais(self, betas=None, num_runs: int = 100,
                          base_rate: Optional[torch.Tensor] = None
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""AIS estimate of :math:`\log Z` and its standard error."""
        raise NotImplementedError(f"{type(self).__name__} has no AIS estimate of log Z")

    def log_prob(self, v: torch.Tensor, log_z) -> torch.Tensor:
        r""":math:`\log p(v) = -F(v) - \log Z` for a given ``log_z`` (exact or AIS)."""
        return -self.free_energy(v) - log_z

    @torch.no_grad()
    def sample_chains(self, state: State, num_steps: int) -> State:
        """``num_steps`` sweeps of :meth:`gibbs_step` from ``state`` (all chains at once)."""
        for _ in range(int(num_steps)):
            state = self.gibbs_step(state)
        return state
