"""pyro_deepgen.distributions"""
from .discretized_normal import DiscretizedNormal  # noqa: F401
