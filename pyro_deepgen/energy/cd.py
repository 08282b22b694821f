r"""The training losses of the Boltzmann family: contrastive divergence (CD-k, Hinton 2002) and
persistent CD (PCD, Tieleman 2008) for RBMs, mean-field PCD for DBMs (Salakhutdinov & Hinton
2009), plus the per-epoch monitors: reconstruction error and the exact pseudo-log-likelihood."""
import math
from functools import partial
from typing import Any, Dict, Optional

import torch
from torch.nn import functional as F

from ._kernels import native
from ._kernels.sparse_matmul import sparse_rows_matmul_t
from .dbm import DBM, State
from .rbm import RBM, bernoulli_sample_16bit, sample_visible_from_natural
from .tempering import ParallelTempering, geometric_ladder

SAMPLERS = ("gibbs", "pt")

_PLL_CHUNK_ELEMENTS = 1 << 22  # data points x visible x hidden entries held at once


class ContrastiveDivergence:
    r"""CD-k / PCD loss callable for :func:`pyro_deepgen.train.fit` (``model=rbm, guide=None``).

    The log-likelihood gradient of an RBM is
    :math:`-\nabla_\theta \log p(v) = \nabla_\theta F(v) - \mathbb E_{p(v')}[\nabla_\theta F(v')]`.
    CD-k replaces the model expectation by samples :math:`\tilde v` after ``k`` block-Gibbs sweeps
    started at the data; PCD continues persistent chains across minibatches instead. The
    surrogate, summed over the minibatch like Pyro's ELBO losses, is

    .. math:: \mathcal L = \sum_{n=1}^{B} F(v_n) - \frac{B}{M}\sum_{m=1}^{M} F(\bot\tilde v_m)
              \;\big[+\ \lambda_s \sum_{n,j} (\bot q_j - \rho)\,(c_j + W_j v_n)\big],

    whose gradient is the CD/PCD update (:math:`\bot` = detached; the negative samples carry no
    gradient). The optional sparsity term (Hinton's guide, section 11) pushes an exponentially
    decaying average :math:`q_j` of each hidden unit's activation toward the target
    :math:`\rho`: its gradient w.r.t. a unit's total input is :math:`\lambda_s (q_j - \rho)`,
    the cross-entropy penalty's. The returned *value* is :math:`\sum_n F(v_n) - \frac BM\sum_m
    F(\tilde v_m)` (the free-energy gap; :func:`~pyro_deepgen.train.fit` reports it per data
    point), the gradient that of :math:`\mathcal L`.

    **Fused update path.** The gradient of :math:`\mathcal L` is written out in closed form
    (:math:`\partial F/\partial W = -p(h\mid v)\,v^\top` etc.) and computed without an
    autograd graph, reusing the hidden inputs of the Gibbs sweeps. ``loss_and_grads`` (Pyro's
    ELBO interface, which :func:`~pyro_deepgen.train.fit` uses) adds it to the parameters'
    ``.grad``; calling the object (or ``differentiable_loss``) returns the value with the
    gradient attached by a small ``torch.autograd.Function``, so ``loss.backward()`` and any
    torch or Pyro optimizer work as with an autograd surrogate. The negative samples and the
    data are stacked, :math:`S = [\tilde v; v]`, with row weights :math:`w` (:math:`B/M` on the
    negatives, :math:`-1` on the data), so that the weight gradient is the single product
    :math:`S^\top (w \odot p(h\mid S))`, for PCD the two hidden inputs are one product
    :math:`S W^\top` too, and the bias gradients and the value are weighted sums. CD-k costs
    the work of :math:`2k + 3` products of size :math:`B\times V\times H` per update, PCD-1
    five (it reuses the chains' hidden probabilities from the previous update, like
    scikit-learn). For binary visible units the products with the states visit only their
    nonzeros (:mod:`pyro_deepgen.energy._kernels.sparse_matmul`); training sweeps draw binary
    units with :func:`~pyro_deepgen.energy.rbm.bernoulli_sample_16bit` from the model's own
    conditionals; on CPU in float32 these and the sigmoids run as compiled kernels
    (:mod:`pyro_deepgen.energy._kernels.native`) where available. An RBM subclass that declares
    ``plain_energy = False`` (such as the :class:`~pyro_deepgen.energy.DoubledRBM` of DBM
    pretraining) gets autograd's gradient of the same surrogate instead of the fused one. The last negative
    samples are kept in ``last_negative``. Every call advances the persistent chains, so
    validate with an ``eval_fn`` such as :func:`pseudo_log_likelihood` rather than with this
    loss.

    **Optimizer settings.** Momentum and weight decay come from the optimizer, e.g.
    ``torch.optim.SGD(params, lr=eps / B, momentum=0.9, weight_decay=B * l2)``; because the loss
    is a *sum* over the batch, Hinton's per-example learning rate :math:`\epsilon` (e.g. 0.1)
    is ``lr = eps / batch_size`` and an L2 cost :math:`\lambda` is ``weight_decay = batch_size *
    lambda`` (use parameter groups to exempt the biases).

    :param int k: Gibbs sweeps per update (default 1). CD-k's bias shrinks as k grows.
    :param bool persistent: PCD: keep ``num_chains`` chains across updates (default False).
    :param int num_chains: number of persistent chains; default: the first minibatch's size
        (the chains start at that minibatch). Ignored for CD.
    :param float sparsity_target: target mean activation :math:`\rho` of each hidden unit, or
        ``None`` (default) for no sparsity penalty.
    :param float sparsity_cost: :math:`\lambda_s` (default 0.01 when a target is given).
    :param float sparsity_decay: decay of the activation average :math:`q` (default 0.95).
    :param str sampler: how the persistent chains move: ``"gibbs"`` (default; PCD, ``k``
        block-Gibbs sweeps per update) or ``"pt"`` (PT-PCD, Desjardins et al. 2010: each chain
        is the :math:`\beta = 1` replica of a :class:`~pyro_deepgen.energy.ParallelTempering`
        ladder of ``num_temperatures`` replicas down to ``min_beta``, advanced by ``k``
        sweep-and-swap rounds per update; the ladder keeps adapting at the constant rate
        ``adapt_rate`` as the model changes). ``"pt"`` needs ``persistent=True``. The
        tempered sweeps draw exact Bernoulli units (not the 16-bit training draws) and cost
        ``num_temperatures`` times a PCD sweep.
    :param int num_temperatures: replicas of PT-PCD, including :math:`\beta = 1` (default 10).
    :param float min_beta: the hottest replica's inverse temperature (default 0.5).
    :param float adapt_rate: the ladder's adaptation rate :math:`\kappa` (default 0.05 per
        update).

    **Limiting cases**: as :math:`k\to\infty` CD-k's expected gradient is the exact
    log-likelihood gradient (tested by enumeration on a tiny RBM). With one temperature PT-PCD
    is PCD with exact Bernoulli draws. At fixed parameters PT-PCD's gradient averaged over
    updates is the exact log-likelihood gradient even on a bimodal model whose PCD chains stay
    in one mode (tested).

    **References**: [1] G. E. Hinton, *Training Products of Experts by Minimizing Contrastive
    Divergence*, Neural Computation 14 (2002). [2] T. Tieleman, *Training Restricted Boltzmann
    Machines using Approximations to the Likelihood Gradient*, ICML 2008. [3] G. E. Hinton,
    *A Practical Guide to Training Restricted Boltzmann Machines*, UTML TR 2010-003.
    """

    def __init__(self, k: int = 1, persistent: bool = False, num_chains: Optional[int] = None,
                 sparsity_target: Optional[float] = None, sparsity_cost: float = 0.01,
                 sparsity_decay: float = 0.95, sampler: str = "gibbs", num_temperatures: int = 10,
                 min_beta: float = 0.5, adapt_rate: float = 0.05) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS} ('pt' = parallel tempering), got {sampler!r}")
        if sampler == "pt" and not persistent:
            raise ValueError("sampler='pt' (PT-PCD) runs persistent chains: pass persistent=True")
        if sampler == "pt":  # the ladder's arguments, checked once here
            geometric_ladder(num_temperatures, min_beta)
            if not (isinstance(adapt_rate, (int, float)) and math.isfinite(adapt_rate) and adapt_rate >= 0):
                raise ValueError(f"adapt_rate must be a finite number >= 0, got {adapt_rate!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer (Gibbs sweeps), got {k!r}")
        if num_chains is not None and (not isinstance(num_chains, int) or num_chains < 1):
            raise ValueError(f"num_chains must be a positive integer or None, got {num_chains!r}")
        if sparsity_target is not None and not 0 < sparsity_target < 1:
            raise ValueError(f"sparsity_target must be in (0, 1) or None, got {sparsity_target}")
        if not sparsity_cost >= 0:
            raise ValueError(f"sparsity_cost must be >= 0, got {sparsity_cost}")
        if not 0 <= sparsity_decay < 1:
            raise ValueError(f"sparsity_decay must be in [0, 1), got {sparsity_decay}")
        self.k, self.persistent, self.num_chains = k, bool(persistent), num_chains
        self.sparsity_target, self.sparsity_cost = sparsity_target, float(sparsity_cost)
        self.sparsity_decay = float(sparsity_decay)
        self.sampler, self.num_temperatures = sampler, num_temperatures
        self.min_beta, self.adapt_rate = min_beta, adapt_rate
        self.reset()

    def reset(self) -> None:
        """Forget the persistent chains and the sparsity average."""
        self.chains: Optional[torch.Tensor] = None
        self.mean_activation: Optional[torch.Tensor] = None
        self.last_negative: Optional[torch.Tensor] = None
        self._chain_probs: Optional[torch.Tensor] = None
        self._chain_owner: Optional[torch.Tensor] = None
        self._weights_key: Optional[tuple] = None
        self._weights_value: Optional[torch.Tensor] = None
        self.tempering: Optional[ParallelTempering] = None
        self._tempering_state: Optional[Dict[str, Any]] = None

    def state_dict(self) -> Dict[str, Any]:
        """The state that carries over from one update to the next: the persistent chains, their
        hidden probabilities from the last update (which PCD-1 reuses) and the sparsity average.
        :func:`~pyro_deepgen.train.fit` saves it in its checkpoints and restores it with
        :meth:`load_state_dict`, so that a resumed run follows the uninterrupted one."""
        state = {"chains": self.chains, "chain_probs": self._chain_probs, "mean_activation": self.mean_activation}
        if self.sampler == "pt":
            pt = self.tempering
            state["tempering"] = self._tempering_state if pt is None else {
                "replicas": None if pt.replicas is None else list(pt.replicas), "betas": pt.betas.clone(),
                "log_gaps": pt._log_gaps.clone(), "parity": pt._parity}
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the chains' probabilities are taken to belong to the RBM
        of the next update."""
        self.reset()
        self.chains, self._chain_probs = state["chains"], state["chain_probs"]
        self.mean_activation = state["mean_activation"]
        self._tempering_state = state.get("tempering")

    def _tempered_negative_samples(self, rbm: RBM, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """PT-PCD: ``k`` sweep-and-swap rounds of the replicas; the :math:`\beta = 1` replica's
        visible units are written to ``out``. The ladder and replicas are created at the first
        call (replicas at the chains, which start at the minibatch) and kept for the same RBM."""
        if self.chains is None:
            n = v.shape[0] if self.num_chains is None else self.num_chains
            self.chains = v[torch.arange(n, device=v.device) % v.shape[0]].clone()
        pt = self.tempering
        if pt is None or pt.energy_model is not rbm:
            pt = self.tempering = ParallelTempering(
                rbm, num_temperatures=self.num_temperatures, min_beta=self.min_beta,
                adapt_rate=self.adapt_rate, adapt_lag=None)
            pt.adapt_steps = math.inf  # the model keeps changing: adapt throughout training
            saved, self._tempering_state = self._tempering_state, None
            if saved is not None and saved["replicas"] is not None:
                pt.replicas = tuple(x.to(v) for x in saved["replicas"])
                pt.betas, pt._log_gaps, pt._parity = saved["betas"], saved["log_gaps"], saved["parity"]
        replicas = pt.replicas
        if replicas is None or replicas[0].shape[1:] != self.chains.shape or \
                not torch.equal(replicas[0][0], self.chains):
            replicas = pt._replicas_at(rbm.init_state(self.chains))
        for _ in range(self.k):
            replicas = pt.step(replicas)
        pt.replicas = replicas
        return out.copy_(replicas[0][0])

    def _negative_samples(self, rbm: RBM, p_start: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``k`` block-Gibbs sweeps h ~ p(h|.) -> v ~ p(v|h) from the hidden probabilities
        ``p_start`` (of the data for CD, of the persistent chains for PCD), with the RBM's own
        conditionals; the last v is written to ``out``. Its hidden input is left to the caller,
        which computes it in one product with the data's (PCD) and reuses it for the update."""
        v_neg = None
        for sweep in range(self.k):
            p = p_start if sweep == 0 else torch.sigmoid(
                rbm.hidden_input_of_states(v_neg, binary=True))
            h = bernoulli_sample_16bit(p)
            last = sweep == self.k - 1
            v_neg = sample_visible_from_natural(
                rbm.visible, rbm.visible_input(h),
                bernoulli=partial(bernoulli_sample_16bit, out=out) if last else bernoulli_sample_16bit)
        if v_neg is not out:
            out.copy_(v_neg)
        return out

    def _chain_start(self, rbm: RBM, v: torch.Tensor) -> torch.Tensor:
        """The persistent chains' hidden probabilities (PCD); starts the chains at the first
        minibatch (cycled to ``num_chains``) and restarts their probabilities for a new RBM."""
        if self.chains is None or self._chain_owner is not rbm.weight:
            if self._chain_owner is None and self._chain_probs is not None:  # from load_state_dict
                self._chain_owner = rbm.weight
                return self._chain_probs
            if self.chains is None:
                n = v.shape[0] if self.num_chains is None else self.num_chains
                idx = torch.arange(n, device=v.device) % v.shape[0]
                self.chains = v[idx].clone()
            self._chain_probs = rbm.hidden_probs(self.chains)
            self._chain_owner = rbm.weight
        return self._chain_probs

    def __call__(self, model: RBM, guide, v: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        r"""The surrogate :math:`\mathcal L` as a differentiable scalar (``backward()`` gives the
        CD/PCD update); one CD/PCD step's sampling."""
        step = self._step(model, guide, v)
        if torch.is_tensor(step):
            return step
        gap, grads = step
        rbm = model
        return _PrecomputedGradient.apply(gap, grads, rbm.weight, rbm.visible_bias, rbm.hidden_bias)

    differentiable_loss = __call__

    def loss_and_grads(self, model: RBM, guide, v: torch.Tensor, *args, **kwargs) -> float:
        """Pyro's ELBO interface: one CD/PCD step that adds the update to the parameters'
        ``.grad`` (as ``backward()`` would) and returns the free-energy gap as a float. It skips
        the autograd machinery of ``__call__``; :func:`~pyro_deepgen.train.fit` uses it."""
        step = self._step(model, guide, v)
        if torch.is_tensor(step):
            step.backward()
            return step.item()
        gap, grads = step
        rbm = model
        for param, grad in zip((rbm.weight, rbm.visible_bias, rbm.hidden_bias), grads):
            if param.grad is None:
                param.grad = grad
            else:
                param.grad.add_(grad)
        return gap.item()

    def _weights(self, m: int, n: int, like: torch.Tensor) -> torch.Tensor:
        """The row weights (s = n/m on the m negatives, -1 on the n data points), cached."""
        key = (m, n, like.dtype, like.device)
        if self._weights_key != key:
            weights = like.new_full((m + n,), n / m)
            weights[m:] = -1.0
            self._weights_key, self._weights_value = key, weights
        return self._weights_value

    def _step(self, model: RBM, guide, v: torch.Tensor):
        """One step: the autograd surrogate (RBM subclasses), or ``(gap, (grad_w, grad_b,
        grad_c))`` written out (the fused path)."""
        rbm = model
        if not isinstance(rbm, RBM):
            raise TypeError(f"ContrastiveDivergence needs model=<RBM>, got {type(rbm).__name__}")
        if guide is not None:
            raise ValueError("ContrastiveDivergence takes no guide; call fit(rbm, None, data, ...)")
        if v.dim() != 2 or v.shape[-1] != rbm.num_visible:
            raise ValueError(f"v must have shape (batch, {rbm.num_visible}); got {tuple(v.shape)}")
        W, b = rbm.weight, rbm.visible_bias
        # Rows [0, m) of ``states`` / ``x`` / ``p`` are the m negative samples, rows [m, m + n)
        # the n data points; ``weights`` is s = n/m on the first and -1 on the others. Then the
        # weight gradient is the one product states^T (weights * p), PCD's two hidden inputs are
        # one product, and every sum over the batch is one weighted sum.
        with torch.no_grad():
            v = v.to(W)
            n = v.shape[0]
            if not self.persistent:
                m = n  # one negative sample per data point
            elif self.chains is not None:
                m = self.chains.shape[0]
            else:
                m = self.num_chains or n
            s = n / m
            states = v.new_empty(m + n, rbm.num_visible)
            states[m:] = v
            x = v.new_empty(m + n, rbm.num_hidden)
            p = torch.empty_like(x)
            # the rows' sums of softplus(x) (for the reported free-energy gap), computed with the
            # sigmoids by the CPU kernel where it applies
            softplus_sums = x.new_empty(m + n, dtype=torch.float64)
            fused = rbm.plain_energy
            if self.sampler == "pt":
                v_neg = self._tempered_negative_samples(rbm, v, out=states[:m])
            else:
                if self.persistent:
                    p_start = self._chain_start(rbm, v)
                else:
                    _sigmoid(rbm.hidden_input_of_states(v, out=x[m:]), p[m:], softplus_sums[m:], fused)
                    p_start = p[m:]
                v_neg = self._negative_samples(rbm, p_start, out=states[:m])
            self.last_negative = v_neg
            if self.persistent:
                _sigmoid(rbm.hidden_input_of_states(states, out=x), p, softplus_sums, fused)
                self.chains, self._chain_probs = v_neg, p[:m].clone()
            else:
                _sigmoid(rbm.hidden_input_of_states(v_neg, binary=True, out=x[:m]), p[:m],
                         softplus_sums[:m], fused)
            p_pos = p[m:]
            mean_pos = p_pos.mean(0) if self.sparsity_target is not None else None
        pull = None
        if mean_pos is not None and self.sparsity_cost > 0:
            if self.mean_activation is None or self.mean_activation.shape != mean_pos.shape:
                self.mean_activation = mean_pos
            else:
                d = self.sparsity_decay
                self.mean_activation = d * self.mean_activation + (1 - d) * mean_pos
            # the penalty's gradient: that of sum_{n,j} pull_j x_nj(v_n), pull detached
            pull = self.sparsity_cost * (self.mean_activation - self.sparsity_target)
        if not fused:
            # a subclass with its own conditionals or free energy (e.g. DBM pretraining's
            # DoubledRBM): the surrogate's gradient by autograd, with the negatives drawn above
            surrogate = rbm.free_energy(v).sum() - s * rbm.free_energy(v_neg).sum()
            if pull is None:
                return surrogate
            penalty = (pull * rbm.hidden_input(v)).sum()
            return surrogate + (penalty - penalty.detach())
        # Fused update path: the gradient is written out (no autograd graph).
        with torch.no_grad():
            weights = self._weights(m, n, x)
            # dF/dW = -p(h|v) v^T, dF/dc = -p(h|v), dF/db = -v (Bernoulli) or -(v - b) (Gaussian;
            # the b terms cancel because s m = n): each gradient is a weighted sum over the rows
            grad_b = torch.mv(states.t(), weights)
            # the value: sum_n F(v_n) - s sum_m F(v~_m), F(v) = visible term - sum softplus(x);
            # for Bernoulli units the visible terms -b.v add up to b . grad_b
            gap = torch.dot(softplus_sums, weights.to(softplus_sums)).to(x)
            if rbm.visible == "bernoulli":
                gap = gap + torch.dot(b, grad_b)
            else:
                gap = gap - torch.dot(0.5 * (states - b).pow(2).sum(-1), weights)
            p.mul_(weights.unsqueeze(-1))
            grad_c = p.sum(0)
            # states^T p is (V, H), so grad_w is (H, V), laid out like W (see RBM.weight)
            if rbm.visible == "bernoulli":
                grad_w = sparse_rows_matmul_t(states, p).t()
            else:
                grad_w = torch.mm(states.t(), p).t()
            if pull is not None:
                grad_c = grad_c + n * pull
                grad_w = grad_w + torch.outer(pull, v.sum(0))
        return gap, (grad_w, grad_b, grad_c)


def _sigmoid(x: torch.Tensor, p: torch.Tensor, softplus_sums: torch.Tensor,
             with_softplus: bool) -> None:
    """``p = sigmoid(x)`` and, if ``with_softplus``, ``softplus_sums`` = the rows' sums of
    ``softplus(x)``: one pass of :func:`pyro_deepgen.energy._kernels.native.sigmoid_softplus` where it applies,
    else torch's."""
    if with_softplus:
        if native.sigmoid_softplus(x, p, softplus_sums):
            return
        softplus_sums.copy_(F.softplus(x).sum(-1))
    torch.sigmoid(x, out=p)


class _PrecomputedGradient(torch.autograd.Function):
    """A scalar ``value`` whose gradient w.r.t. ``params`` is the given ``grads`` (the fused CD
    update): ``backward()`` through it works like through an autograd surrogate."""

    @staticmethod
    def forward(ctx, value, grads, *params):
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output):
        grads, ctx.grads = ctx.grads, None  # no reference left: .grad can take them without a copy
        if grads is None:
            raise RuntimeError("the CD loss's gradient was already used; call backward() once")
        if grad_output.numel() == 1 and grad_output.item() == 1.0:
            return (None, None) + grads
        return (None, None) + tuple(g * grad_output for g in grads)


