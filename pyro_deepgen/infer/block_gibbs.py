"""Block-Gibbs MCMC kernel for restricted Boltzmann machines, for :class:`pyro.infer.MCMC`."""
from collections import OrderedDict
from typing import Dict, Optional

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ..models.rbm import RBM, bernoulli_sample


class BlockGibbs(MCMCKernel):
    r"""Block-Gibbs updates :math:`h \sim p(h\mid v)`, :math:`v \sim p(v\mid h)` of an RBM, in turn.

    Both conditionals factorize over units, so each half-sweep is one matrix product and one
    batch of independent Bernoulli (or Gaussian) draws. If :math:`v \sim p(v)`, the pair
    :math:`(v', h)` produced by a sweep is an exact draw from the joint :math:`p(v, h)`, so the
    chain's stationary distribution is the RBM's joint.

    Each state is a dict with the sites

    - ``"v"`` ``(V,)`` and ``"h"`` ``(H,)``: the units;
    - ``"energy"``: :math:`E(v, h)`; ``"free_energy"``: :math:`F(v)`;
    - ``"mean_hidden"`` / ``"mean_visible"``: the mean activation of each layer,

    so :meth:`pyro.infer.MCMC.summary` and ``arviz.from_pyro(mcmc)`` report R-hat and ESS of
    these chain statistics (pass ``save_params=list(BlockGibbs.STATISTICS)`` to ``MCMC`` to keep
    only the scalars for big models).

    **Chains.** :meth:`sample` is vectorized: given states with any leading batch shape
    ``(..., V)`` it advances all of them with one matrix product, which is how
    :meth:`~pyro_deepgen.models.RBM.sample` and AIS run thousands of chains. Pyro 1.9's
    :class:`~pyro.infer.MCMC` has no vectorized ``chain_method`` (NumPyro's
    ``chain_method="vectorized"`` has no Pyro equivalent): with ``num_chains > 1`` it runs one
    chain per worker process (the default ``mp_context``, ``fork`` on Linux, works on CPU; the
    kernel is picklable, so ``mp_context="spawn"`` works too), or, when ``num_chains`` exceeds the
    CPU count minus one, sequentially in this process after a ``UserWarning``. Both paths give
    each chain its own random initial state and seed, and are tested. ``num_particles`` adds
    vectorized chains inside each Pyro chain. For an RBM on CUDA pass
    ``mp_context="spawn"`` (forked workers cannot use CUDA) or sample a CPU copy.

    :param rbm: the :class:`~pyro_deepgen.models.RBM` to sample from (not modified).
    :param int num_sweeps: block-Gibbs sweeps per returned sample (thinning), default 1.
    :param init: optional initial visible state ``(V,)`` or ``(P, V)`` (e.g. data); by default
        each chain starts from :math:`v \sim p(v\mid h)` with uniformly random :math:`h`.
    :param int num_particles: if given, every Pyro chain carries ``P = num_particles``
        independent Gibbs chains advanced together by one matrix product (vectorized within the
        Pyro chain): the sites get a leading dimension ``P`` (e.g. ``"free_energy"`` has shape
        ``(P,)``), and ``MCMC`` / arviz report per-particle diagnostics.

    **Reference**: [1] S. Geman, D. Geman, *Stochastic relaxation, Gibbs distributions, and the
    Bayesian restoration of images*, IEEE PAMI 6 (1984). Pyro issue #1772 asks for this kernel.
    """

    STATISTICS = ("energy", "free_energy", "mean_hidden", "mean_visible")

    def __init__(self, rbm: RBM, num_sweeps: int = 1, init: Optional[torch.Tensor] = None,
                 num_particles: Optional[int] = None) -> None:
        if not isinstance(rbm, RBM):
            raise TypeError(f"rbm must be a pyro_deepgen.models.RBM, got {type(rbm).__name__}")
        if int(num_sweeps) < 1:
            raise ValueError(f"num_sweeps must be a positive integer, got {num_sweeps}")
        if num_particles is not None and int(num_particles) < 1:
            raise ValueError(f"num_particles must be a positive integer or None, "
                             f"got {num_particles}")
        if init is not None:
            rbm._check(init, rbm.num_visible, "init")
            if num_particles is not None and init.shape[:-1] != (int(num_particles),):
                raise ValueError(f"init must have shape ({num_particles}, {rbm.num_visible}) "
                                 f"with num_particles={num_particles}; got {tuple(init.shape)}")
        self.rbm, self.num_sweeps, self.init = rbm, int(num_sweeps), init
        self.num_particles = None if num_particles is None else int(num_particles)
        self.model = None  # no Pyro model to trace: arviz.from_pyro skips observations
        self.transforms = {}  # the units live in their own space: MCMC needs no transforms
        self._initial_params: Optional[Dict[str, torch.Tensor]] = None
        self._last_free_energy = float("nan")

    # -- MCMCKernel API -------------------------------------------------------------------
    @property
    def initial_params(self) -> Dict[str, torch.Tensor]:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: Dict[str, torch.Tensor]) -> None:
        if "v" not in params:
            raise ValueError("BlockGibbs initial_params need the visible state under key 'v'")
        self._initial_params = self._state(params["v"], None)

    def setup(self, warmup_steps: int, *args, **kwargs) -> None:
        """Draw this chain's initial state unless one was set through ``initial_params``."""
        if self._initial_params is None:
            rbm = self.rbm
            with torch.no_grad():
                if self.init is not None:
                    v = self.init.to(rbm.weight)
                else:
                    w = rbm.weight
                    shape = (() if self.num_particles is None else (self.num_particles,))
                    half = w.new_full(shape + (rbm.num_hidden,), 0.5)
                    v = rbm.sample_visible(bernoulli_sample(half))
            self._initial_params = self._state(v, None)

    def cleanup(self) -> None:
        """Forget the initial state so the next chain draws its own."""
        self._initial_params = None

    @torch.no_grad()
    def sample(self, params: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``num_sweeps`` sweeps from ``params["v"]`` (any batch shape ``(..., V)``)."""
        rbm = self.rbm
        v = params["v"].to(rbm.weight)
        for _ in range(self.num_sweeps):
            h = rbm.sample_hidden(v)
            v = rbm.sample_visible(h)
        state = self._state(v, h)
        self._last_free_energy = state["free_energy"].mean().item()
        return state

    def logging(self):
        return OrderedDict(free_energy=f"{self._last_free_energy:.4g}")

    def diagnostics(self):
        # block Gibbs never diverges; arviz.from_pyro reads this key for its sample_stats
        return {"divergences": []}

    # -- helpers --------------------------------------------------------------------------
    def _state(self, v: torch.Tensor, h: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        rbm = self.rbm
        with torch.no_grad():
            v = v.to(rbm.weight)
            rbm._check(v, rbm.num_visible, "v")
            if h is None:
                h = rbm.sample_hidden(v)
            return {
                "v": v,
                "h": h,
                "energy": rbm.energy(v, h),
                "free_energy": rbm.free_energy(v),
                "mean_hidden": h.mean(-1),
                "mean_visible": v.mean(-1),
            }


@torch.no_grad()
def fantasy_particles(rbm: RBM, num_particles: int, num_steps: int = 1000,
                      image_shape=None, init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Fantasy particles of a trained RBM as images: ``num_particles`` chains run in parallel for
    ``num_steps`` sweeps, returned as E[v | h] of the last sweep with shape
    ``(num_particles, *image_shape)`` (default: square images when V is a perfect square, else
    ``(V,)``)."""
    v = rbm.sample(num_particles, num_steps, init=init, mean=True)
    if image_shape is None:
        side = int(round(rbm.num_visible ** 0.5))
        image_shape = (side, side) if side * side == rbm.num_visible else (rbm.num_visible,)
    if int(torch.Size(image_shape).numel()) != rbm.num_visible:
        raise ValueError(f"image_shape {tuple(image_shape)} does not hold {rbm.num_visible} units")
    return v.reshape(num_particles, *image_shape)
