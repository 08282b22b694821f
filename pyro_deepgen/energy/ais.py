r"""Partition functions of the Boltzmann machines by annealed importance sampling
(Salakhutdinov & Murray 2008), on the generic sampler
:func:`pyro_deepgen.infer.annealed_importance_sampling`.

Each :class:`~pyro_deepgen.energy.EnergyModel` anneals along its own path in
:meth:`~pyro_deepgen.energy.EnergyModel.log_partition_ais` (the RBM and the DBM sum some layers
out analytically); :func:`ais_log_partition` is the same estimate as a function, and
:func:`base_rate_logits` gives the base-rate start of every path.
"""
from typing import Optional, Tuple

import torch

from .base import EnergyModel


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
    model: EnergyModel,
    betas=None,
    num_runs: int = 100,
    base_rate: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""AIS estimate of an energy model's :math:`\log Z` and its standard error:
    ``model.log_partition_ais(betas, num_runs, base_rate)`` (see
    :meth:`pyro_deepgen.energy.RBM.log_partition_ais` for the RBM's path).

    :param model: an :class:`~pyro_deepgen.energy.RBM`, :class:`~pyro_deepgen.energy.DBM` or
        :class:`~pyro_deepgen.energy.DBN` (its device and dtype are used; it is not modified).
    :param betas: inverse temperatures from 0 to 1; default
        :func:`~pyro_deepgen.infer.default_ais_schedule` () (14,500 intermediate distributions).
    :param int num_runs: number of AIS runs (default 100), all advanced together.
    :param base_rate: base-rate visible parameters ``(V,)`` (log-odds, or means for Gaussian
        units), or data ``(N, V)`` whose marginals give them (:func:`base_rate_logits`).
        Default: the model's own visible biases.

    **Reference**: [1] R. Salakhutdinov, I. Murray, *On the Quantitative Analysis of Deep Belief
    Networks*, ICML 2008. [2] R. M. Neal, *Annealed importance sampling*, Statistics and
    Computing 11 (2001), arXiv:physics/9803008.
    """
    if not isinstance(model, EnergyModel):
        raise TypeError("model must be a pyro_deepgen.energy.EnergyModel (RBM, DBN or DBM), "
                        f"got {type(model).__name__}")
    return model.log_partition_ais(betas=betas, num_runs=num_runs, base_rate=base_rate)


def mean_log_likelihood(model: EnergyModel, v: torch.Tensor, log_z) -> torch.Tensor:
    r"""Average test log-likelihood :math:`\frac1N\sum_n -F(v_n) - \log\hat Z` of a model with a
    free energy (an RBM)."""
    with torch.no_grad():
        return (-model.free_energy(v)).mean() - log_z
