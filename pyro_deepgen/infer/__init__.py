"""Inference: ELBO estimators, MCMC kernels and annealed importance sampling."""
from .util import value_with_surrogate_grad  # noqa: F401
from .diffusion_elbo import DiffusionELBO  # noqa: F401
