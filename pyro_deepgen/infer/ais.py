r"""Annealed importance sampling (Neal 2001), model-agnostic: any path of unnormalized
log-densities with a transition kernel that leaves each one invariant, its schedules and its
standard error. The Boltzmann machines' partition-function estimators built on it live in
:mod:`pyro_deepgen.energy.ais`.

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
from typing import Callable, Optional, Tuple, TypeVar

import torch

from .._compat import moved_attributes

#: The type of an AIS state, whatever the transition kernel takes and returns (a tensor of
#: chains, or a tuple of tensors).
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
    return_state: bool = False,
):
    r"""Generic vectorized AIS: the log importance weights of all runs, shape ``(num_runs,)``.

    :param init_state: a draw from the normalized base :math:`f_0 / Z_0` for every run (any
        object, e.g. a tensor ``(num_runs, D)`` or a tuple holding cached statistics).
    :param log_f: ``log_f(state, beta)`` -> :math:`\log f_\beta(x)` per run, shape ``(num_runs,)``.
    :param transition: ``transition(state, beta)`` -> a new state from a Markov kernel that
        leaves :math:`f_\beta` invariant.
    :param betas: increasing inverse temperatures from 0 to 1 (see :func:`default_ais_schedule`).
    :param return_state: also return the runs' final states :math:`x_K` (after the last
        transition, at :math:`\beta_{K-1}`), e.g. as approximate draws of :math:`f_1` to start
        :func:`reverse_annealed_importance_sampling` from.
    :return: :math:`\log w` (float64), or ``(log_w, final_state)`` with ``return_state``;
        ``log_mean_exp_with_stderr(log_w)`` estimates :math:`\log Z_1 - \log Z_0`.

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
    return (log_w, state) if return_state else log_w


@torch.no_grad()
def reverse_annealed_importance_sampling(
    init_state: State,
    log_f: Callable[[State, float], torch.Tensor],
    transition: Callable[[State, float], State],
    betas,
) -> torch.Tensor:
    r"""Reverse AIS: the same path run backwards, from states of the target :math:`f_1` to the
    base :math:`f_0`; the log weights of all runs, shape ``(num_runs,)``.

    The chain starts at :math:`x_K` = ``init_state`` and moves down the ladder,
    :math:`x_{k-1}\sim\tilde T_{k-1}(\cdot\mid x_k)` for :math:`k = K, \dots, 2`, where
    :math:`\tilde T_k(x\mid x') = T_k(x'\mid x)\,f_{\beta_k}(x)/f_{\beta_k}(x')` is the reversal
    of the forward kernel (the kernel itself when it is reversible, as block-Gibbs sweeps of a
    two-block model are on the marginal of either block), and accumulates the same increments
    as :func:`annealed_importance_sampling`,

    .. math::

        \log w_\text{rev} = \sum_{k=1}^{K}\log f_{\beta_k}(x_k) - \log f_{\beta_{k-1}}(x_k).

    With :math:`q_\text{fwd}(x_{1:K}) = p_0(x_1)\prod_k T_k(x_{k+1}\mid x_k)` the forward chain
    and :math:`\tilde q_\text{rev}(x_{1:K}) = f_1(x_K)\prod_k\tilde T_k(x_k\mid x_{k+1})` the
    unnormalized reverse one, :math:`\tilde q_\text{rev}/q_\text{fwd} = Z_0\,w_\text{rev}`.
    Two uses follow:

    - **exact starts** (:math:`x_K\sim f_1/Z_1`; Grosse et al.'s bidirectional Monte Carlo):
      :math:`\mathbb E[1/w_\text{rev}] = Z_0/Z_1`, so
      :math:`\log Z_0 - \log\frac1R\sum_r e^{-\log w_\text{rev}^{(r)}}` estimates
      :math:`\log Z_1` and is, by Jensen, a stochastic **upper** bound on it, where forward AIS
      gives a stochastic lower bound;
    - **a fixed start** (an observed :math:`x_K`; Burda et al.'s RAISE):
      :math:`f_1(x_K)/(Z_0\,w_\text{rev})` is an unbiased estimate of :math:`p_\text{ann}(x_K)`,
      the probability that the forward chain ends at :math:`x_K`.

    :param init_state: the starting states :math:`x_K` of all runs (any object the kernel takes).
    :param log_f: ``log_f(state, beta)`` -> :math:`\log f_\beta(x)` per run.
    :param transition: ``transition(state, beta)`` -> a draw from :math:`\tilde T_\beta`, the
        reversal of the forward kernel at :math:`\beta` (the kernel itself if reversible).
    :param betas: the forward ladder, increasing from 0 to 1; it is walked from the top.
    :return: :math:`\log w_\text{rev}` (float64).

    **Limiting cases**: with ``betas = [0, 1]`` no transition is made and
    :math:`\log w_\text{rev} = \log f_1(x_K) - \log f_0(x_K)`, so RAISE returns the base
    model's :math:`\log p_0(x_K)` exactly; when :math:`f_\beta` does not depend on :math:`\beta`
    every weight is 1.

    **References**: [1] Y. Burda, R. Grosse, R. Salakhutdinov, *Accurate and Conservative
    Estimates of MRF Log-likelihood using Reverse Annealing*, AISTATS 2015, arXiv:1412.8566.
    [2] R. Grosse, Z. Ghahramani, R. P. Adams, *Sandwiching the marginal likelihood using
    bidirectional Monte Carlo*, arXiv:1511.02543 (2015). [3] R. M. Neal, *Annealed importance
    sampling*, Statistics and Computing 11 (2001).
    """
    betas = _check_betas(betas).tolist()
    state = init_state
    log_w = 0.0
    for k in range(len(betas) - 1, 0, -1):
        log_w = log_w + (log_f(state, betas[k]) - log_f(state, betas[k - 1])).double()
        if k > 1:  # x_{k-1} from the reversed kernel at beta_{k-1}; none at beta_0
            state = transition(state, betas[k - 1])
    return log_w


