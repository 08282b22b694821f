r"""Diagnostics of approximate inference, on top of `arviz <https://python.arviz.org>`_.

- :func:`psis_khat`: the Pareto :math:`\hat k` of each data point's importance weights, a check
  of how well a guide fits the posterior [1].
- :func:`importance_ess`: the effective sample size of importance weights.
- :func:`to_inference_data`, :func:`guide_to_inference_data`,
  :func:`predictive_to_inference_data`: samples, :class:`~pyro.infer.mcmc.api.MCMC` runs,
  guides and :class:`~pyro.infer.Predictive` to arviz's ``InferenceData`` (``xarray.DataTree`` on arviz 1.x).
- :func:`summary`, :func:`ess`, :func:`rhat`: arviz's rank-normalized effective sample size
  and split :math:`\hat R` of MCMC chains [2].

Works with both arviz lines through ``pyro_deepgen._arviz``: 0.2x (tested with 0.23.4,
what pip picks on Python < 3.12) and 1.x (Python >= 3.12; tested with 1.3, where the
container is an ``xarray.DataTree`` and ``from_pyro`` converts only the posterior and the
extra fields).

References

[1] Y. Yao, A. Vehtari, D. Simpson, A. Gelman, "Yes, but Did It Work?: Evaluating Variational
    Inference", ICML 2018, arXiv:1802.02538; A. Vehtari, D. Simpson, A. Gelman, Y. Yao,
    J. Gabry, "Pareto Smoothed Importance Sampling", arXiv:1507.02646.

[2] A. Vehtari, A. Gelman, D. Simpson, B. Carpenter, P.-C. Bürkner, "Rank-normalization,
    folding, and localization: An improved R-hat for assessing convergence of MCMC",
    arXiv:1903.08008.
"""
import math
from typing import Callable, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from pyro import poutine
from pyro.infer import Predictive
from pyro.infer.mcmc.api import MCMC

from . import _arviz
from ._arviz import InferenceData, arviz  # noqa: F401  (arviz: the module, for diagnostics.arviz)

# PSIS fits a generalized Pareto distribution to the largest min(S / 5, 3 sqrt(S)) weights,
# and needs at least 5 of them
PSIS_MIN_SAMPLES = 21
_PSIS_CHUNK = 1024

Samples = Mapping[str, Union[torch.Tensor, np.ndarray]]


def _check_log_weights(log_weights: torch.Tensor) -> torch.Tensor:
    if not isinstance(log_weights, torch.Tensor):
        raise TypeError(f"log_weights must be a Tensor of shape (S, N); got {type(log_weights)}")
    if log_weights.dim() != 2:
        raise ValueError(
            "log_weights must have shape (num_samples, num_data) = (S, N); got shape "
            f"{tuple(log_weights.shape)} (use log_weights.reshape(S, -1) or [:, None] for one "
            "data point)"
        )
    if log_weights.shape[0] == 0 or log_weights.shape[1] == 0:
        raise ValueError(f"log_weights is empty: shape {tuple(log_weights.shape)}")
    if torch.isnan(log_weights).any() or (log_weights == float("inf")).any():
        raise ValueError("log_weights contains NaN or +inf; check the model and guide densities")
    if (log_weights == float("-inf")).all(0).any():
        raise ValueError("a column of log_weights is all -inf: every sample has zero weight")
    return log_weights.detach()


#: default ``rtol`` of :func:`psis_khat`, in units of the machine epsilon of the weights' dtype
CONSTANT_ULPS = 64


def _constant_columns(log_weights: torch.Tensor, rtol: float) -> torch.Tensor:
    """Columns whose spread ``max - min`` is at most ``rtol * max(1, |max|)``: constant up to
    rounding (a guide equal to the posterior), where the generalized Pareto fit returns
    arbitrary values. A column with a ``-inf`` entry (a zero weight) is not constant."""
    high, low = log_weights.amax(0), log_weights.amin(0)
    return (high - low <= rtol * high.abs().clamp(min=1.0)).cpu()


