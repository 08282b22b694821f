r"""Parallel tempering (replica exchange) for every energy model, as a
:class:`pyro.infer.mcmc.mcmc_kernel.MCMCKernel` (:class:`ParallelTempering`), and its swap
move (:func:`replica_swap`)."""
import math
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch

from .base import EnergyModel, State
from .gibbs import BlockGibbs
from .rbm import RBM, bernoulli_sample


def geometric_ladder(num_temperatures: int, min_beta: float) -> torch.Tensor:
    r"""``num_temperatures`` inverse temperatures :math:`\beta_k = \beta_{\min}^{k/K}`,
    :math:`k = 0..K`, from 1 down to ``min_beta`` (float64; ``[1.]`` for one temperature)."""
    if not isinstance(num_temperatures, int) or isinstance(num_temperatures, bool) or num_temperatures < 1:
        raise ValueError(f"num_temperatures must be a positive integer (1 = plain block Gibbs), "
                         f"got {num_temperatures!r}")
    if not (isinstance(min_beta, (int, float)) and 0 < min_beta < 1):
        raise ValueError(f"min_beta must be in (0, 1) (the hottest replica's inverse temperature), "
                         f"got {min_beta!r}")
    if num_temperatures == 1:
        return torch.ones(1, dtype=torch.float64)
    k = torch.arange(num_temperatures, dtype=torch.float64)
    return float(min_beta) ** (k / (num_temperatures - 1))


def base_rate_ladder(num_temperatures: int, min_beta: float) -> torch.Tensor:
    r"""The ladder of a base-rate path: :func:`geometric_ladder` ``(num_temperatures - 1,
    min_beta)`` followed by :math:`\beta_K = 0` (the base-rate model itself), float64."""
    if not isinstance(num_temperatures, int) or isinstance(num_temperatures, bool) or num_temperatures < 2:
        raise ValueError(f"num_temperatures must be an integer >= 2 with a base rate (beta = 1 and the "
                         f"beta = 0 base), got {num_temperatures!r}")
    if num_temperatures == 2:
        return torch.tensor([1.0, 0.0], dtype=torch.float64)
    return torch.cat([geometric_ladder(num_temperatures - 1, min_beta), torch.zeros(1, dtype=torch.float64)])


def _check_ladder(betas, allow_zero: bool = False) -> torch.Tensor:
    betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
    if betas.dim() != 1 or len(betas) < 1 or not torch.isfinite(betas).all():
        raise ValueError(f"betas must be a finite 1-D sequence of inverse temperatures, got {betas.tolist()}")
    end = ">= 0 (0: the base rate)" if allow_zero else "> 0 (beta_K = 0 needs a base_rate)"
    if betas[0] != 1 or (len(betas) > 1 and not (betas[1:] < betas[:-1]).all()) or betas[-1] < 0 \
            or (betas[-1] == 0 and not allow_zero):
        raise ValueError(f"betas must decrease strictly from 1 = beta_0 > beta_1 > ... > beta_K {end} "
                         f"(the first replica samples the model itself); got {betas.tolist()}")
    return betas


