"""pyro_deepgen.distributions"""
from . import transforms  # noqa: F401
from .transforms import build_flow  # noqa: F401
from .flow_density import FlowDensity  # noqa: F401
from .flow_density import bits_per_dim  # noqa: F401
