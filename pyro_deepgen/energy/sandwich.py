r"""Both sides of a Boltzmann machine's log-likelihood: forward AIS (optimistic), RAISE
(conservative) and bidirectional Monte Carlo (a sandwich of :math:`\log Z` from simulated data).

All three anneal along the path of :meth:`~pyro_deepgen.energy.RBM.log_partition_ais`, from the
base-rate model :math:`p_0` (visible biases :math:`b_A`, nothing else) to the model :math:`p_1`,
:math:`f_\beta \propto e^{-(1-\beta)E_A - \beta E}` at :math:`0 = \beta_0 < \dots < \beta_K =
1`, with block-Gibbs sweeps of :math:`f_\beta` as transitions. On the sides of the true value:

- **forward AIS** (Salakhutdinov & Murray 2008): :math:`\widehat Z` is unbiased, so
  :math:`\mathbb E\log\widehat Z \le \log Z` and :math:`\log\tilde p(v) - \log\widehat Z` is
  **optimistic**: in expectation at or above :math:`\log p(v)`, for every :math:`v`;
- **RAISE** (Burda, Grosse & Salakhutdinov 2015): the forward chain is a directed generative
  model, the *annealing model* :math:`p_\text{ann}(x_K) = \sum_{x_{1:K-1}} p_0(x_1)\prod_k
  T_k(x_{k+1}\mid x_k)`, which tends to :math:`p` as the ladder gets finer. For a test
  :math:`v` a reverse chain started at :math:`(v, h\sim q(h\mid v))` and annealed down to
  :math:`p_0` (:func:`~pyro_deepgen.infer.reverse_annealed_importance_sampling`) is an importance
  proposal for :math:`p_\text{ann}(v)`, with weight

  .. math:: \hat p_\text{ann}(v) = \frac{f_1(v, h)}{q(h\mid v)}\,\frac{1}{Z_0\,w_\text{rev}},
     \qquad \log w_\text{rev} = \sum_{k=1}^{K}\log f_{\beta_k}(x_k) - \log f_{\beta_{k-1}}(x_k),

  unbiased for :math:`p_\text{ann}(v)`; the log of its mean over runs is therefore a
  stochastic **lower** bound on :math:`\log p_\text{ann}(v)`. The estimate is **conservative**:
  per point it is below :math:`\log p_\text{ann}(v)` in expectation, and averaged over data
  drawn from :math:`p`, :math:`\mathbb E_p\log p_\text{ann} = \mathbb E_p\log p -
  \mathrm{KL}(p\,\|\,p_\text{ann}) \le \mathbb E_p\log p` (per point :math:`p_\text{ann}(v)`
  may exceed :math:`p(v)`; on held-out data it rarely does, Burda et al. Sec. 4);
- **BDMC** (Grosse, Ghahramani & Adams 2015): reverse chains started at *exact* samples of
  :math:`p` (simulated data) give :math:`\mathbb E[1/w_\text{rev}] = Z_0/Z`, hence
  :math:`\log\widehat Z_\text{rev} = \log Z_0 - \log\frac1R\sum_r w_\text{rev}^{(r)\,-1}` with
  :math:`\mathbb E\log\widehat Z_\text{rev} \ge \log Z`. Together with forward AIS,
  :math:`\mathbb E\log\widehat Z_\text{fwd} \le \log Z \le \mathbb E\log\widehat Z_\text{rev}`,
  so for any :math:`v` with an exact :math:`\tilde p(v)`, :math:`\log\tilde p(v) -
  \log\widehat Z_\text{rev} \le \log p(v) \le \log\tilde p(v) - \log\widehat Z_\text{fwd}` in
  expectation, and the gap :math:`\log\widehat Z_\text{rev} - \log\widehat Z_\text{fwd}`
  bounds the error of either side.

The paths. **RBM**: the state is :math:`v` with :math:`h` summed out, :math:`\log f_\beta(v) =
((1-\beta)b_A + \beta b)^\top v + \sum_j\operatorname{softplus}(\beta(c + Wv)_j)`; the
sweep :math:`h\sim p_\beta(h\mid v)`, :math:`v'\sim p_\beta(v\mid h)` is reversible on
:math:`v`, and RAISE's start is the test point itself with the exact :math:`f_1(v) =
e^{-F(v)}` (no :math:`q`). **DBM**: the middle layer :math:`h^1` separates :math:`v` from
:math:`h^2`, so the state is :math:`(v, h^2)` with :math:`h^1` summed out,
:math:`\log f_\beta(v, h^2) = ((1-\beta)b_A + \beta b)^\top v + \beta c_2^\top h^2 +
\sum_j\operatorname{softplus}(\beta(W_1v + W_2^\top h^2 + c_1)_j)`, the sweep is
:math:`h^1\mid(v,h^2)` then :math:`(v,h^2)\mid h^1`, and RAISE's start draws :math:`h^2` from
the mean-field posterior :math:`q(h^2) = \prod_k\mathrm{Bern}(\mu^2_k)` (Burda et al.'s DBM
variant), clipped to :math:`[\epsilon, 1-\epsilon]` so that every :math:`h^2` can be proposed.
**DBN**: the likelihood sums the directed layers' terms against the top RBM's marginal, so
:func:`dbn_raise_log_prob` importance-samples the hidden layers with the upward pass and scores
each sample's top layer by RAISE on the top RBM's path. Both paths
start at :math:`Z_0 = \prod_i(1+e^{b_{A,i}})\,2^{H}` (:math:`H` the summed and
uniform hidden units; an RBM with Gaussian visible units, whose base is
:math:`\mathcal N(b_A, I)`, has :math:`Z_0 = (2\pi)^{V/2}2^H`).

**References**: [1] Y. Burda, R. Grosse, R. Salakhutdinov, *Accurate and Conservative Estimates
of MRF Log-likelihood using Reverse Annealing*, AISTATS 2015, arXiv:1412.8566. [2] R. Grosse,
Z. Ghahramani, R. P. Adams, *Sandwiching the marginal likelihood using bidirectional Monte
Carlo*, arXiv:1511.02543 (2015). [3] R. Salakhutdinov, I. Murray, *On the Quantitative Analysis
of Deep Belief Networks*, ICML 2008. [4] R. M. Neal, *Annealed importance sampling*, Statistics
and Computing 11 (2001).
"""
import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch.nn import functional as F