def psis_khat(log_weights: torch.Tensor, *, rtol: Optional[float] = None) -> torch.Tensor:
    r"""Pareto-smoothed importance sampling shape estimate :math:`\hat k` per data point.

    For each data point :math:`n`, the importance ratios :math:`w_s = p(x_n, z_s) / q(z_s
    \mid x_n)`, :math:`z_s \sim q`, are heavy tailed when the guide :math:`q` has lighter
    tails than the posterior. PSIS [1] fits a generalized Pareto distribution

    .. math:: P(w > t \mid w > u) = \left(1 + k \frac{t - u}{\sigma}\right)^{-1/k}

    to the :math:`M = \lceil\min(S/5, 3\sqrt S)\rceil` largest weights (arviz's
    :func:`arviz.psislw`, which shrinks the estimate towards 0.5 with a weak prior). The
    shape :math:`k` says how many moments of :math:`w` exist (those of order :math:`< 1/k`):

    - :math:`\hat k < 0.5`: the weights have finite variance; the guide is good and the
      importance-sampled log-likelihood converges fast.
    - :math:`0.5 \le \hat k < 0.7`: infinite variance, but PSIS estimates are still usable.
    - :math:`\hat k \ge 0.7`: the estimate is unreliable; the guide misses mass of the
      posterior [1].

    Limiting cases: weights bounded above (a guide with heavier tails than the posterior) give
    :math:`\hat k \le 0`; constant weights (the guide equals the posterior) give
    :math:`-\infty`. Weights count as constant when their spread is within rounding of their
    largest value, :math:`\max_s \log w_s - \min_s \log w_s \le r\,\max(1, |\max_s
    \log w_s|)`, as the log weights of the exact posterior are: the terms of
    :math:`\log p(x, z) - \log q(z)` cancel, and their rounding leaves a spread of a few to a
    few tens of ulps of the result (measured on the linear-Gaussian model: up to 24 ulps in
    float32 with :math:`S=2000`; models whose terms are much larger than their difference can
    leave more, pass a larger ``rtol`` there). Such columns skip the Pareto fit, whose answer
    on rounding noise is arbitrary (it was :math:`+\infty` or any finite value).

    :param log_weights: ``(S, N)`` log importance weights, ``S >= 21`` samples per column (for
        example from :func:`pyro_deepgen.evaluate.log_importance_weights`). ``-inf`` entries
        (zero weight) are allowed.
    :param float rtol: the relative spread :math:`r` below which a column counts as constant;
        default ``64 * torch.finfo(log_weights.dtype).eps``.
    :returns: ``(N,)`` Tensor of :math:`\hat k` with the dtype and device of ``log_weights``.
    """
    log_weights = _check_log_weights(log_weights)
    if rtol is None:
        rtol = CONSTANT_ULPS * torch.finfo(log_weights.dtype).eps
    elif not (isinstance(rtol, (int, float)) and not isinstance(rtol, bool) and 0 <= rtol < math.inf):
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol!r}")
    num_samples = log_weights.shape[0]
    if num_samples < PSIS_MIN_SAMPLES:
        raise ValueError(
            f"psis_khat needs at least {PSIS_MIN_SAMPLES} samples per data point (PSIS fits "
            f"the largest min(S/5, 3 sqrt(S)) of them); got S={num_samples}: draw more "
            "importance samples (e.g. num_samples >= 21 in log_importance_weights)"
        )
    khat = []
    # in chunks of data points: arviz copies its input twice (float64), bound that memory
    for chunk in log_weights.split(_PSIS_CHUNK, dim=1):
        k = torch.full(chunk.shape[1:], -math.inf, dtype=torch.float64)  # constant: exact posterior
        fit = ~_constant_columns(chunk, rtol)
        if fit.any():
            lw = chunk[:, fit.to(chunk.device)].to(torch.float64).cpu().numpy().T  # samples last
            k[fit] = torch.as_tensor(np.array(_arviz.psislw(lw, reff=1.0)[1], dtype=np.float64).reshape(-1))
        khat.append(k)
    return torch.cat(khat).to(dtype=log_weights.dtype, device=log_weights.device)


