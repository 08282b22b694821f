r"""Contrastive divergence (CD-k, Hinton 2002) and persistent CD (PCD, Tieleman 2008) for RBMs,
plus the per-epoch monitors: reconstruction error and the exact pseudo-log-likelihood."""
from typing import Optional

import torch
from torch.nn import functional as F

from ..models.rbm import RBM, bernoulli_sample_16bit
from ..nn.sparse_matmul import sparse_rows_matmul_t

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
    autograd graph, reusing the hidden inputs of the Gibbs sweeps; a small
    ``torch.autograd.Function`` attaches it to the returned value, so ``loss.backward()``, Pyro
    and torch optimizers and :func:`~pyro_deepgen.train.fit` work as with any surrogate. CD-k
    costs :math:`3 + 2k` matrix products per update, PCD-1 five (it reuses the chains' hidden
    probabilities from the previous update, like scikit-learn). The last negative samples are
    kept in ``last_negative``. Every call advances the persistent chains, so validate with an
    ``eval_fn`` such as :func:`pseudo_log_likelihood` rather than with this loss.

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

    **Limiting cases**: as :math:`k\to\infty` CD-k's expected gradient is the exact
    log-likelihood gradient (tested by enumeration on a tiny RBM).

    **References**: [1] G. E. Hinton, *Training Products of Experts by Minimizing Contrastive
    Divergence*, Neural Computation 14 (2002). [2] T. Tieleman, *Training Restricted Boltzmann
    Machines using Approximations to the Likelihood Gradient*, ICML 2008. [3] G. E. Hinton,
    *A Practical Guide to Training Restricted Boltzmann Machines*, UTML TR 2010-003.
    """

    def __init__(self, k: int = 1, persistent: bool = False, num_chains: Optional[int] = None,
                 sparsity_target: Optional[float] = None, sparsity_cost: float = 0.01,
                 sparsity_decay: float = 0.95) -> None:
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
        self.reset()

    def reset(self) -> None:
        """Forget the persistent chains and the sparsity average."""
        self.chains: Optional[torch.Tensor] = None
        self.mean_activation: Optional[torch.Tensor] = None
        self.last_negative: Optional[torch.Tensor] = None
        self._chain_probs: Optional[torch.Tensor] = None
        self._chain_owner: Optional[torch.Tensor] = None

    def _negative_phase(self, rbm: RBM, v: torch.Tensor, p_pos: torch.Tensor):
        """``k`` sweeps from the data (CD) or from the persistent chains (PCD), which are updated.

        Returns the negative samples, their hidden inputs and hidden probabilities. Each sweep
        costs two matrix products; the last hidden input is reused by the update. Like
        scikit-learn, PCD keeps the chains' hidden probabilities from the previous update and
        draws the first h from them (a transition with the parameters of one update earlier),
        which saves a matrix product per update.
        """
        if self.persistent:
            if self.chains is None or self._chain_owner is not rbm.weight:
                if self.chains is None:
                    n = v.shape[0] if self.num_chains is None else self.num_chains
                    idx = torch.arange(n, device=v.device) % v.shape[0]
                    self.chains = v[idx].clone()
                self._chain_probs = rbm.hidden_probs(self.chains)
                self._chain_owner = rbm.weight
            p = self._chain_probs
        else:
            p = p_pos
        for _ in range(self.k):
            h = bernoulli_sample_16bit(p)
            if rbm.visible == "bernoulli":
                v_neg = bernoulli_sample_16bit(torch.sigmoid(rbm.visible_input(h)))
            else:
                v_neg = rbm.sample_visible(h)
            x_neg = rbm.hidden_input_of_states(v_neg, binary=True)
            p = torch.sigmoid(x_neg)
        if self.persistent:
            self.chains, self._chain_probs = v_neg, p
        return v_neg, x_neg, p

    def __call__(self, model: RBM, guide, v: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        rbm = model
        if not isinstance(rbm, RBM):
            raise TypeError(f"ContrastiveDivergence needs model=<RBM>, got {type(rbm).__name__}")
        if guide is not None:
            raise ValueError("ContrastiveDivergence takes no guide; call fit(rbm, None, data, ...)")
        if v.dim() != 2 or v.shape[-1] != rbm.num_visible:
            raise ValueError(f"v must have shape (batch, {rbm.num_visible}); got {tuple(v.shape)}")
        W, b, c = rbm.weight, rbm.visible_bias, rbm.hidden_bias
        # Fused update path: the surrogate's gradient is written out by hand (no autograd graph),
        # so an update costs 3 + 2k matrix products for CD-k (2 + 2k + 1 for PCD), all batched.
        with torch.no_grad():
            v = v.to(W)
            x_pos = rbm.hidden_input_of_states(v)
            p_pos = torch.sigmoid(x_pos)
            v_neg, x_neg, p_neg = self._negative_phase(rbm, v, p_pos)
            self.last_negative = v_neg
            s = v.shape[0] / v_neg.shape[0]
            gap = ((rbm._visible_term(v).sum() - F.softplus(x_pos).sum())
                   - s * (rbm._visible_term(v_neg).sum() - F.softplus(x_neg).sum()))
            # d/dtheta [sum_n F(v_n) - s sum_m F(v~_m)], with dF/dW = -p(h|v) v^T, dF/dc = -p(h|v),
            # dF/db = -v (Bernoulli) or -(v - b) (Gaussian)
            if rbm.visible == "bernoulli":  # sums of selected rows (binary states), (V, H)
                grad_wt = sparse_rows_matmul_t(v_neg, p_neg, binary=True).mul_(s)
                grad_w = grad_wt.sub_(sparse_rows_matmul_t(v, p_pos)).t()
            else:
                grad_w = torch.addmm(torch.mm(p_neg.t(), v_neg), p_pos.t(), v, beta=s, alpha=-1)
            centre = 0 if rbm.visible == "bernoulli" else b
            grad_b = s * (v_neg - centre).sum(0) - (v - centre).sum(0)
            grad_c = s * p_neg.sum(0) - p_pos.sum(0)
            if self.sparsity_target is not None and self.sparsity_cost > 0:
                current = p_pos.mean(0)
                if self.mean_activation is None or self.mean_activation.shape != current.shape:
                    self.mean_activation = current
                else:
                    d = self.sparsity_decay
                    self.mean_activation = d * self.mean_activation + (1 - d) * current
                # gradient of sum_{n,j} pull_j (c_j + W_j v_n), pull detached
                pull = self.sparsity_cost * (self.mean_activation - self.sparsity_target)
                grad_c = grad_c + v.shape[0] * pull
                grad_w = grad_w + torch.outer(pull, v.sum(0))
        return _PrecomputedGradient.apply(gap, (grad_w, grad_b, grad_c), W, b, c)


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
    rbm._check(v, rbm.num_visible, "v")
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