from ..infer.ais import (
    annealed_importance_sampling,
    default_ais_schedule,
    log_mean_exp_with_stderr,
    reverse_annealed_importance_sampling,
)
from .ais import base_rate_logits
from .dbm import DBM
from .dbn import DBN
from .rbm import MAX_ENUMERATED_UNITS, RBM, bernoulli_sample, binary_states

#: the largest first hidden layer whose states the DBM's forward side enumerates for
#: :math:`\tilde p(v)` (N x 2**H1 terms); above it, importance sampling
#: (:meth:`~pyro_deepgen.energy.DBM.importance_log_prob`)
MAX_EXACT_DBM_HIDDEN1 = 12


def _betas(betas) -> torch.Tensor:
    """``None`` -> the paper's schedule, an int K -> :func:`default_ais_schedule` (K), a sequence
    as given (checked by the sampler)."""
    if betas is None:
        return default_ais_schedule()
    if isinstance(betas, int) and not isinstance(betas, bool):
        return default_ais_schedule(betas)
    return torch.as_tensor(betas, dtype=torch.float64)


def _num_runs(num_runs, name: str, minimum: int) -> int:
    if isinstance(num_runs, bool) or not isinstance(num_runs, int) or num_runs < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {num_runs!r}")
    return num_runs


def _base_logits(model, base_rate) -> torch.Tensor:
    b = model.visible_bias.detach()
    if base_rate is None:
        return b.clone()
    base_rate = torch.as_tensor(base_rate).to(b)
    if base_rate.dim() == 2:
        if base_rate.shape[1] != b.shape[0]:
            raise ValueError(f"base_rate data must have shape (N, {b.shape[0]}); got "
                             f"{tuple(base_rate.shape)}")
        base_rate = base_rate_logits(base_rate, visible=getattr(model, "visible", "bernoulli"))
    if base_rate.shape != b.shape:
        raise ValueError(f"base_rate must have shape ({b.shape[0]},) (visible log-odds) or "
                         f"(N, {b.shape[0]}) (data); got {tuple(base_rate.shape)}")
    return base_rate


def _check_data(model, v: torch.Tensor, name: str = "data") -> torch.Tensor:
    if not isinstance(v, torch.Tensor) or v.dim() != 2 or v.shape[1] != model.num_visible:
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, {model.num_visible}); got {shape}")
    if len(v) == 0:
        raise ValueError(f"{name} is empty: give at least one row")
    return v.to(model.visible_bias.detach())


