r"""Deep belief network (Hinton, Osindero & Teh 2006): a stack of greedily trained RBMs."""
import importlib
from typing import List, Optional, Sequence

import torch
from torch import nn

from .._checks import finite_float, positive_ints
from .._compat import warn_moved
from ..infer.util import chunked_log_mean_exp
from .base import EnergyModel
from .rbm import MAX_ENUMERATED_UNITS, RBM, binary_states

PROPAGATE = ("sample", "mean")


class DBN(EnergyModel):
    r"""A deep belief network over layers :math:`v = h^0, h^1, \dots, h^L`.

    The generative model is an RBM over the top two layers and directed sigmoid layers below,
    all sharing the weights :math:`W_l` of the stacked RBMs ``rbms[l]`` (:math:`h^l - h^{l+1}`),

    .. math::

        p(v, h^1, \dots, h^L) = p_{\mathrm{RBM}_{L-1}}(h^{L-1}, h^L)
            \prod_{l=0}^{L-2} p(h^l\mid h^{l+1}),\qquad
        p(h^l\mid h^{l+1}) = \mathrm{Bernoulli}(\sigma(W_l^\top h^{l+1} + b_l)),

    and the upward pass :math:`q(h^{l+1}\mid h^l) = \mathrm{Bernoulli}(\sigma(W_l h^l + c_l))`
    of the same RBMs is the approximate posterior. :func:`~pyro_deepgen.energy.pretrain_dbn`
    trains the RBMs greedily, each on the upward samples of the one below; :meth:`sample` runs
    Gibbs in the top RBM and then a downward pass; :meth:`lower_bound` is the variational bound

    .. math::

        \log p(v) \ge \mathbb E_{q(h^{1:L-1}\mid v)}\Big[\sum_{l=0}^{L-2}\log p(h^l\mid h^{l+1})
            - F_{L-1}(h^{L-1}) - \log Z_{L-1} - \sum_{l=1}^{L-1}\log q(h^l\mid h^{l-1})\Big],

    with the top RBM's free energy :math:`F_{L-1}` (its top layer :math:`h^L` summed out) and
    its :math:`\log Z_{L-1}` exact (``dbn.rbms[-1].log_partition_exact()``) or from
    :meth:`log_partition_ais`. For two RBMs this is
    :math:`\mathbb E_{q(h^1\mid v)}[\log p(v\mid h^1) + \log p_{\mathrm{top}}(h^1)] +
    \mathcal H(q(h^1\mid v))` (Hinton et al. 2006, eq. 8).

    :param layer_sizes: ``(V, H1, ..., HL)``, at least two sizes; all units binary.
    :param float init_scale: standard deviation of the RBMs' initial weights (default 0.01).

    **Limiting case**: with one RBM the bound is exact, :math:`-F(v) - \log Z`.

    **References**: [1] G. E. Hinton, S. Osindero, Y.-W. Teh, *A Fast Learning Algorithm for
    Deep Belief Nets*, Neural Computation 18 (2006). [2] R. Salakhutdinov, I. Murray, *On the
    Quantitative Analysis of Deep Belief Networks*, ICML 2008.
    """

    def __init__(self, layer_sizes: Sequence[int], init_scale: float = 0.01) -> None:
        super().__init__()
        sizes = positive_ints(layer_sizes, "layer_sizes")
        if len(sizes) < 2:
            raise ValueError(
                f"layer_sizes must hold at least two positive sizes (visible, hidden...), "
                f"got {tuple(layer_sizes)}"
            )
        finite_float(init_scale, "init_scale", low=0.0)
        self.layer_sizes = sizes
        self.rbms = nn.ModuleList(
            RBM(a, b, init_scale=init_scale) for a, b in zip(sizes[:-1], sizes[1:])
        )

    @property
    def top(self) -> RBM:
        """The top RBM, an undirected model of the top two layers."""
        return self.rbms[-1]

    # -- training (moved to pyro_deepgen.energy.pretrain) --------------------------------
    def pretrain(self, data: torch.Tensor, loss=None, propagate: str = "sample",
                 init_visible_bias: bool = True, **fit_kwargs) -> List:
        """Deprecated: call :func:`pyro_deepgen.energy.pretrain_dbn` ``(dbn, data, ...)``
        (a model no longer trains itself); removed in release 0.3."""
        warn_moved("DBN.pretrain", "pyro_deepgen.energy.pretrain_dbn", stacklevel=3)
        pretrain_dbn = getattr(importlib.import_module("pyro_deepgen.energy.pretrain"), "pretrain_dbn")
        return pretrain_dbn(self, data, loss=loss, propagate=propagate,
                            init_visible_bias=init_visible_bias, **fit_kwargs)

    # -- the EnergyModel contract ---------------------------------------------------------
    def energy(self, *state: torch.Tensor) -> torch.Tensor:
        r"""Minus the log of the unnormalized joint of ``state = (v, h1, ..., hL)``,

        .. math:: E(v, h^{1:L}) = E_{L-1}(h^{L-1}, h^L) - \sum_{l=0}^{L-2}\log p(h^l\mid h^{l+1}),

        so that :math:`p(v, h^{1:L}) = e^{-E}/Z_{L-1}` with the top RBM's partition function."""
        if len(state) != len(self.layer_sizes):
            raise ValueError(f"a DBN state holds {len(self.layer_sizes)} layers, got {len(state)}")
        energy = self.top.energy(state[-2], state[-1])
        for rbm, below, above in zip(self.rbms[:-1], state[:-2], state[1:-1]):
            energy = energy - rbm.visible_dist(above).log_prob(below)
        return energy

    def _downward(self, state: List[torch.Tensor]) -> List[torch.Tensor]:
        """Redraw every layer below the top RBM from its directed conditional."""
        for layer in range(len(self.rbms) - 2, -1, -1):
            state[layer] = torch.bernoulli(self.rbms[layer].visible_mean(state[layer + 1]))
        return state

    @torch.no_grad()
    def gibbs_step(self, state, beta: Optional[torch.Tensor] = None):
        r"""One sweep: a block-Gibbs sweep of the top RBM on :math:`(h^{L-1}, h^L)`, then a
        downward pass :math:`h^l\sim p(h^l\mid h^{l+1})` through the directed layers. The top
        pair's chain leaves :math:`p_{\mathrm{RBM}_{L-1}}` invariant and the layers below are
        exact draws given it, so the sweep leaves the DBN's joint invariant.

        With ``beta`` only the top RBM is tempered: the sweep leaves
        :math:`p_\beta \propto e^{-\beta E_{L-1}(h^{L-1}, h^L)}\prod_l p(h^l\mid h^{l+1})`
        invariant, whose tempered part is :meth:`tempering_energy`."""
        state = list(state)
        state[-2], state[-1] = self.top.gibbs_step((state[-2], state[-1]), beta)
        return tuple(self._downward(state))

    def tempering_energy(self, *state: torch.Tensor) -> torch.Tensor:
        r"""The part of :meth:`energy` that tempering scales: the top RBM's
        :math:`E_{L-1}(h^{L-1}, h^L)` (the directed layers stay normalized at every
        temperature)."""
        return self.top.energy(state[-2], state[-1])

    @torch.no_grad()
    def init_state(self, v: Optional[torch.Tensor] = None, batch_shape=()):
        r"""With ``v``: the upward samples of :math:`q` and :math:`h^L\sim p(h^L\mid h^{L-1})`;
        without: a random top-RBM state of the given batch shape and a downward pass."""
        if v is None:
            top = self.top.init_state(None, batch_shape)
            state = [None] * (len(self.layer_sizes) - 2) + list(top)
            return tuple(self._downward(state))
        if not torch.is_tensor(v) or v.dim() < 1 or v.shape[-1] != self.layer_sizes[0]:
            self.check_layer(v, self.layer_sizes[0], "v", matrix=True)
        v = v.to(self.top.weight)
        hidden, h = [], v
        for rbm in self.rbms[:-1]:
            h = torch.bernoulli(rbm.hidden_probs(h))
            hidden.append(h)
        return (v, *hidden, self.top.sample_hidden(h))

    def log_partition_exact(self) -> torch.Tensor:
        r""":math:`\log Z` of the DBN's joint: the top RBM's, by enumeration."""
        return self.top.log_partition_exact()

    def log_partition_ais(self, betas=None, num_runs: int = 100,
                          base_rate: Optional[torch.Tensor] = None):
        r"""AIS estimate of the top RBM's :math:`\log Z` (:meth:`RBM.log_partition_ais`);
        ``base_rate`` refers to the top RBM's visible layer :math:`h^{L-1}` (e.g. its upward
        probabilities ``dbn.upward(data, sample=False)[-1]``)."""
        return self.top.log_partition_ais(betas=betas, num_runs=num_runs, base_rate=base_rate)

    @torch.no_grad()
    def upward(self, v: torch.Tensor, sample: bool = True) -> List[torch.Tensor]:
        """The upward pass ``[h1, ..., h_{L-1}]`` (the top RBM's visible layer last): samples
        from q, or probabilities with ``sample=False`` (e.g. base rates for AIS on the top RBM)."""
        self.check_layer(v, self.layer_sizes[0], "v", matrix=True)
        h, out = v.to(self.top.weight), []
        for rbm in self.rbms[:-1]:
            h = rbm.hidden_probs(h)
            h = torch.bernoulli(h) if sample else h
            out.append(h)
        return out

    # -- sampling -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, num_steps: int = 1000, mean: bool = True) -> torch.Tensor:
        """``n`` samples of v: ``num_steps`` Gibbs sweeps in the top RBM (all chains at once),
        then one downward pass through the directed layers. ``mean=True`` returns the last
        layer's probabilities E[v | h1] instead of binary v."""
        if len(self.rbms) == 1:
            return self.top.sample(n, num_steps, mean=mean)
        h = self.top.sample(n, num_steps, mean=False)
        for rbm in reversed(self.rbms[:-1]):
            probs = rbm.visible_mean(h)
            h = torch.bernoulli(probs)
        return probs if mean else h

    # -- the bound ------------------------------------------------------------------------
    def _log_p_and_q(self, v: torch.Tensor, hidden: Sequence[torch.Tensor], log_z):
        """log p(v, h^{1:L-1}) (top RBM marginal included) and log q(h^{1:L-1} | v), broadcast."""
        log_q, log_p, below = 0.0, 0.0, v
        for rbm, h in zip(self.rbms[:-1], hidden):
            probs = rbm.hidden_probs(below)
            log_q = log_q + (torch.xlogy(h, probs) + torch.xlogy(1 - h, 1 - probs)).sum(-1)
            log_p = log_p + rbm.visible_dist(h).log_prob(below)
            below = h
        return log_p + self.top.log_prob(below, log_z), log_q

    def lower_bound(self, v: torch.Tensor, log_z, num_samples: Optional[int] = None
                    ) -> torch.Tensor:
        r"""The variational lower bound on :math:`\log p(v)` per row of ``v`` (class docstring).

        :param log_z: the top RBM's :math:`\log Z` (exact or AIS; with an AIS estimate the
            bound is an estimate too).
        :param int num_samples: ``None`` (default) computes the expectation over
            :math:`q(h^{1:L-1}\mid v)` exactly by enumeration (at most 20 intermediate units);
            an integer gives the Monte Carlo estimate from that many upward samples.
        """
        self.check_layer(v, self.layer_sizes[0], "v", matrix=True)
        v = v.to(self.top.weight)
        if len(self.rbms) == 1:
            return self.top.log_prob(v, log_z)
        if num_samples is None:
            layers = self._enumerate_intermediate()  # each (C, 1, H_l)
            log_p, log_q = self._log_p_and_q(v, layers, log_z)  # (C, N)
            return (log_q.exp() * (log_p - log_q)).sum(0)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer or None, got {num_samples!r}")
        hidden = self.upward(v.expand(num_samples, *v.shape).reshape(-1, v.shape[-1]))
        hidden = [h.reshape(num_samples, v.shape[0], -1) for h in hidden]
        log_p, log_q = self._log_p_and_q(v, hidden, log_z)
        return (log_p - log_q).mean(0)

    @torch.no_grad()
    def importance_log_prob(self, v: torch.Tensor, log_z, num_samples: int = 1000,
                            chunk_size: Optional[int] = None) -> torch.Tensor:
        r"""Importance-sampled estimate of :math:`\log p(v)` per row of ``v`` ``(N, V)``, with
        the upward pass as the proposal:

        .. math:: \log\hat p(v) = \log\frac1K\sum_{k=1}^K
            \frac{p(v, h^{1:L-1}_k)}{q(h^{1:L-1}_k\mid v)},\qquad h_k\sim q(\cdot\mid v),

        where :math:`p(v, h^{1:L-1})` includes the top RBM's marginal (``log_z`` its
        :math:`\log Z`). K = 1 gives an unbiased estimate of :meth:`lower_bound`; for an exact
        ``log_z`` the expectation rises with K toward :math:`\log p(v)` (Burda et al. 2016).

        :param int num_samples: K (default 1000).
        :param int chunk_size: samples drawn at once (default: sized to bound memory).
        """
        self.check_layer(v, self.layer_sizes[0], "v", matrix=True)
        v = v.to(self.top.weight)
        if len(self.rbms) == 1:
            return self.top.log_prob(v, log_z)

        def log_weights(k):
            hidden = self.upward(v.expand(k, *v.shape).reshape(-1, v.shape[-1]))
            hidden = [h.reshape(k, v.shape[0], -1) for h in hidden]
            log_p, log_q = self._log_p_and_q(v, hidden, log_z)
            return log_p - log_q

        return chunked_log_mean_exp(log_weights, num_samples, chunk_size,
                                    elements_per_sample=v.shape[0] * max(self.layer_sizes))

    def _enumerate_intermediate(self) -> List[torch.Tensor]:
        sizes = self.layer_sizes[1:-1]
        if sum(sizes) > MAX_ENUMERATED_UNITS:
            raise ValueError(
                f"exact expectations enumerate 2**{sum(sizes)} states of the intermediate "
                f"layers; at most {MAX_ENUMERATED_UNITS} units. Pass num_samples=<int>."
            )
        w = self.top.weight
        states = binary_states(sum(sizes), device=w.device, dtype=w.dtype).unsqueeze(1)
        return list(states.split(sizes, dim=-1))

    @torch.no_grad()
    def log_prob_exact(self, v: torch.Tensor) -> torch.Tensor:
        """Exact log p(v) by enumerating the intermediate layers and the top RBM's log Z."""
        self.check_layer(v, self.layer_sizes[0], "v", matrix=True)
        v = v.to(self.top.weight)
        log_z = self.top.log_partition_exact()
        if len(self.rbms) == 1:
            return self.top.log_prob(v, log_z)
        log_p, _ = self._log_p_and_q(v, self._enumerate_intermediate(), log_z)
        return torch.logsumexp(log_p, 0)
