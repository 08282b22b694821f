"""Restricted Boltzmann machine (Smolensky 1986; Hinton 2002), binary or Gaussian visible units."""
import math
from typing import Callable, Optional

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from .._checks import finite_float, one_of, positive_int
from ..infer.ais import annealed_importance_sampling, default_ais_schedule, log_mean_exp_with_stderr
from ._kernels import native
from ._kernels.sparse_matmul import sparse_rows_matmul
from .ais import base_rate_logits
from .base import EnergyModel, State

VISIBLE_TYPES = ("bernoulli", "gaussian")
MAX_ENUMERATED_UNITS = 20
_ENUMERATION_CHUNK = 1 << 14


def binary_states(n: int, start: int = 0, stop: Optional[int] = None,
                  device=None, dtype=None) -> torch.Tensor:
    """All (or the ``start:stop`` slice of all) ``2**n`` binary vectors of length ``n``.

    Row ``k`` is the binary expansion of ``k`` (least significant bit last), shape
    ``(stop - start, n)``.
    """
    stop = 2 ** n if stop is None else stop
    k = torch.arange(start, stop, device=device)
    bits = torch.arange(n - 1, -1, -1, device=device)
    return ((k.unsqueeze(-1) >> bits) & 1).to(dtype or torch.get_default_dtype())


def bernoulli_sample(probs: torch.Tensor) -> torch.Tensor:
    """Independent Bernoulli draws with the given probabilities, as ``probs``'s dtype.

    ``rand < p`` is several times faster than :func:`torch.bernoulli` on CPU, which matters in
    the Gibbs sweeps that dominate CD, PCD and AIS.
    """
    return (torch.rand_like(probs) < probs).to(probs.dtype)