@torch.no_grad()
def reconstruction_error(rbm: RBM, v: torch.Tensor) -> torch.Tensor:
    r"""Squared reconstruction error per data point, :math:`\lVert v - \mathbb E[v\mid
    h = p(h\mid v)]\rVert^2` (one deterministic mean-field up-down pass), shape ``(N,)``."""
    return (v - rbm.visible_mean(rbm.hidden_probs(v))).pow(2).sum(-1)


@torch.no_grad()
def pseudo_log_likelihood(rbm: RBM, v: torch.Tensor) -> torch.Tensor:
    r"""Exact pseudo-log-likelihood per data point, summed over *all* visible units:

    .. math:: \mathrm{PL}(v) = \sum_i \log p(v_i\mid v_{-i})
              = -\sum_i \operatorname{softplus}\big(F(v) - F(v^{(i)})\big),

    where :math:`v^{(i)}` flips unit i. Every flip is evaluated (scikit-learn's
    ``BernoulliRBM.score_samples`` flips one random unit and multiplies by V), vectorized over
    units and chunked over data points. Bernoulli visible units only. Shape ``(N,)``.
    """
    if rbm.visible != "bernoulli":
        raise ValueError("pseudo_log_likelihood needs binary (bernoulli) visible units")
    rbm.check_layer(v, rbm.num_visible, "v")
    batch_shape = v.shape[:-1]
    v = v.to(rbm.weight).reshape(-1, rbm.num_visible)
    W, b = rbm.weight, rbm.visible_bias
    chunk = max(1, _PLL_CHUNK_ELEMENTS // (rbm.num_visible * rbm.num_hidden))
    out = []
    for vc in v.split(chunk):
        x = rbm.hidden_input(vc)  # (n, H)
        sign = 1 - 2 * vc  # +1 turns a unit on, -1 turns it off
        x_flip = x.unsqueeze(1) + sign.unsqueeze(-1) * W.t()  # (n, V, H)
        # F(v) - F(v^(i)) = sign_i b_i + sum_j softplus(x_flip_ij) - softplus(x_j)
        diff = sign * b + F.softplus(x_flip).sum(-1) - F.softplus(x).sum(-1, keepdim=True)
        out.append(-F.softplus(diff).sum(-1))
    return torch.cat(out).reshape(batch_shape)


class MeanFieldPCD:
    r"""DBM training loss for :func:`pyro_deepgen.train.fit` (``fit(dbm, None, data,
    loss=MeanFieldPCD())``): mean field for the data term, persistent Gibbs chains for the
    model term (Salakhutdinov & Hinton 2009, Algorithm 1).

    The log-likelihood gradient is :math:`\mathbb E_{p(h\mid v)}[-\nabla E] -
    \mathbb E_{p(v,h)}[-\nabla E]`. The first expectation is replaced by the mean-field
    posterior (exact in expectation because :math:`E` is linear in each parameter and
    multilinear in the units), the second by ``num_chains`` persistent chains advanced by
    ``gibbs_steps`` sweeps per update. The surrogate, summed over the minibatch like Pyro's
    losses, is

    .. math:: \mathcal L = \sum_{n=1}^B E(v_n, \bot\mu^1_n, \bot\mu^2_n)
              - \frac BM\sum_{m=1}^M E(\bot\tilde v_m, \bot\tilde h^1_m, \bot\tilde h^2_m),

    whose negative gradient is the DBM update: the gradient of the variational bound with
    :math:`\nabla\log Z` estimated by the chains. Its value is returned.

    :param int num_chains: persistent chains (default: the first minibatch's size; they start
        at that minibatch with hidden units from mean field).
    :param int gibbs_steps: Gibbs sweeps of the chains per update (default 1).
    :param int mean_field_steps: fixed-point sweeps per minibatch (default 10).
    """

    def __init__(self, num_chains: Optional[int] = None, gibbs_steps: int = 1,
                 mean_field_steps: int = 10) -> None:
        for name, value in (("gibbs_steps", gibbs_steps), ("mean_field_steps", mean_field_steps)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_chains is not None and (not isinstance(num_chains, int) or num_chains < 1):
            raise ValueError(f"num_chains must be a positive integer or None, got {num_chains!r}")
        self.num_chains, self.gibbs_steps = num_chains, gibbs_steps
        self.mean_field_steps = mean_field_steps
        self.chains: Optional[State] = None

    def state_dict(self) -> Dict[str, Any]:
        """The persistent chains (saved and restored by :func:`~pyro_deepgen.train.fit`'s
        checkpoints, so that a resumed run follows the uninterrupted one)."""
        return {"chains": None if self.chains is None else list(self.chains)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.chains = None if state["chains"] is None else tuple(state["chains"])

    def __call__(self, model: DBM, guide, v: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        dbm = model
        if not isinstance(dbm, DBM):
            raise TypeError(f"MeanFieldPCD needs model=<DBM>, got {type(dbm).__name__}")
        if guide is not None:
            raise ValueError("MeanFieldPCD takes no guide; call fit(dbm, None, data, ...)")
        dbm.check_visible(v)
        v = v.to(dbm.weight1)
        mu1, mu2 = dbm.mean_field(v, self.mean_field_steps)
        if self.chains is None:
            n = v.shape[0] if self.num_chains is None else self.num_chains
            self.chains = dbm.init_chains(v[torch.arange(n, device=v.device) % v.shape[0]])
        for _ in range(self.gibbs_steps):
            self.chains = dbm.gibbs_step(self.chains)
        positive = dbm.energy(v, mu1, mu2).sum()
        negative = dbm.energy(*self.chains).sum() * (v.shape[0] / self.chains[0].shape[0])
        return positive - negative