def replica_swap(replicas: State, energies: torch.Tensor, betas: torch.Tensor, first: int,
                 uniform: Optional[torch.Tensor] = None
                 ) -> Tuple[State, torch.Tensor, torch.Tensor]:
    r"""One vectorized round of replica-exchange moves between neighbouring temperatures.

    The replicas :math:`x_0, \dots, x_K` (stacked along dim 0 of every layer, shape
    ``(K+1, *batch, size)``) target :math:`p_{\beta_k}(x) \propto e^{-\beta_k E(x)}`. The pairs
    :math:`(k, k+1)` for :math:`k = \text{first}, \text{first}+2, \dots` (disjoint, so all are
    proposed at once, for every chain of the batch) exchange their states with the Metropolis
    probability

    .. math:: a_k = \min\Big(1,\ \frac{p_{\beta_k}(x_{k+1})\,p_{\beta_{k+1}}(x_k)}
              {p_{\beta_k}(x_k)\,p_{\beta_{k+1}}(x_{k+1})}\Big)
              = \min\big(1,\ e^{(\beta_k - \beta_{k+1})(E(x_k) - E(x_{k+1}))}\big),

    which satisfies detailed balance with respect to the product
    :math:`\prod_k p_{\beta_k}(x_k)` (the partition functions cancel).

    :param replicas: the layers, each ``(K+1, *batch, size)``.
    :param energies: :math:`E(x_k)` (the tempered part of the energy), shape ``(K+1, *batch)``.
    :param betas: the ladder ``(K+1,)``.
    :param int first: 0 (pairs (0,1), (2,3), ...) or 1 (pairs (1,2), (3,4), ...).
    :param uniform: optional uniform draws ``(len(pairs), *batch)`` (default: fresh ones); a
        pair swaps when ``uniform < a_k``.
    :returns: the new replicas, the acceptance probabilities :math:`a_k` of *every* neighbouring
        pair ``(K, *batch)`` (the proposed ones and the others, for adaptation) and the boolean
        swaps of the proposed pairs ``(len(pairs), *batch)``.
    """
    num = energies.shape[0]
    betas = betas.to(energies)
    batch_dims = energies.dim() - 1
    gaps = (betas[:-1] - betas[1:]).reshape((-1,) + (1,) * batch_dims)
    log_ratio = gaps * (energies[:-1] - energies[1:])
    accept_prob = log_ratio.clamp(max=0.0).exp()
    lower = torch.arange(int(first), num - 1, 2, device=energies.device)
    if len(lower) == 0:
        return replicas, accept_prob, energies.new_zeros((0,) + energies.shape[1:], dtype=torch.bool)
    if uniform is None:
        uniform = torch.rand((len(lower),) + energies.shape[1:], dtype=energies.dtype, device=energies.device)
    swapped = uniform < accept_prob[lower]
    index = torch.arange(num, device=energies.device).reshape((-1,) + (1,) * batch_dims)
    index = index.expand(energies.shape).clone()
    upper = lower + 1
    index[lower] = torch.where(swapped, upper.reshape((-1,) + (1,) * batch_dims), index[lower])
    index[upper] = torch.where(swapped, lower.reshape((-1,) + (1,) * batch_dims), index[upper])
    new = tuple(torch.gather(x, 0, index.unsqueeze(-1).expand_as(x)) for x in replicas)
    return new, accept_prob, swapped