def importance_ess(log_weights: torch.Tensor) -> torch.Tensor:
    r"""Effective sample size of importance weights per data point (Kong, 1992).

    .. math:: \mathrm{ESS}_n = \frac{\left(\sum_s w_{sn}\right)^2}{\sum_s w_{sn}^2},
        \qquad 1 \le \mathrm{ESS}_n \le S,

    computed from the self-normalized weights (no overflow). Equal weights give :math:`S`;
    one dominant weight gives 1.

    :param log_weights: ``(S, N)`` log importance weights.
    :returns: ``(N,)`` Tensor.
    """
    log_weights = _check_log_weights(log_weights)
    weights = torch.softmax(log_weights.to(torch.float64), dim=0)  # normalized over samples
    return weights.square().sum(0).reciprocal().to(log_weights.dtype)


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, Mapping):
        return {k: _to_numpy(v) for k, v in value.items()}
    return value


def to_inference_data(
    samples: Union[Samples, MCMC], *, group_by_chain: bool = True, **kwargs
) -> "InferenceData":
    """Samples or an MCMC run as arviz's ``InferenceData`` (``xarray.DataTree`` on arviz 1.x).

    :param samples: a :class:`~pyro.infer.mcmc.api.MCMC` that has run (converted by
        :func:`arviz.from_pyro`, with ``log_likelihood``, ``sample_stats`` and
        ``observed_data``), or a dict from site name to Tensor (converted by
        :func:`arviz.from_dict` into the ``posterior`` group).
    :param group_by_chain: for a dict: ``True`` if the values are shaped
        ``(chains, draws, ...)`` (as ``MCMC.get_samples(group_by_chain=True)`` and arviz);
        ``False`` for ``(draws, ...)`` (guide or :class:`~pyro.infer.Predictive` samples),
        which become one chain.
    :param kwargs: passed on to :func:`arviz.from_pyro` / :func:`arviz.from_dict` (e.g.
        ``posterior_predictive``, ``observed_data``, ``coords``, ``dims``); Tensors in them
        are converted to numpy.
    """
    kwargs = {k: _to_numpy(v) for k, v in kwargs.items()}
    if isinstance(samples, MCMC):
        return _arviz.from_pyro(samples, **kwargs)
    if not isinstance(samples, Mapping) or not samples:
        raise TypeError(
            "samples must be a pyro.infer.MCMC or a non-empty dict of site name -> Tensor; got "
            f"{type(samples).__name__}"
        )
    posterior = {}
    lead = None
    for name, value in samples.items():
        value = np.asarray(_to_numpy(value))
        if not group_by_chain:
            value = value[None]
        if value.ndim < 2:
            raise ValueError(
                f"samples[{name!r}] has shape {value.shape}; with group_by_chain=True values "
                "must be shaped (chains, draws, ...) (pass group_by_chain=False for (draws, ...))"
            )
        if lead is not None and value.shape[:2] != lead:
            raise ValueError(
                f"samples[{name!r}] has (chains, draws) = {value.shape[:2]}, other sites {lead}"
            )
        lead = value.shape[:2]
        posterior[name] = value
    return _arviz.from_dict(posterior=posterior, **kwargs)


def _predictive_samples(model, guide, args, kwargs, num_samples, parallel):
    if not (isinstance(num_samples, int) and num_samples >= 1):
        raise ValueError(f"num_samples must be a positive int; got {num_samples!r}")
    with torch.no_grad():
        samples = Predictive(model, guide=guide, num_samples=num_samples, parallel=parallel)(
            *args, **kwargs
        )
    return dict(samples)


