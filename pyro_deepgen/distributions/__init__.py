"""pyro_deepgen.distributions"""
from . import transforms  # noqa: F401
from .transforms import build_flow  # noqa: F401
