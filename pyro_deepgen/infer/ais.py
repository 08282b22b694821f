r"""Annealed importance sampling (Neal 2001) and its RBM partition-function estimator
(Salakhutdinov & Murray 2008).

AIS moves ``num_runs`` particles from a tractable base :math:`f_0` to the target :math:`f_K`
through intermediate unnormalized densities :math:`f_{\beta_k}`, with transitions
:math:`T_k` that leave :math:`f_{\beta_k}` invariant, and accumulates the importance weight

.. math::

    \log w = \sum_{k=1}^{K} \log f_{\beta_k}(x_k) - \log f_{\beta_{k-1}}(x_k),\qquad
    x_1 \sim f_0 / Z_0,\ x_{k+1} \sim T_k(\cdot\mid x_k),

whose mean is :math:`Z_K / Z_0`. Every run is a row of the same tensors, so one transition
call moves all runs at once (vectorized on the device).
"""
import math
from typing import TYPE_CHECKING, Callable, Optional, Tuple, TypeVar

import torch
from torch.nn import functional as F

if TYPE_CHECKING:  # imported lazily below: pyro_deepgen.models (DBM) imports this module
    from ..models.rbm import RBM

State = TypeVar("State")

#: Salakhutdinov & Murray's (2008) schedule: (start, stop, step) of each uniform segment.
PAPER_SCHEDULE = ((0.0, 0.5, 1e-3), (0.5, 0.9, 1e-4), (0.9, 1.0, 1e-5))


def default_ais_schedule(num_betas: Optional[int] = None, dtype=torch.float64,
                         device=None) -> torch.Tensor:
    r"""The inverse temperatures :math:`0 = \beta_0 < \dots < \beta_K = 1`.

    :param num_betas: ``None`` gives the paper's 14,500 intermediate distributions (14,501 values):
        0–0.5 by 1e-3, 0.5–0.9 by 1e-4 and 0.9–1 by 1e-5. An integer ``K`` keeps the paper's
        shape (the three segments get 500/14500, 4000/14500 and 10000/14500 of the ``K`` steps,
        each at least 1) and returns ``K + 1`` values.
    """
    counts = [round((stop - start) / step) for start, stop, step in PAPER_SCHEDULE]
    if num_betas is not None:
        if int(num_betas) < len(counts):
            raise ValueError(f"num_betas must be at least {len(counts)}, got {num_betas}")
        total = sum(counts)
        counts = [max(1, round(c * int(num_betas) / total)) for c in counts]
        counts[-1] = int(num_betas) - sum(counts[:-1])
    pieces = [torch.linspace(start, stop, n + 1, dtype=dtype, device=device)[:-1]
              for (start, stop, _), n in zip(PAPER_SCHEDULE, counts)]
    return torch.cat(pieces + [torch.ones(1, dtype=dtype, device=device)])


def _check_betas(betas: torch.Tensor) -> torch.Tensor:
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.dim() != 1 or len(betas) < 2:
        raise ValueError("betas must be a 1-D sequence of at least two inverse temperatures")
    if not (betas[0] == 0 and betas[-1] == 1 and (betas[1:] > betas[:-1]).all()):
        raise ValueError("betas must increase strictly from 0 to 1")
    return betas


@torch.no_grad()
def annealed_importance_sampling(
    init_state: State,
    log_f: Callable[[State, float], torch.Tensor],
    transition: Callable[[State, float], State],
    betas,
) -> torch.Tensor:
    r"""Generic vectorized AIS: the log importance weights of all runs, shape ``(num_runs,)``.

    :param init_state: a draw from the normalized base :math:`f_0 / Z_0` for every run (any
        object, e.g. a tensor ``(num_runs, D)`` or a tuple holding cached statistics).
    :param log_f: ``log_f(state, beta)`` -> :math:`\log f_\beta(x)` per run, shape ``(num_runs,)``.
    :param transition: ``transition(state, beta)`` -> a new state from a Markov kernel that
        leaves :math:`f_\beta` invariant.
    :param betas: increasing inverse temperatures from 0 to 1 (see :func:`default_ais_schedule`).
    :return: :math:`\log w` (float64); ``log_mean_exp_with_stderr(log_w)`` estimates
        :math:`\log Z_1 - \log Z_0`.

    **Limiting case**: when :math:`f_\beta` does not depend on :math:`\beta` every weight is 1.
    """
    betas = _check_betas(betas).tolist()
    state = init_state
    log_w = 0.0
    last = len(betas) - 2
    for k, (b_prev, b) in enumerate(zip(betas[:-1], betas[1:])):
        log_w = log_w + (log_f(state, b) - log_f(state, b_prev)).double()
        if k < last:  # the state after the final temperature is never weighted
            state = transition(state, b)
    return log_w


