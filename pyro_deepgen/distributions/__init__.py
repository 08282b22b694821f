"""pyro_deepgen.distributions"""
from .discretized_normal import DiscretizedNormal  # noqa: F401
from . import transforms  # noqa: F401
from .transforms import build_flow  # noqa: F401
from .flow_density import FlowDensity  # noqa: F401
from .flow_density import bits_per_dim  # noqa: F401
from .bernoulli_image import BernoulliImage  # noqa: F401
from .autoregressive import NADE, MADE, PixelCNN, AutoregressiveBernoulli  # noqa: F401