def bernoulli_sample_16bit(probs: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Bernoulli draws from 16-bit uniform integers, for the Gibbs sweeps of *training* (CD/PCD).

    A unit is on when a uniform 16-bit integer :math:`u\in\{0,\dots,2^{16}-1\}` is below
    :math:`2^{16}p`, so its on-probability is :math:`\lceil 2^{16}p\rceil / 2^{16}`, within
    :math:`1.6\times10^{-5}` of :math:`p` (exact at 0 and 1): far below CD's own bias, but not
    exact, so AIS and the MCMC kernel keep :func:`bernoulli_sample`. On CPU each 64-bit random
    word gives four such integers, a quarter of the random bits of :func:`bernoulli_sample`.

    In float32 on a CPU with the compiled kernels (:mod:`pyro_deepgen.energy._kernels.native`) the draws are
    one call: the quarters of a splitmix64 stream seeded by one draw of torch's generator (so
    ``torch.manual_seed`` / ``pyro.set_rng_seed`` reproduce them). Otherwise torch's generator
    gives full-range 64-bit words. On CUDA (where random numbers are cheap) this is
    :func:`bernoulli_sample`.

    :param out: optional contiguous tensor of ``probs``'s shape and dtype for the result.
    """
    if out is not None and (out.shape != probs.shape or out.dtype != probs.dtype):
        raise ValueError(f"out must have shape {tuple(probs.shape)} and dtype {probs.dtype}")
    if probs.device.type != "cpu":
        return _into(bernoulli_sample(probs), out)
    result = torch.empty_like(probs, memory_format=torch.contiguous_format) if out is None else out
    if native.bernoulli16(probs, result):
        return result
    n = probs.numel()
    # full-range 64-bit draws (``random_(-2**63, None)`` takes the generator's 64 bits as they
    # are); each int16 quarter is uniform on [-2^15, 2^15), so u + 2^15 is uniform on
    # {0, ..., 2^16 - 1}
    u = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2 ** 63, None)
    u = u.view(torch.int16)[:n].view(probs.shape).to(probs.dtype)
    on = torch.lt(u, probs.mul(65536.0).sub_(32768.0))
    return result.copy_(on.view(torch.uint8))  # (uint8 -> float beats bool -> float)


def _into(value: torch.Tensor, out: Optional[torch.Tensor]) -> torch.Tensor:
    return value if out is None else out.copy_(value)


def visible_dist_from_natural(visible: str, eta: torch.Tensor) -> dist.Distribution:
    """p(v | h) given its natural parameter ``eta = b + hW``: Bernoulli logits or unit-variance
    Gaussian mean, with event shape ``(num_visible,)``. Shared by the RBM and its annealed versions.
    """
    if visible == "bernoulli":
        return dist.Bernoulli(logits=eta, validate_args=False).to_event(1)
    return dist.Normal(eta, torch.ones_like(eta), validate_args=False).to_event(1)


def sample_visible_from_natural(visible: str, eta: torch.Tensor,
                                bernoulli: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                                ) -> torch.Tensor:
    """A draw from :func:`visible_dist_from_natural` (without building the distribution).

    ``bernoulli(probs)`` draws binary units (default :func:`bernoulli_sample`; CD/PCD training
    passes :func:`bernoulli_sample_16bit`)."""
    if visible == "bernoulli":
        return (bernoulli or bernoulli_sample)(torch.sigmoid(eta))
    return eta + torch.randn_like(eta)


class RBM(EnergyModel):
    r"""Restricted Boltzmann machine: ``num_visible`` visible, ``num_hidden`` binary hidden units.

    Energy and joint, with :math:`W` = ``weight`` (``num_hidden x num_visible``),
    :math:`b` = ``visible_bias`` and :math:`c` = ``hidden_bias``:

    .. math::

        E(v, h) = -b^\top v - c^\top h - h^\top W v \quad\text{(Bernoulli visible)},\qquad
        E(v, h) = \tfrac12\lVert v - b\rVert^2 - c^\top h - h^\top W v \quad\text{(Gaussian)},

        p(v, h) = e^{-E(v, h)} / Z,\qquad
        F(v) = -\log\sum_h e^{-E(v, h)}
             = -b^\top v - \sum_j \operatorname{softplus}(c_j + W_j v)\ (\text{Bernoulli}).

    The conditionals factorize: :math:`p(h_j = 1\mid v) = \sigma(c_j + W_j v)` and
    :math:`p(v\mid h) = \mathrm{Bernoulli}(\sigma(b + W^\top h))` or
    :math:`\mathcal N(b + W^\top h, I)` (Gaussian–Bernoulli RBM with unit-variance visible units,
    so standardize real-valued data first).

    Every method is vectorized over any leading batch shape of ``v`` / ``h`` (data points,
    chains, AIS runs).

    **Pyro view.** :meth:`model` writes the joint as a Pyro program: ``h`` is drawn from a uniform
    base and reweighted by ``pyro.factor`` with its marginal's unnormalized log density
    :math:`-F_h(h) = \log\sum_v e^{-E(v,h)}`, then ``v`` is drawn from the exact
    :math:`p(v\mid h)`. The trace's total log density is therefore exactly :math:`-E(v, h)`,
    i.e. :math:`\log p(v, h) + \log Z`: Pyro tools that only need the joint up to a constant
    (``poutine.trace``, importance sampling, MCMC) see the RBM; :math:`\log Z` comes from
    :meth:`log_partition_exact` or :meth:`log_partition_ais`.

    :param int num_visible: number of visible units V.
    :param int num_hidden: number of hidden units H.
    :param str visible: ``"bernoulli"`` (binary visible units, default) or ``"gaussian"``
        (real-valued, unit variance).
    :param float init_scale: standard deviation of the initial weights (default 0.01, as in
        Hinton's practical guide); biases start at zero.

    **Limiting cases**: with ``weight = 0`` the units are independent and
    :math:`\log Z = \sum_i \operatorname{softplus}(b_i) + \sum_j \operatorname{softplus}(c_j)`.

    **References**: [1] G. E. Hinton, *Training Products of Experts by Minimizing Contrastive
    Divergence*, Neural Computation 14 (2002). [2] G. E. Hinton, *A Practical Guide to Training
    Restricted Boltzmann Machines*, UTML TR 2010-003.
    """

    def __init__(self, num_visible: int, num_hidden: int, visible: str = "bernoulli",
                 init_scale: float = 0.01) -> None:
        super().__init__()
        one_of(visible, "visible", VISIBLE_TYPES)
        positive_int(num_visible, "num_visible")
        positive_int(num_hidden, "num_hidden")
        finite_float(init_scale, "init_scale", low=0.0)
        self.num_visible, self.num_hidden, self.visible = int(num_visible), int(num_hidden), visible
        # stored as the transpose of a (V, H) array: W^T's rows (one per visible unit) are
        # contiguous, so products with sparse binary visible states are sums of rows (see
        # pyro_deepgen.energy._kernels.sparse_matmul); dense products do not care about the layout
        self.weight = nn.Parameter(
            (torch.randn(self.num_visible, self.num_hidden) * init_scale).t())
        self.visible_bias = nn.Parameter(torch.zeros(self.num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(self.num_hidden))

    #: the layers of a state ``(v, h)`` (:class:`~pyro_deepgen.energy.EnergyModel`)
    layer_names = ("v", "h")
    has_free_energy = True
    #: Whether this class keeps the RBM's own conditionals and free energy
    #: (``hidden_input``, ``visible_input``, ``free_energy``, ``_visible_term``). The fast paths
    #: written out for them (the sparse hidden input, CD's fused gradient) read it; a subclass
    #: that changes the energy (such as DBM pretraining's
    #: :class:`~pyro_deepgen.energy.DoubledRBM`) must declare ``plain_energy = False`` and then
    #: takes the generic ``hidden_input`` / autograd paths.
    plain_energy = True

    @property
    def layer_sizes(self):
        return (self.num_visible, self.num_hidden)

    def extra_repr(self) -> str:
        return (f"num_visible={self.num_visible}, num_hidden={self.num_hidden}, "
                f"visible={self.visible!r}")

    # -- checks ---------------------------------------------------------------------------
    # -- energies -------------------------------------------------------------------------
    def hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        """The hidden units' total input :math:`c + W v`, shape ``(..., H)``."""
        self.check_layer(v, self.num_visible, "v")
        return F.linear(v, self.weight, self.hidden_bias)

    def hidden_input_of_states(self, v: torch.Tensor, binary: bool = False,
                               out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`hidden_input` of a 2-D batch of states ``(n, V)``, computed for binary visible
        units by :func:`~pyro_deepgen.energy._kernels.sparse_matmul.sparse_rows_matmul` (mostly-zero states
        as sums of rows of :math:`W^\top`: faster on CPU). ``binary=True`` promises 0/1 values
        (the model's own samples). ``out`` optionally receives the result. Used by AIS and CD;
        Gaussian units, batched states and RBM subclasses take :meth:`hidden_input`."""
        if self.visible != "bernoulli" or v.dim() != 2 or not self.plain_energy:
            return _into(self.hidden_input(v), out)
        self.check_layer(v, self.num_visible, "v")
        return sparse_rows_matmul(v, self.weight.t(), bias=self.hidden_bias, binary=binary,
                                  out=out)

    @classmethod
    def has_plain_energy(cls) -> bool:
        """The declared :attr:`plain_energy` of this class."""
        return cls.plain_energy

    @torch.no_grad()
    def init_visible_bias(self, data: torch.Tensor, eps: float = 1e-3) -> "RBM":
        r"""Set the visible biases to those of the base-rate model of ``data`` ``(N, V)``: the
        log-odds of the smoothed marginals :math:`\log\frac{\bar v_i}{1-\bar v_i}` (Bernoulli) or
        the data mean (Gaussian), Hinton's recommended start (*A Practical Guide to Training
        RBMs*, Sec. 8). With zero weights the RBM is then the maximum-likelihood factorial model
        of the data. Returns ``self``."""
        self.check_layer(data, self.num_visible, "data")
        if data.dim() != 2:
            raise ValueError(f"data must have shape (N, {self.num_visible}); got {tuple(data.shape)}")
        self.visible_bias.copy_(base_rate_logits(data.to(self.visible_bias), eps, self.visible))
        return self

    def visible_input(self, h: torch.Tensor) -> torch.Tensor:
        """The visible units' natural parameter :math:`b + W^\\top h`, shape ``(..., V)``."""
        self.check_layer(h, self.num_hidden, "h")
        if h.dim() == 2:
            return torch.addmm(self.visible_bias, h, self.weight)
        return torch.matmul(h, self.weight) + self.visible_bias

    def _visible_term(self, v: torch.Tensor) -> torch.Tensor:
        """The h-free part of E: :math:`-b^\\top v` or :math:`\\frac12\\lVert v-b\\rVert^2`."""
        self.check_layer(v, self.num_visible, "v")
        if self.visible == "bernoulli":
            return -torch.matmul(v, self.visible_bias)
        return 0.5 * (v - self.visible_bias).pow(2).sum(-1)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h), shape: the broadcast batch shape of ``v`` and ``h``."""
        self.check_layer(h, self.num_hidden, "h")
        return self._visible_term(v) - (h * self.hidden_input(v)).sum(-1)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`F(v) = -\log\sum_h e^{-E(v,h)}`, shape ``v.shape[:-1]``."""
        return self._visible_term(v) - F.softplus(self.hidden_input(v)).sum(-1)

    def hidden_free_energy(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`F_h(h) = -\log\sum_v e^{-E(v,h)}` (an integral for Gaussian visible units)."""
        eta = self.visible_input(h)
        ch = (h * self.hidden_bias).sum(-1)
        if self.visible == "bernoulli":
            return -ch - F.softplus(eta).sum(-1)
        b = self.visible_bias
        return (-ch - 0.5 * eta.pow(2).sum(-1) + 0.5 * b.pow(2).sum()
                - 0.5 * self.num_visible * math.log(2 * math.pi))

    # -- conditionals ---------------------------------------------------------------------
    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`p(h_j = 1 \\mid v) = \\sigma(c_j + W_j v)`."""
        return torch.sigmoid(self.hidden_input(v))

    def sample_hidden(self, v: torch.Tensor) -> torch.Tensor:
        """Draw h ~ p(h | v)."""
        return bernoulli_sample(self.hidden_probs(v))

    def visible_dist(self, h: torch.Tensor) -> dist.Distribution:
        """p(v | h) with event shape ``(V,)``."""
        return visible_dist_from_natural(self.visible, self.visible_input(h))

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h]: probabilities (Bernoulli) or the mean (Gaussian)."""
        eta = self.visible_input(h)
        return torch.sigmoid(eta) if self.visible == "bernoulli" else eta

    def sample_visible(self, h: torch.Tensor) -> torch.Tensor:
        """Draw v ~ p(v | h)."""
        return sample_visible_from_natural(self.visible, self.visible_input(h))

    def gibbs_step(self, state, beta: Optional[torch.Tensor] = None):
        r"""One block-Gibbs sweep v -> h ~ p(h|v) -> v' ~ p(v|h); vectorized over chains.

        ``state`` is ``(v, h)`` (the :class:`~pyro_deepgen.energy.EnergyModel` convention; the
        incoming ``h`` is not used) and the result ``(v', h)``, an exact draw from the joint when
        ``v`` is one from :math:`p(v)`; a tensor ``v`` gives the tensor ``v'``.

        ``beta`` (a tensor broadcastable to ``(..., 1)``, e.g. one inverse temperature per
        replica of :class:`~pyro_deepgen.energy.ParallelTempering`) sweeps the tempered joint
        :math:`p_\beta \propto e^{-\beta E}` instead: the units' inputs are multiplied by
        :math:`\beta` (Gaussian visible units get variance :math:`1/\beta`, so need
        :math:`\beta > 0`)."""
        if beta is None:
            if isinstance(state, torch.Tensor):
                return self.sample_visible(self.sample_hidden(state))
            h = self.sample_hidden(state[0])
            return self.sample_visible(h), h
        v = state if isinstance(state, torch.Tensor) else state[0]
        h = bernoulli_sample(torch.sigmoid(beta * self.hidden_input(v)))
        eta = self.visible_input(h)
        if self.visible == "bernoulli":
            v = bernoulli_sample(torch.sigmoid(beta * eta))
        else:
            v = eta + torch.randn_like(eta) * beta.rsqrt()
        return v if isinstance(state, torch.Tensor) else (v, h)

    @torch.no_grad()
    def tempered_sweep_with_energy(self, state, beta: torch.Tensor):
        r""":meth:`gibbs_step` with ``beta`` on the state ``(v, h)``, returning ``((v', h),
        E(v', h))``: for Bernoulli visible units the energy of the new state comes from the
        sweep's own visible input :math:`\eta = b + W^\top h`, :math:`E(v', h) = -\eta^\top v'
        - c^\top h`, so parallel tempering's swaps need no third matrix product. Only for the
        plain RBM energy (``plain_energy``) and Bernoulli visible units; same draws as
        :meth:`gibbs_step`."""
        if self.visible != "bernoulli" or not type(self).has_plain_energy():
            raise ValueError("tempered_sweep_with_energy needs the plain RBM energy with Bernoulli "
                             "visible units; use gibbs_step and energy")
        v = state[0]
        h = bernoulli_sample(torch.sigmoid(beta * self.hidden_input(v)))
        eta = self.visible_input(h)
        v = bernoulli_sample(torch.sigmoid(beta * eta))
        energy = -(v * eta).sum(-1) - torch.matmul(h, self.hidden_bias)
        return (v, h), energy

    @torch.no_grad()
    def init_state(self, v: Optional[torch.Tensor] = None, batch_shape=()) -> State:
        """``(v, h)`` with ``h ~ p(h | v)``; without ``v``, ``v ~ p(v | h')`` for uniformly
        random ``h'`` of the given batch shape first."""
        w = self.weight
        if v is None:
            half = w.new_full(tuple(batch_shape) + (self.num_hidden,), 0.5)
            v = self.sample_visible(bernoulli_sample(half))
        else:
            self.check_layer(v, self.num_visible, "v")
            v = v.to(w)
        return v, self.sample_hidden(v)

    # -- normalization --------------------------------------------------------------------
    @torch.no_grad()
    def log_partition_exact(self, layer: Optional[str] = None) -> torch.Tensor:
        r"""Exact :math:`\log Z` by enumerating the ``2**n`` states of one layer.

        :param layer: ``"hidden"`` (:math:`\log\sum_h e^{-F_h(h)}`), ``"visible"``
            (:math:`\log\sum_v e^{-F(v)}`, Bernoulli visible units only) or ``None``: the smaller
            enumerable layer. At most 20 units (about a million states, chunked).
        """
        if layer is None:
            sizes = {"hidden": self.num_hidden}
            if self.visible == "bernoulli":
                sizes["visible"] = self.num_visible
            layer = min(sizes, key=sizes.get)
        if layer not in ("hidden", "visible"):
            raise ValueError(f"layer={layer!r}; use 'hidden', 'visible' or None")
        if layer == "visible" and self.visible != "bernoulli":
            raise ValueError("Gaussian visible units cannot be enumerated; use layer='hidden'")
        n = self.num_hidden if layer == "hidden" else self.num_visible
        if n > MAX_ENUMERATED_UNITS:
            raise ValueError(
                f"exact log Z enumerates the {layer} layer's 2**{n} states; only layers with at "
                f"most {MAX_ENUMERATED_UNITS} units are enumerable. Use "
                "rbm.log_partition_ais() or pyro_deepgen.energy.ais_log_partition(rbm) for an AIS "
                "estimate instead."
            )
        fn = self.hidden_free_energy if layer == "hidden" else self.free_energy
        w = self.weight
        parts = [
            torch.logsumexp(-fn(binary_states(n, s, min(s + _ENUMERATION_CHUNK, 2 ** n),
                                              device=w.device, dtype=w.dtype)), 0)
            for s in range(0, 2 ** n, _ENUMERATION_CHUNK)
        ]
        return torch.logsumexp(torch.stack(parts), 0)

    def log_prob(self, v: torch.Tensor, log_z) -> torch.Tensor:
        r""":math:`\log p(v) = -F(v) - \log Z` for a given ``log_z`` (exact or AIS)."""
        return -self.free_energy(v) - log_z

    # -- Pyro program ---------------------------------------------------------------------
    def model(self, v: Optional[torch.Tensor] = None, batch_size: int = 1) -> torch.Tensor:
        r"""The unnormalized joint as a Pyro program (see the class docstring).

        Sites: ``"h"`` (uniform Bernoulli base, event dim 1), the factor ``"hidden_marginal"``
        (:math:`-F_h(h) + H\log 2`) and ``"v"`` (:math:`p(v\mid h)`, observed when ``v`` is
        given), all inside ``pyro.plate("data")`` of size ``len(v)`` or ``batch_size``. The
        trace's ``log_prob_sum()`` equals :math:`-\sum E(v, h)`. Returns ``v``.
        """
        if v is not None:
            self.check_layer(v, self.num_visible, "v")
            if v.dim() != 2:
                raise ValueError(
                    f"v must have shape (batch, {self.num_visible}); got {tuple(v.shape)}")
            batch_size = v.shape[0]
        w = self.weight
        with pyro.plate("data", batch_size):
            half = w.new_full((batch_size, self.num_hidden), 0.5)
            h = pyro.sample("h", dist.Bernoulli(half).to_event(1))
            log_weight = -self.hidden_free_energy(h) + self.num_hidden * math.log(2)
            pyro.factor("hidden_marginal", log_weight)
            return pyro.sample("v", self.visible_dist(h), obs=v)

    # -- samples --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, num_steps: int = 1000, init: Optional[torch.Tensor] = None,
               mean: bool = True) -> torch.Tensor:
        """``n`` fantasy particles after ``num_steps`` block-Gibbs sweeps (all chains at once).

        Chains start from ``init`` (e.g. data, shape ``(n, V)``) or from p(v | h) with
        uniformly random h. ``mean=True`` returns E[v | h] of the last sweep (smooth images).
        """
        if int(n) < 1 or int(num_steps) < 0:
            raise ValueError(f"need n >= 1 and num_steps >= 0, got n={n}, num_steps={num_steps}")
        w = self.weight
        if init is None:
            v = self.sample_visible(bernoulli_sample(w.new_full((n, self.num_hidden), 0.5)))
        else:
            self.check_layer(init, self.num_visible, "init")
            v = init.to(w)
        h = self.sample_hidden(v)
        for _ in range(int(num_steps)):
            v = self.sample_visible(h)
            h = self.sample_hidden(v)
        return self.visible_mean(h) if mean else self.sample_visible(h)

    # -- annealed importance sampling -----------------------------------------------------
    @torch.no_grad()
    def log_partition_ais(self, betas=None, num_runs: int = 100,
                          base_rate: Optional[torch.Tensor] = None):
        r"""AIS estimate of :math:`\log Z` and its standard error (Salakhutdinov & Murray 2008).

        The base-rate model A has only visible biases :math:`b_A` (the data marginals) and the
        same hidden layer with zero weights, so :math:`\log Z_A = \sum_i
        \operatorname{softplus}(b_{A,i}) + H\log 2` (Gaussian: :math:`\tfrac V2\log 2\pi +
        H\log 2`). The geometric path between the joints, :math:`p_\beta(v,h) \propto
        e^{-(1-\beta)E_A(v,h) - \beta E_B(v,h)}`, is itself an RBM (weights :math:`\beta W`,
        hidden biases :math:`\beta c`, visible biases :math:`(1-\beta)b_A + \beta b`); with h
        summed out

        .. math:: \log f_\beta(v) = (1-\beta)\,b_A^\top v + \beta\,b^\top v
                  + \sum_j \operatorname{softplus}\big(\beta(c_j + W_j v)\big)

        and one block-Gibbs sweep of that RBM is the transition :math:`T_\beta` of the generic
        :func:`~pyro_deepgen.infer.annealed_importance_sampling`. Returns ``log_z = log Z_A +
        log mean exp(log w)`` and its delta-method standard error. The weights are not modified.

        :param betas: inverse temperatures from 0 to 1; default
            :func:`~pyro_deepgen.infer.default_ais_schedule` () (14,500 intermediate
            distributions).
        :param int num_runs: number of AIS runs (default 100), all advanced together.
        :param base_rate: base-rate visible parameters ``(V,)`` (log-odds, or means for Gaussian
            units), or data ``(N, V)`` whose marginals give them
            (:func:`~pyro_deepgen.energy.base_rate_logits`). Default: the RBM's own visible
            biases. The data marginals make the base closest to the target and the estimate
            most accurate.

        **Reference**: [1] R. Salakhutdinov, I. Murray, *On the Quantitative Analysis of Deep
        Belief Networks*, ICML 2008. [2] R. M. Neal, *Annealed importance sampling*, Statistics
        and Computing 11 (2001), arXiv:physics/9803008.
        """
        if int(num_runs) < 2:
            raise ValueError(f"num_runs must be at least 2 for an error bar, got {num_runs}")
        W, b, c = self.weight.detach(), self.visible_bias.detach(), self.hidden_bias.detach()
        if base_rate is None:
            b_a = b.clone()
        else:
            base_rate = torch.as_tensor(base_rate).to(b)
            if base_rate.dim() == 2:
                base_rate = base_rate_logits(base_rate, visible=self.visible)
            if base_rate.shape != b.shape:
                raise ValueError(f"base_rate must have shape ({self.num_visible},) or (N, "
                                 f"{self.num_visible}); got {tuple(base_rate.shape)}")
            b_a = base_rate
        betas = default_ais_schedule() if betas is None else betas
        gaussian = self.visible == "gaussian"

        b_a64, b64 = b_a.double(), b.double()

        def visible_log_f(v, beta):  # the h-free part of -(1-beta) E_A - beta E_B, in float64
            v = v.double()
            if gaussian:
                return -0.5 * ((1 - beta) * (v - b_a64).pow(2) + beta * (v - b64).pow(2)).sum(-1)
            return v @ ((1 - beta) * b_a64 + beta * b64)

        # state = (v, c + W v): the hidden input is cached so each step costs two matmuls
        def log_f(state, beta):
            v, x = state
            return visible_log_f(v, beta) + F.softplus(beta * x.double()).sum(-1)

        def transition(state, beta):
            v, x = state
            h = bernoulli_sample(torch.sigmoid(beta * x))
            eta = (1 - beta) * b_a + beta * (h @ W + b)
            v = sample_visible_from_natural(self.visible, eta)
            return v, self.hidden_input_of_states(v, binary=not gaussian)

        v0 = sample_visible_from_natural(self.visible, b_a.expand(int(num_runs), -1))
        log_w = annealed_importance_sampling((v0, F.linear(v0, W, c)), log_f, transition, betas)
        if gaussian:
            log_z_a = 0.5 * self.num_visible * math.log(2 * math.pi)
        else:
            log_z_a = F.softplus(b_a64).sum()
        log_ratio, stderr = log_mean_exp_with_stderr(log_w)
        return ((log_ratio + log_z_a + self.num_hidden * math.log(2)).to(b.dtype),
                stderr.to(b.dtype))
