r"""Deep Boltzmann machine with two hidden layers (Salakhutdinov & Hinton 2009).

The model, its mean-field posterior and variational bound, exact and AIS estimates of
:math:`\log Z`, and the modified RBMs of its greedy pretraining (:class:`DoubledRBM`; the
pretraining itself is :func:`pyro_deepgen.energy.pretrain_dbm`, the training loss
:class:`pyro_deepgen.energy.MeanFieldPCD`).
"""
import importlib
import math
from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .._compat import warn_moved
from .._checks import finite_float, positive_int
from ..infer.ais import annealed_importance_sampling, default_ais_schedule, log_mean_exp_with_stderr
from ..infer.util import chunked_log_mean_exp
from .ais import base_rate_logits
from .base import EnergyModel
from .rbm import MAX_ENUMERATED_UNITS, RBM, binary_states

State = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _bernoulli_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of independent Bernoulli units, summed over the last dim."""
    return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)).sum(-1)


class DBM(EnergyModel):
    r"""A binary deep Boltzmann machine :math:`v - h^1 - h^2`.

    .. math::

        E(v, h^1, h^2) = -b^\top v - c_1^\top h^1 - c_2^\top h^2 - {h^1}^\top W_1 v
                         - {h^2}^\top W_2 h^1,\qquad p(v, h^1, h^2) = e^{-E} / Z,

    with ``weight1`` :math:`W_1` (H1 x V), ``weight2`` :math:`W_2` (H2 x H1), ``visible_bias``
    :math:`b`, ``hidden1_bias`` :math:`c_1` and ``hidden2_bias`` :math:`c_2`. Unlike a DBN
    every connection is undirected, so :math:`p(h^1\mid v, h^2) = \sigma(W_1 v + W_2^\top h^2
    + c_1)` combines bottom-up and top-down input, while :math:`p(v\mid h^1)` and
    :math:`p(h^2\mid h^1)` factorize given the middle layer.

    **Mean field.** :meth:`mean_field` iterates the fixed-point equations of the factorial
    posterior :math:`q(h^1,h^2) = \prod_j \mathrm{Bern}(\mu^1_j)\prod_k\mathrm{Bern}(\mu^2_k)`,

    .. math:: \mu^1 = \sigma(W_1 v + W_2^\top\mu^2 + c_1),\qquad \mu^2 = \sigma(W_2\mu^1 + c_2),

    each a coordinate ascent step on the bound (:meth:`lower_bound`)

    .. math:: \log p(v) \ge -E(v, \mu^1, \mu^2) + \mathcal H(\mu^1) + \mathcal H(\mu^2) - \log Z.

    **Partition function.** Given :math:`h^1` both other layers are independent and can be
    summed out, :math:`\log\tilde p(h^1) = c_1^\top h^1 + \sum_i\operatorname{softplus}
    (b + W_1^\top h^1)_i + \sum_k\operatorname{softplus}(c_2 + W_2 h^1)_k`, so
    :meth:`log_partition_exact` enumerates :math:`h^1` and :meth:`log_partition_ais` anneals
    over :math:`h^1` alone (see there).

    :param int num_visible: V, visible units.
    :param int num_hidden1: H1, units of the first hidden layer.
    :param int num_hidden2: H2, units of the second hidden layer.
    :param float init_scale: standard deviation of the initial weights (default 0.01).

    **Limiting case**: with ``weight2 = 0`` and ``hidden2_bias = 0`` the model is an RBM with an
    extra :math:`H_2\log 2` in :math:`\log Z` (tested).

    **References**: [1] R. Salakhutdinov, G. E. Hinton, *Deep Boltzmann Machines*, AISTATS 2009.
    [2] R. Salakhutdinov, H. Larochelle, *Efficient Learning of Deep Boltzmann Machines*,
    AISTATS 2010. [3] R. Salakhutdinov, I. Murray, *On the Quantitative Analysis of Deep Belief
    Networks*, ICML 2008.
    """

    def __init__(self, num_visible: int, num_hidden1: int, num_hidden2: int,
                 init_scale: float = 0.01) -> None:
        super().__init__()
        sizes = (positive_int(num_visible, "num_visible"), positive_int(num_hidden1, "num_hidden1"),
                 positive_int(num_hidden2, "num_hidden2"))
        finite_float(init_scale, "init_scale", low=0.0)
        self.num_visible, self.num_hidden1, self.num_hidden2 = sizes
        self.weight1 = nn.Parameter(torch.randn(sizes[1], sizes[0]) * init_scale)
        self.weight2 = nn.Parameter(torch.randn(sizes[2], sizes[1]) * init_scale)
        self.visible_bias = nn.Parameter(torch.zeros(sizes[0]))
        self.hidden1_bias = nn.Parameter(torch.zeros(sizes[1]))
        self.hidden2_bias = nn.Parameter(torch.zeros(sizes[2]))

    def extra_repr(self) -> str:
        return f"{self.num_visible}-{self.num_hidden1}-{self.num_hidden2}"

    @property
    def layer_sizes(self) -> Tuple[int, int, int]:
        return (self.num_visible, self.num_hidden1, self.num_hidden2)

    # -- energies and conditionals --------------------------------------------------------
    def energy(self, v: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """E(v, h1, h2); also the expected energy under a factorial q when given its means."""
        self.check_visible(v)
        return -(
            v @ self.visible_bias
            + h1 @ self.hidden1_bias
            + h2 @ self.hidden2_bias
            + (h1 * F.linear(v, self.weight1)).sum(-1)
            + (h2 * F.linear(h1, self.weight2)).sum(-1)
        )

    def hidden1_input(self, v: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """:math:`W_1 v + W_2^\\top h^2 + c_1`."""
        return F.linear(v, self.weight1, self.hidden1_bias) + h2 @ self.weight2

    def hidden2_input(self, h1: torch.Tensor) -> torch.Tensor:
        """:math:`W_2 h^1 + c_2`."""
        return F.linear(h1, self.weight2, self.hidden2_bias)

    def visible_input(self, h1: torch.Tensor) -> torch.Tensor:
        """:math:`W_1^\\top h^1 + b`."""
        return h1 @ self.weight1 + self.visible_bias

    def log_hidden1_marginal(self, h1: torch.Tensor) -> torch.Tensor:
        r""":math:`\log\sum_{v,h^2} e^{-E(v,h^1,h^2)}` (v and h2 summed out analytically)."""
        return (
            h1 @ self.hidden1_bias
            + F.softplus(self.visible_input(h1)).sum(-1)
            + F.softplus(self.hidden2_input(h1)).sum(-1)
        )

    def unnormalized_log_prob(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`\log\sum_{h^1,h^2} e^{-E}` by enumerating :math:`h^1` (tiny models only)."""
        self.check_visible(v)
        h1 = self._enumerate_hidden1()  # (C, H1)
        log_terms = (
            (v @ self.visible_bias).unsqueeze(-1)
            + h1 @ self.hidden1_bias
            + F.linear(v, self.weight1) @ h1.T
            + F.softplus(self.hidden2_input(h1)).sum(-1)
        )  # (..., C)
        return torch.logsumexp(log_terms, -1)

    def _enumerate_hidden1(self) -> torch.Tensor:
        if self.num_hidden1 > MAX_ENUMERATED_UNITS:
            raise ValueError(
                f"exact computations enumerate the 2**{self.num_hidden1} states of the first "
                f"hidden layer; at most {MAX_ENUMERATED_UNITS} units. Use log_partition_ais."
            )
        w = self.weight1
        return binary_states(self.num_hidden1, device=w.device, dtype=w.dtype)

    @torch.no_grad()
    def log_partition_exact(self) -> torch.Tensor:
        r"""Exact :math:`\log Z = \log\sum_{h^1}\tilde p(h^1)` (at most 20 first-layer units)."""
        return torch.logsumexp(self.log_hidden1_marginal(self._enumerate_hidden1()), 0)

    def log_prob_exact(self, v: torch.Tensor) -> torch.Tensor:
        """Exact log p(v) by enumeration (tests and tiny models)."""
        return self.unnormalized_log_prob(v) - self.log_partition_exact()

    # -- mean field and the bound ---------------------------------------------------------
    @torch.no_grad()
    def mean_field(self, v: torch.Tensor, num_steps: int = 30, tol: float = 1e-6
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""Mean-field parameters :math:`(\mu^1, \mu^2)` for each row of ``v``.

        Initialized by the bottom-up pass with doubled weights used in pretraining,
        :math:`\mu^1 = \sigma(2W_1 v + c_1)`, :math:`\mu^2 = \sigma(W_2\mu^1 + c_2)`, then
        ``num_steps`` sweeps of the fixed-point equations (stopping early once no parameter
        moves by more than ``tol``).
        """
        self.check_visible(v)
        if int(num_steps) < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
        v = v.to(self.weight1)
        mu1 = torch.sigmoid(2 * F.linear(v, self.weight1) + self.hidden1_bias)
        mu2 = torch.sigmoid(self.hidden2_input(mu1))
        for _ in range(int(num_steps)):
            new1 = torch.sigmoid(self.hidden1_input(v, mu2))
            new2 = torch.sigmoid(self.hidden2_input(new1))
            delta = max((new1 - mu1).abs().max().item(), (new2 - mu2).abs().max().item())
            mu1, mu2 = new1, new2
            if delta < tol:
                break
        return mu1, mu2

    def lower_bound(self, v: torch.Tensor, log_z, num_steps: int = 30) -> torch.Tensor:
        r"""The mean-field variational lower bound on :math:`\log p(v)` per row of ``v``,
        :math:`-E(v,\mu^1,\mu^2) + \mathcal H(\mu^1) + \mathcal H(\mu^2) - \log Z`, for a
        given ``log_z`` (exact, or from :meth:`log_partition_ais`; an AIS estimate makes the
        bound an estimate too)."""
        mu1, mu2 = self.mean_field(v, num_steps)
        v = v.to(mu1)
        bound = -self.energy(v, mu1, mu2) + _bernoulli_entropy(mu1) + _bernoulli_entropy(mu2)
        return bound - log_z

    def log_visible_top_marginal(self, v: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        r""":math:`\log\sum_{h^1} e^{-E(v, h^1, h^2)} = b^\top v + c_2^\top h^2 +
        \sum_j\operatorname{softplus}(W_1 v + W_2^\top h^2 + c_1)_j`: given its two neighbours
        the middle layer is summed out analytically (broadcast over ``v`` and ``h2``)."""
        return (v @ self.visible_bias + h2 @ self.hidden2_bias
                + F.softplus(self.hidden1_input(v, h2)).sum(-1))

    @torch.no_grad()
    def importance_log_prob(self, v: torch.Tensor, log_z, num_samples: int = 1000,
                            mean_field_steps: int = 30, chunk_size: Optional[int] = None
                            ) -> torch.Tensor:
        r"""Importance-sampled estimate of :math:`\log p(v)` per row of ``v`` ``(N, V)``,

        .. math:: \log\hat p(v) = \log\frac1K\sum_{k=1}^K
            \frac{\tilde p(v, h^2_k)}{q(h^2_k)} - \log Z,\qquad h^2_k\sim q(h^2) =
            \prod_k\mathrm{Bern}(\mu^2_k),

        with :math:`h^1` summed out exactly (:meth:`log_visible_top_marginal`) and the proposal
        the mean-field marginal of :math:`h^2` (:meth:`mean_field`). For an exact ``log_z`` its
        expectation is a lower bound on :math:`\log p(v)` that rises with K toward it (Burda et
        al. 2016) and, already at K = 1, lies above :meth:`lower_bound` (same :math:`q(h^2)`,
        but :math:`h^1` integrated exactly instead of by a factorial :math:`q(h^1)`). With an
        AIS ``log_z`` it is an estimate too.

        :param int num_samples: K (default 1000).
        :param int chunk_size: samples drawn at once (default: sized to bound memory).
        """
        self.check_visible(v)
        if v.dim() != 2:
            raise ValueError(f"v must have shape (N, {self.num_visible}); got {tuple(v.shape)}")
        v = v.to(self.weight1)
        _, mu2 = self.mean_field(v, mean_field_steps)
        bottom_up = F.linear(v, self.weight1, self.hidden1_bias)  # shared by every sample
        visible = v @ self.visible_bias

        def log_weights(k):
            h2 = torch.bernoulli(mu2.expand(k, *mu2.shape))
            log_q = (torch.xlogy(h2, mu2) + torch.xlogy(1 - h2, 1 - mu2)).sum(-1)
            log_p = (visible + h2 @ self.hidden2_bias
                     + F.softplus(bottom_up + h2 @ self.weight2).sum(-1))
            return log_p - log_q

        return chunked_log_mean_exp(log_weights, num_samples, chunk_size,
                                    elements_per_sample=v.shape[0] * self.num_hidden1) - log_z

    # -- sampling -------------------------------------------------------------------------
    @torch.no_grad()
    def gibbs_step(self, state: State, beta: Optional[torch.Tensor] = None) -> State:
        r"""One sweep: h1 ~ p(h1 | v, h2), then v ~ p(v | h1) and h2 ~ p(h2 | h1) together.

        With ``beta`` (a tensor broadcastable to ``(..., 1)``) the sweep is one of the tempered
        joint :math:`p_\beta\propto e^{-\beta E}` (every input multiplied by :math:`\beta`),
        as :class:`~pyro_deepgen.energy.ParallelTempering` uses."""
        v, _, h2 = state

        def scaled(x):
            return x if beta is None else beta * x

        h1 = torch.bernoulli(torch.sigmoid(scaled(self.hidden1_input(v, h2))))
        v = torch.bernoulli(torch.sigmoid(scaled(self.visible_input(h1))))
        h2 = torch.bernoulli(torch.sigmoid(scaled(self.hidden2_input(h1))))
        return v, h1, h2

    @torch.no_grad()
    def init_chains(self, v: torch.Tensor) -> State:
        """Chains started at data ``v``: hidden states drawn from the mean-field posterior."""
        mu1, mu2 = self.mean_field(v)
        return v.to(mu1).clone(), torch.bernoulli(mu1), torch.bernoulli(mu2)

    @torch.no_grad()
    def init_state(self, v: Optional[torch.Tensor] = None, batch_shape=()) -> State:
        """:meth:`init_chains` at ``v``, or at uniformly random visible units of the given batch
        shape."""
        if v is None:
            v = torch.bernoulli(self.weight1.new_full(tuple(batch_shape) + (self.num_visible,), 0.5))
        return self.init_chains(v)

    @torch.no_grad()
    def sample(self, n: int, num_steps: int = 1000, init: Optional[torch.Tensor] = None,
               mean: bool = True) -> torch.Tensor:
        """``n`` samples of v after ``num_steps`` Gibbs sweeps of all chains at once, started
        at ``init`` (data, ``(n, V)``) or at random; ``mean=True`` returns E[v | h1]."""
        if int(n) < 1 or int(num_steps) < 0:
            raise ValueError(f"need n >= 1 and num_steps >= 0, got n={n}, num_steps={num_steps}")
        w = self.weight1
        if init is None:
            init = torch.bernoulli(w.new_full((int(n), self.num_visible), 0.5))
        state = self.init_chains(init)
        for _ in range(int(num_steps)):
            state = self.gibbs_step(state)
        return torch.sigmoid(self.visible_input(state[1])) if mean else state[0]

    # -- annealed importance sampling -----------------------------------------------------
    @torch.no_grad()
    def log_partition_ais(self, betas=None, num_runs: int = 100,
                          base_rate: Optional[torch.Tensor] = None
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
        r"""AIS estimate of :math:`\log Z` and its standard error.

        The path runs from a base model with visible biases :math:`b_A` (the data's
        base rates) and no other parameters to the DBM, :math:`p_\beta\propto
        e^{-(1-\beta)E_A - \beta E}`: every weight and hidden bias scaled by :math:`\beta`,
        visible biases :math:`(1-\beta)b_A + \beta b`. The AIS state is :math:`h^1` alone,
        with :math:`v` and :math:`h^2` summed out analytically,

        .. math:: \log f_\beta(h^1) = \beta c_1^\top h^1
            + \sum_i\operatorname{softplus}\big((1-\beta)b_A + \beta(b + W_1^\top h^1)\big)_i
            + \sum_k\operatorname{softplus}\big(\beta(c_2 + W_2 h^1)\big)_k,

        which is uniform in :math:`h^1` at :math:`\beta = 0`, so
        :math:`\log Z_0 = (H_1 + H_2)\log 2 + \sum_i\operatorname{softplus}(b_{A,i})`. The
        transition at :math:`\beta` is a Gibbs sweep of :math:`p_\beta`: draw :math:`v` and
        :math:`h^2` given :math:`h^1`, then :math:`h^1` given both, which leaves the marginal
        :math:`f_\beta(h^1)` invariant. Summing out two of the three layers gives lower
        variance weights than annealing over the full state; it is the DBM paper's scheme (AIS on
        the state space of :math:`h^1`, as also in pylearn2's DBM AIS script). Summing out
        :math:`h^1` given :math:`v, h^2` instead would be valid too. Uses the generic
        :func:`~pyro_deepgen.infer.annealed_importance_sampling`.

        :param betas: inverse temperatures (default
            :func:`~pyro_deepgen.infer.default_ais_schedule`, 14,500 steps).
        :param int num_runs: independent runs, all vectorized (default 100).
        :param base_rate: base-rate logits ``(V,)`` or data ``(N, V)`` whose smoothed marginals
            give them (default: the DBM's visible biases).
        """
        if int(num_runs) < 2:
            raise ValueError(f"num_runs must be at least 2 for an error bar, got {num_runs}")
        W1, W2 = self.weight1.detach(), self.weight2.detach()
        b, c1 = self.visible_bias.detach(), self.hidden1_bias.detach()
        c2 = self.hidden2_bias.detach()
        if base_rate is None:
            b_a = b.clone()
        else:
            base_rate = torch.as_tensor(base_rate).to(b)
            b_a = base_rate_logits(base_rate) if base_rate.dim() == 2 else base_rate
            if b_a.shape != b.shape:
                raise ValueError(f"base_rate must have shape ({self.num_visible},) or "
                                 f"(N, {self.num_visible}); got {tuple(base_rate.shape)}")
        betas = default_ais_schedule() if betas is None else betas

        # state = (c1.h1, W1^T h1 + b, W2 h1 + c2): cached so log_f costs no matmul
        def cache(h1):
            return h1 @ c1, h1 @ W1 + b, F.linear(h1, W2, c2)

        def log_f(state, beta):
            c1h1, top_down, bottom_up = (t.double() for t in state)
            return (
                beta * c1h1
                + F.softplus((1 - beta) * b_a.double() + beta * top_down).sum(-1)
                + F.softplus(beta * bottom_up).sum(-1)
            )

        def transition(state, beta):
            _, top_down, bottom_up = state
            v = torch.bernoulli(torch.sigmoid((1 - beta) * b_a + beta * top_down))
            h2 = torch.bernoulli(torch.sigmoid(beta * bottom_up))
            h1 = torch.bernoulli(torch.sigmoid(beta * (F.linear(v, W1, c1) + h2 @ W2)))
            return cache(h1)

        h1 = torch.bernoulli(W1.new_full((int(num_runs), self.num_hidden1), 0.5))
        log_w = annealed_importance_sampling(cache(h1), log_f, transition, betas)
        log_ratio, stderr = log_mean_exp_with_stderr(log_w)
        num_hidden = self.num_hidden1 + self.num_hidden2
        log_z0 = num_hidden * math.log(2) + F.softplus(b_a.double()).sum()
        return (log_ratio + log_z0).to(b.dtype), stderr.to(b.dtype)

    #: the name of :meth:`log_partition_ais` before the :class:`EnergyModel` contract
    ais_log_partition = log_partition_ais

    # -- greedy pretraining (moved to pyro_deepgen.energy.pretrain) -----------------------
    def pretrain(self, data: torch.Tensor, loss=None, init_visible_bias: bool = True,
                 **fit_kwargs) -> Tuple[RBM, RBM]:
        """Deprecated: call :func:`pyro_deepgen.energy.pretrain_dbm` ``(dbm, data, ...)``
        (a model no longer trains itself); removed in release 0.3."""
        warn_moved("DBM.pretrain", "pyro_deepgen.energy.pretrain_dbm", stacklevel=3)
        pretrain_dbm = getattr(importlib.import_module("pyro_deepgen.energy.pretrain"), "pretrain_dbm")
        return pretrain_dbm(self, data, loss=loss, init_visible_bias=init_visible_bias, **fit_kwargs)


class DoubledRBM(RBM):
    r"""A binary RBM whose bottom-up (``up``) or top-down (``down``) input is multiplied,
    :math:`p(h\mid v) = \sigma(\mathrm{up}\,W v + c)`, :math:`p(v\mid h) =
    \sigma(\mathrm{down}\,W^\top h + b)`: the modified RBMs of DBM pretraining
    (:func:`~pyro_deepgen.energy.pretrain_dbm`). With ``up = down = 1`` it is an :class:`RBM`;
    otherwise its free energy uses the scaled bottom-up input and its CD updates are those of
    Salakhutdinov & Hinton's pretraining code (up to a factor 2 in the weight learning rate). It
    declares ``plain_energy = False``, so CD takes autograd's gradient instead of the fused one.
    """

    plain_energy = False

    def __init__(self, num_visible: int, num_hidden: int, up: float = 1.0, down: float = 1.0,
                 init_scale: float = 0.01) -> None:
        super().__init__(num_visible, num_hidden, "bernoulli", init_scale)
        ok = all(isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < a < math.inf
                 for a in (up, down))
        if not ok:
            raise ValueError(f"up and down must be finite numbers > 0, got up={up!r} and down={down!r}")
        self.up, self.down = float(up), float(down)

    def hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        self.check_layer(v, self.num_visible, "v")
        return F.linear(v, self.up * self.weight, self.hidden_bias)

    def visible_input(self, h: torch.Tensor) -> torch.Tensor:
        self.check_layer(h, self.num_hidden, "h")
        return self.down * torch.matmul(h, self.weight) + self.visible_bias
