r"""One interface to both arviz lines: 0.2x (Python < 3.12) and 1.x (Python >= 3.12).

arviz 1.0 split the package (``arviz-base``, ``arviz-stats``, ``arviz-plots``) and changed the
parts this package uses:

==========================  ===================================  =====================================
what                        arviz 0.2x                           arviz 1.x
==========================  ===================================  =====================================
the container               ``arviz.InferenceData``              ``xarray.DataTree``
converting a dict           ``from_dict(posterior=..., ...)``    ``from_dict({"posterior": ...})``
converting a Pyro ``MCMC``  ``from_pyro(mcmc)``                  none (no ``from_pyro``)
PSIS                        ``psislw(log_weights, reff)``        ``arviz_stats.base.array_stats``
                                                                 ``.psislw(-log_weights, r_eff)``
``ess``, ``rhat``,          same names; a ``Dataset``            same names; a ``DataTree``
``summary``
==========================  ===================================  =====================================

The functions here take the 0.2x call shapes and return what both lines agree on, so the rest
of the package (:mod:`pyro_deepgen.diagnostics`) is written once. On 1.x, :func:`from_pyro`
builds the ``posterior`` group from ``mcmc.get_samples(group_by_chain=True)`` and the
``sample_stats`` group from ``mcmc.get_extra_fields(group_by_chain=True)``; unlike 0.2x's
``from_pyro`` it does not re-run the model to add ``log_likelihood`` and ``observed_data``
(pass them as keyword arguments). PSIS on 1.x fits the same generalized Pareto tail; its
:math:`\hat k` differs from 0.2x's by about 0.01 where :math:`\hat k \approx 0.5`, because
0.2x shrinks the fit towards 0.5 with a weak prior.

This module imports neither torch nor the rest of the package, so that it can be tested
against arviz 1.x in an environment that has no torch (``tests/test_arviz_compat.py``).
"""
import warnings
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

with warnings.catch_warnings():
    # arviz 0.23 announces its 1.0 refactor with a FutureWarning at the first import of each
    # day (the message starts with a newline, which ".*" does not match); arviz 1.x warns
    # about names it moved when they are looked up, not on import
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
    import arviz

#: the major version of the installed arviz (0 or 1)
ARVIZ_MAJOR = int(arviz.__version__.split(".")[0])

if ARVIZ_MAJOR >= 1:  # pragma: no cover - exercised by tests/test_arviz_compat.py on Python >= 3.12
    import xarray

    InferenceData = xarray.DataTree
else:
    InferenceData = arviz.InferenceData

GROUPS = ("posterior", "posterior_predictive", "prior", "prior_predictive", "observed_data",
          "log_likelihood", "sample_stats")


def is_inference_data(value: Any) -> bool:
    """Whether ``value`` is arviz's container (``InferenceData`` on 0.2x, ``DataTree`` on 1.x)."""
    return isinstance(value, InferenceData)


def _numpy(value: Any) -> Any:
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        return value.detach().cpu().numpy()
    if isinstance(value, Mapping):
        return {k: _numpy(v) for k, v in value.items()}
    return value


def from_dict(posterior: Optional[Mapping[str, Any]] = None, **kwargs) -> Any:
    """arviz's ``from_dict`` with 0.2x's keywords (``posterior=``, ``observed_data=``, ...,
    ``coords=``, ``dims=``) on either line. Tensors are converted to numpy."""
    groups = {"posterior": posterior, **{g: kwargs.pop(g) for g in GROUPS[1:] if g in kwargs}}
    groups = {g: _numpy(v) for g, v in groups.items() if v is not None}
    if ARVIZ_MAJOR >= 1:  # pragma: no cover - see tests/test_arviz_compat.py
        return arviz.from_dict(groups, **kwargs)
    return arviz.from_dict(**groups, **kwargs)


def from_pyro(mcmc: Any, **kwargs) -> Any:
    """A ``pyro.infer.MCMC`` run as arviz's container (see the module docstring for what 1.x
    leaves out)."""
    if ARVIZ_MAJOR < 1:
        return arviz.from_pyro(mcmc, **kwargs)
    posterior = _numpy(dict(mcmc.get_samples(group_by_chain=True)))  # pragma: no cover
    stats = _numpy(dict(mcmc.get_extra_fields(group_by_chain=True)))  # pragma: no cover
    kwargs.setdefault("sample_stats", stats or None)  # pragma: no cover
    return from_dict(posterior=posterior, **kwargs)  # pragma: no cover


def psislw(log_weights: np.ndarray, reff: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    r"""Pareto-smoothed log weights and :math:`\hat k` of ``log_weights`` shaped
    ``(..., num_samples)`` (samples last), as 0.2x's ``arviz.psislw``."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    if ARVIZ_MAJOR >= 1:  # pragma: no cover - see tests/test_arviz_compat.py
        from arviz_stats.base import array_stats

        # arviz-stats' psislw takes log-likelihoods, whose negatives are the log ratios of LOO
        smoothed, khat = array_stats.psislw(-log_weights, r_eff=reff, axis=-1)
        return np.asarray(smoothed), np.asarray(khat)
    smoothed, khat = arviz.psislw(log_weights.copy(), reff=reff)
    return np.asarray(smoothed), np.asarray(khat)


def per_variable(result: Any) -> Dict[str, np.ndarray]:
    """``{name: values}`` of an arviz result (a ``Dataset`` on 0.2x, a ``DataTree`` on 1.x)."""
    return {name: np.asarray(result[name].values) for name in result.data_vars}


def ess(data: Any, method: str = "bulk") -> Dict[str, np.ndarray]:
    """arviz's ESS per variable of the ``posterior`` group."""
    return per_variable(arviz.ess(data, method=method))


def rhat(data: Any) -> Dict[str, np.ndarray]:
    r"""arviz's rank-normalized split :math:`\hat R` per variable of the ``posterior`` group."""
    return per_variable(arviz.rhat(data))


def summary(data: Any, var_names=None, kind: str = "all", **kwargs):
    """arviz's summary table (a ``pandas.DataFrame``; the interval columns are ``hdi_3%`` /
    ``hdi_97%`` on 0.2x and ``eti89_lb`` / ``eti89_ub`` on 1.x; ``ess_bulk``, ``ess_tail``,
    ``r_hat``, ``mcse_mean`` and ``mcse_sd`` on both)."""
    return arviz.summary(data, var_names=var_names, kind=kind, **kwargs)