class ParallelTempering(BlockGibbs):
    r"""Parallel tempering (replica exchange, Swendsen & Wang 1986; for RBMs Desjardins et al.
    2010) of any :class:`~pyro_deepgen.energy.EnergyModel`, as a
    :class:`pyro.infer.mcmc.mcmc_kernel.MCMCKernel`.

    ``K + 1`` replicas run at the inverse temperatures :math:`1 = \beta_0 > \beta_1 > \dots >
    \beta_K > 0`, replica :math:`k` targeting :math:`p_{\beta_k}(x)\propto e^{-\beta_k E(x)}`
    (the RBM and DBM energies are linear in the parameters, so :math:`p_\beta` is the model
    with every weight and bias scaled by :math:`\beta`; for a DBN only the top RBM is
    tempered, see :meth:`~pyro_deepgen.energy.EnergyModel.tempering_energy`).

    **Base-rate hot end** (Bernoulli RBMs, ``base_rate`` = visible log-odds :math:`b_A`, e.g.
    :func:`~pyro_deepgen.energy.base_rate_logits` of the training images): the replicas follow
    the path of Salakhutdinov & Murray's AIS instead, :math:`p_\beta(v, h) \propto
    p_A(v)^{1-\beta}\,e^{-\beta E(v, h)}` with :math:`p_A(v) \propto e^{b_A^\top v}`, the RBM
    with weights :math:`\beta W`, hidden biases :math:`\beta c` and visible biases
    :math:`\beta b + (1-\beta) b_A` (``_base_rate_sweep``); the swaps use
    :math:`E_t = E + b_A^\top v` (:meth:`path_energy`). The ladder may then end at
    :math:`\beta_K = 0`, where a sweep is an exact independent draw from the base rate
    (independent pixels with the data marginals, uniform hidden units): every state the hot
    end hands down is a fresh one. Default ladder ``base_rate_ladder``. Every step is ``num_sweeps``
    times: one block-Gibbs sweep of every replica at its own temperature (the model's
    :meth:`~pyro_deepgen.energy.EnergyModel.gibbs_step` with a ``beta`` per replica, one call
    for all replicas and chains), then one round of swaps between neighbours
    (:func:`replica_swap`), alternating the even pairs :math:`(0,1), (2,3), \dots` and the odd
    pairs :math:`(1,2), (3,4), \dots`, accepted with probability

    .. math:: \min\big(1,\ e^{(\beta_k - \beta_{k+1})(E(x_k) - E(x_{k+1}))}\big).

    Both moves leave :math:`\prod_k p_{\beta_k}(x_k)` invariant, so the :math:`\beta_0 = 1`
    replica (the state this kernel returns, with the sites and chain statistics of
    :class:`~pyro_deepgen.energy.BlockGibbs`) samples the model exactly; the hot replicas cross
    the energy barriers between modes that block Gibbs at :math:`\beta = 1` cannot, and swaps
    carry their states down. The replicas are kept by the kernel between calls of
    :meth:`sample` (a ``params`` whose layers differ from the last returned state restarts them
    all there).

    **Ladder adaptation.** During the ``warmup_steps`` that :class:`pyro.infer.MCMC` passes to
    :meth:`setup`, the interior temperatures move so that the swap acceptance rates of the pairs
    become equal (the endpoints 1 and :math:`\beta_K` stay fixed): with the gaps written
    :math:`\beta_k - \beta_{k+1} = (1 - \beta_K)\,\mathrm{softmax}(S)_k`, every step does

    .. math:: S_k \leftarrow S_k + \kappa_t\,(\bar a_k - \tfrac1K\textstyle\sum_j \bar a_j),\qquad
              \kappa_t = \kappa_0\,\frac{t_0}{t + t_0},

    where :math:`\bar a_k` is the Metropolis probability of pair :math:`k` averaged over the
    chains (computed for every pair each step, whether proposed or not): a pair that accepts
    more than the average gets a wider gap. This is the rate-equalizing scheme of Vousden, Farr
    & Mandel (2016) with both ends fixed. After the warmup the ladder is frozen (the chain is
    then a time-homogeneous Markov chain) and the acceptance counters restart, so
    :attr:`swap_acceptance` reports the frozen ladder's rates; :meth:`diagnostics` returns them
    with the ladder (``mcmc.diagnostics()["swap_acceptance"]``). Outside
    :class:`~pyro.infer.MCMC`, call ``kernel.setup(warmup_steps)`` to adapt during the first
    ``warmup_steps`` calls, or :meth:`adapt` for an explicit step.

    :param model: the :class:`~pyro_deepgen.energy.EnergyModel` (not modified).
    :param betas: the ladder, strictly decreasing from 1 to a positive :math:`\beta_K`; default
        :func:`geometric_ladder` ``(num_temperatures, min_beta)``.
    :param int num_temperatures: ``K + 1`` when ``betas`` is not given (default 8); 1 is plain
        block Gibbs.
    :param float min_beta: :math:`\beta_K` of the default ladder (default 0.5).
    :param int num_sweeps: sweep-and-swap rounds per returned sample (default 1).
    :param init: as for :class:`~pyro_deepgen.energy.BlockGibbs` (all replicas start there).
    :param int num_particles: vectorized chains inside each Pyro chain, as for
        :class:`~pyro_deepgen.energy.BlockGibbs`; every chain has its own K + 1 replicas and
        they share the ladder.
    :param bool adapt: adapt the ladder during warmup (default True).
    :param float adapt_rate: :math:`\kappa_0` (default 1.0).
    :param adapt_lag: :math:`t_0` (default 100 steps); ``None`` keeps :math:`\kappa_t =
        \kappa_0` (a constant rate, as PT-PCD uses while the model changes).
    :param base_rate: visible log-odds :math:`b_A` ``(V,)`` of the base-rate hot end (RBMs with
        Bernoulli visible units only; default ``None``: plain tempering).
    :param int swap_rounds: rounds of swaps after each sweep (default 1), alternating even and
        odd pairs. The energies do not change between rounds (they move with the states), so
        extra rounds cost almost nothing and let a state travel several rungs per sweep: the
        time to diffuse through a ladder of K rungs, about :math:`K^2/a` sweeps with one round,
        shrinks by up to the number of rounds. Each round satisfies detailed balance, so the
        kernel stays exact.

    **Limiting cases**: with one temperature (``num_temperatures=1``) no swap is proposed and
    the kernel is :class:`~pyro_deepgen.energy.BlockGibbs` draw for draw (same seed, same
    samples; tested); with :math:`\beta_{k+1}\to\beta_k` every swap is accepted.

    **References**: [1] R. H. Swendsen, J.-S. Wang, *Replica Monte Carlo simulation of spin
    glasses*, Phys. Rev. Lett. 57 (1986). [2] G. Desjardins, A. Courville, Y. Bengio, P.
    Vincent, O. Delalleau, *Tempered Markov Chain Monte Carlo for training of Restricted
    Boltzmann Machines*, AISTATS 2010. [3] W. D. Vousden, W. M. Farr, I. Mandel, *Dynamic
    temperature selection for parallel tempering in Markov chain Monte Carlo simulations*,
    MNRAS 455 (2016), arXiv:1501.05823. [4] R. Salakhutdinov, I. Murray, *On the Quantitative
    Analysis of Deep Belief Networks*, ICML 2008 (the base-rate path).
    """

    def __init__(self, model: EnergyModel, betas: Optional[Sequence[float]] = None,
                 num_temperatures: int = 8, min_beta: float = 0.5, num_sweeps: int = 1,
                 init: Optional[torch.Tensor] = None, num_particles: Optional[int] = None,
                 adapt: bool = True, adapt_rate: float = 1.0, adapt_lag: Optional[float] = 100,
                 swap_rounds: int = 1, base_rate: Optional[torch.Tensor] = None) -> None:
        super().__init__(model, num_sweeps=num_sweeps, init=init, num_particles=num_particles)
        if isinstance(swap_rounds, bool) or not isinstance(swap_rounds, int) or swap_rounds < 1:
            raise ValueError(f"swap_rounds must be a positive integer (swap rounds per sweep), got {swap_rounds!r}")
        self.swap_rounds = swap_rounds
        if base_rate is not None:
            if not isinstance(model, RBM) or model.visible != "bernoulli":
                raise ValueError("base_rate needs an RBM with Bernoulli visible units (the base-rate path "
                                 f"is written for it); got {type(model).__name__}"
                                 f"{'' if not isinstance(model, RBM) else ' with ' + model.visible + ' units'}")
            base_rate = torch.as_tensor(base_rate).detach()
            if base_rate.shape != (model.num_visible,) or not torch.isfinite(base_rate).all():
                raise ValueError(f"base_rate must be finite visible log-odds of shape ({model.num_visible},) "
                                 f"(e.g. base_rate_logits(data)); got shape {tuple(base_rate.shape)}")
            base_rate = base_rate.to(model.visible_bias)
        self.base_rate = base_rate
        if betas is not None:
            ladder = _check_ladder(betas, allow_zero=base_rate is not None)
        elif base_rate is not None:
            ladder = base_rate_ladder(num_temperatures, min_beta)
        else:
            ladder = geometric_ladder(num_temperatures, min_beta)
        if not (isinstance(adapt_rate, (int, float)) and math.isfinite(adapt_rate) and adapt_rate >= 0):
            raise ValueError(f"adapt_rate must be a finite number >= 0, got {adapt_rate!r}")
        if adapt_lag is not None and not (isinstance(adapt_lag, (int, float)) and adapt_lag > 0):
            raise ValueError(f"adapt_lag must be > 0 (steps) or None for a constant rate, got {adapt_lag!r}")
        self.initial_betas = ladder
        # a plain Bernoulli RBM returns its replicas' energies from the sweep itself
        self._fused_sweep = (isinstance(model, RBM) and model.visible == "bernoulli"
                             and type(model).has_plain_energy())
        self.adapt_enabled, self.adapt_rate, self.adapt_lag = bool(adapt), float(adapt_rate), adapt_lag
        self.adapt_steps = 0
        self.reset()

    # -- state ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the initial ladder, with no replicas and zero counters."""
        self.betas = self.initial_betas.clone()
        num_pairs = len(self.betas) - 1
        gaps = self.betas[:-1] - self.betas[1:]
        self._log_gaps = torch.log(gaps / gaps.sum()) if num_pairs else gaps
        self.replicas: Optional[State] = None
        self._t, self._parity = 0, 0
        self._attempts = torch.zeros(num_pairs, dtype=torch.float64)
        self._accepts = torch.zeros(num_pairs, dtype=torch.float64)
        self._mean_accept_prob = torch.zeros(num_pairs, dtype=torch.float64)
        self._mean_count = 0

    @property
    def num_temperatures(self) -> int:
        """K + 1."""
        return len(self.betas)

    @property
    def swap_acceptance(self) -> torch.Tensor:
        """The fraction of accepted swaps of each neighbouring pair ``(K,)`` since the end of
        the warmup (since the start without one); NaN for a pair never proposed."""
        return self._accepts / self._attempts

    @property
    def expected_swap_acceptance(self) -> torch.Tensor:
        r"""The Metropolis probability :math:`a_k` of each pair averaged over chains and the
        same steps as :attr:`swap_acceptance` (a lower-variance estimate of the same rates)."""
        return self._mean_accept_prob / max(self._mean_count, 1)

    def _restart_counters(self) -> None:
        self._attempts.zero_()
        self._accepts.zero_()
        self._mean_accept_prob.zero_()
        self._mean_count = 0

    # -- MCMCKernel API -------------------------------------------------------------------
    def setup(self, warmup_steps: int, *args, **kwargs) -> None:
        """Reset the ladder, replicas and counters, adapt during the next ``warmup_steps``
        steps, and draw the initial state (as :class:`~pyro_deepgen.energy.BlockGibbs`)."""
        self.reset()
        self.adapt_steps = int(warmup_steps)
        super().setup(warmup_steps, *args, **kwargs)

    def cleanup(self) -> None:
        super().cleanup()
        self.replicas = None

    @torch.no_grad()
    def sample(self, params: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``num_sweeps`` rounds of (a sweep of every replica, a round of swaps) from the state
        in ``params`` (any batch shape); returns the sites of the :math:`\\beta = 1` replica."""
        replicas = self._replicas_at(self._state_of(params))
        for _ in range(self.num_sweeps):
            replicas = self.step(replicas)
        self.replicas = replicas
        sites = self._sites(tuple(x[0].clone() for x in replicas))
        self._last_energy = sites["energy"].mean().item()
        return sites

    def step(self, replicas: State) -> State:
        """One sweep of every replica at its temperature, then one round of swaps (alternating
        even and odd pairs), counting acceptances and adapting the ladder during warmup."""
        model = self.energy_model
        x = replicas[0]
        shape = (-1,) + (1,) * (x.dim() - 1)
        energies = None
        if self.base_rate is not None:
            replicas = self._base_rate_sweep(replicas, self.betas.to(x).reshape(shape))
        elif self._fused_sweep:
            replicas, energies = model.tempered_sweep_with_energy(replicas, self.betas.to(x).reshape(shape))
        else:
            replicas = model.gibbs_step(replicas, self.betas.to(x).reshape(shape))
        if self.num_temperatures == 1:
            self._advance(None)
            return replicas
        if energies is None:
            energies = self.path_energy(*replicas)
        num_layers = len(replicas)
        first_prob = None
        for _ in range(self.swap_rounds):
            first = self._parity
            self._parity ^= 1
            # the energies travel with the states (as one more "layer")
            moved, accept_prob, swapped = replica_swap(replicas + (energies.unsqueeze(-1),), energies,
                                                       self.betas, first)
            replicas, energies = moved[:num_layers], moved[num_layers].squeeze(-1)
            lower = torch.arange(first, self.num_temperatures - 1, 2)
            batch_dims = tuple(range(1, accept_prob.dim()))
            per_chain = accept_prob[0].numel()
            self._attempts[lower] += per_chain
            self._accepts[lower] += swapped.sum(batch_dims).double().cpu() if batch_dims else swapped.double().cpu()
            mean_prob = (accept_prob.mean(batch_dims) if batch_dims else accept_prob).double().cpu()
            self._mean_accept_prob += mean_prob
            self._mean_count += 1
            first_prob = mean_prob if first_prob is None else first_prob
        self._advance(first_prob)
        return replicas

    def path_energy(self, *state: torch.Tensor) -> torch.Tensor:
        r"""The energy :math:`E_t` that the inverse temperature multiplies on the kernel's path:
        the model's :meth:`~pyro_deepgen.energy.EnergyModel.tempering_energy`, or with a base
        rate :math:`E(v, h) - E_A(v) = E(v, h) + b_A^\top v` (so that :math:`\log p_\beta =
        -E_A - \beta E_t` + const)."""
        energy = self.energy_model.tempering_energy(*state)
        if self.base_rate is None:
            return energy
        return energy + torch.matmul(state[0], self.base_rate.to(state[0]))

    def _base_rate_sweep(self, replicas: State, beta: torch.Tensor) -> State:
        r"""One block-Gibbs sweep of every replica of the base-rate path: :math:`p_\beta(v, h)
        \propto e^{-\beta E(v, h) + (1-\beta) b_A^\top v}` is the RBM with weights
        :math:`\beta W`, hidden biases :math:`\beta c` and visible biases :math:`\beta b +
        (1-\beta) b_A`."""
        rbm = self.energy_model
        v = replicas[0]
        h = bernoulli_sample(torch.sigmoid(beta * rbm.hidden_input(v)))
        base = self.base_rate.to(v)
        v = bernoulli_sample(torch.sigmoid(beta * rbm.visible_input(h) + (1 - beta) * base))
        return (v, h)

    def _advance(self, mean_prob: Optional[torch.Tensor]) -> None:
        if self.adapt_enabled and self._t < self.adapt_steps and mean_prob is not None:
            self.adapt(mean_prob)
        self._t += 1
        if self._t == self.adapt_steps:
            self._restart_counters()

    def adapt(self, accept_prob: torch.Tensor) -> None:
        r"""One step of the rate-equalizing update of the interior temperatures given the pairs'
        mean acceptance probabilities ``(K,)`` (see the class docstring)."""
        num_pairs = self.num_temperatures - 1
        if num_pairs < 2:
            return
        rate = self.adapt_rate if self.adapt_lag is None else \
            self.adapt_rate * self.adapt_lag / (self._t + self.adapt_lag)
        a = accept_prob.double().cpu()
        self._log_gaps = self._log_gaps + rate * (a - a.mean())
        span = 1.0 - self.betas[-1]
        cumulative = torch.cumsum(torch.softmax(self._log_gaps, 0), 0)[:-1]
        self.betas[1:-1] = 1.0 - span * cumulative

    def _replicas_at(self, state: State) -> State:
        """The kept replicas if their beta = 1 replica is ``state``, else ``K + 1`` copies of
        ``state``."""
        kept = self.replicas
        if kept is not None and len(kept) == len(state) and all(
                r[0].shape == s.shape and r.device == s.device and torch.equal(r[0], s.to(r))
                for r, s in zip(kept, state)):
            return kept
        num = self.num_temperatures
        return tuple(s.unsqueeze(0).expand((num,) + tuple(s.shape)).clone() for s in state)

    def logging(self):
        rates = self.expected_swap_acceptance
        low = f"{rates.min().item():.2f}" if len(rates) else "-"
        return OrderedDict(energy=f"{self._last_energy:.4g}", min_swap=low)

    def diagnostics(self):
        return {"divergences": [], "swap_acceptance": self.swap_acceptance.tolist(),
                "betas": self.betas.tolist()}