def guide_to_inference_data(
    guide: Callable, *args, num_samples: int = 1000, parallel: bool = False, **kwargs
) -> "InferenceData":
    """Draw ``num_samples`` times from a guide; its sample sites form the ``posterior`` group.

    Runs ``pyro.infer.Predictive(guide, num_samples=num_samples, parallel=parallel)(*args,
    **kwargs)``. The result has one chain; a site of shape ``(N, D)`` (inside a data plate)
    becomes a variable of shape ``(1, num_samples, N, D)``.

    :param parallel: vectorize the draws (needs every sample site inside a plate, e.g.
        ``pyro_deepgen.models.VAE.guide``); ``False`` runs the guide ``num_samples`` times.
    """
    return to_inference_data(
        _predictive_samples(guide, None, args, kwargs, num_samples, parallel),
        group_by_chain=False,
    )


def predictive_to_inference_data(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    parallel: bool = False,
    **kwargs,
) -> "InferenceData":
    """Posterior (from the guide) and posterior predictive samples as arviz ``InferenceData``.

    Runs ``pyro.infer.Predictive(model, guide=guide, num_samples=num_samples)``: the latent
    sites go to ``posterior``, fresh draws of the model's observed sites to
    ``posterior_predictive``, and the observed values to ``observed_data``.
    """
    with torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    observed = {
        name: site["value"]
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample" and site["is_observed"]
    }
    samples = _predictive_samples(model, guide, args, kwargs, num_samples, parallel)
    posterior = {k: v for k, v in samples.items() if k not in observed}
    predictive = {k: v[None] for k, v in samples.items() if k in observed}
    return to_inference_data(
        posterior,
        group_by_chain=False,
        posterior_predictive=predictive or None,
        observed_data=observed or None,
    )


def _as_inference_data(data, group_by_chain):
    if _arviz.is_inference_data(data):
        return data
    return to_inference_data(data, group_by_chain=group_by_chain)


def summary(
    data: Union["InferenceData", Samples, MCMC],
    *,
    group_by_chain: bool = True,
    var_names: Optional[Sequence[str]] = None,
    kind: str = "all",
    **kwargs,
):
    r"""arviz's summary table: mean, sd, HDI, MCSE, ``ess_bulk``, ``ess_tail`` and ``r_hat``.

    :param data: InferenceData, an MCMC run, or a dict of Tensors shaped
        ``(chains, draws, ...)`` (``group_by_chain=False`` for ``(draws, ...)``).
    :param kind: ``"all"``, ``"stats"`` or ``"diagnostics"`` (ESS, MCSE and :math:`\hat R`
        only).
    :returns: a :class:`pandas.DataFrame` with one row per scalar component.
    """
    idata = _as_inference_data(data, group_by_chain)
    return _arviz.summary(idata, var_names=var_names, kind=kind, **kwargs)


def _tensors(values: Mapping[str, np.ndarray]) -> Dict[str, torch.Tensor]:
    return {name: torch.as_tensor(v) for name, v in values.items()}


def ess(
    data: Union["InferenceData", Samples, MCMC],
    *,
    group_by_chain: bool = True,
    method: str = "bulk",
) -> Dict[str, torch.Tensor]:
    """arviz's effective sample size of MCMC draws per variable (rank-normalized ``"bulk"``
    by default [2]; any :func:`arviz.ess` ``method``). iid draws give about chains x draws.

    :returns: dict of site name -> Tensor with the site's event shape.
    """
    return _tensors(_arviz.ess(_as_inference_data(data, group_by_chain), method=method))


def rhat(
    data: Union["InferenceData", Samples, MCMC], *, group_by_chain: bool = True
) -> Dict[str, torch.Tensor]:
    r"""arviz's rank-normalized split :math:`\hat R` per variable [2]: about 1 for chains that
    mix; above 1.01 (strict) or 1.1 (lenient) signals chains that disagree.

    :returns: dict of site name -> Tensor with the site's event shape.
    """
    return _tensors(_arviz.rhat(_as_inference_data(data, group_by_chain)))
