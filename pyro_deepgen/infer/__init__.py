"""Inference: ELBO estimators, MCMC kernels and annealed importance sampling."""
from .util import value_with_surrogate_grad  # noqa: F401
from .score_function import TraceScoreFunction_ELBO  # noqa: F401
from .vimco import TraceVIMCO_ELBO  # noqa: F401
from .hvi import TraceHVI_ELBO  # noqa: F401
from .iwae import TraceIWAE_ELBO  # noqa: F401
from .gradient_variance import GradientStats, gradient_variance  # noqa: F401