def log_mean_exp_with_stderr(log_w: torch.Tensor, dim: Optional[int] = None
                             ) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""``(log mean exp(log_w), its delta-method standard error)``.

    With :math:`\bar w = \frac1n\sum w_i` and sample standard deviation :math:`s_w`,
    :math:`\operatorname{se}(\log\bar w) \approx s_w / (\sqrt n\,\bar w)` (both computed
    after subtracting :math:`\max\log w`, so nothing overflows).

    :param dim: ``None`` (default): ``log_w`` is 1-D; otherwise the dimension of the runs
        (at least two), reduced in both results (e.g. runs x data points -> per point).
    """
    log_w = torch.as_tensor(log_w)
    if dim is None:
        if log_w.dim() != 1 or len(log_w) < 2:
            raise ValueError("log_w must be a 1-D tensor of at least two log weights")
        dim = 0
    elif log_w.dim() == 0 or log_w.shape[dim] < 2:
        raise ValueError(f"log_w must have at least two log weights along dim={dim}; got shape "
                         f"{tuple(log_w.shape)}")
    n = log_w.shape[dim]
    shift = log_w.amax(dim, keepdim=True)
    w = torch.exp(log_w - shift)
    mean = w.mean(dim)
    return shift.squeeze(dim) + mean.log(), w.std(dim) / (math.sqrt(n) * mean)


def geometric_path(log_f0: Callable[[State], torch.Tensor],
                   log_f1: Callable[[State], torch.Tensor]) -> Callable[[State, float], torch.Tensor]:
    r"""The geometric path between two unnormalized log-densities, for
    :func:`annealed_importance_sampling`:

    .. math:: \log f_\beta(x) = (1-\beta)\log f_0(x) + \beta\log f_1(x).

    The transition at :math:`\beta` must leave :math:`f_\beta` invariant (e.g. a Gibbs sweep of
    the intermediate model, or a few Metropolis steps). Paths that sum units out analytically
    (the Boltzmann machines' in :mod:`pyro_deepgen.energy`) pass their own ``log_f`` instead.
    """

    def log_f(state: State, beta: float) -> torch.Tensor:
        if beta == 0:
            return log_f0(state)
        if beta == 1:
            return log_f1(state)
        return (1 - beta) * log_f0(state) + beta * log_f1(state)

    return log_f


# the Boltzmann machines' estimators moved to pyro_deepgen.energy.ais (release 0.2)
__getattr__ = moved_attributes(__name__, {name: "pyro_deepgen.energy.ais" for name in (
    "ais_log_partition", "base_rate_logits", "mean_log_likelihood")})