def log_mean_exp_with_stderr(log_w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""``(log mean exp(log_w), its delta-method standard error)``.

    With :math:`\bar w = \frac1n\sum w_i` and sample standard deviation :math:`s_w`,
    :math:`\operatorname{se}(\log\bar w) \approx s_w / (\sqrt n\,\bar w)` (both computed
    after subtracting :math:`\max\log w`, so nothing overflows).
    """
    log_w = torch.as_tensor(log_w)
    if log_w.dim() != 1 or len(log_w) < 2:
        raise ValueError("log_w must be a 1-D tensor of at least two log weights")
    n = len(log_w)
    shift = log_w.max()
    w = torch.exp(log_w - shift)
    mean = w.mean()
    return shift + mean.log(), w.std() / (math.sqrt(n) * mean)


def base_rate_logits(v: torch.Tensor, eps: float = 1e-3,
                     visible: str = "bernoulli") -> torch.Tensor:
    r"""The base-rate model's visible parameters from data ``v`` of shape ``(N, V)``.

    Bernoulli: the log-odds of the smoothed marginals :math:`(\sum_n v_n + \epsilon N) / (N +
    2\epsilon N)` (so pixels that are always off stay finite); Gaussian: the data mean.
    """
    if v.dim() != 2:
        raise ValueError(f"data for the base rate must have shape (N, V); got {tuple(v.shape)}")
    if visible == "gaussian":
        return v.mean(0)
    p = (v.mean(0) + eps) / (1 + 2 * eps)
    return torch.log(p) - torch.log1p(-p)


@torch.no_grad()
def ais_log_partition(
    rbm: "RBM",
    betas=None,
    num_runs: int = 100,
    base_rate: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""AIS estimate of an RBM's :math:`\log Z` and its standard error (Salakhutdinov & Murray).

    The base-rate model A has only visible biases :math:`b_A` (the data marginals) and the same
    hidden layer with zero weights, so :math:`\log Z_A = \sum_i \operatorname{softplus}(b_{A,i})
    + H\log 2` (Gaussian: :math:`\tfrac V2\log 2\pi + H\log 2`). The geometric path between the
    joints, :math:`p_\beta(v,h) \propto e^{-(1-\beta)E_A(v,h) - \beta E_B(v,h)}`, is itself an
    RBM (weights :math:`\beta W`, hidden biases :math:`\beta c`, visible biases
    :math:`(1-\beta)b_A + \beta b`); with h summed out

    .. math:: \log f_\beta(v) = (1-\beta)\,b_A^\top v + \beta\,b^\top v
              + \sum_j \operatorname{softplus}\big(\beta(c_j + W_j v)\big)

    and one block-Gibbs sweep of that RBM is the transition :math:`T_\beta`. Returns
    ``log_z = log Z_A + log mean exp(log w)`` and its delta-method standard error.

    :param rbm: the RBM (its device and dtype are used; weights are not modified).
    :param betas: inverse temperatures from 0 to 1; default :func:`default_ais_schedule` ()
        (14,500 intermediate distributions).
    :param int num_runs: number of AIS runs (default 100), all advanced together.
    :param base_rate: base-rate visible parameters ``(V,)`` (log-odds, or means for Gaussian
        units), or data ``(N, V)`` whose marginals give them (:func:`base_rate_logits`).
        Default: the RBM's own visible biases. The data marginals make the base closest to
        the target and the estimate most accurate.

    **Reference**: [1] R. Salakhutdinov, I. Murray, *On the Quantitative Analysis of Deep Belief
    Networks*, ICML 2008. [2] R. M. Neal, *Annealed importance sampling*, Statistics and
    Computing 11 (2001), arXiv:physics/9803008.
    """
    from ..models.rbm import RBM, bernoulli_sample, sample_visible_from_natural

    if not isinstance(rbm, RBM):
        raise TypeError(f"rbm must be a pyro_deepgen.models.RBM, got {type(rbm).__name__}")
    if int(num_runs) < 2:
        raise ValueError(f"num_runs must be at least 2 for an error bar, got {num_runs}")
    W, b, c = rbm.weight.detach(), rbm.visible_bias.detach(), rbm.hidden_bias.detach()
    if base_rate is None:
        b_a = b.clone()
    else:
        base_rate = torch.as_tensor(base_rate).to(b)
        if base_rate.dim() == 2:
            base_rate = base_rate_logits(base_rate, visible=rbm.visible)
        if base_rate.shape != b.shape:
            raise ValueError(f"base_rate must have shape ({rbm.num_visible},) or (N, "
                             f"{rbm.num_visible}); got {tuple(base_rate.shape)}")
        b_a = base_rate
    betas = default_ais_schedule() if betas is None else betas
    gaussian = rbm.visible == "gaussian"

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
        v = sample_visible_from_natural(rbm.visible, eta)
        return v, rbm.hidden_input_of_states(v, binary=not gaussian)

    v0 = sample_visible_from_natural(rbm.visible, b_a.expand(int(num_runs), -1))
    log_w = annealed_importance_sampling((v0, F.linear(v0, W, c)), log_f, transition, betas)
    if gaussian:
        log_z_a = 0.5 * rbm.num_visible * math.log(2 * math.pi)
    else:
        log_z_a = F.softplus(b_a64).sum()
    log_ratio, stderr = log_mean_exp_with_stderr(log_w)
    return (log_ratio + log_z_a + rbm.num_hidden * math.log(2)).to(b.dtype), stderr.to(b.dtype)


def mean_log_likelihood(rbm: "RBM", v: torch.Tensor, log_z) -> torch.Tensor:
    r"""Average test log-likelihood :math:`\frac1N\sum_n -F(v_n) - \log\hat Z`."""
    with torch.no_grad():
        return (-rbm.free_energy(v)).mean() - log_z