class _RBMPath:
    """The RBM's annealing path over v (h summed out); states ``(v, c + W v)``."""

    def __init__(self, rbm: RBM, b_a: torch.Tensor) -> None:
        self.rbm = rbm
        self.W, self.b, self.c = (p.detach() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
        self.b_a = b_a
        self.gaussian = rbm.visible == "gaussian"
        if self.gaussian:
            log_z_a = 0.5 * rbm.num_visible * math.log(2 * math.pi)
        else:
            log_z_a = F.softplus(b_a.double()).sum().item()
        self.log_z0 = log_z_a + rbm.num_hidden * math.log(2)

    def cache(self, v):
        return v, self.rbm.hidden_input_of_states(v, binary=not self.gaussian)

    def log_f(self, state, beta):
        v, x = state
        v = v.double()
        if self.gaussian:
            vis = -0.5 * ((1 - beta) * (v - self.b_a.double()).pow(2)
                          + beta * (v - self.b.double()).pow(2)).sum(-1)
        else:
            vis = v @ ((1 - beta) * self.b_a.double() + beta * self.b.double())
        return vis + F.softplus(beta * x.double()).sum(-1)

    def transition(self, state, beta):
        _, x = state
        h = bernoulli_sample(torch.sigmoid(beta * x))
        eta = (1 - beta) * self.b_a + beta * (h @ self.W + self.b)
        v = bernoulli_sample(torch.sigmoid(eta)) if not self.gaussian else eta + torch.randn_like(eta)
        return self.cache(v)

    def sample_base(self, n: int):
        eta = self.b_a.expand(n, -1)
        v = bernoulli_sample(torch.sigmoid(eta)) if not self.gaussian else eta + torch.randn_like(eta)
        return self.cache(v)

    def start(self, v: torch.Tensor, num_runs: int):
        """RAISE's start at data ``v`` ``(N, V)``, repeated for ``num_runs``: the states and the
        per-run log of :math:`f_1(x_K)/q(h\\mid v)`, here the exact :math:`-F(v)`."""
        v = v.repeat(num_runs, 1)
        state = self.cache(v)
        return state, self.log_f(state, 1.0)

    def log_unnormalized(self, v: torch.Tensor, num_samples: int) -> torch.Tensor:
        return -self.rbm.free_energy(v).double()

    def exact_samples(self, n: int):
        rbm = self.rbm
        w = self.W
        if rbm.num_hidden <= MAX_ENUMERATED_UNITS:
            h_all = binary_states(rbm.num_hidden, device=w.device, dtype=w.dtype)
            h = h_all[torch.multinomial(torch.softmax(-rbm.hidden_free_energy(h_all).double(), 0), n,
                                        replacement=True)]
            return self.cache(rbm.sample_visible(h))
        if not self.gaussian and rbm.num_visible <= MAX_ENUMERATED_UNITS:
            v_all = binary_states(rbm.num_visible, device=w.device, dtype=w.dtype)
            idx = torch.multinomial(torch.softmax(-rbm.free_energy(v_all).double(), 0), n,
                                    replacement=True)
            return self.cache(v_all[idx])
        return None


class _DBMPath:
    """The DBM's annealing path over (v, h2) (h1 summed out); states ``(v, h2, W1 v + W2^T h2 + c1)``."""

    def __init__(self, dbm: DBM, b_a: torch.Tensor, proposal_floor: float) -> None:
        self.dbm = dbm
        self.W1, self.W2 = dbm.weight1.detach(), dbm.weight2.detach()
        self.b, self.c1, self.c2 = (p.detach() for p in (dbm.visible_bias, dbm.hidden1_bias,
                                                         dbm.hidden2_bias))
        self.b_a = b_a
        self.floor = proposal_floor
        self.log_z0 = (F.softplus(b_a.double()).sum().item()
                       + (dbm.num_hidden1 + dbm.num_hidden2) * math.log(2))

    def cache(self, v, h2):
        return v, h2, F.linear(v, self.W1, self.c1) + h2 @ self.W2

    def log_f(self, state, beta):
        v, h2, x1 = (t.double() for t in state)
        return (v @ ((1 - beta) * self.b_a.double() + beta * self.b.double())
                + beta * (h2 @ self.c2.double()) + F.softplus(beta * x1).sum(-1))

    def transition(self, state, beta):
        _, _, x1 = state
        h1 = bernoulli_sample(torch.sigmoid(beta * x1))
        v = bernoulli_sample(torch.sigmoid((1 - beta) * self.b_a + beta * (h1 @ self.W1 + self.b)))
        h2 = bernoulli_sample(torch.sigmoid(beta * F.linear(h1, self.W2, self.c2)))
        return self.cache(v, h2)

    def sample_base(self, n: int):
        v = bernoulli_sample(torch.sigmoid(self.b_a.expand(n, -1)))
        h2 = bernoulli_sample(self.b_a.new_full((n, self.dbm.num_hidden2), 0.5))
        return self.cache(v, h2)

    def start(self, v: torch.Tensor, num_runs: int):
        _, mu2 = self.dbm.mean_field(v)
        mu2 = mu2.clamp(self.floor, 1 - self.floor).repeat(num_runs, 1)
        v = v.repeat(num_runs, 1)
        h2 = bernoulli_sample(mu2)
        log_q = (torch.xlogy(h2, mu2) + torch.xlogy(1 - h2, 1 - mu2)).sum(-1).double()
        state = self.cache(v, h2)
        return state, self.log_f(state, 1.0) - log_q

    def log_unnormalized(self, v: torch.Tensor, num_samples: int) -> torch.Tensor:
        if self.dbm.num_hidden1 <= MAX_EXACT_DBM_HIDDEN1:
            return self.dbm.unnormalized_log_prob(v).double()
        return self.dbm.importance_log_prob(v, 0.0, num_samples=num_samples).double()

    def exact_samples(self, n: int):
        dbm = self.dbm
        if dbm.num_hidden1 > MAX_ENUMERATED_UNITS:
            return None
        h1_all = binary_states(dbm.num_hidden1, device=self.W1.device, dtype=self.W1.dtype)
        probs = torch.softmax(dbm.log_hidden1_marginal(h1_all).double(), 0)
        h1 = h1_all[torch.multinomial(probs, n, replacement=True)]
        v = bernoulli_sample(torch.sigmoid(h1 @ self.W1 + self.b))
        h2 = bernoulli_sample(torch.sigmoid(F.linear(h1, self.W2, self.c2)))
        return self.cache(v, h2)


class _DBMPosteriorPath:
    r"""Per-image path over :math:`h^2` for fixed ``v`` (:math:`h^1` summed out), from the
    clipped mean-field :math:`q(h^2)` to :math:`\tilde p(v, h^2)`; states ``(h2, x1)`` with
    ``x1`` :math:`= W_1 v + W_2^\top h^2 + c_1`. The base's normalizer is :math:`2^{H_1}`."""

    def __init__(self, dbm: DBM, v: torch.Tensor, num_runs: int, mean_field_steps: int,
                 proposal_floor: float) -> None:
        self.W2 = dbm.weight2.detach()
        self.c2 = dbm.hidden2_bias.detach()
        _, mu2 = dbm.mean_field(v, mean_field_steps)
        mu2 = mu2.clamp(proposal_floor, 1 - proposal_floor).repeat(num_runs, 1)
        self.mu2, self.logit_q = mu2, torch.logit(mu2)
        self.bottom_up = F.linear(v, dbm.weight1.detach(), dbm.hidden1_bias.detach()).repeat(
            num_runs, 1)
        self.visible = (v @ dbm.visible_bias.detach()).double().repeat(num_runs)
        self.log_z0 = dbm.num_hidden1 * math.log(2)

    def cache(self, h2):
        return h2, self.bottom_up + h2 @ self.W2

    def log_f(self, state, beta):
        h2, x1 = state
        log_q = (torch.xlogy(h2, self.mu2) + torch.xlogy(1 - h2, 1 - self.mu2)).sum(-1).double()
        return ((1 - beta) * log_q + beta * (self.visible + h2.double() @ self.c2.double())
                + F.softplus(beta * x1.double()).sum(-1))

    def transition(self, state, beta):
        _, x1 = state
        h1 = bernoulli_sample(torch.sigmoid(beta * x1))
        eta = (1 - beta) * self.logit_q + beta * F.linear(h1, self.W2, self.c2)
        return self.cache(bernoulli_sample(torch.sigmoid(eta)))

    def sample_base(self):
        return self.cache(bernoulli_sample(self.mu2))


@torch.no_grad()
def dbm_posterior_ais_log_prob(dbm: DBM, v: torch.Tensor, betas=1000, num_runs: int = 20,
                               log_z=0.0, mean_field_steps: int = 30,
                               proposal_floor: float = 1e-3, batch_size: Optional[int] = None
                               ) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""The DBM's per-image term :math:`\log\tilde p(v) = \log\sum_{h^1,h^2}e^{-E(v,h^1,h^2)}`
    by AIS over :math:`h^2` for each row of ``v``, from the mean-field proposal to the posterior
    (the estimate :meth:`~pyro_deepgen.energy.DBM.importance_log_prob` makes in one step), minus
    ``log_z``; with its Monte Carlo standard error.

    With :math:`h^1` summed out given its two neighbours, :math:`\tilde p(v, h^2) =
    e^{b^\top v + c_2^\top h^2}\prod_j(1 + e^{(W_1v + W_2^\top h^2 + c_1)_j})`. The path is

    .. math:: f_\beta(h^2) = q(h^2)^{1-\beta}\,e^{\beta(b^\top v + c_2^\top h^2)}
        \prod_j\bigl(1 + e^{\beta(W_1 v + W_2^\top h^2 + c_1)_j}\bigr),\qquad
        q(h^2) = \prod_k\mathrm{Bern}(\mu^2_k),

    the :math:`h^1`-marginal of :math:`q(h^2)^{1-\beta}e^{-\beta E(v,h^1,h^2)}`, so the
    transition is a Gibbs sweep of that joint: :math:`h^1\sim\sigma(\beta(W_1 v + W_2^\top h^2
    + c_1))`, then :math:`h^2\sim\sigma((1-\beta)\operatorname{logit}\mu^2 + \beta(W_2h^1 +
    c_2))`. :math:`f_0 = 2^{H_1}q`, :math:`f_1 = \tilde p(v,\cdot)`, and

    .. math:: \widehat{\log\tilde p}(v) = H_1\log 2 + \log\frac1R\sum_{r=1}^R w^{(r)}

    with :math:`w^{(r)}` the AIS weights (Neal 2001): :math:`\mathbb E\,w = \tilde p(v)/2^{H_1}`,
    so the estimate is a stochastic **lower** bound on :math:`\log\tilde p(v)` that tightens as
    the ladder lengthens, where importance sampling from :math:`q` alone is limited by how far
    the factorial :math:`q` is from the correlated posterior :math:`p(h^2\mid v)`
    (Salakhutdinov & Hinton 2009 use AIS per test image for the same term).

    :param dbm: a :class:`~pyro_deepgen.energy.DBM`.
    :param v: data ``(N, V)``.
    :param betas: an int K (:func:`~pyro_deepgen.infer.default_ais_schedule` (K), default 1000),
        ``None`` (the paper's 14,500) or increasing values from 0 to 1.
    :param int num_runs: AIS runs per row R, at least 2 (default 20).
    :param log_z: subtracted from every estimate (default 0: the unnormalized term).
    :param int mean_field_steps: fixed-point sweeps of :meth:`~pyro_deepgen.energy.DBM.mean_field`.
    :param float proposal_floor: :math:`\mu^2` is clipped to :math:`[\epsilon, 1-\epsilon]`.
    :param int batch_size: rows per batch (default all; the state is ``R x batch`` rows).
    :return: ``(log_p, stderr)``, each ``(N,)`` (float64).

    **Limiting cases**: with ``betas = [0, 1]`` it is importance sampling from the clipped
    :math:`q(h^2)` with R samples; when :math:`W_2 = 0` the posterior of :math:`h^2` is the
    factorial :math:`\sigma(c_2)`, mean field finds it, and every weight equals
    :math:`\tilde p(v)/2^{H_1}` (zero variance) on any ladder.
    """
    if not isinstance(dbm, DBM):
        raise ValueError(f"dbm must be a pyro_deepgen.energy.DBM, got {type(dbm).__name__}")
    v = _check_data(dbm, v, "v")
    betas = _betas(betas)
    num_runs = _num_runs(num_runs, "num_runs", 2)
    if not 0 < proposal_floor < 0.5:
        raise ValueError(f"proposal_floor must be in (0, 0.5), got {proposal_floor}")
    out, err = [], []
    for chunk in _batches(v, batch_size):
        path = _DBMPosteriorPath(dbm, chunk, num_runs, mean_field_steps, proposal_floor)
        log_w = annealed_importance_sampling(path.sample_base(), path.log_f, path.transition,
                                             betas)
        value, se = log_mean_exp_with_stderr(log_w.view(num_runs, len(chunk)), dim=0)
        out.append(value + path.log_z0)
        err.append(se)
    log_z = torch.as_tensor(log_z, dtype=torch.float64, device=v.device)
    return torch.cat(out) - log_z, torch.cat(err)


def _path(model, base_rate, proposal_floor: float = 1e-3):
    if isinstance(model, DBM):
        return _DBMPath(model, _base_logits(model, base_rate), proposal_floor)
    if isinstance(model, RBM):
        if not model.has_plain_energy():
            raise ValueError(f"{type(model).__name__} changes the RBM's energy (plain_energy is "
                             "False); the sandwich bounds anneal the plain RBM energy. Convert it "
                             "to an RBM with the same parameters first.")
        return _RBMPath(model, _base_logits(model, base_rate))
    raise TypeError(f"model must be a pyro_deepgen.energy.RBM or DBM, got {type(model).__name__} "
                    "(for a DBN use dbn_raise_log_prob: its likelihood is its top RBM's plus an "
                    "importance-sampled term)")


def _batches(v: torch.Tensor, batch_size: Optional[int]):
    """The rows of ``v`` in batches of ``batch_size`` (all at once for ``None``)."""
    step = len(v) if batch_size is None else _num_runs(batch_size, "batch_size", 1)
    return [v[s:s + step] for s in range(0, len(v), step)]


def _reverse_log_prob(path, x: torch.Tensor, num_runs: int, betas: torch.Tensor) -> torch.Tensor:
    """RAISE's per-run log of the unbiased estimate of :math:`p_\text{ann}(x)`, shape
    ``(num_runs, len(x))``: reverse chains from ``x`` down ``path``'s ladder."""
    state, log_start = path.start(x, num_runs)
    log_w = reverse_annealed_importance_sampling(state, path.log_f, path.transition, betas)
    return (log_start - path.log_z0 - log_w).view(num_runs, len(x))


@torch.no_grad()
def raise_log_prob(model, v: torch.Tensor, betas=None, num_runs: int = 10,
                   base_rate: Optional[torch.Tensor] = None, batch_size: Optional[int] = None,
                   proposal_floor: float = 1e-3) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""RAISE: a conservative estimate of :math:`\log p(v)` for every row of ``v``, with its
    Monte Carlo standard error (Burda, Grosse & Salakhutdinov 2015; see the module docstring).

    .. math:: \widehat{\log p}(v) = \log\frac1R\sum_{r=1}^R
        \frac{f_1(v, h_r)}{q(h_r\mid v)\,Z_0\,w_\text{rev}^{(r)}},\qquad
        \mathbb E\,\widehat{\log p}(v) \le \log p_\text{ann}(v) \to \log p(v)\ (K\to\infty).

    All ``R x N`` reverse chains advance together (one matrix product per layer and
    temperature) on ``v``'s device, or ``batch_size`` points (times R) at a time.

    :param model: an :class:`~pyro_deepgen.energy.RBM` or :class:`~pyro_deepgen.energy.DBM`.
    :param v: data ``(N, V)``.
    :param betas: the forward ladder: ``None`` (the paper's 14,500 steps), an int K
        (:func:`~pyro_deepgen.infer.default_ais_schedule` (K)) or increasing values from 0 to 1.
    :param int num_runs: reverse chains per point R, at least 2 (default 10).
    :param base_rate: the base model's visible log-odds ``(V,)`` or data ``(N, V)`` whose
        marginals give them (:func:`~pyro_deepgen.energy.base_rate_logits`); default the
        model's visible biases. Use the same as for forward AIS.
    :param int batch_size: points per batch (default all).
    :param float proposal_floor: the DBM's mean-field proposal is clipped to
        :math:`[\epsilon, 1-\epsilon]` (default :math:`10^{-3}`).
    :return: ``(log_p, stderr)``, each ``(N,)`` (float64); ``stderr`` is the delta-method error
        of the log-mean over runs.

    **Limiting cases**: with ``betas = [0, 1]`` the RBM's estimate is the base model's exact
    :math:`\log p_0(v)` (no transition, zero variance); if the model *is* the base model (zero
    weights, :math:`b = b_A`) every ladder gives the exact :math:`\log p(v)`.
    """
    path = _path(model, base_rate, proposal_floor)
    v = _check_data(model, v, "v")
    betas = _betas(betas)
    num_runs = _num_runs(num_runs, "num_runs", 2)
    out, err = [], []
    for chunk in _batches(v, batch_size):
        value, se = log_mean_exp_with_stderr(_reverse_log_prob(path, chunk, num_runs, betas), dim=0)
        out.append(value)
        err.append(se)
    return torch.cat(out), torch.cat(err)


@torch.no_grad()
def dbn_raise_log_prob(dbn: DBN, v: torch.Tensor, betas=None, num_samples: int = 100,
                       num_runs: int = 1, base_rate: Optional[torch.Tensor] = None,
                       batch_size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""RAISE for a deep belief network: a conservative estimate of :math:`\log p(v)` per row of
    ``v``, with its Monte Carlo standard error: RAISE (Burda, Grosse & Salakhutdinov 2015) on the
    top RBM inside importance sampling over the lower layers.

    A DBN's likelihood is a sum over its hidden layers of a directed part and its top RBM's
    marginal over :math:`h^{L-1}`, :math:`p(v) = \sum_h p(v, h^{1:L-2}\mid h^{L-1})\,
    p_\text{top}(h^{L-1})`. Importance sampling with the upward pass :math:`h_k \sim q(h\mid v)`
    and the unknown :math:`p_\text{top}(h_k^{L-1})` replaced by RAISE's unbiased estimate
    :math:`\hat p_\text{ann}(h_k^{L-1})` (mean of ``num_runs`` reverse chains of the top RBM, see
    :func:`raise_log_prob`) gives

    .. math:: \hat p(v) = \frac1K\sum_{k=1}^K
        \frac{p(v, h_k^{1:L-2}\mid h_k^{L-1})\ \hat p_\text{ann}(h_k^{L-1})}{q(h_k\mid v)},

    unbiased for :math:`p'(v)`, the likelihood of the DBN whose top RBM is replaced by its
    annealing model (the forward AIS chain, a normalized directed model). So
    :math:`\mathbb E\log\hat p(v) \le \log p'(v)` (Jensen), and averaged over data from the
    model :math:`\mathbb E_p \log p' \le \mathbb E_p\log p`: the estimate is **conservative** in
    the same sense as RAISE, and it needs no estimate of :math:`\log Z`. Its opposite side is
    :meth:`~pyro_deepgen.energy.DBN.importance_log_prob` with a forward-AIS :math:`\log\widehat Z`
    of the top RBM, optimistic through :math:`\log\widehat Z` (and pulled down by its own
    importance-sampling bias, which more samples shrink).

    :param dbn: a :class:`~pyro_deepgen.energy.DBN` (with one RBM this is :func:`raise_log_prob`).
    :param v: data ``(N, V)``.
    :param betas: the top RBM's forward ladder, as for :func:`raise_log_prob`.
    :param int num_samples: upward samples K per point, at least 2 (default 100).
    :param int num_runs: reverse chains R per upward sample (default 1).
    :param base_rate: the top RBM's base model: visible log-odds ``(H_{L-1},)`` or data
        ``(N, H_{L-1})``, e.g. ``dbn.upward(x_train, sample=False)[-1]``, as for its forward
        AIS; default the top RBM's visible biases.
    :param int batch_size: points per batch (K x R chains each; default all).
    :return: ``(log_p, stderr)``, each ``(N,)`` (float64); ``stderr`` is the delta-method error
        of the log-mean over the K samples.

    **Limiting cases**: with one RBM it is :func:`raise_log_prob`; with ``betas = [0, 1]`` the
    top RBM is scored by its base model exactly, and with a top RBM equal to its base model
    (zero weights, base rate = visible biases) the estimate is plain importance sampling with
    the exact top marginal, for every ladder.
    """
    if not isinstance(dbn, DBN):
        raise TypeError(f"dbn must be a pyro_deepgen.energy.DBN, got {type(dbn).__name__}")
    top = dbn.top
    if len(dbn.rbms) == 1:
        return raise_log_prob(top, v, betas, max(num_runs, 2), base_rate, batch_size)
    v = _check_data(dbn.rbms[0], v, "v")
    path = _path(top, base_rate)
    betas = _betas(betas)
    k = _num_runs(num_samples, "num_samples", 2)
    r = _num_runs(num_runs, "num_runs", 1)
    out, err = [], []
    for chunk in _batches(v, batch_size):
        m = len(chunk)
        hidden = dbn.upward(chunk.expand(k, m, -1).reshape(k * m, -1))
        hidden = [h.view(k, m, -1) for h in hidden]
        log_p, log_q = dbn._log_p_and_q(chunk, hidden, 0.0)  # top term: -F(h^{L-1}) with log Z = 0
        h_top = hidden[-1].reshape(k * m, -1)
        directed = log_p.double() - (-top.free_energy(h_top).double()).view(k, m)
        log_top = torch.logsumexp(_reverse_log_prob(path, h_top, r, betas), 0) - math.log(r)
        log_weights = directed - log_q.double() + log_top.view(k, m)
        value, se = log_mean_exp_with_stderr(log_weights, dim=0)
        out.append(value)
        err.append(se)
    return torch.cat(out), torch.cat(err)


@torch.no_grad()
def forward_ais_log_prob(model, v: torch.Tensor, betas=None, num_runs: int = 100,
                         base_rate: Optional[torch.Tensor] = None, log_z=None,
                         num_samples: int = 1000) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Forward AIS: the optimistic estimate :math:`\log\tilde p(v) - \log\widehat Z` of every
    row of ``v`` and the standard error of :math:`\log\widehat Z` (Salakhutdinov & Murray 2008),
    with :math:`\widehat Z` from ``model.log_partition_ais(betas, num_runs, base_rate)``.

    :math:`\mathbb E\log\widehat Z\le\log Z`, so with an exact :math:`\tilde p(v)` the estimate
    is at or above :math:`\log p(v)` in expectation. The RBM's :math:`\tilde p(v) = e^{-F(v)}`
    is exact; the DBM's is enumerated over :math:`h^1` up to ``MAX_EXACT_DBM_HIDDEN1`` units
    and importance-sampled above (``num_samples``, a stochastic lower bound on it, so that the
    DBM's forward figure is then optimistic only up to that bias).

    :param log_z: an estimate ``(log_z, stderr)`` already made (skips the AIS run).
    :return: ``(log_p (N,), stderr of log Z)`` (float64).
    """
    path = _path(model, base_rate)
    v = _check_data(model, v, "v")
    if log_z is None:
        log_z, stderr = model.log_partition_ais(betas=_betas(betas), num_runs=num_runs,
                                                base_rate=base_rate)
    else:
        log_z, stderr = log_z
    log_z = torch.as_tensor(log_z, dtype=torch.float64, device=v.device)
    stderr = torch.as_tensor(stderr, dtype=torch.float64, device=v.device)
    return path.log_unnormalized(v, num_samples) - log_z, stderr


@torch.no_grad()
def bdmc_log_partition(model, betas=None, num_runs: int = 100,
                       base_rate: Optional[torch.Tensor] = None) -> Dict[str, Any]:
    r"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015) on :math:`\log Z`: forward
    AIS from the base model and reverse AIS from data simulated from the model, along the same
    path and ladder, so that in expectation

    .. math:: \log\widehat Z_\text{fwd} \le \log Z \le \log\widehat Z_\text{rev}

    and, for any :math:`v` with an exact :math:`\tilde p(v)`, :math:`\log\tilde p(v) -
    \log\widehat Z_\text{rev} \le \log p(v) \le \log\tilde p(v) - \log\widehat Z_\text{fwd}`.

    **The simulated data.** Where a layer can be enumerated (an RBM with at most 20 hidden or
    binary visible units, a DBM with at most 20 first-layer units) the reverse chains start at
    exact draws of the model and the upper side is a true stochastic bound
    (``exact_samples=True``). Otherwise they start at the forward chains' final states after
    one more sweep at :math:`\beta = 1`, draws of the annealing model :math:`p_\text{ann}`
    rather than of :math:`p`: the upper side is then an approximation, close to a bound only
    when the ladder is fine enough for the forward chains to reach :math:`p`
    (``exact_samples=False``).

    :param model: an :class:`~pyro_deepgen.energy.RBM` or :class:`~pyro_deepgen.energy.DBM`.
    :param betas: as for :func:`~pyro_deepgen.energy.raise_log_prob`.
    :param int num_runs: chains in each direction (default 100).
    :param base_rate: as for :func:`~pyro_deepgen.energy.raise_log_prob`.
    :return: a dict with ``log_z_forward``, ``log_z_forward_stderr``, ``log_z_reverse``,
        ``log_z_reverse_stderr``, ``gap`` (reverse minus forward, nats) and ``exact_samples``.
    """
    path = _path(model, base_rate)
    betas = _betas(betas)
    num_runs = _num_runs(num_runs, "num_runs", 2)
    log_w, final = annealed_importance_sampling(path.sample_base(num_runs), path.log_f,
                                                path.transition, betas, return_state=True)
    fwd, fwd_se = log_mean_exp_with_stderr(log_w)
    start = path.exact_samples(num_runs)
    exact = start is not None
    if not exact:
        start = path.transition(final, 1.0)
    log_w_rev = reverse_annealed_importance_sampling(start, path.log_f, path.transition, betas)
    rev, rev_se = log_mean_exp_with_stderr(-log_w_rev)
    log_z_forward = path.log_z0 + fwd.item()
    log_z_reverse = path.log_z0 - rev.item()
    return {
        "log_z_forward": log_z_forward,
        "log_z_forward_stderr": fwd_se.item(),
        "log_z_reverse": log_z_reverse,
        "log_z_reverse_stderr": rev_se.item(),
        "gap": log_z_reverse - log_z_forward,
        "exact_samples": exact,
    }


@torch.no_grad()
def log_likelihood_sandwich(model, data: torch.Tensor, betas=None, num_runs: int = 100,
                            raise_runs: int = 10, base_rate: Optional[torch.Tensor] = None,
                            log_z=None, num_samples: int = 1000,
                            batch_size: Optional[int] = None) -> Dict[str, Any]:
    r"""The mean log-likelihood of ``data`` from both sides: forward AIS (optimistic) and RAISE
    (conservative), and the gap between them.

    .. math::

        \underbrace{\frac1N\sum_n\widehat{\log p}_\text{RAISE}(v_n)}_{\text{conservative}}
        \ \lesssim\ \frac1N\sum_n\log p(v_n)\ \lesssim\
        \underbrace{\frac1N\sum_n\log\tilde p(v_n) - \log\widehat Z}_{\text{forward AIS}}

    (each side in expectation; RAISE's side exactly for :math:`p_\text{ann}`, and for
    :math:`p` on average over data from the model: see the module docstring). A small ``gap``
    says both estimates are accurate; a large one, that the ladder is too short or the chains
    mix too slowly to trust the forward figure.

    :param model: an :class:`~pyro_deepgen.energy.RBM` or :class:`~pyro_deepgen.energy.DBM`.
    :param data: ``(N, V)`` on the model's device.
    :param betas: the ladder of both estimators (``None``: the paper's 14,500 steps; an int K:
        :func:`~pyro_deepgen.infer.default_ais_schedule` (K); or the values).
    :param int num_runs: forward AIS runs (default 100).
    :param int raise_runs: reverse chains per data point (default 10).
    :param base_rate: the base model (see :func:`~pyro_deepgen.energy.raise_log_prob`); pass the training data.
    :param log_z: ``(log_z, stderr)`` of a forward AIS run already made on the same ladder
        (skips it).
    :param int num_samples: importance samples of the DBM's :math:`\tilde p(v)` when it cannot
        be enumerated.
    :param int batch_size: RAISE's points per batch (default all).
    :return: a dict: ``forward_ais`` and ``raise`` (each ``{"mean", "stderr"}``, nats per
        point; the forward stderr is that of :math:`\log\widehat Z`, RAISE's
        :math:`\sqrt{\sum_n\mathrm{se}_n^2}/N` from the per-point errors), ``gap`` (forward
        minus RAISE), ``log_z`` / ``log_z_stderr`` and ``settings``.
    """
    data = _check_data(model, data)
    betas = _betas(betas)
    num_runs = _num_runs(num_runs, "num_runs", 2)
    _path(model, base_rate)  # checks the model and the base rate before the long runs
    if log_z is None:
        log_z = model.log_partition_ais(betas=betas, num_runs=num_runs, base_rate=base_rate)
    fwd, fwd_se = forward_ais_log_prob(model, data, base_rate=base_rate, log_z=log_z,
                                       num_samples=num_samples)
    rai, rai_se = raise_log_prob(model, data, betas, raise_runs, base_rate, batch_size)
    forward_mean, raise_mean = fwd.mean().item(), rai.mean().item()
    return {
        "forward_ais": {"mean": forward_mean, "stderr": fwd_se.item()},
        "raise": {"mean": raise_mean, "stderr": (rai_se.pow(2).sum().sqrt() / len(data)).item()},
        "gap": forward_mean - raise_mean,
        "log_z": float(log_z[0]),
        "log_z_stderr": fwd_se.item(),
        "settings": {
            "model": type(model).__name__,
            "num_betas": len(betas) - 1,
            "num_runs": num_runs,
            "raise_runs": raise_runs,
            "num_points": len(data),
            "base_rate": "model visible biases" if base_rate is None else "given",
        },
    }
